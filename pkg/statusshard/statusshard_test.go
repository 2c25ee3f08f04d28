package statusshard

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

func entry(name, state, time string) v1alpha1.TaskStatus {
	return v1alpha1.TaskStatus{NodeName: name, State: state, Time: time}
}

// A shard stores what a plan after a restart must not lose, and keeps its
// stored entry for a step the next plan derives again from the pod.
func TestPersisted(t *testing.T) {
	const t0, t1 = "2026-12-08T01:00:00Z", "2026-12-08T01:05:00Z"
	flow := []v1alpha1.ActionStatus{{Action: "Check", Status: metav1.ConditionTrue}}
	for _, tt := range []struct {
		name         string
		stored, next v1alpha1.TaskStatus
		keepStored   bool
	}{
		{"dispatch", entry("a", "", ""), entry("a", v1alpha1.StateInit, t0), false},
		{"init to checking", entry("a", v1alpha1.StateInit, t0), entry("a", v1alpha1.StateChecking, t0), true},
		{"checking to backing up", entry("a", v1alpha1.StateChecking, t0), entry("a", v1alpha1.StateBackingUp, t0), false},
		{"init to upgrading", entry("a", v1alpha1.StateInit, t0), entry("a", v1alpha1.StateUpgrading, t0), false},
		{"backing up to upgrading", entry("a", v1alpha1.StateBackingUp, t0), entry("a", v1alpha1.StateUpgrading, t0), true},
		{"confirmed: a new clock", entry("a", v1alpha1.StateWaitingConfirmation, t0), entry("a", v1alpha1.StateConfirmed, t1), false},
		{"confirmed to backing up", entry("a", v1alpha1.StateConfirmed, t1), entry("a", v1alpha1.StateBackingUp, t1), false},
		{"in flight with a new time", entry("a", v1alpha1.StateInit, t0), entry("a", v1alpha1.StateChecking, t1), false},
		{"upgrading to verifying (the soak's clock)", entry("a", v1alpha1.StateUpgrading, t0), entry("a", v1alpha1.StateVerifying, t1), false},
		{"upgrading to verifying, same time", entry("a", v1alpha1.StateUpgrading, t0), entry("a", v1alpha1.StateVerifying, t0), false},
		{"verifying to rolling back", entry("a", v1alpha1.StateVerifying, t1), entry("a", v1alpha1.StateRollingBack, t1), false},
		{"final", entry("a", v1alpha1.StateUpgrading, t0), entry("a", v1alpha1.StateFailed, t1), false},
		{"another node", entry("b", v1alpha1.StateInit, t0), entry("a", v1alpha1.StateChecking, t0), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.next.ActionFlow = flow
			got := Persisted([]v1alpha1.TaskStatus{tt.stored}, []v1alpha1.TaskStatus{tt.next})[0]
			want := tt.next
			if tt.keepStored {
				want = tt.stored
			}
			if got.NodeName != want.NodeName || got.State != want.State || got.Time != want.Time {
				t.Errorf("stored %s, got %s/%s/%s; want %s/%s/%s", tt.stored.State, got.NodeName, got.State, got.Time, want.NodeName, want.State, want.Time)
			}
		})
	}
	ok := entry("a", v1alpha1.StateSuccessful, t1)
	ok.ActionFlow = flow
	if got := Persisted(nil, []v1alpha1.TaskStatus{ok})[0]; got.ActionFlow != nil {
		t.Errorf("a Successful entry is stored with its flow: %v", got.ActionFlow)
	}
	failed := entry("a", v1alpha1.StateFailed, t1)
	failed.ActionFlow = flow
	if got := Persisted(nil, []v1alpha1.TaskStatus{failed})[0]; len(got.ActionFlow) != 1 {
		t.Errorf("a Failed entry lost its flow")
	}
}

// The job's summary is bounded whatever the fleet: at most half failed,
// then the nodes in flight or waiting, without their flows.
func TestSummaryIsBounded(t *testing.T) {
	var entries []v1alpha1.TaskStatus
	for i := range 1000 {
		state := []string{v1alpha1.StateFailed, v1alpha1.StateUpgrading, v1alpha1.StateSuccessful, "", v1alpha1.StateWaitingConfirmation}[i%5]
		e := entry(fmt.Sprintf("n%04d", i), state, "t")
		e.ActionFlow = []v1alpha1.ActionStatus{{Action: "Check"}}
		entries = append(entries, e)
	}
	got := Summary(entries)
	if len(got) != v1alpha1.MaxSummaryNodes {
		t.Fatalf("%d entries, want %d", len(got), v1alpha1.MaxSummaryNodes)
	}
	failed := 0
	for i, e := range got {
		switch e.State {
		case v1alpha1.StateFailed:
			failed++
			if i >= v1alpha1.MaxSummaryNodes/2 {
				t.Errorf("failed node %s after the in-flight ones", e.NodeName)
			}
		case v1alpha1.StateUpgrading, v1alpha1.StateWaitingConfirmation:
			if e.ActionFlow != nil {
				t.Errorf("%s keeps its flow in the summary", e.NodeName)
			}
		default:
			t.Errorf("%s (%q) in the summary", e.NodeName, e.State)
		}
	}
	if failed != v1alpha1.MaxSummaryNodes/2 {
		t.Errorf("%d failed nodes, want %d", failed, v1alpha1.MaxSummaryNodes/2)
	}
	if len(Summary(entries[:3])) != 2 {
		t.Errorf("a small job's summary is its failed and in-flight nodes")
	}
}

func TestSplitCoversEveryNodeOnce(t *testing.T) {
	job := &v1alpha1.NodeUpgradeJob{}
	job.UID = "u"
	for _, n := range []int{1, 49, 50, 51, 1001} {
		ref := NewRef(job, "ns", n, 50)
		entries := make([]v1alpha1.TaskStatus, n)
		total := 0
		for i, part := range Split(ref, entries) {
			first, end := Range(ref, i)
			if len(part) != end-first || len(part) == 0 || len(part) > 50 {
				t.Errorf("n=%d shard %d: %d entries for range [%d,%d)", n, i, len(part), first, end)
			}
			total += len(part)
		}
		if total != n {
			t.Errorf("n=%d: shards hold %d entries", n, total)
		}
	}
}
