package controller

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/statusshard"
)

// shardedHarness runs a job of 12 nodes with a threshold of 5 and 5 nodes a
// shard: 3 shards.
func shardedHarness(t *testing.T, concurrency int32) (*harness, []string) {
	t.Helper()
	var names []string
	for i := range 12 {
		names = append(names, fmt.Sprintf("edge-%02d", i))
	}
	h := newHarness(t, testJob("big", concurrency, names...), edgeNodes(names...), func(o *Options) {
		o.StatusShardThreshold, o.StatusShardSize = 5, 5
	})
	return h, names
}

// full is every entry of the stored job, read from its shards.
func (h *harness) full() []v1alpha1.TaskStatus {
	h.t.Helper()
	entries, err := statusshard.Read(h.ctx, h.api, h.stored())
	if err != nil {
		h.t.Fatal(err)
	}
	return entries
}

func TestShardedJobWritesShardsBeforeReferencingThemAndOnlyChangedOnes(t *testing.T) {
	h, names := shardedHarness(t, 2)
	h.mustReconcile() // the finalizer, then the first plan
	did := h.did()
	slices.Sort(did[len(did)-2:]) // pods are created in parallel
	first := strings.Join(did, ", ")
	want := "patch NodeUpgradeJob, create ConfigMap, create ConfigMap, create ConfigMap, patch status NodeUpgradeJob, create Pod edge-00, create Pod edge-01"
	if first != want {
		t.Fatalf("first write: %s\nwant: %s", first, want)
	}
	job := h.stored()
	if len(job.Status.NodeStatus) != 2 || job.Status.Shards == nil || !slices.Equal(job.Status.Shards.Revisions, []int64{1, 1, 1}) {
		t.Fatalf("job status: nodeStatus %d entries, shards %+v; want the 2 in flight and 3 shards at revision 1", len(job.Status.NodeStatus), job.Status.Shards)
	}
	if got := len(h.full()); got != len(names) {
		t.Fatalf("shards hold %d entries, want %d", got, len(names))
	}
	for _, w := range h.writes {
		if w.Kind == "Pod" && w.Committed != v1alpha1.StateInit {
			t.Errorf("pod of %s created while its stored state was %q, want Init", w.Node, w.Committed)
		}
	}

	h.finish("edge-00", true)
	h.mustReconcile()
	var shardWrites []string
	for _, w := range h.writes {
		if w.Kind == "ConfigMap" {
			shardWrites = append(shardWrites, w.Verb)
		}
	}
	if !slices.Equal(shardWrites, []string{"update"}) {
		t.Fatalf("a change within shard 0 wrote shards %v, want one update", shardWrites)
	}
	if got := h.stored().Status.Shards.Revisions; !slices.Equal(got, []int64{2, 1, 1}) {
		t.Fatalf("revisions %v, want [2 1 1]", got)
	}
}

// A shard update lost after the job's patch (a crash between the two, or
// a refused write) leaves the shard older than the job records. Nothing
// that plan decided may have reached a pod, and the next plan rewrites the
// shard and goes on: every node upgraded once, none forgotten.
func TestShardedJobRecoversALostShardWrite(t *testing.T) {
	h, names := shardedHarness(t, 3)
	for range 3 {
		h.mustReconcile()
	}
	h.finish("edge-00", true)
	h.finish("edge-01", false)
	h.refuse = func(w write) error {
		if w.Kind == "ConfigMap" && w.Verb == "update" {
			return errors.New("connection lost")
		}
		return nil
	}
	if _, err := h.reconcile(); err == nil {
		t.Fatal("a lost shard write must fail the reconcile")
	}
	for _, w := range h.writes {
		if w.Kind == "Pod" {
			t.Fatalf("pod write after a lost shard write: %s; writes %v", w.Verb, h.did())
		}
	}
	if job := h.stored(); job.Status.Shards.Revisions[0] != 2 {
		t.Fatalf("the job's patch went first: shard 0 at revision %d in the job, want 2", job.Status.Shards.Revisions[0])
	}
	cm := &corev1.ConfigMap{}
	if err := h.api.Get(h.ctx, client.ObjectKey{Namespace: v1alpha1.DefaultNamespace, Name: statusshard.Name(h.stored().Status.Shards, 0)}, cm); err != nil {
		t.Fatal(err)
	}
	if statusshard.Revision(cm) != 1 {
		t.Fatalf("shard 0 at revision %d, want 1 (its update was lost)", statusshard.Revision(cm))
	}

	h.refuse = nil
	creates := map[string]int{}
	for range 40 {
		h.mustReconcile()
		for _, w := range h.writes {
			if w.Kind == "Pod" && w.Verb == "create" {
				creates[w.Node]++
				if w.Committed != v1alpha1.StateInit {
					t.Errorf("pod of %s created while its stored state was %q", w.Node, w.Committed)
				}
			}
		}
		for node, pod := range h.pods() {
			if pod.Status.Phase == "" || pod.Status.Phase == corev1.PodPending {
				h.finish(node, true)
			}
		}
		if h.stored().Status.State == v1alpha1.StateFailed || h.stored().Status.State == v1alpha1.StateSuccessful {
			break
		}
	}
	if state := h.stored().Status.State; state != v1alpha1.StateFailed && state != v1alpha1.StateSuccessful {
		t.Fatalf("job not finished: %s", state)
	}
	entries := h.full()
	for i, e := range entries {
		if e.NodeName != names[i] {
			t.Fatalf("entry %d is %s, want %s", i, e.NodeName, names[i])
		}
		want := v1alpha1.StateSuccessful
		if e.NodeName == "edge-01" {
			want = v1alpha1.StateFailed
		}
		if e.State != want {
			t.Errorf("%s: %s, want %s (%s)", e.NodeName, e.State, want, e.Reason)
		}
	}
	// edge-00..02 got their pods before the lost write; every other node
	// gets one, once.
	for _, name := range names {
		want := 1
		if name <= "edge-02" {
			want = 0
		}
		if creates[name] != want {
			t.Errorf("%s: %d pods created after the lost write, want %d", name, creates[name], want)
		}
	}
}
