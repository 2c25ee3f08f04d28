package rollout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// One upgrade per node across jobs: the rules a job follows when another
// job's upgrade pod is on one of its nodes. The API server enforces the
// exclusion (one pod name per node, upgradepod.PodName); these rules make a
// job that lost the race wait, rather than fail.

// withNode00 returns nodes with node-00's view changed by change.
func withNode00(nodes map[string]NodeView, change func(*NodeView)) map[string]NodeView {
	out := make(map[string]NodeView, len(nodes))
	for k, v := range nodes {
		out[k] = v
	}
	v := out["node-00"]
	change(&v)
	out["node-00"] = v
	return out
}

func busyWith(job string) func(*NodeView) { return func(v *NodeView) { v.BusyWith = job } }

// A dispatched node whose pod was refused (the other job's pod has the
// node's name) goes back to waiting: no slot, its wait clock as a busy
// node's, and the slot goes to the next node.
func TestRefusedDispatchWaitsAsBusy(t *testing.T) {
	tests := []struct {
		name string
		// pods are the job's own pods seen in the second plan.
		pods map[string]PodView
		// nodes changes node-00's view in the second plan.
		node         func(*NodeView)
		at           time.Duration
		wantState    string
		wantReason   string
		wantDispatch []string
	}{{
		name: "refused: another job's pod holds the node", node: busyWith("other"), at: 2 * time.Second,
		wantState: v1alpha1.StateNone, wantReason: "waiting: another upgrade is running on this node (job other)",
		wantDispatch: []string{"node-01"},
	}, {
		name: "refused, seen only after the deadline: waits all the same", node: busyWith("other"), at: 400 * time.Second,
		wantState: v1alpha1.StateNone, wantReason: "waiting: another upgrade is running on this node (job other)",
		wantDispatch: []string{"node-01"},
	}, {
		name: "the job's own pod is seen: it is followed, whoever else is on the node", node: busyWith("other"), at: 2 * time.Second,
		pods:      map[string]PodView{"node-00": {Phase: PodChecking, Tracked: true}},
		wantState: v1alpha1.StateChecking, wantDispatch: []string{},
	}, {
		name: "not seen and not busy: asked for again", node: func(*NodeView) {}, at: 2 * time.Second,
		wantState: v1alpha1.StateInit, wantDispatch: []string{"node-00"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			c := cfg(1, "1")
			nodes := fleet(2)
			p := start(c, names(2), nodes)
			g.Expect(dispatched(p)).To(Equal([]string{"node-00"}))
			now := t0.Add(tt.at)
			p2 := step(p, c, withNode00(nodes, tt.node), tt.pods, now)
			e := entry(p2, "node-00")
			g.Expect(e.State).To(Equal(tt.wantState))
			g.Expect(e.Reason).To(Equal(tt.wantReason))
			g.Expect(dispatched(p2)).To(Equal(tt.wantDispatch))
			if tt.wantState == v1alpha1.StateNone {
				g.Expect(e.Time).To(Equal(now.Format(time.RFC3339)), "its wait starts now: it was its turn")
				g.Expect(e.Action).To(BeEmpty())
				g.Expect(p2.Status.Counts.Failed).To(BeZero(), "a lost race is no failure")
				g.Expect(eventReasons(p2)).To(ContainElement(ReasonNodeDeferred))
				g.Expect(p2.RequeueAfter).To(BeNumerically("<=", BusyRecheck))
			}
		})
	}
}

// The node waits until the other pod goes, then it is dispatched again; or
// it fails once it has waited for the timeout, as any busy node does.
func TestRefusedDispatchThenItsTurnAgain(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(1)
	p := start(c, names(1), nodes)
	busy := withNode00(nodes, busyWith("other"))
	p = step(p, c, busy, nil, t0.Add(time.Second))
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateNone))

	p2 := step(p, c, nodes, nil, t0.Add(30*time.Second))
	g.Expect(dispatched(p2)).To(Equal([]string{"node-00"}))
	g.Expect(p2.Dispatch[0].Deadline).To(Equal(t0.Add(30*time.Second+300*time.Second)), "a new dispatch, a new deadline")

	p3 := step(p, c, busy, nil, t0.Add(301*time.Second))
	g.Expect(entry(p3, "node-00")).To(And(HaveField("State", v1alpha1.StateFailed),
		HaveField("Reason", "node stayed busy with job other's upgrade pod for 5m0s")))
}

// Another job's finished pod, released and kept for its logs, holds
// nothing; but it has the node's pod name, so a dispatch to the node says
// to delete it first, on the first dispatch and on a repeated one.
func TestKeptPodOfAnotherJobIsReplaced(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := withNode00(fleet(1), func(v *NodeView) { v.KeptPodOf = "older" })
	p := start(c, names(1), nodes)
	g.Expect(p.Dispatch).To(Equal([]Dispatch{{Node: "node-00", FromVersion: "v1.20.0", Deadline: t0.Add(300 * time.Second), Replaces: "older"}}))

	p2 := step(p, c, nodes, nil, t0.Add(time.Second))
	g.Expect(p2.Dispatch).To(Equal([]Dispatch{{Node: "node-00", FromVersion: "v1.20.0", Deadline: t0.Add(300 * time.Second), Replaces: "older"}}),
		"asked for again, with the kept pod still in the way")

	// A pod that still holds the node is waited for, never deleted.
	both := withNode00(nodes, busyWith("newer"))
	p3 := start(c, names(1), both)
	g.Expect(p3.Dispatch).To(BeEmpty())
	g.Expect(entry(p3, "node-00").Reason).To(Equal("waiting: another upgrade is running on this node (job newer)"))
}

// Two jobs want different versions of one node. They run one after the
// other, whichever's pod was created first, and the node ends at the
// higher target: a job never downgrades, since a pending node already at
// or above its target is settled as Successful before each dispatch round.
func TestTwoTargetsOnOneNodeEndAtTheHigher(t *testing.T) {
	low, high := cfg(1, "0"), cfg(1, "0")
	high.TargetVersion = "v1.22.0"
	tests := []struct {
		name string
		// waiting is the job that found the node busy; the other job's
		// upgrade then leaves the node at done.
		waiting Config
		done    string
		// want is the waiting job's node entry once the other pod is gone.
		wantState, wantReason string
		wantDispatch          bool
	}{{
		name: "the higher target's pod was first: the lower job skips the node", waiting: low, done: "v1.22.0",
		wantState: v1alpha1.StateSuccessful, wantReason: "skipped: already at v1.22.0",
	}, {
		name: "the lower target's pod was first: the higher job upgrades from it", waiting: high, done: "v1.21.0",
		wantState: v1alpha1.StateInit, wantDispatch: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			nodes := fleet(1)
			// Both jobs dispatched from the same stale view; the waiting one
			// lost the create.
			p := start(tt.waiting, names(1), nodes)
			p = step(p, tt.waiting, withNode00(nodes, busyWith("other")), nil, t0.Add(time.Second))
			g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateNone))
			// The other upgrade ends; its pod is kept (terminated, released).
			nodes["node-00"] = withNode00(nodes, func(v *NodeView) { v.Version, v.KeptPodOf = tt.done, "other" })["node-00"]
			p = step(p, tt.waiting, nodes, nil, t0.Add(time.Minute))
			e := entry(p, "node-00")
			g.Expect(e.State).To(Equal(tt.wantState))
			g.Expect(e.Reason).To(Equal(tt.wantReason))
			if !tt.wantDispatch {
				g.Expect(p.Dispatch).To(BeEmpty(), "never a pod that would downgrade the node")
				g.Expect(p.Status.State).To(Equal(v1alpha1.StateSuccessful))
				return
			}
			g.Expect(p.Dispatch).To(Equal([]Dispatch{{Node: "node-00", FromVersion: "v1.21.0", Deadline: t0.Add(time.Minute + 300*time.Second), Replaces: "other"}}))
		})
	}
}
