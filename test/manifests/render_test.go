// Package manifests tests the deployable YAML in config/: what
// `kubectl kustomize config/default` renders (objects, security settings,
// RBAC scope, controller flags), and that a real kube-apiserver accepts it.
package manifests

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// The names the manifests and the controller agree on.
const (
	systemNamespace = v1alpha1.DefaultNamespace
	controllerName  = "nodeupgrade-controller"
	metricsService  = "nodeupgrade-controller-metrics"
	crdName         = "nodeupgradejobs.operations.kubeedge.io"
	// eventsNamespace is where events of cluster-scoped objects are written.
	eventsNamespace = "default"
)

// kubectlPath is the kubectl to run: $KUBECTL, else the one on PATH. Tests
// skip without one, as the envtest suites do without control plane binaries.
func kubectlPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KUBECTL"); p != "" {
		return p
	}
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl not found on PATH (set KUBECTL): the manifest tests need it to render config/")
	}
	return p
}

// runKubectl runs kubectl with args (no shell) and returns its stdout; a
// non-zero exit fails with stderr.
func runKubectl(t *testing.T, env []string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlPath(t), args...)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %q: %v\nstderr:\n%s\nstdout:\n%s", args, err, stderr.String(), stdout.String())
	}
	return stdout.Bytes()
}

// render runs `kubectl kustomize dir` (dir relative to the repository root)
// and returns the YAML and its objects in order.
func render(t *testing.T, dir string) ([]byte, []*unstructured.Unstructured) {
	t.Helper()
	raw := runKubectl(t, nil, "kustomize", filepath.Join(testenv.RepoRoot(), dir))
	objs, err := decodeAll(raw)
	if err != nil {
		t.Fatalf("decoding kubectl kustomize %s: %v", dir, err)
	}
	return raw, objs
}

func decodeAll(raw []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

var rendered struct {
	sync.Mutex
	raw  []byte
	objs []*unstructured.Unstructured
}

// renderDefault renders config/default, once per test binary. Callers get
// deep copies, so no test can change what another sees.
func renderDefault(t *testing.T) ([]byte, []*unstructured.Unstructured) {
	t.Helper()
	rendered.Lock()
	defer rendered.Unlock()
	if rendered.raw == nil {
		rendered.raw, rendered.objs = render(t, filepath.Join("config", "default"))
	}
	objs := make([]*unstructured.Unstructured, len(rendered.objs))
	for i, o := range rendered.objs {
		objs[i] = o.DeepCopy()
	}
	return rendered.raw, objs
}

// find returns the one rendered object of kind, namespace and name, failing
// the test when there is none.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	t.Helper()
	var found *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			if found != nil {
				t.Fatalf("%s %s/%s rendered twice", kind, namespace, name)
			}
			found = o
		}
	}
	if found == nil {
		t.Fatalf("%s %q in namespace %q not rendered", kind, name, namespace)
	}
	return found
}

// ofKind returns the rendered objects of kind.
func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// typed converts u into into, rejecting fields the Go type doesn't know, so
// a misspelt field in the YAML (readOnlyRootFilesytem) fails here instead of
// being dropped.
func typed[T any](t *testing.T, u *unstructured.Unstructured, into *T) *T {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
		t.Fatalf("%s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return into
}
