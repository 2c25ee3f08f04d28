package manifests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	sigsyaml "sigs.k8s.io/yaml"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// KubeEdge's own NodeUpgradeJob CRDs, as `keadm init` and the cloudcore
// chart install them (test/api/testdata/kubeedge/README.md).
var kubeEdgeCRDs = map[string]string{
	"v1.20.0": "test/api/testdata/kubeedge/v1.20.0/operations_v1alpha1_nodeupgradejob.yaml",
	"v1.22.0": "test/api/testdata/kubeedge/v1.22.0/operations_v1alpha2_nodeupgradejob.yaml",
}

// TestInstallOverKubeEdge installs KubeEdge's CRD first, as a real cluster
// has it, creates jobs in each of KubeEdge's versions (spec and status, as
// KubeEdge's tooling and controllers write them), then applies config/default
// with kubectl and reads every job back, in both versions. Nothing may be
// lost, and this project's own status must survive a read in v1alpha2.
func TestInstallOverKubeEdge(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	kubectlPath(t)
	raw, _ := renderDefault(t)
	for _, kubeEdge := range []string{"v1.20.0", "v1.22.0"} {
		t.Run("KubeEdge "+kubeEdge, func(t *testing.T) {
			kc, k8s := startBareAPIServer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()

			kc("apply", "-f", filepath.Join(testenv.RepoRoot(), kubeEdgeCRDs[kubeEdge]))
			kubeEdgeVersions := waitCRD(ctx, t, k8s, nil)

			// The jobs KubeEdge's users and controllers left behind.
			var before []*unstructured.Unstructured
			for _, version := range kubeEdgeVersions {
				for _, job := range kubeEdgeJobs(t, version) {
					status := job.Object["status"]
					delete(job.Object, "status")
					if kubeEdge != "v1.20.0" && version == "v1alpha1" {
						// KubeEdge v1.21+ validates a status write against
						// v1alpha2 (phase required) and writes v1alpha2 itself.
						status = nil
					}
					if err := k8s.Create(ctx, job, client.FieldOwner("kubectl")); err != nil {
						t.Fatalf("creating %s %s under KubeEdge's CRD: %v", version, job.GetName(), err)
					}
					if status != nil {
						job.Object["status"] = status
						if err := k8s.Status().Update(ctx, job, client.FieldOwner("cloudcore")); err != nil {
							t.Fatalf("writing the status of %s %s under KubeEdge's CRD: %v", version, job.GetName(), err)
						}
					}
					before = append(before, get(ctx, t, k8s, version, job.GetName()))
				}
			}

			if len(before) < 2 {
				t.Fatalf("only %d jobs under KubeEdge's CRD", len(before))
			}

			// The documented install, client-side apply, over KubeEdge's CRD.
			manifests := filepath.Join(t.TempDir(), "nodeupgrade.yaml")
			if err := os.WriteFile(manifests, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			kc("apply", "-f", manifests)
			crd := &apiextensionsv1.CustomResourceDefinition{}
			waitCRD(ctx, t, k8s, func(c *apiextensionsv1.CustomResourceDefinition) bool {
				*crd = *c
				return len(c.Spec.Versions) == 2 && c.Status.AcceptedNames.ShortNames != nil
			})
			for _, v := range kubeEdgeVersions {
				if !contains(crd.Status.StoredVersions, v) && v == storageVersionOf(t, kubeEdge) {
					t.Errorf("storedVersions %v lost KubeEdge's storage version %s", crd.Status.StoredVersions, v)
				}
			}

			// Every job reads back intact in its own version and in the other.
			for _, b := range before {
				for _, version := range []string{"v1alpha1", "v1alpha2"} {
					got := eventuallyGet(ctx, t, k8s, version, b.GetName(), func(u *unstructured.Unstructured) error {
						return keeps(b, u)
					})
					if err := keeps(b, got); err != nil {
						t.Errorf("%s read as %s after the install: %v", b.GetName(), version, err)
					}
				}
			}

			// The seed's v1alpha1 job with this project's full status keeps
			// all of it when read as v1alpha2, and the other way round.
			job := &v1alpha1.NodeUpgradeJob{
				ObjectMeta: metav1.ObjectMeta{Name: "seed-job"},
				Spec:       v1alpha1.NodeUpgradeJobSpec{NodeNames: []string{"edge-1"}, Version: "v1.22.0"},
			}
			typed := client.WithFieldOwner(k8s, "nodeupgrade-controller")
			if err := typed.Create(ctx, job); err != nil {
				t.Fatalf("creating the seed job: %v", err)
			}
			job.Status = v1alpha1.NodeUpgradeJobStatus{
				State: v1alpha1.StateSuccessful, Event: v1alpha1.EventUpgrade, Action: v1alpha1.ActionSuccess,
				Reason: "1 of 1 nodes upgraded", Time: "2026-01-01T00:00:00Z", Progress: "1/1",
				Counts:     v1alpha1.NodeCounts{Selected: 1, Succeeded: 1},
				Conditions: []metav1.Condition{{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: "AllNodesUpgraded", Message: "done", LastTransitionTime: metav1.Unix(1.7e9, 0)}},
				NodeStatus: []v1alpha1.TaskStatus{{NodeName: "edge-1", State: v1alpha1.StateSuccessful, Event: v1alpha1.EventUpgrade, Action: v1alpha1.ActionSuccess, Reason: "upgraded", Time: "2026-01-01T00:00:00Z"}},
			}
			if err := typed.Status().Update(ctx, job); err != nil {
				t.Fatalf("writing the seed job's full v1alpha1 status: %v", err)
			}
			// kubectl prefers v1alpha2; its columns are v1alpha1's.
			if out := string(kc("get", "nodeupgradejobs", "seed-job")); !strings.Contains(out, "PROGRESS") || !strings.Contains(out, "1/1") || !strings.Contains(out, "Successful") {
				t.Errorf("kubectl get shows:\n%s", out)
			}
			seed := get(ctx, t, k8s, "v1alpha1", "seed-job")
			if err := keeps(seed, get(ctx, t, k8s, "v1alpha2", "seed-job")); err != nil {
				t.Errorf("the seed job read as v1alpha2: %v", err)
			}
			// KubeEdge's own v1alpha2 sample, created after the install.
			sample := readObject(t, "config/samples/kubeedge/nodeupgradejob_v1alpha2.yaml")
			if err := k8s.Create(ctx, sample); err != nil {
				t.Fatalf("creating KubeEdge's v1alpha2 sample: %v", err)
			}
			created := get(ctx, t, k8s, "v1alpha2", sample.GetName())
			if err := keeps(created, get(ctx, t, k8s, "v1alpha1", sample.GetName())); err != nil {
				t.Errorf("the v1alpha2 sample read as v1alpha1: %v", err)
			}
			// And typed, as the controller reads it.
			hub := &v1alpha1.NodeUpgradeJob{}
			if err := k8s.Get(ctx, types.NamespacedName{Name: sample.GetName()}, hub); err != nil {
				t.Fatal(err)
			}
			if hub.Spec.Version != "v1.22.0" || hub.Spec.Concurrency != 2 || hub.Spec.LabelSelector == nil || len(hub.Spec.CheckItems) != 3 {
				t.Errorf("the v1alpha2 sample as v1alpha1: %+v", hub.Spec)
			}
		})
	}
}

func storageVersionOf(t *testing.T, kubeEdge string) string {
	t.Helper()
	if kubeEdge == "v1.20.0" {
		return "v1alpha1"
	}
	return "v1alpha2"
}

// kubeEdgeJobs are jobs as KubeEdge's tooling writes them in version, with
// the status KubeEdge's controllers write, every field of its schema set.
func kubeEdgeJobs(t *testing.T, version string) []*unstructured.Unstructured {
	t.Helper()
	sample := readObject(t, "test/api/testdata/kubeedge/v1.22.0/sample-nodeupgradejob.yaml") // the same in v1.20.0
	jobs := []*unstructured.Unstructured{}
	if version == "v1alpha1" {
		sample.SetName("kubeedge-sample-v1alpha1")
		jobs = append(jobs, sample, mustUnstructured(t, `{
			"apiVersion": "operations.kubeedge.io/v1alpha1", "kind": "NodeUpgradeJob",
			"metadata": {"name": "kubeedge-full-v1alpha1", "labels": {"team": "edge"}, "annotations": {"note": "kept"}},
			"spec": {"nodeNames": ["edge-1", "edge-2"], "version": "v1.20.0", "image": "kubeedge/installation-package",
				"timeoutSeconds": 600, "concurrency": 2, "failureTolerate": "0.5", "checkItems": ["cpu", "disk"],
				"requireConfirmation": true,
				"imageDigestGatter": {"value": "sha256:0738039541234567890123456789012345678901234567890123456789012345", "registryAPI": {"host": "registry.example.com", "token": "t0ken"}}},
			"status": {"state": "Upgrading", "event": "Upgrade", "action": "Success", "reason": "in progress", "time": "2026-01-01T00:00:00Z",
				"currentVersion": "v1.19.0", "historicVersion": "v1.19.0",
				"nodeStatus": [{"nodeName": "edge-1", "state": "Successful", "event": "Upgrade", "action": "Success", "reason": "ok", "time": "2026-01-01T00:00:00Z"},
					{"nodeName": "edge-2", "state": "Upgrading", "event": "Upgrade", "time": "2026-01-01T00:00:01Z"}]}
		}`))
		return jobs
	}
	return append(jobs, mustUnstructured(t, `{
		"apiVersion": "operations.kubeedge.io/v1alpha2", "kind": "NodeUpgradeJob",
		"metadata": {"name": "kubeedge-full-v1alpha2", "finalizers": ["kubeedge.io/nodeupgradejob-controller"]},
		"spec": {"nodeNames": ["edge-1"], "version": "v1.22.0", "image": "kubeedge/installation-package",
			"timeoutSeconds": 300, "concurrency": 1, "failureTolerate": "0.1", "checkItems": ["mem"], "requireConfirmation": false,
			"imageDigestGatter": {"amd64": "sha256:0738039541234567890123456789012345678901234567890123456789012345", "arm64": "sha256:1738039541234567890123456789012345678901234567890123456789012345", "registryAPI": {"host": "registry.example.com", "token": "t0ken"}}},
		"status": {"phase": "InProgress", "reason": "running", "state": "Upgrading", "currentVersion": "v1.21.0", "historicVersion": "v1.21.0",
			"time": "2026-01-01T00:00:00Z", "event": "Upgrade", "action": "Success",
			"nodeStatus": [{"nodeName": "edge-1", "phase": "InProgress", "reason": "", "state": "Upgrading", "event": "Upgrade",
				"currentVersion": "v1.21.0", "historicVersion": "v1.21.0",
				"actionFlow": [{"action": "Check", "status": "True", "time": "2026-01-01T00:00:00Z"}, {"action": "BackUp", "status": "True", "reason": "", "time": "2026-01-01T00:00:01Z"}]}]}
	}`))
}

// keeps reports every spec and status value of want missing or changed in
// got, and any label or annotation lost. Fields got has on top (defaults of
// the version it was read in) are fine.
func keeps(want, got *unstructured.Unstructured) error {
	for _, part := range []string{"spec", "status"} {
		if err := subset(part, want.Object[part], got.Object[part]); err != nil {
			return err
		}
	}
	if err := subset("labels", toAny(want.GetLabels()), toAny(got.GetLabels())); err != nil {
		return err
	}
	return subset("annotations", toAny(want.GetAnnotations()), toAny(got.GetAnnotations()))
}

func toAny(m map[string]string) any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func subset(path string, want, got any) error {
	switch w := want.(type) {
	case nil:
		return nil
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want %v, got %v", path, want, got)
		}
		for k, v := range w {
			if err := subset(path+"."+k, v, g[k]); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: want %v, got %v", path, want, got)
		}
		for i := range w {
			if err := subset(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); err != nil {
				return err
			}
		}
		return nil
	default:
		if !reflect.DeepEqual(want, got) {
			return fmt.Errorf("%s: want %v, got %v", path, want, got)
		}
		return nil
	}
}

func get(ctx context.Context, t *testing.T, k8s client.Client, version, name string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(schema.GroupVersionKind{Group: "operations.kubeedge.io", Version: version, Kind: "NodeUpgradeJob"})
	if err := k8s.Get(ctx, types.NamespacedName{Name: name}, u); err != nil {
		t.Fatalf("reading %s as %s: %v", name, version, err)
	}
	return u
}

// eventuallyGet reads until ok passes or 30 s have gone: the API server
// switches to a changed CRD's schemas a moment after the write.
func eventuallyGet(ctx context.Context, t *testing.T, k8s client.Client, version, name string, ok func(*unstructured.Unstructured) error) *unstructured.Unstructured {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		u := get(ctx, t, k8s, version, name)
		if ok(u) == nil || time.Now().After(deadline) {
			return u
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitCRD waits until the NodeUpgradeJob CRD is established (and done, if
// given, holds) and returns its served versions.
func waitCRD(ctx context.Context, t *testing.T, k8s client.Client, done func(*apiextensionsv1.CustomResourceDefinition) bool) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := k8s.Get(ctx, types.NamespacedName{Name: crdName}, crd); err == nil {
			established := false
			for _, c := range crd.Status.Conditions {
				established = established || (c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue)
			}
			if established && (done == nil || done(crd)) {
				var versions []string
				for _, v := range crd.Spec.Versions {
					versions = append(versions, v.Name)
				}
				// Discovery and the handlers follow a moment later.
				time.Sleep(2 * time.Second)
				return versions
			}
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(crd)
			t.Fatalf("CRD %s not established in time: %s", crdName, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readObject(t *testing.T, rel string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), rel))
	if err != nil {
		t.Fatal(err)
	}
	j, err := sigsyaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return mustUnstructured(t, string(j))
}

func mustUnstructured(t *testing.T, j string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal([]byte(j), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// startBareAPIServer starts a control plane without this project's CRD and
// returns kubectl bound to it and an admin client.
func startBareAPIServer(t *testing.T) (func(args ...string) []byte, client.Client) {
	t.Helper()
	cfg, kc, _ := startAdminAPIServer(t, func(env *envtest.Environment) {
		env.CRDDirectoryPaths = nil
		env.ErrorIfCRDPathMissing = false
	})
	s := testenv.Scheme()
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	k8s, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	return kc, k8s
}

// startAdminAPIServer starts envtest (changed by mutate, if not nil) for the
// test, and returns its config, kubectl bound to it as a system:masters
// user, and the test's temporary folder holding the kubeconfig.
func startAdminAPIServer(t *testing.T, mutate func(*envtest.Environment)) (*rest.Config, func(args ...string) []byte, string) {
	t.Helper()
	env, err := testenv.New()
	if err != nil {
		t.Fatalf("%v", err) // no control plane binaries: run `make tools`
	}
	if mutate != nil {
		mutate(env)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfigYAML, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kubeconfigYAML, 0o600); err != nil {
		t.Fatal(err)
	}
	kenv := []string{"KUBECONFIG=" + kubeconfig}
	// kubectl's discovery cache goes to the temp dir, not $HOME.
	kc := func(args ...string) []byte {
		t.Helper()
		return runKubectl(t, kenv, append([]string{"--cache-dir=" + filepath.Join(dir, "cache")}, args...)...)
	}
	return cfg, kc, dir
}
