package manifests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// TestHealthGatePodsComponent: config/components/health-gate-pods grants
// exactly the list a health gate's podSelector makes (the selector's pods
// on one node, by field selector, in every namespace), no get or watch,
// and no flag; on a real API server, with kubectl impersonating the
// controller's ServiceAccount. (The default role's refusal is
// TestHoldUpgradeComponent's.)
func TestHealthGatePodsComponent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	kubectlPath(t)
	defaultRaw, _ := renderDefault(t)

	overlay := t.TempDir()
	rel, err := filepath.Rel(overlay, testenv.RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	kustomization := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- " +
		filepath.Join(rel, "config", "default") + "\ncomponents:\n- " + filepath.Join(rel, "config", "components", "health-gate-pods") + "\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	withGate := runKubectl(t, nil, "kustomize", overlay)
	if strings.Count(string(withGate), "- --") != strings.Count(string(defaultRaw), "- --") {
		t.Error("the component changes the controller's flags")
	}

	_, kc, dir := startAdminAPIServer(t, nil)
	sa := "system:serviceaccount:nodeupgrade-system:nodeupgrade-controller"
	canI := func(args ...string) bool {
		out, _ := kubectlAs(t, dir, sa, append([]string{"auth", "can-i"}, args...)...)
		return strings.TrimSpace(out) == "yes"
	}
	p := filepath.Join(dir, "with-gate.yaml")
	if err := os.WriteFile(p, withGate, 0o644); err != nil {
		t.Fatal(err)
	}
	kc("apply", "--server-side", "-f", p)
	if out, ok := kubectlAs(t, dir, sa, "get", "pods", "--all-namespaces", "-l", "app=web",
		"--field-selector=spec.nodeName=edge-1", "-o", "name"); !ok {
		t.Errorf("the health gate's list of one node's pods is refused: %s", out)
	}
	for _, verb := range []string{"get", "watch"} {
		if canI(verb, "pods", "--namespace=default") {
			t.Errorf("the component lets the controller %s pods outside its namespace", verb)
		}
	}
}
