package rollout

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

func confirming(concurrency int) Config {
	c := cfg(concurrency, "1")
	c.RequireConfirmation = true
	return c
}

// allWaiting starts a job of n nodes and plans, every 10 s from t0, with
// each dispatched node's pod waiting for its confirmation, until every
// node waits. It returns the last plan, the nodes, the pods and its time.
func allWaiting(c Config, n int) (Plan, map[string]NodeView, map[string]PodView, time.Time) {
	nodes := fleet(n)
	p := start(c, names(n), nodes)
	pods := map[string]PodView{}
	now := t0
	for p.Status.Counts.WaitingConfirmation < int32(n) {
		for _, d := range p.Dispatch {
			pods[d.Node] = PodView{Phase: PodWaitingConfirmation, Tracked: true}
		}
		now = now.Add(10 * time.Second)
		p = step(p, c, nodes, pods, now)
	}
	return p, nodes, pods, now
}

// A node whose pod waits for its confirmation gives its slot back, and no
// clock runs for it: an unconfirmed node neither stalls the others nor
// times out.
func TestWaitingNodeHoldsNoSlotAndNoClock(t *testing.T) {
	g := NewWithT(t)
	c := confirming(1)
	nodes := fleet(2)
	p := start(c, names(2), nodes)
	g.Expect(dispatched(p)).To(Equal([]string{"node-00"}))

	pods := map[string]PodView{"node-00": {Phase: PodWaitingConfirmation, Tracked: true}}
	p = step(p, c, nodes, pods, t0.Add(10*time.Second))
	e := entry(p, "node-00")
	g.Expect(e.State).To(Equal(v1alpha1.StateWaitingConfirmation))
	g.Expect(e.Event).To(Equal(v1alpha1.EventWaitingConfirmation))
	g.Expect(e.Phase).To(Equal(v1alpha1.NodeTaskPhaseInProgress))
	g.Expect(e.Reason).To(ContainSubstring("kubectl nodeupgrade approve"))
	g.Expect(dispatched(p)).To(Equal([]string{"node-01"}), "the waiting node's slot went to the next node")
	g.Expect(p.Status.Counts.WaitingConfirmation).To(Equal(int32(1)))
	g.Expect(p.Status.Counts.InFlight).To(Equal(int32(1)))
	g.Expect(p.Status.Reason).To(ContainSubstring("1 waiting for confirmation"))
	g.Expect(eventReasons(p)).To(ContainElement(ReasonNodeWaitingConfirmation))
	g.Expect(p.Approve).To(BeEmpty())

	// Long past the timeout, unapproved: still waiting, not failed, and
	// the job does not end.
	pods["node-01"] = PodView{Phase: PodWaitingConfirmation, Tracked: true}
	p = step(p, c, nodes, pods, t0.Add(20*time.Second))
	p = step(p, c, nodes, pods, t0.Add(10*time.Hour))
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateWaitingConfirmation))
	g.Expect(entry(p, "node-01").State).To(Equal(v1alpha1.StateWaitingConfirmation))
	g.Expect(p.Finished).To(BeFalse())
	g.Expect(p.Status.Counts.Failed).To(BeZero())
}

// An approved node goes on when a slot is free for it, in name order,
// before any pending node; its timeout runs from its confirmation.
func TestApprovedNodeIsConfirmedWhenASlotIsFree(t *testing.T) {
	g := NewWithT(t)
	c := confirming(1)
	nodes := fleet(3)
	p := start(c, names(3), nodes)
	pods := map[string]PodView{"node-00": {Phase: PodWaitingConfirmation, Tracked: true}}
	p = step(p, c, nodes, pods, t0.Add(10*time.Second)) // node-01 dispatched
	pods["node-01"] = PodView{Phase: PodChecking, Tracked: true}

	// node-00 approved, but node-01 holds the only slot.
	c.Approved = []string{"node-00"}
	p = step(p, c, nodes, pods, t0.Add(20*time.Second))
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateWaitingConfirmation))
	g.Expect(entry(p, "node-00").Reason).To(Equal("approved, waiting for a concurrency slot"))
	g.Expect(p.Approve).To(BeEmpty())

	// node-01 waits too: its slot goes to the approved node-00, not to the
	// pending node-02.
	pods["node-01"] = PodView{Phase: PodWaitingConfirmation, Tracked: true}
	confirmedAt := t0.Add(30 * time.Second)
	p = step(p, c, nodes, pods, confirmedAt)
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateConfirmed))
	g.Expect(p.Approve).To(Equal([]string{"node-00"}))
	g.Expect(dispatched(p)).To(BeEmpty(), "the approved node took the slot")
	g.Expect(eventReasons(p)).To(ContainElement(ReasonNodeConfirmed))
	g.Expect(ReadEntryTime(new(entry(p, "node-00"))).Dispatched).To(Equal(confirmedAt), "its clock starts at its confirmation")

	// The pod has not yet seen the annotation: it is told again, and the
	// node keeps its slot.
	p = step(p, c, nodes, pods, confirmedAt.Add(time.Second))
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateConfirmed))
	g.Expect(p.Approve).To(Equal([]string{"node-00"}))
	g.Expect(p.Status.Counts.InFlight).To(Equal(int32(1)))

	// It goes on; its timeout runs from its confirmation, not its dispatch.
	pods["node-00"] = PodView{Phase: PodUpgrading, Tracked: true}
	p = step(p, c, nodes, pods, confirmedAt.Add(299*time.Second))
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateUpgrading))
	p = step(p, c, nodes, pods, confirmedAt.Add(300*time.Second))
	g.Expect(entry(p, "node-00").Action).To(Equal(v1alpha1.ActionTimeOut))
}

// "*" approves every node; a suspended job confirms none.
func TestApproveAllAndSuspend(t *testing.T) {
	g := NewWithT(t)
	c := confirming(2)
	p, nodes, pods, now := allWaiting(c, 2)
	c.Approved = []string{v1alpha1.ApproveAll}
	c.Suspended = true
	p = step(p, c, nodes, pods, now.Add(10*time.Second))
	g.Expect(p.Approve).To(BeEmpty())
	g.Expect(entry(p, "node-00").Reason).To(Equal("approved, waiting: the job is suspended"))
	c.Suspended = false
	p = step(p, c, nodes, pods, now.Add(20*time.Second))
	g.Expect(p.Approve).To(Equal([]string{"node-00", "node-01"}))
}

// A node confirmed on the node goes on by itself: the plan sees its pod
// past the wait, and the node takes a slot whatever the concurrency.
func TestNodeConfirmedOnTheNode(t *testing.T) {
	g := NewWithT(t)
	c := confirming(1)
	nodes := fleet(2)
	p := start(c, names(2), nodes)
	pods := map[string]PodView{"node-00": {Phase: PodWaitingConfirmation, Tracked: true}}
	p = step(p, c, nodes, pods, t0.Add(10*time.Second))
	pods["node-01"] = PodView{Phase: PodChecking, Tracked: true}
	pods["node-00"] = PodView{Phase: PodBackingUp, Tracked: true}
	p = step(p, c, nodes, pods, t0.Add(20*time.Second))
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateConfirmed))
	g.Expect(p.Approve).To(BeEmpty(), "nothing to tell its pod")
	g.Expect(p.Status.Counts.InFlight).To(Equal(int32(2)), "the person at the node decided")
	p = step(p, c, nodes, pods, t0.Add(21*time.Second))
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateBackingUp))
}

// A pod on the node with edge.kubeedge.io/hold-upgrade holds an approved
// node, shown as such; the next approved node takes the slot.
func TestHeldNodeWaits(t *testing.T) {
	g := NewWithT(t)
	c := confirming(1)
	p, nodes, pods, now := allWaiting(c, 2)
	c.Approved = []string{v1alpha1.ApproveAll}
	held := func(node string) string {
		if node == "node-00" {
			return "pod robots/arm-1 on the node has edge.kubeedge.io/hold-upgrade=true"
		}
		return ""
	}
	p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, Pods: pods, Now: now.Add(10 * time.Second), HeldBy: held})
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateWaitingConfirmation))
	g.Expect(entry(p, "node-00").Reason).To(ContainSubstring("held: pod robots/arm-1"))
	g.Expect(p.Approve).To(Equal([]string{"node-01"}))
}

// A waiting node whose pod fails or is deleted fails with nothing changed;
// on a refused job, or once tolerance is exceeded, it is not attempted.
func TestWaitingNodeEnds(t *testing.T) {
	g := NewWithT(t)
	c := confirming(3)
	p, nodes, pods, now := allWaiting(c, 3)
	pods["node-00"] = PodView{Phase: PodWaitingConfirmation, Deleting: true, Tracked: true}
	p = step(p, c, nodes, pods, now.Add(10*time.Second))
	e := entry(p, "node-00")
	g.Expect(e.State).To(Equal(v1alpha1.StateFailed))
	g.Expect(e.Event).To(Equal(v1alpha1.EventWaitingConfirmation))
	g.Expect(e.Reason).To(ContainSubstring("nothing on the node changed"))
	g.Expect(e.ActionFlow[len(e.ActionFlow)-1].Action).To(Equal(v1alpha1.FlowWaitingConfirmation))

	c.Refusal = "spec.image: not allowed"
	p = step(p, c, nodes, pods, now.Add(20*time.Second))
	g.Expect(entry(p, "node-01").State).To(Equal(v1alpha1.StateNotAttempted))
	g.Expect(p.Deletions()).To(ContainElements("node-01", "node-02"), "their waiting pods are deleted")
	g.Expect(p.Finished).To(BeTrue())
}

// A job pinned by digest dispatches each node with its architecture's
// digest, else the one for any; a node no digest fits fails before its pod
// is made.
func TestDigestPerArchitecture(t *testing.T) {
	g := NewWithT(t)
	amd, arm, anyArch := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64), "sha256:"+strings.Repeat("c", 64)
	nodes := fleet(3)
	for name, arch := range map[string]string{"node-00": "amd64", "node-01": "arm64", "node-02": "arm"} {
		n := nodes[name]
		n.Arch = arch
		nodes[name] = n
	}
	c := cfg(3, "1")
	c.ImageDigests = map[string]string{"amd64": amd, "arm64": arm}
	p := start(c, names(3), nodes)
	digests := map[string]string{}
	for _, d := range p.Dispatch {
		digests[d.Node] = d.ImageDigest
	}
	g.Expect(digests).To(Equal(map[string]string{"node-00": amd, "node-01": arm}))
	e := entry(p, "node-02")
	g.Expect(e.State).To(Equal(v1alpha1.StateFailed))
	g.Expect(e.Reason).To(ContainSubstring("not for the node's architecture arm"))

	c.ImageDigests[""] = anyArch
	p = start(c, names(3), nodes)
	g.Expect(p.Dispatch).To(HaveLen(3))
	g.Expect(p.Dispatch[2].ImageDigest).To(Equal(anyArch))

	c.ImageDigests = nil
	p = start(c, names(3), nodes)
	g.Expect(p.Dispatch[0].ImageDigest).To(BeEmpty(), "not pinned")
}
