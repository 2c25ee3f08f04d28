package manifests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// The optional kustomize components (config/components/NAME) grant what the
// default role leaves out. These tests render config/default with one,
// apply it to a real API server and act as the controller's ServiceAccount.

const controllerSA = "system:serviceaccount:nodeupgrade-system:nodeupgrade-controller"

// renderWithComponent renders config/default with config/components/name,
// through an overlay in a temporary folder, as a user's kustomization would.
func renderWithComponent(t *testing.T, name string) []byte {
	t.Helper()
	overlay := t.TempDir()
	rel, err := filepath.Rel(overlay, testenv.RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	kustomization := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- " +
		filepath.Join(rel, "config", "default") + "\ncomponents:\n- " + filepath.Join(rel, "config", "components", name) + "\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	return runKubectl(t, nil, "kustomize", overlay)
}

// componentServer is a real API server with kubectl as admin (apply) and as
// the controller's ServiceAccount (canI, as).
type componentServer struct {
	t   *testing.T
	dir string
	kc  func(args ...string) []byte
}

func startComponentServer(t *testing.T) *componentServer {
	t.Helper()
	_, kc, dir := startAdminAPIServer(t, nil)
	return &componentServer{t: t, dir: dir, kc: kc}
}

// apply applies rendered manifests server-side.
func (s *componentServer) apply(raw []byte, name string) {
	s.t.Helper()
	p := filepath.Join(s.dir, name)
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.kc("apply", "--server-side", "-f", p)
}

// canI is `kubectl auth can-i ARGS` as the controller.
func (s *componentServer) canI(args ...string) bool {
	out, _ := kubectlAs(s.t, s.dir, controllerSA, append([]string{"auth", "can-i"}, args...)...)
	return strings.TrimSpace(out) == "yes"
}

// as runs kubectl as the controller.
func (s *componentServer) as(args ...string) (string, bool) {
	return kubectlAs(s.t, s.dir, controllerSA, args...)
}

// expectNoGetOrWatchOfPods: a component's grant is list alone.
func (s *componentServer) expectNoGetOrWatchOfPods() {
	s.t.Helper()
	for _, verb := range []string{"get", "watch"} {
		if s.canI(verb, "pods", "--namespace=default") {
			s.t.Errorf("the component lets the controller %s pods outside its namespace", verb)
		}
	}
}

// TestHoldUpgradeComponent: the controller's default role cannot list pods
// across namespaces, and config/components/hold-upgrade grants exactly the
// list that --honor-hold-upgrade makes (one node's pods by field
// selector), no get or watch, and adds the flag.
func TestHoldUpgradeComponent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	kubectlPath(t)
	defaultRaw, _ := renderDefault(t)
	withHold := renderWithComponent(t, "hold-upgrade")
	if !strings.Contains(string(withHold), "- --honor-hold-upgrade") {
		t.Error("the component does not add --honor-hold-upgrade to the controller")
	}
	if strings.Contains(string(defaultRaw), "--honor-hold-upgrade") {
		t.Error("config/default turns --honor-hold-upgrade on")
	}

	s := startComponentServer(t)
	s.apply(defaultRaw, "default.yaml")
	if s.canI("list", "pods", "--all-namespaces") {
		t.Error("the default role lets the controller list pods in every namespace")
	}
	s.apply(withHold, "hold-upgrade.yaml")
	if !s.canI("list", "pods", "--all-namespaces") {
		t.Error("with the component the controller cannot list pods in every namespace")
	}
	if out, ok := s.as("get", "pods", "--all-namespaces", "--field-selector=spec.nodeName=edge-1", "-o", "name"); !ok {
		t.Errorf("the controller's list of one node's pods is refused: %s", out)
	}
	s.expectNoGetOrWatchOfPods()
}

// TestHealthGatePodsComponent: config/components/health-gate-pods grants
// exactly the list a health gate's podSelector makes (the selector's pods
// on one node, by field selector, in every namespace), no get or watch,
// and no flag. (The default role's refusal is TestHoldUpgradeComponent's.)
func TestHealthGatePodsComponent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	kubectlPath(t)
	defaultRaw, _ := renderDefault(t)
	withGate := renderWithComponent(t, "health-gate-pods")
	if strings.Count(string(withGate), "- --") != strings.Count(string(defaultRaw), "- --") {
		t.Error("the component changes the controller's flags")
	}

	s := startComponentServer(t)
	s.apply(withGate, "with-gate.yaml")
	if out, ok := s.as("get", "pods", "--all-namespaces", "-l", "app=web", "--field-selector=spec.nodeName=edge-1", "-o", "name"); !ok {
		t.Errorf("the health gate's list of one node's pods is refused: %s", out)
	}
	s.expectNoGetOrWatchOfPods()
}
