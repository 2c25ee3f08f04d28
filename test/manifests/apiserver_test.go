package manifests

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// TestAPIServerAcceptsManifests applies the rendered manifests and the
// samples to a real kube-apiserver (envtest, RBAC and Pod Security admission
// on) with kubectl, as a user would, then checks what the applied RBAC
// actually allows.
func TestAPIServerAcceptsManifests(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	kubectlPath(t) // fail early without kubectl
	raw, objs := renderDefault(t)

	cfg, kc, dir := startAdminAPIServer(t, nil)
	manifests := filepath.Join(dir, "nodeupgrade.yaml")
	if err := os.WriteFile(manifests, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	k8s, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("server dry-run of config/default", func(t *testing.T) {
		// A server dry-run of namespaced objects needs their namespace to
		// exist: create the Namespace for real, dry-run everything.
		ns := find(t, objs, "Namespace", "", systemNamespace)
		nsFile := filepath.Join(dir, "namespace.yaml")
		nsJSON, err := ns.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(nsFile, nsJSON, 0o644); err != nil {
			t.Fatal(err)
		}
		kc("apply", "--server-side", "-f", nsFile)
		out := kc("apply", "--server-side", "--dry-run=server", "-f", manifests)
		// And the documented install command, client-side apply.
		kc("apply", "--dry-run=server", "-k", filepath.Join(testenv.RepoRoot(), "config", "default"))
		g := NewWithT(t)
		for _, o := range objs {
			g.Expect(string(out)).To(ContainSubstring(o.GetName()), "%s %s not in kubectl's output", o.GetKind(), o.GetName())
		}
	})

	t.Run("server dry-run of the samples", func(t *testing.T) {
		kc("apply", "--server-side", "--dry-run=server", "-k", filepath.Join(testenv.RepoRoot(), "config", "samples"))
	})

	t.Run("controller pod meets the restricted Pod Security level", func(t *testing.T) {
		// nodeupgrade-system is privileged for the upgrade pods; the
		// controller itself must not need that.
		g := NewWithT(t)
		restricted := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   "restricted-check",
			Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"},
		}}
		g.Expect(k8s.Create(ctx, restricted)).To(Succeed())
		dep := typed(t, find(t, objs, "Deployment", systemNamespace, controllerName), &appsv1.Deployment{})
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "controller", Namespace: restricted.Name, Labels: dep.Spec.Template.Labels},
			Spec:       dep.Spec.Template.Spec,
		}
		pod.Spec.ServiceAccountName = "" // the ServiceAccount lives in nodeupgrade-system
		g.Expect(k8s.Create(ctx, pod, client.DryRunAll)).To(Succeed())

		// The check has teeth: the same pod without its hardening is refused.
		pod.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
		g.Expect(k8s.Create(ctx, pod, client.DryRunAll)).To(MatchError(ContainSubstring("allowPrivilegeEscalation")))
	})

	t.Run("applied RBAC grants the controller what it needs and no more", func(t *testing.T) {
		kc("apply", "--server-side", "-f", manifests)
		// An operator holding the editor role.
		g := NewWithT(t)
		g.Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "ops-nodeupgradejob-editor"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "nodeupgradejob-editor"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "ops"}},
		})).To(Succeed())

		sa := userInfo{"system:serviceaccount:" + systemNamespace + ":" + controllerName,
			[]string{"system:serviceaccounts", "system:serviceaccounts:" + systemNamespace, "system:authenticated"}}
		ops := userInfo{"ops", []string{"system:authenticated"}}
		for _, c := range []struct {
			who     userInfo
			allowed bool
			attr    authorizationv1.ResourceAttributes
		}{
			{sa, true, authorizationv1.ResourceAttributes{Verb: "list", Resource: "nodes"}},
			// patch: the node's last-upgrade annotation (pkg/controller/history.go).
			{sa, true, authorizationv1.ResourceAttributes{Verb: "patch", Resource: "nodes"}},
			{sa, false, authorizationv1.ResourceAttributes{Verb: "update", Resource: "nodes"}},
			{sa, false, authorizationv1.ResourceAttributes{Verb: "delete", Resource: "nodes"}},
			{sa, true, authorizationv1.ResourceAttributes{Verb: "watch", Group: "operations.kubeedge.io", Resource: "nodeupgradejobs"}},
			{sa, true, authorizationv1.ResourceAttributes{Verb: "patch", Group: "operations.kubeedge.io", Resource: "nodeupgradejobs", Subresource: "status"}},
			{sa, true, authorizationv1.ResourceAttributes{Verb: "update", Group: "operations.kubeedge.io", Resource: "nodeupgradejobs", Subresource: "finalizers"}},
			{sa, false, authorizationv1.ResourceAttributes{Verb: "create", Group: "operations.kubeedge.io", Resource: "nodeupgradejobs"}},
			{sa, true, authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: systemNamespace}},
			{sa, true, authorizationv1.ResourceAttributes{Verb: "delete", Resource: "pods", Namespace: systemNamespace}},
			{sa, false, authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: "default"}},
			{sa, false, authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: systemNamespace}},
			{sa, false, authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: systemNamespace}},
			{sa, true, authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: systemNamespace}},
			{sa, false, authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"}},
			{sa, true, authorizationv1.ResourceAttributes{Verb: "create", Group: "events.k8s.io", Resource: "events", Namespace: eventsNamespace}},
			{ops, true, authorizationv1.ResourceAttributes{Verb: "create", Group: "operations.kubeedge.io", Resource: "nodeupgradejobs"}},
			{ops, true, authorizationv1.ResourceAttributes{Verb: "delete", Group: "operations.kubeedge.io", Resource: "nodeupgradejobs"}},
			{ops, true, authorizationv1.ResourceAttributes{Verb: "patch", Group: "operations.kubeedge.io", Resource: "nodeupgradejobs"}},
			{ops, false, authorizationv1.ResourceAttributes{Verb: "update", Group: "operations.kubeedge.io", Resource: "nodeupgradejobs", Subresource: "finalizers"}},
			{ops, false, authorizationv1.ResourceAttributes{Verb: "patch", Group: "operations.kubeedge.io", Resource: "nodeupgradejobs", Subresource: "status"}},
			{ops, false, authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: systemNamespace}},
		} {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: c.who.name, Groups: c.who.groups, ResourceAttributes: &c.attr,
			}}
			g.Expect(k8s.Create(ctx, sar)).To(Succeed())
			g.Expect(sar.Status.Allowed).To(Equal(c.allowed), "%s: %s %s/%s/%s in %q", c.who.name, c.attr.Verb, c.attr.Group, c.attr.Resource, c.attr.Subresource, c.attr.Namespace)
		}
	})
}

type userInfo struct {
	name   string
	groups []string
}
