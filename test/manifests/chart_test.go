package manifests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// The Helm chart (charts/nodeupgrade) and config/default are one install:
// with its default values the chart renders the very objects kustomize
// does, less Helm's own labels. The parts generated from the code (the CRD,
// the controller's RBAC) and the monitoring files are copies that `make
// manifests` refreshes, and these tests compare.

const chartDir = "charts/nodeupgrade"

// helmLabels are the labels only the chart's objects carry.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}

func helmPath(t *testing.T) string {
	t.Helper()
	p, err := testenv.Helm()
	if err != nil {
		t.Fatalf("the chart tests need Helm: %v", err)
	}
	return p
}

// runHelm runs helm with args from the repository root; it returns stdout,
// and stderr in the error when helm fails.
func runHelm(t *testing.T, env []string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helmPath(t), args...)
	cmd.Dir = testenv.RepoRoot()
	// Helm's caches and config under the test's own folder, never $HOME.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// helmTemplate renders the chart into namespace with extra helm args.
func helmTemplate(t *testing.T, namespace string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := runHelm(t, nil, append([]string{"template", "nodeupgrade", chartDir, "--namespace", namespace, "--include-crds"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatalf("decoding helm template: %v\n%s", err, out)
	}
	return objs
}

func objectKey(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}

// withoutHelmLabels drops the labels only Helm adds from the object's own
// metadata (selectors and pod templates carry none of them).
func withoutHelmLabels(o *unstructured.Unstructured) *unstructured.Unstructured {
	o = o.DeepCopy()
	labels := o.GetLabels()
	for _, l := range helmLabels {
		delete(labels, l)
	}
	if len(labels) == 0 {
		unstructured.RemoveNestedField(o.Object, "metadata", "labels")
	} else {
		o.SetLabels(labels)
	}
	return o
}

func TestChartLint(t *testing.T) {
	for name, args := range map[string][]string{
		"default values": nil,
		"every option": {"--set", "image.digest=sha256:" + strings.Repeat("ab", 32), "--set", "grafanaDashboard.enabled=true",
			"--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true", "--set", "tolerations[0].operator=Exists",
			"--set", "upgradePods.imagePullSecrets[0]=mirror", "--set", "namespace.create=false"},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := runHelm(t, nil, append([]string{"lint", "--strict", chartDir}, args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

func TestChartRendersConfigDefault(t *testing.T) {
	_, want := renderDefault(t)
	got := helmTemplate(t, systemNamespace)
	wantByKey := map[string]*unstructured.Unstructured{}
	for _, o := range want {
		wantByKey[objectKey(o)] = o
	}
	gotByKey := map[string]*unstructured.Unstructured{}
	for _, o := range got {
		k := objectKey(o)
		if _, dup := gotByKey[k]; dup {
			t.Errorf("the chart renders %s twice", k)
		}
		gotByKey[k] = o
		for _, l := range helmLabels {
			if _, ok := o.GetLabels()[l]; !ok && o.GetKind() != "CustomResourceDefinition" {
				t.Errorf("%s lacks Helm's label %s", k, l)
			}
		}
	}
	for k, w := range wantByKey {
		g, ok := gotByKey[k]
		if !ok {
			t.Errorf("config/default installs %s, the chart does not", k)
			continue
		}
		if d := cmp.Diff(w.Object, withoutHelmLabels(g).Object); d != "" {
			t.Errorf("%s differs between config/default (-) and the chart (+):\n%s", k, d)
		}
	}
	for k := range gotByKey {
		if _, ok := wantByKey[k]; !ok {
			t.Errorf("the chart installs %s, config/default does not", k)
		}
	}
}

// TestChartCopies: the chart's copies of generated and shared files are the
// originals (`make manifests` copies them), and its appVersion is the tag
// config/manager deploys.
func TestChartCopies(t *testing.T) {
	root := testenv.RepoRoot()
	for copyPath, original := range map[string]string{
		"crds/operations.kubeedge.io_nodeupgradejobs.yaml": "config/crd/bases/operations.kubeedge.io_nodeupgradejobs.yaml",
		"files/controller-role.yaml":                       "config/rbac/role.yaml",
		"files/alerts.yaml":                                "config/monitoring/alerts.yaml",
		"files/dashboard.json":                             "config/monitoring/dashboard.json",
	} {
		a, err := os.ReadFile(filepath.Join(root, original))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(root, chartDir, copyPath))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s/%s differs from %s: run make manifests", chartDir, copyPath, original)
		}
	}

	chart := struct {
		AppVersion string `json:"appVersion"`
	}{}
	raw, err := os.ReadFile(filepath.Join(root, chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		t.Fatal(err)
	}
	kust := struct {
		Images []struct {
			NewTag string `json:"newTag"`
		} `json:"images"`
	}{}
	raw, err = os.ReadFile(filepath.Join(root, "config", "manager", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &kust); err != nil || len(kust.Images) != 1 {
		t.Fatalf("config/manager/kustomization.yaml: want one image, got %+v (%v)", kust.Images, err)
	}
	if chart.AppVersion != kust.Images[0].NewTag {
		t.Errorf("Chart.yaml appVersion %q, config/manager deploys %q: release them together", chart.AppVersion, kust.Images[0].NewTag)
	}
}

func chartDeployment(t *testing.T, objs []*unstructured.Unstructured, namespace string) *appsv1.Deployment {
	t.Helper()
	return typed(t, find(t, objs, "Deployment", namespace, controllerName), &appsv1.Deployment{})
}

func TestChartValues(t *testing.T) {
	digest := "sha256:" + strings.Repeat("0123456789abcdef", 4)

	t.Run("image by digest, for the controller and the upgrade pods", func(t *testing.T) {
		g := NewWithT(t)
		c := chartDeployment(t, helmTemplate(t, systemNamespace, "--set", "image.repository=registry.example/nodeupgrade", "--set", "image.digest="+digest), systemNamespace).Spec.Template.Spec.Containers[0]
		g.Expect(c.Image).To(Equal("registry.example/nodeupgrade@" + digest))
		g.Expect(c.Env).To(ContainElement(corev1.EnvVar{Name: "RUNNER_IMAGE", Value: c.Image}))
	})

	t.Run("a digest that is not one is refused, naming the value", func(t *testing.T) {
		_, err := runHelm(t, nil, "template", "nodeupgrade", chartDir, "--set", "image.digest=latest")
		NewWithT(t).Expect(err).To(MatchError(ContainSubstring(`image.digest "latest"`)))
	})

	t.Run("replicas, resources, placement, allow-list, pull secrets, flags", func(t *testing.T) {
		g := NewWithT(t)
		// Not t.TempDir(): helm -f splits its argument at commas, and the
		// subtest's name has some.
		dir, err := os.MkdirTemp("", "chart-values")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		values := filepath.Join(dir, "values.yaml")
		if err := os.WriteFile(values, []byte(`
replicaCount: 3
image: {tag: v9.9.9}
allowedImageRepositories: [mirror.example:5000/kubeedge/installation-package, registry.example/kubeedge/]
edgeNodeLabel: example.com/edge
upgradePods: {imagePullSecrets: [mirror-a, mirror-b]}
extraArgs: [--pod-workers=32]
resources: {requests: {cpu: 50m}}
nodeSelector: {pool: system}
tolerations: [{key: dedicated, operator: Equal, value: system, effect: NoSchedule}]
imagePullSecrets: [{name: ghcr}]
`), 0o644); err != nil {
			t.Fatal(err)
		}
		dep := chartDeployment(t, helmTemplate(t, systemNamespace, "-f", values), systemNamespace)
		spec := dep.Spec.Template.Spec
		g.Expect(*dep.Spec.Replicas).To(BeEquivalentTo(3))
		c := spec.Containers[0]
		g.Expect(c.Image).To(Equal("ghcr.io/nodeupgrade/nodeupgrade:v9.9.9"))
		g.Expect(c.Args).To(ContainElements(
			"--allowed-image-repositories=mirror.example:5000/kubeedge/installation-package,registry.example/kubeedge/",
			"--edge-node-label=example.com/edge",
			"--image-pull-secrets=mirror-a,mirror-b",
			"--pod-workers=32",
		))
		g.Expect(c.Resources.Requests.Cpu().String()).To(Equal("50m"))
		// Helm merges maps: what the user's values leave out stays the chart's.
		g.Expect(c.Resources.Requests.Memory().String()).To(Equal("128Mi"))
		g.Expect(c.Resources.Limits.Cpu().String()).To(Equal("1"))
		g.Expect(spec.NodeSelector).To(Equal(map[string]string{"pool": "system", "kubernetes.io/os": "linux"}))
		g.Expect(spec.Tolerations).To(ConsistOf(corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "system", Effect: corev1.TaintEffectNoSchedule}))
		g.Expect(spec.ImagePullSecrets).To(ConsistOf(corev1.LocalObjectReference{Name: "ghcr"}))
		// The controller keeps off the nodes the chart's edge label marks.
		g.Expect(spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Key).To(Equal("example.com/edge"))
	})

	t.Run("an empty allow-list is refused unless any image is allowed", func(t *testing.T) {
		g := NewWithT(t)
		_, err := runHelm(t, nil, "template", "nodeupgrade", chartDir, "--set", "allowedImageRepositories=null")
		g.Expect(err).To(MatchError(ContainSubstring("allowedImageRepositories is empty")))
		c := chartDeployment(t, helmTemplate(t, systemNamespace, "--set", "allowedImageRepositories=null", "--set", "allowAnyImageRepository=true"), systemNamespace).Spec.Template.Spec.Containers[0]
		g.Expect(c.Args).To(ContainElement("--allow-any-image-repository"))
		g.Expect(strings.Join(c.Args, " ")).NotTo(ContainSubstring("--allowed-image-repositories"))
	})

	t.Run("another namespace: everything moves but the events Role", func(t *testing.T) {
		g := NewWithT(t)
		objs := helmTemplate(t, "edge-ops")
		c := chartDeployment(t, objs, "edge-ops").Spec.Template.Spec.Containers[0]
		g.Expect(c.Args).To(ContainElement("--namespace=edge-ops"))
		find(t, objs, "Namespace", "", "edge-ops")
		find(t, objs, "Role", "edge-ops", controllerName)
		find(t, objs, "RoleBinding", "edge-ops", controllerName)
		find(t, objs, "Role", eventsNamespace, controllerName)
		find(t, objs, "RoleBinding", eventsNamespace, controllerName)
		for _, o := range objs {
			if ns := o.GetNamespace(); ns != "" && ns != "edge-ops" && ns != eventsNamespace {
				t.Errorf("%s rendered into %q", objectKey(o), ns)
			}
			if o.GetKind() == "ClusterRoleBinding" || o.GetKind() == "RoleBinding" {
				subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
				g.Expect(subjects).To(ConsistOf(HaveKeyWithValue("namespace", "edge-ops")), objectKey(o))
			}
		}
	})

	t.Run("optional objects", func(t *testing.T) {
		kinds := func(objs []*unstructured.Unstructured) []string {
			var out []string
			for _, o := range objs {
				out = append(out, o.GetKind())
			}
			sort.Strings(out)
			return out
		}
		g := NewWithT(t)
		// No prometheus-operator CRDs on the cluster: no ServiceMonitor, no PrometheusRule.
		g.Expect(kinds(helmTemplate(t, systemNamespace))).NotTo(ContainElements("ServiceMonitor", "PrometheusRule"))
		// With them (helm install asks the cluster; helm template is told).
		objs := helmTemplate(t, systemNamespace, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor", "--api-versions", "monitoring.coreos.com/v1/PrometheusRule")
		g.Expect(kinds(objs)).To(ContainElements("ServiceMonitor", "PrometheusRule"))
		// The ServiceMonitor is config/prometheus's.
		_, monitor := render(t, filepath.Join("config", "prometheus"))
		if d := cmp.Diff(monitor[0].Object, withoutHelmLabels(find(t, objs, "ServiceMonitor", systemNamespace, controllerName)).Object); d != "" {
			t.Errorf("ServiceMonitor differs between config/prometheus (-) and the chart (+):\n%s", d)
		}
		// The PrometheusRule carries config/monitoring/alerts.yaml's groups.
		rule := find(t, objs, "PrometheusRule", systemNamespace, controllerName)
		var alerts map[string]any
		raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "monitoring", "alerts.yaml"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(yaml.Unmarshal(raw, &alerts)).To(Succeed())
		g.Expect(rule.Object["spec"]).To(Equal(alerts))
		// Forced off even when the CRDs exist; the dashboard ConfigMap on request.
		objs = helmTemplate(t, systemNamespace, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor", "--set", "serviceMonitor.enabled=false", "--set", "grafanaDashboard.enabled=true",
			"--set", "podDisruptionBudget.enabled=false", "--set", "rbac.userRoles=false", "--set", "namespace.create=false", "--set", "metrics.service.enabled=false")
		g.Expect(kinds(objs)).To(Equal([]string{"ClusterRole", "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition", "Deployment", "Role", "Role", "RoleBinding", "RoleBinding", "ServiceAccount",
			"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"})) // the guard stays without the user roles
		dash := typed(t, find(t, objs, "ConfigMap", systemNamespace, "nodeupgrade-dashboard"), &corev1.ConfigMap{})
		want, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "monitoring", "dashboard.json"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(dash.Data["nodeupgrade.json"]).To(MatchJSON(want))
		g.Expect(dash.Labels).To(HaveKeyWithValue("grafana_dashboard", "1"))
	})
}

// TestChartInstallUpgradeUninstall runs Helm against a real kube-apiserver
// (envtest: no kubelet, so nothing runs, but every object is admitted): the
// README's install into a namespace made by kubectl, which the release
// adopts (--take-ownership) and labels, an upgrade changes the Deployment in place, and
// uninstall leaves only the CRD, as Helm's crds/ convention and
// docs/operating.md say.
func TestChartInstallUpgradeUninstall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	g := NewWithT(t)
	_, kc, dir := startAdminAPIServer(t, func(env *envtest.Environment) { env.CRDDirectoryPaths = nil })
	helmEnv := []string{"KUBECONFIG=" + filepath.Join(dir, "kubeconfig")}
	helm := func(args ...string) string {
		t.Helper()
		out, err := runHelm(t, helmEnv, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return string(out)
	}
	jsonpath := func(args ...string) string {
		return strings.TrimSpace(string(kc(args...)))
	}

	// Helm keeps the release in its namespace, so that exists first; the
	// release adopts it and labels it (--create-namespace would create it
	// after Helm's ownership check, and the install would fail on it).
	kc("create", "namespace", systemNamespace)
	t.Log(helm("install", "nodeupgrade", chartDir, "--namespace", systemNamespace, "--take-ownership"))
	g.Expect(jsonpath("get", "crd", crdName, "-o", "name")).To(Equal("customresourcedefinition.apiextensions.k8s.io/" + crdName))
	for _, mode := range []string{"enforce", "audit", "warn"} {
		g.Expect(jsonpath("get", "namespace", systemNamespace, "-o", "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/"+mode+"}")).To(Equal("privileged"), mode)
	}
	g.Expect(jsonpath("get", "namespace", systemNamespace, "-o", "jsonpath={.metadata.annotations.meta\\.helm\\.sh/release-name}")).To(Equal("nodeupgrade"))
	g.Expect(jsonpath("get", "deployment", controllerName, "-n", systemNamespace, "-o", "jsonpath={.spec.replicas}")).To(Equal("2"))
	for _, o := range []string{"clusterrole/nodeupgradejob-editor", "clusterrole/nodeupgradejob-viewer", "clusterrolebinding/" + controllerName} {
		kc("get", o)
	}
	kc("get", "role,rolebinding", controllerName, "-n", eventsNamespace)

	// Helm never upgrades crds/: docs/operating.md's command does, over the
	// fields Helm's create owns. A changed CRD stands for the next release's.
	crd, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), chartDir, "crds", "operations.kubeedge.io_nodeupgradejobs.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	next := filepath.Join(dir, "next-crd.yaml")
	g.Expect(os.WriteFile(next, []byte(strings.Replace(string(crd), "    - kubeedge\n", "    - kubeedge\n    - fleet\n", 1)), 0o644)).To(Succeed())
	kc("apply", "--server-side", "--force-conflicts", "-f", next)
	g.Expect(jsonpath("get", "crd", crdName, "-o", "jsonpath={.spec.names.categories}")).To(Equal(`["kubeedge","fleet"]`))

	digest := "sha256:" + strings.Repeat("5a", 32)
	helm("upgrade", "nodeupgrade", chartDir, "--namespace", systemNamespace, "--reuse-values", "--set", "replicaCount=1", "--set", "image.digest="+digest,
		"--set", "allowedImageRepositories[0]=mirror.example:5000/kubeedge/installation-package")
	g.Expect(jsonpath("get", "deployment", controllerName, "-n", systemNamespace, "-o", "jsonpath={.spec.replicas}")).To(Equal("1"))
	g.Expect(jsonpath("get", "deployment", controllerName, "-n", systemNamespace, "-o", "jsonpath={.spec.template.spec.containers[0].image}")).To(Equal("ghcr.io/nodeupgrade/nodeupgrade@" + digest))
	g.Expect(jsonpath("get", "deployment", controllerName, "-n", systemNamespace, "-o", "jsonpath={.spec.template.spec.containers[0].args}")).To(ContainSubstring("--allowed-image-repositories=mirror.example:5000/kubeedge/installation-package"))
	g.Expect(helm("history", "nodeupgrade", "--namespace", systemNamespace)).To(ContainSubstring("Upgrade complete"))

	helm("uninstall", "nodeupgrade", "--namespace", systemNamespace, "--wait=false")
	// No namespace controller runs here: the namespace stays Terminating.
	g.Expect(jsonpath("get", "namespace", systemNamespace, "-o", "jsonpath={.status.phase}", "--ignore-not-found")).To(Or(Equal("Terminating"), BeEmpty()))
	for _, kind := range []string{"clusterrole", "clusterrolebinding"} {
		g.Expect(jsonpath("get", kind, "-o", "name")).NotTo(ContainSubstring("nodeupgrade"), kind)
	}
	g.Expect(jsonpath("get", "role,rolebinding", "-n", eventsNamespace, "-o", "name")).NotTo(ContainSubstring("nodeupgrade"))
	g.Expect(jsonpath("get", "crd", crdName, "-o", "name")).NotTo(BeEmpty(), "Helm keeps crds/ on uninstall")
}
