package manifests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// TestHoldUpgradeComponent: the controller's default role cannot list pods
// across namespaces, and config/components/hold-upgrade grants exactly the
// list that --honor-hold-upgrade makes (one node's pods by field
// selector), no get or watch, and adds the flag; on a real API server,
// with kubectl impersonating the controller's ServiceAccount.
func TestHoldUpgradeComponent(t *testing.T) {
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
		filepath.Join(rel, "config", "default") + "\ncomponents:\n- " + filepath.Join(rel, "config", "components", "hold-upgrade") + "\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	withHold := runKubectl(t, nil, "kustomize", overlay)
	if !strings.Contains(string(withHold), "- --honor-hold-upgrade") {
		t.Error("the component does not add --honor-hold-upgrade to the controller")
	}
	if strings.Contains(string(defaultRaw), "--honor-hold-upgrade") {
		t.Error("config/default turns --honor-hold-upgrade on")
	}

	_, kc, dir := startAdminAPIServer(t, nil)
	sa := "system:serviceaccount:nodeupgrade-system:nodeupgrade-controller"
	canI := func(args ...string) bool {
		out, _ := kubectlAs(t, dir, sa, append([]string{"auth", "can-i"}, args...)...)
		return strings.TrimSpace(out) == "yes"
	}
	apply := func(raw []byte, name string) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		kc("apply", "--server-side", "-f", p)
	}
	apply(defaultRaw, "default.yaml")
	if canI("list", "pods", "--all-namespaces") {
		t.Error("the default role lets the controller list pods in every namespace")
	}
	apply(withHold, "hold-upgrade.yaml")
	if !canI("list", "pods", "--all-namespaces") {
		t.Error("with the component the controller cannot list pods in every namespace")
	}
	if out, ok := kubectlAs(t, dir, sa, "get", "pods", "--all-namespaces", "--field-selector=spec.nodeName=edge-1", "-o", "name"); !ok {
		t.Errorf("the controller's list of one node's pods is refused: %s", out)
	}
	for _, verb := range []string{"get", "watch"} {
		if canI(verb, "pods", "--namespace=default") {
			t.Errorf("the component lets the controller %s pods outside its namespace", verb)
		}
	}
}
