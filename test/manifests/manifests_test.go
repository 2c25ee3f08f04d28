package manifests

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"

	"github.com/nodeupgrade/nodeupgrade/pkg/manager"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

const defaultImage = "ghcr.io/nodeupgrade/nodeupgrade:v0.1.0"

func TestRenderedObjects(t *testing.T) {
	g := NewWithT(t)
	_, objs := renderDefault(t)

	crd := find(t, objs, "CustomResourceDefinition", "", crdName)
	g.Expect(crd.Object).To(HaveKeyWithValue("spec", HaveKeyWithValue("scope", "Cluster")))

	ns := typed(t, find(t, objs, "Namespace", "", systemNamespace), &corev1.Namespace{})
	for _, mode := range []string{"enforce", "audit", "warn"} {
		g.Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/"+mode, "privileged"), mode)
	}

	find(t, objs, "ServiceAccount", systemNamespace, controllerName)
	find(t, objs, "ClusterRole", "", controllerName)
	find(t, objs, "Role", systemNamespace, controllerName)
	find(t, objs, "ClusterRoleBinding", "", controllerName)
	find(t, objs, "RoleBinding", systemNamespace, controllerName)
	find(t, objs, "Deployment", systemNamespace, controllerName)
	find(t, objs, "Service", systemNamespace, metricsService)

	// The namespace transformer must not have moved the events Role and its
	// binding out of default, where events of cluster-scoped jobs land.
	events := typed(t, find(t, objs, "Role", eventsNamespace, controllerName), &rbacv1.Role{})
	g.Expect(events.Rules).To(ContainElement(And(
		HaveField("APIGroups", ContainElement("events.k8s.io")),
		HaveField("Resources", ContainElement("events")),
		HaveField("Verbs", ContainElement("create")),
	)))
	find(t, objs, "RoleBinding", eventsNamespace, controllerName)

	// Every namespaced object says where it goes: `kubectl apply -k` must not
	// drop one into the caller's current namespace.
	for _, o := range objs {
		switch o.GetKind() {
		case "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
			"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			g.Expect(o.GetNamespace()).To(BeEmpty(), "%s %s", o.GetKind(), o.GetName())
		default:
			g.Expect(o.GetNamespace()).To(BeElementOf(systemNamespace, eventsNamespace), "%s %s", o.GetKind(), o.GetName())
		}
	}
}

func TestBindingsReachTheServiceAccount(t *testing.T) {
	g := NewWithT(t)
	_, objs := renderDefault(t)
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: controllerName, Namespace: systemNamespace}

	crb := typed(t, find(t, objs, "ClusterRoleBinding", "", controllerName), &rbacv1.ClusterRoleBinding{})
	g.Expect(crb.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: controllerName}))
	g.Expect(crb.Subjects).To(ConsistOf(sa))

	for _, ns := range []string{systemNamespace, eventsNamespace} {
		rb := typed(t, find(t, objs, "RoleBinding", ns, controllerName), &rbacv1.RoleBinding{})
		g.Expect(rb.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: controllerName}), ns)
		g.Expect(rb.Subjects).To(ConsistOf(sa), ns)
		find(t, objs, "Role", ns, controllerName) // the Role it names exists there
	}
	// No binding grants the user-facing roles: that is the operator's call.
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, o := range ofKind(objs, kind) {
			g.Expect(o.GetName()).To(Equal(controllerName), "unexpected %s %s", kind, o.GetName())
		}
	}
}

func TestUserRoles(t *testing.T) {
	g := NewWithT(t)
	_, objs := renderDefault(t)

	viewer := typed(t, find(t, objs, "ClusterRole", "", "nodeupgradejob-viewer"), &rbacv1.ClusterRole{})
	g.Expect(viewer.Labels).To(HaveKeyWithValue("rbac.authorization.k8s.io/aggregate-to-view", "true"))
	g.Expect(verbsOn(viewer.Rules, "operations.kubeedge.io", "nodeupgradejobs")).To(ConsistOf("get", "list", "watch"))

	editor := typed(t, find(t, objs, "ClusterRole", "", "nodeupgradejob-editor"), &rbacv1.ClusterRole{})
	g.Expect(verbsOn(editor.Rules, "operations.kubeedge.io", "nodeupgradejobs")).To(ConsistOf("get", "list", "watch", "create", "delete", "patch"))
	// Creating a job is root on the nodes it selects: the editor role must
	// not reach everyone holding the built-in edit/admin roles.
	for k := range editor.Labels {
		g.Expect(k).NotTo(HavePrefix("rbac.authorization.k8s.io/aggregate-to-"), "editor aggregates through %s", k)
	}
}

// verbsOn lists the verbs rules grant on group/resource, wildcards included.
func verbsOn(rules []rbacv1.PolicyRule, group, resource string) []string {
	var verbs []string
	for _, r := range rules {
		if (slices.Contains(r.APIGroups, group) || slices.Contains(r.APIGroups, "*")) &&
			(slices.Contains(r.Resources, resource) || slices.Contains(r.Resources, "*")) {
			for _, v := range r.Verbs {
				if !slices.Contains(verbs, v) {
					verbs = append(verbs, v)
				}
			}
		}
	}
	return verbs
}

func TestRBACLeastPrivilege(t *testing.T) {
	g := NewWithT(t)
	_, objs := renderDefault(t)

	// Cluster-wide: only nodes (read, and patch for the controller's
	// per-node history annotation) and NodeUpgradeJobs, never pods,
	// secrets, RBAC or wildcards.
	allowed := map[string][]string{
		"/nodes":                                 {"get", "list", "watch", "patch"},
		"operations.kubeedge.io/nodeupgradejobs": {"get", "list", "watch", "create", "delete", "update", "patch"},
		"operations.kubeedge.io/nodeupgradejobs/status":     {"get", "list", "watch", "update", "patch"},
		"operations.kubeedge.io/nodeupgradejobs/finalizers": {"update"},
	}
	clusterRoles := ofKind(objs, "ClusterRole")
	g.Expect(clusterRoles).NotTo(BeEmpty())
	for _, u := range clusterRoles {
		cr := typed(t, u, &rbacv1.ClusterRole{})
		g.Expect(cr.AggregationRule).To(BeNil(), cr.Name)
		for _, r := range cr.Rules {
			g.Expect(r.NonResourceURLs).To(BeEmpty(), cr.Name)
			g.Expect(r.ResourceNames).To(BeEmpty(), cr.Name)
			g.Expect(r.Verbs).NotTo(ContainElement("*"), cr.Name)
			g.Expect(r.APIGroups).NotTo(ContainElement("*"), cr.Name)
			g.Expect(r.Resources).NotTo(ContainElement(BeElementOf("*", "pods", "secrets")), cr.Name)
			for _, group := range r.APIGroups {
				for _, res := range r.Resources {
					key := group + "/" + res
					g.Expect(allowed).To(HaveKey(key), "ClusterRole %s grants %s", cr.Name, key)
					g.Expect(allowed[key]).To(ContainElements(r.Verbs), "ClusterRole %s verbs on %s", cr.Name, key)
				}
			}
		}
	}
	controller := typed(t, find(t, objs, "ClusterRole", "", controllerName), &rbacv1.ClusterRole{})
	g.Expect(verbsOn(controller.Rules, "", "nodes")).To(ConsistOf("get", "list", "patch", "watch"))
	g.Expect(verbsOn(controller.Rules, "operations.kubeedge.io", "nodeupgradejobs")).NotTo(ContainElement(BeElementOf("create", "delete")),
		"the controller never creates or deletes jobs")

	// Namespaced: pods (create/delete) only in nodeupgrade-system, never a
	// wildcard or secrets anywhere.
	for _, u := range ofKind(objs, "Role") {
		role := typed(t, u, &rbacv1.Role{})
		for _, r := range role.Rules {
			g.Expect(r.Verbs).NotTo(ContainElement("*"), role.Namespace)
			g.Expect(r.APIGroups).NotTo(ContainElement("*"), role.Namespace)
			g.Expect(r.Resources).NotTo(ContainElement(BeElementOf("*", "secrets", "pods/exec", "pods/attach", "serviceaccounts/token")), role.Namespace)
		}
		if role.Namespace != systemNamespace {
			g.Expect(verbsOn(role.Rules, "", "pods")).To(BeEmpty(), "Role in %s grants pods", role.Namespace)
		}
	}
	system := typed(t, find(t, objs, "Role", systemNamespace, controllerName), &rbacv1.Role{})
	g.Expect(verbsOn(system.Rules, "", "pods")).To(ContainElements("create", "delete"))
	g.Expect(verbsOn(system.Rules, "coordination.k8s.io", "leases")).To(ContainElements("get", "create", "update"))
}

func TestDeployment(t *testing.T) {
	g := NewWithT(t)
	_, objs := renderDefault(t)
	dep := typed(t, find(t, objs, "Deployment", systemNamespace, controllerName), &appsv1.Deployment{})
	spec := dep.Spec.Template.Spec

	g.Expect(dep.Spec.Replicas).To(HaveValue(BeEquivalentTo(2)))
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sel.Matches(labels.Set(dep.Spec.Template.Labels))).To(BeTrue(), "selector must match the pod template")

	g.Expect(spec.ServiceAccountName).To(Equal(controllerName))
	g.Expect(spec.TerminationGracePeriodSeconds).To(HaveValue(BeEquivalentTo(10)))
	g.Expect(spec.HostPID).To(BeFalse())
	g.Expect(spec.HostNetwork).To(BeFalse())
	g.Expect(spec.Volumes).To(BeEmpty())

	// Off edge nodes, spread over hosts.
	g.Expect(spec.Affinity).NotTo(BeNil())
	g.Expect(spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution).NotTo(BeNil())
	terms := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	g.Expect(terms).NotTo(BeEmpty())
	for _, term := range terms { // terms are ORed: every one must exclude edge nodes
		g.Expect(term.MatchExpressions).To(ContainElement(And(
			HaveField("Key", "node-role.kubernetes.io/edge"),
			HaveField("Operator", BeElementOf(corev1.NodeSelectorOpDoesNotExist, corev1.NodeSelectorOpNotIn)),
		)))
	}
	g.Expect(spec.NodeSelector).NotTo(HaveKey("node-role.kubernetes.io/edge"))
	anti := spec.Affinity.PodAntiAffinity
	g.Expect(anti).NotTo(BeNil())
	g.Expect(anti.PreferredDuringSchedulingIgnoredDuringExecution).To(ContainElement(
		HaveField("PodAffinityTerm.TopologyKey", "kubernetes.io/hostname")))
	for _, w := range anti.PreferredDuringSchedulingIgnoredDuringExecution {
		s, err := metav1.LabelSelectorAsSelector(w.PodAffinityTerm.LabelSelector)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(s.Matches(labels.Set(dep.Spec.Template.Labels))).To(BeTrue(), "anti-affinity must select the replicas themselves")
	}

	g.Expect(spec.SecurityContext).NotTo(BeNil())
	g.Expect(spec.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
	g.Expect(spec.SecurityContext.SeccompProfile).To(HaveValue(HaveField("Type", corev1.SeccompProfileTypeRuntimeDefault)))

	g.Expect(spec.InitContainers).To(BeEmpty())
	g.Expect(spec.Containers).To(HaveLen(1))
	c := spec.Containers[0]
	g.Expect(c.Image).To(Equal(defaultImage))
	g.Expect(c.Command).To(Equal([]string{"/nodeupgrade-controller"}))
	g.Expect(c.Args).To(ContainElement("--leader-elect"))

	sc := c.SecurityContext
	g.Expect(sc).NotTo(BeNil())
	g.Expect(sc.RunAsNonRoot).To(HaveValue(BeTrue()))
	g.Expect(sc.RunAsUser).To(HaveValue(BeEquivalentTo(65532)))
	g.Expect(sc.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
	g.Expect(sc.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
	g.Expect(sc.Privileged).To(Or(BeNil(), HaveValue(BeFalse())))
	g.Expect(sc.Capabilities).NotTo(BeNil())
	g.Expect(sc.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
	g.Expect(sc.Capabilities.Add).To(BeEmpty())
	g.Expect(sc.SeccompProfile).To(HaveValue(HaveField("Type", corev1.SeccompProfileTypeRuntimeDefault)))

	g.Expect(c.Resources.Requests.Cpu().String()).To(Equal("100m"))
	g.Expect(c.Resources.Requests.Memory().String()).To(Equal("128Mi"))
	g.Expect(c.Resources.Limits.Cpu().String()).To(Equal("1"))
	g.Expect(c.Resources.Limits.Memory().String()).To(Equal("512Mi"))

	cfg := parseControllerArgs(t, c)
	for _, probe := range []struct {
		p    *corev1.Probe
		path string
	}{{c.LivenessProbe, "/healthz"}, {c.ReadinessProbe, "/readyz"}} {
		g.Expect(probe.p).NotTo(BeNil(), probe.path)
		g.Expect(probe.p.HTTPGet).NotTo(BeNil(), probe.path)
		g.Expect(probe.p.HTTPGet.Path).To(Equal(probe.path))
		g.Expect(resolvePort(t, c, probe.p.HTTPGet.Port)).To(BeEquivalentTo(8081), probe.path)
		g.Expect(cfg.ProbeAddr).To(HaveSuffix(":8081"), "probes must hit --health-probe-bind-address")
	}

	pdb := typed(t, find(t, objs, "PodDisruptionBudget", systemNamespace, controllerName), &policyv1.PodDisruptionBudget{})
	pdbSel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(pdbSel.Matches(labels.Set(dep.Spec.Template.Labels))).To(BeTrue())
	g.Expect(pdb.Spec.MaxUnavailable).To(HaveValue(Equal(intstr.FromInt32(1))))
}

// The Deployment's args must parse with the controller's real flag set, so a
// misspelt or removed flag fails here rather than in a crash-looping pod.
func TestControllerArgsParse(t *testing.T) {
	g := NewWithT(t)
	_, objs := renderDefault(t)
	dep := typed(t, find(t, objs, "Deployment", systemNamespace, controllerName), &appsv1.Deployment{})
	c := dep.Spec.Template.Spec.Containers[0]
	cfg := parseControllerArgs(t, c)

	g.Expect(cfg.LeaderElect).To(BeTrue())
	g.Expect(cfg.Controller.Namespace).To(Equal(systemNamespace), "must match the Role granting pods and leases")
	g.Expect(cfg.Controller.Namespace).To(Equal(dep.Namespace))
	g.Expect(cfg.MetricsAddr).To(Equal(":8080"))
	g.Expect(cfg.ProbeAddr).To(Equal(":8081"))
	// The runner image follows the controller's image, whatever
	// `images:` sets: the upgrade pods run the controller's own build.
	g.Expect(cfg.Controller.RunnerImage).To(Equal(c.Image))
	// The leader-election Lease goes in --namespace, which the Role covers.
	g.Expect(cfg.LeaderElectionID).NotTo(BeEmpty())
	// The binary starts with these flags alone: an allow-list and not
	// allow-any, every option in range (what manager.New checks first).
	opts, err := cfg.Controller.Validate()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(opts.AllowAnyImageRepository).To(BeFalse())
	g.Expect(opts.AllowedImageRepositories).To(Equal([]string{"docker.io/kubeedge/installation-package"}))

	svc := typed(t, find(t, objs, "Service", systemNamespace, metricsService), &corev1.Service{})
	g.Expect(labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(dep.Spec.Template.Labels))).To(BeTrue(),
		"metrics Service must select the controller pods")
	g.Expect(svc.Spec.Selector).NotTo(BeEmpty())
	g.Expect(svc.Spec.Ports).To(ConsistOf(And(
		HaveField("Name", "http-metrics"),
		HaveField("Port", BeEquivalentTo(8080)),
	)))
	g.Expect(resolvePort(t, c, svc.Spec.Ports[0].TargetPort)).To(BeEquivalentTo(8080))
	g.Expect(cfg.MetricsAddr).To(HaveSuffix(":8080"), "the Service must reach --metrics-bind-address")
}

// An image override in config/manager reaches both the container and
// --runner-image (through the RUNNER_IMAGE replacement).
func TestImageOverrideReachesRunnerImage(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	copyTree(t, filepath.Join(testenv.RepoRoot(), "config"), filepath.Join(dir, "config"))
	kust := filepath.Join(dir, "config", "manager", "kustomization.yaml")
	b, err := os.ReadFile(kust)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(ContainSubstring("  newTag: v0.1.0\n"))
	b = []byte(strings.Replace(string(b), "  newTag: v0.1.0\n", "  newName: registry.example.com/edge/nodeupgrade\n  newTag: v9.8.7\n", 1))
	g.Expect(os.WriteFile(kust, b, 0o644)).To(Succeed())

	raw := runKubectl(t, nil, "kustomize", filepath.Join(dir, "config", "default"))
	objs, err := decodeAll(raw)
	g.Expect(err).NotTo(HaveOccurred())
	dep := typed(t, find(t, objs, "Deployment", systemNamespace, controllerName), &appsv1.Deployment{})
	c := dep.Spec.Template.Spec.Containers[0]
	g.Expect(c.Image).To(Equal("registry.example.com/edge/nodeupgrade:v9.8.7"))
	g.Expect(parseControllerArgs(t, c).Controller.RunnerImage).To(Equal(c.Image))
}

func TestSamples(t *testing.T) {
	g := NewWithT(t)
	_, objs := render(t, filepath.Join("config", "samples"))
	g.Expect(objs).To(HaveLen(2))
	for _, o := range objs {
		g.Expect(o.GetAPIVersion()).To(Equal("operations.kubeedge.io/v1alpha1"))
		g.Expect(o.GetKind()).To(Equal("NodeUpgradeJob"))
		g.Expect(o.GetNamespace()).To(BeEmpty(), "NodeUpgradeJob is cluster-scoped")
		g.Expect(o.Object).To(HaveKeyWithValue("spec", HaveKeyWithValue("version", "v1.21.0")))
	}
}

// parseControllerArgs parses c's args with the flag set main uses: the
// project's flags (manager.BindFlags), klog's, and controller-runtime's
// --kubeconfig. $(VAR) references are expanded from c's env first, as the
// kubelet does.
func parseControllerArgs(t *testing.T, c corev1.Container) *manager.Config {
	t.Helper()
	fs := flag.NewFlagSet("nodeupgrade-controller", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := manager.BindFlags(fs)
	klog.InitFlags(fs)
	fs.String("kubeconfig", "", "registered by controller-runtime on the command line")
	args := expandEnv(t, c)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("the Deployment's args %q do not parse: %v", args, err)
	}
	if fs.NArg() != 0 {
		t.Fatalf("the Deployment's args leave positional arguments %q: flags after them are ignored", fs.Args())
	}
	return cfg
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func expandEnv(t *testing.T, c corev1.Container) []string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	out := make([]string, len(c.Args))
	for i, a := range c.Args {
		out[i] = varRef.ReplaceAllStringFunc(a, func(ref string) string {
			name := varRef.FindStringSubmatch(ref)[1]
			v, ok := env[name]
			if !ok {
				t.Fatalf("arg %q refers to $(%s), which the container's env doesn't set", a, name)
			}
			return v
		})
	}
	return out
}

// resolvePort returns the container port p names (or is).
func resolvePort(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	t.Fatalf("port %s is not a port of container %s", p.String(), c.Name)
	return 0
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
