package rollout

import (
	"testing"

	. "github.com/onsi/gomega"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

func TestCleanupPutsCancellationsFirst(t *testing.T) {
	g := NewWithT(t)
	final := func(name, state, action string) v1alpha1.TaskStatus {
		return v1alpha1.TaskStatus{NodeName: name, State: state, Action: action, Reason: "why " + name}
	}
	status := v1alpha1.NodeUpgradeJobStatus{NodeStatus: []v1alpha1.TaskStatus{
		final("done-a", v1alpha1.StateSuccessful, v1alpha1.ActionSuccess),
		final("done-b", v1alpha1.StateSuccessful, v1alpha1.ActionSuccess),
		final("failed", v1alpha1.StateFailed, v1alpha1.ActionFailure),
		final("gone", v1alpha1.StateSuccessful, v1alpha1.ActionSuccess),
		final("hung", v1alpha1.StateFailed, v1alpha1.ActionTimeOut),
		final("refused", v1alpha1.StateFailed, v1alpha1.ActionFailure),
		final("released", v1alpha1.StateSuccessful, v1alpha1.ActionSuccess),
		{NodeName: "running", State: v1alpha1.StateUpgrading},
	}}
	pods := map[string]PodView{
		"done-a":   {Phase: PodSucceeded, Tracked: true},
		"done-b":   {Phase: PodSucceeded, Tracked: true},
		"failed":   {Phase: PodFailed, Tracked: true},
		"hung":     {Phase: PodUpgrading, Tracked: true},
		"refused":  {Phase: PodPending},
		"released": {Phase: PodSucceeded, Deleting: true},
		"running":  {Phase: PodUpgrading, Tracked: true},
	}
	got := Cleanup(status, pods).Cleanup
	g.Expect(got).To(Equal([]PodCleanup{
		{Node: "hung", Release: true, Delete: true, Cancel: "node timed out: why hung"},
		{Node: "refused", Delete: true, Cancel: "node is Failed: why refused"},
		{Node: "done-a", Release: true, Delete: true},
		{Node: "done-b", Release: true, Delete: true},
		{Node: "failed", Release: true},
	}), "cancellations first, the rest in node order; a failed node's pod stays for its logs; "+
		"a pod not observed, one already deleting and untracked, and one whose node is in flight are left alone")
}

// Releases lists the nodes whose pods the plan releases, in plan order:
// a reading of Plan.Cleanup for the tests.
func (p Plan) Releases() []string {
	return p.cleanupNodes(func(c PodCleanup) bool { return c.Release })
}

// Deletions lists the nodes whose pods the plan deletes, in plan order.
func (p Plan) Deletions() []string {
	return p.cleanupNodes(func(c PodCleanup) bool { return c.Delete })
}

func (p Plan) cleanupNodes(keep func(PodCleanup) bool) []string {
	var out []string
	for _, c := range p.Cleanup {
		if keep(c) {
			out = append(out, c.Node)
		}
	}
	return out
}
