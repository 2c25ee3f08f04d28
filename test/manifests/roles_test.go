package manifests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// kubectlAs runs kubectl with the admin kubeconfig in dir, impersonating
// user (no impersonation when empty), and returns its combined output and
// whether it succeeded: the refusals are what these tests read.
func kubectlAs(t *testing.T, dir, user string, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	all := []string{"--kubeconfig=" + filepath.Join(dir, "kubeconfig"), "--cache-dir=" + filepath.Join(dir, "cache")}
	if user != "" {
		all = append(all, "--as="+user)
		if strings.HasPrefix(user, "system:serviceaccount:") {
			all = append(all, "--as-group=system:serviceaccounts", "--as-group=system:authenticated")
		}
	}
	cmd := exec.CommandContext(ctx, kubectlPath(t), append(all, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err == nil
}

// TestRolesPeopleCanUse applies config/default to a real API server and
// acts as the people its roles are for, with kubectl: an operator holding
// nodeupgradejob-editor pauses and resumes a job through both versions but
// changes nothing else, cannot remove the controller's finalizer (the
// ValidatingAdmissionPolicy nodeupgradejob-guard), and cannot write a
// registry token into a job; a holder of nodeupgradejob-viewer, or of the
// built-in view role it aggregates into, reads jobs and no credential (the
// Secret holding a registry token is out of their reach, and a job can no
// longer hold one). The
// controller's ServiceAccount and cluster admins may remove the finalizer.
func TestRolesPeopleCanUse(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	kubectlPath(t)
	raw, _ := renderDefault(t)
	cfg, kc, dir := startAdminAPIServer(t, nil)
	k8s, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// A job stored before the policy, with a token in it, as KubeEdge's
	// tooling writes them.
	old := &v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{Name: "stored-with-token", Finalizers: []string{v1alpha1.FinalizerJobCleanup}},
		Spec: v1alpha1.NodeUpgradeJobSpec{NodeNames: []string{"edge-1"}, Version: "v1.23.1",
			ImageDigestGatter: &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: "registry.example", Token: "s3cret"}}}}
	if err := k8s.Create(ctx, old); err != nil {
		t.Fatal(err)
	}

	manifests := filepath.Join(dir, "nodeupgrade.yaml")
	if err := os.WriteFile(manifests, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	kc("apply", "--server-side", "-f", manifests)
	for user, role := range map[string]string{"ops": "nodeupgradejob-editor", "auditor": "nodeupgradejob-viewer", "onlooker": "view"} {
		if err := k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: user + "-" + role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	kc("create", "secret", "generic", "registry-token", "-n", systemNamespace, "--from-literal=token=s3cret")
	job := &v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{Name: "guarded", Finalizers: []string{v1alpha1.FinalizerJobCleanup}},
		Spec: v1alpha1.NodeUpgradeJobSpec{NodeNames: []string{"edge-1"}, Version: "v1.23.1"}}
	if err := k8s.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	removeFinalizers := []string{"patch", "nodeupgradejob", "guarded", "--type=json", "-p", `[{"op":"remove","path":"/metadata/finalizers"}]`}

	// The API server loads a new policy asynchronously: wait for it to bite.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, ok := kubectlAs(t, dir, "ops", append(removeFinalizers, "--dry-run=server")...)
		if !ok && strings.Contains(out, "nodeupgradejob-guard") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the policy never refused the editor's removal of the finalizer: %s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}

	refused := func(t *testing.T, user, want string, args ...string) {
		t.Helper()
		out, ok := kubectlAs(t, dir, user, args...)
		if ok || !strings.Contains(out, want) {
			t.Errorf("%s: kubectl %q: want refused with %q, got ok=%v:\n%s", user, args, want, ok, out)
		}
	}
	allowed := func(t *testing.T, user string, args ...string) string {
		t.Helper()
		out, ok := kubectlAs(t, dir, user, args...)
		if !ok {
			t.Errorf("%s: kubectl %q refused:\n%s", user, args, out)
		}
		return out
	}

	t.Run("the editor pauses and resumes, through both versions", func(t *testing.T) {
		allowed(t, "ops", "patch", "nodeupgradejob", "guarded", "--type=merge", "-p", `{"spec":{"suspend":true}}`)
		allowed(t, "ops", "patch", "nodeupgradejobs.v1alpha1.operations.kubeedge.io", "guarded", "--type=merge", "-p", `{"spec":{"suspend":false}}`)
		// Approving nodes of a job with requireConfirmation is the
		// other change an editor makes (kubectl nodeupgrade approve).
		allowed(t, "ops", "patch", "nodeupgradejob", "guarded", "--type=merge", "-p", `{"spec":{"approvedNodes":["*"]}}`)
		if out := allowed(t, "ops", "get", "nodeupgradejob", "guarded", "-o", "jsonpath={.spec.suspend}"); out != "false" {
			t.Errorf("spec.suspend = %q after the resume", out)
		}
		// An old job holding a token may still be paused: the token does not change.
		allowed(t, "ops", "patch", "nodeupgradejob", "stored-with-token", "--type=merge", "-p", `{"spec":{"suspend":true}}`)
	})

	t.Run("the editor changes nothing else", func(t *testing.T) {
		for _, resource := range []string{"nodeupgradejob", "nodeupgradejobs.v1alpha1.operations.kubeedge.io"} {
			refused(t, "ops", "spec.version is immutable", "patch", resource, "guarded", "--type=merge", "-p", `{"spec":{"version":"v1.23.9"}}`)
			refused(t, "ops", "spec.image is immutable", "patch", resource, "guarded", "--type=merge", "-p", `{"spec":{"image":"evil.example/keadm"}}`)
			refused(t, "ops", "spec.nodeNames is immutable", "patch", resource, "guarded", "--type=merge", "-p", `{"spec":{"nodeNames":["edge-1","edge-2"]}}`)
		}
		refused(t, "ops", "nodeupgradejob-guard", removeFinalizers...)
		refused(t, "ops", "forbidden", "patch", "nodeupgradejob", "guarded", "--subresource=status", "--type=merge", "-p", `{"status":{"phase":"Completed"}}`)
	})

	t.Run("no role below admin reads a credential", func(t *testing.T) {
		// envtest runs no kube-controller-manager, so `view` lacks the
		// viewer's aggregated rules here; it never reads Secrets either way.
		for _, user := range []string{"ops", "auditor", "onlooker"} {
			refused(t, user, "forbidden", "get", "secret", "registry-token", "-n", systemNamespace)
		}
		allowed(t, "ops", "get", "nodeupgradejob", "guarded")
		allowed(t, "auditor", "get", "nodeupgradejob", "guarded")
		refused(t, "auditor", "forbidden", "patch", "nodeupgradejob", "guarded", "--type=merge", "-p", `{"spec":{"suspend":true}}`)
		withToken := filepath.Join(dir, "token-job.yaml")
		if err := os.WriteFile(withToken, []byte(`apiVersion: operations.kubeedge.io/v1alpha2
kind: NodeUpgradeJob
metadata:
  name: with-token
spec:
  version: v1.23.1
  nodeNames: [edge-1]
  imageDigestGatter:
    registryAPI: {host: registry.example, token: s3cret}
`), 0o644); err != nil {
			t.Fatal(err)
		}
		refused(t, "ops", "spec.imageDigestGatter.registryAPI.token", "create", "-f", withToken)
		refused(t, "", "spec.imageDigestGatter.registryAPI.token", "create", "-f", withToken)
	})

	t.Run("the controller and cluster admins may remove the finalizer", func(t *testing.T) {
		sa := "system:serviceaccount:" + systemNamespace + ":" + controllerName
		allowed(t, sa, append(removeFinalizers, "--dry-run=server")...)
		allowed(t, "", removeFinalizers...)
		allowed(t, "", "patch", "nodeupgradejob", "stored-with-token", "--type=json", "-p", `[{"op":"remove","path":"/metadata/finalizers"}]`)
	})
}
