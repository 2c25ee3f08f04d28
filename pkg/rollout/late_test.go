package rollout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// timedOutJob is a one-node job whose node timed out in Upgrading at t0+5m
// with the node as given: the job is finished (Failed: none succeeded).
func timedOutJob(g Gomega, node NodeView) (Config, Plan) {
	c := cfg(1, "1")
	nodes := fleet(1)
	p := start(c, names(1), nodes)
	p = step(p, c, map[string]NodeView{"node-00": node}, map[string]PodView{"node-00": {Phase: PodUpgrading, Tracked: true}}, t0.Add(300*time.Second))
	g.Expect(p.Finished).To(BeTrue())
	g.Expect(entry(p, "node-00")).To(And(HaveField("State", v1alpha1.StateFailed), HaveField("Action", v1alpha1.ActionTimeOut)))
	return c, p
}

func notReady(v NodeView) NodeView { v.Ready, v.ReadySince = false, time.Time{}; return v }

func readySince(v NodeView, at time.Time) NodeView { v.ReadySince = at; return v }

const timedOutReason = "did not finish within 5m0s (last seen: Upgrading)"

// What a timed-out node shows later is added before its reason; nothing
// else of the job changes.
func TestTimedOutNodeReportsLater(t *testing.T) {
	later := t0.Add(20 * time.Minute)
	tests := []struct {
		name string
		// atTimeout is the node at its timeout, then is the node later.
		atTimeout, then NodeView
		wantReason      string
		wantEvent       string
		wantAttention   metav1.ConditionStatus // "" when the job has no such condition
	}{{
		name:      "NotReady at the timeout, back on the target: upgraded after its timeout",
		atTimeout: notReady(edgeNode("v1.20.0")), then: readySince(edgeNode("v1.21.0"), later),
		wantReason:    "upgraded after its timeout: the node reports v1.21.0 and is Ready since " + later.Format(time.RFC3339) + "; " + timedOutReason,
		wantEvent:     ReasonNodeReportedAfterTimeout,
		wantAttention: metav1.ConditionFalse,
	}, {
		name:      "NotReady at the timeout, back on a higher version than the target",
		atTimeout: notReady(edgeNode("v1.20.0")), then: edgeNode("v1.22.0"),
		wantReason:    "upgraded after its timeout: the node reports v1.22.0 and is Ready; " + timedOutReason,
		wantEvent:     ReasonNodeReportedAfterTimeout,
		wantAttention: metav1.ConditionFalse,
	}, {
		name:      "NotReady at the timeout, back on the old version: the reason stands",
		atTimeout: notReady(edgeNode("v1.20.0")), then: edgeNode("v1.20.0"),
		wantReason:    timedOutReason,
		wantEvent:     ReasonNodeReportedAfterTimeout,
		wantAttention: metav1.ConditionFalse,
	}, {
		name:      "NotReady at the timeout and still: it needs attention",
		atTimeout: notReady(edgeNode("v1.20.0")), then: notReady(edgeNode("v1.20.0")),
		wantReason:    "needs attention: the node is NotReady; " + timedOutReason,
		wantAttention: metav1.ConditionTrue,
	}, {
		name:      "Ready at the timeout, goes NotReady later: it needs attention",
		atTimeout: edgeNode("v1.20.0"), then: notReady(edgeNode("v1.20.0")),
		wantReason:    "needs attention: the node is NotReady; " + timedOutReason,
		wantEvent:     ReasonNodeNeedsAttention,
		wantAttention: metav1.ConditionTrue,
	}, {
		name:      "Ready at the timeout, upgraded later (the upgrade went on on the host)",
		atTimeout: edgeNode("v1.20.0"), then: edgeNode("v1.21.0"),
		wantReason: "upgraded after its timeout: the node reports v1.21.0 and is Ready; " + timedOutReason,
		wantEvent:  ReasonNodeReportedAfterTimeout,
	}, {
		name:      "the node is deleted: nothing to tell",
		atTimeout: notReady(edgeNode("v1.20.0")), then: NodeView{},
		wantReason:    timedOutReason,
		wantAttention: metav1.ConditionFalse,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			c, p := timedOutJob(g, tt.atTimeout)
			before := p.Status
			p2 := step(p, c, map[string]NodeView{"node-00": tt.then}, nil, t0.Add(25*time.Minute))
			g.Expect(entry(p2, "node-00").Reason).To(Equal(tt.wantReason))
			if tt.wantEvent != "" {
				g.Expect(eventReasons(p2)).To(Equal([]string{tt.wantEvent}))
			} else {
				g.Expect(p2.Events).To(BeEmpty())
			}
			cond := condition(p2, v1alpha1.ConditionNeedsAttention)
			if tt.wantAttention == "" {
				g.Expect(cond).To(BeNil())
			} else {
				g.Expect(cond).NotTo(BeNil())
				g.Expect(cond.Status).To(Equal(tt.wantAttention))
			}

			// The job's verdict stands: state, result, counts, reason, and
			// the node's state, action, event and time.
			g.Expect(p2.Finished).To(BeTrue())
			g.Expect(p2.Status.State).To(Equal(before.State))
			g.Expect(p2.Status.Action).To(Equal(before.Action))
			g.Expect(p2.Status.Reason).To(Equal(before.Reason))
			g.Expect(p2.Status.Counts).To(Equal(before.Counts))
			g.Expect(p2.Status.Time).To(Equal(before.Time))
			e, was := entry(p2, "node-00"), entry(p, "node-00")
			e.Reason, was.Reason = "", ""
			g.Expect(e).To(Equal(was))
			g.Expect(p2.RequeueAfter).To(BeZero(), "what the node reports next wakes the job, not a clock")

			// Planned again with nothing new: nothing changes, no event.
			again := step(p2, c, map[string]NodeView{"node-00": tt.then}, nil, t0.Add(26*time.Minute))
			g.Expect(again.Status).To(Equal(p2.Status))
			g.Expect(again.Events).To(BeEmpty())
		})
	}
}

// A node that times out NotReady needs attention at once: its reason and
// the job's condition say so in the plan that times it out.
func TestTimedOutNotReadyNodeNeedsAttentionAtOnce(t *testing.T) {
	g := NewWithT(t)
	c := cfg(2, "1")
	nodes := fleet(3)
	p := start(c, names(3), nodes)
	pods := map[string]PodView{"node-00": {Phase: PodUpgrading, Tracked: true}, "node-01": {Phase: PodBackingUp, Tracked: true}}
	nodes["node-00"] = notReady(nodes["node-00"])
	p = step(p, c, nodes, pods, t0.Add(300*time.Second))
	g.Expect(p.Finished).To(BeFalse(), "node-02 is still to go")
	g.Expect(entry(p, "node-00").Reason).To(Equal("needs attention: the node is NotReady; " + timedOutReason))
	g.Expect(entry(p, "node-01").Reason).To(Equal("did not finish within 5m0s (last seen: BackingUp)"), "Ready: nothing known yet")
	cond := condition(p, v1alpha1.ConditionNeedsAttention)
	g.Expect(cond).NotTo(BeNil())
	g.Expect(cond.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(cond.Message).To(Equal("1 node that timed out is NotReady: node-00; how their upgrade ended is unknown until they report: look at them"))
	g.Expect(eventReasons(p)).To(ContainElements(ReasonNodeTimedOut, ReasonNodeNeedsAttention))
}

// After WatchAfterTimeout the node's reason is left as it was last written,
// whatever the node shows, and so is the condition.
func TestTimedOutNodeIsWatchedForABoundedTime(t *testing.T) {
	g := NewWithT(t)
	c, p := timedOutJob(g, notReady(edgeNode("v1.20.0")))
	g.Expect(entry(p, "node-00").Reason).To(HavePrefix(noteNeedsAttention))
	timedOutAt := t0.Add(300 * time.Second)
	g.Expect(Watching(p.Status, timedOutAt.Add(WatchAfterTimeout-time.Second))).To(BeTrue())
	g.Expect(Watching(p.Status, timedOutAt.Add(WatchAfterTimeout))).To(BeFalse())

	p2 := step(p, c, map[string]NodeView{"node-00": edgeNode("v1.21.0")}, nil, timedOutAt.Add(WatchAfterTimeout))
	g.Expect(p2.Status).To(Equal(p.Status))
	g.Expect(p2.Events).To(BeEmpty())
}

func TestWatching(t *testing.T) {
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	timedOut := v1alpha1.TaskStatus{NodeName: "a", State: v1alpha1.StateFailed, Action: v1alpha1.ActionTimeOut, Time: at(0)}
	failed := v1alpha1.TaskStatus{NodeName: "b", State: v1alpha1.StateFailed, Action: v1alpha1.ActionFailure, Time: at(0)}
	done := v1alpha1.TaskStatus{NodeName: "c", State: v1alpha1.StateSuccessful, Action: v1alpha1.ActionSuccess, Time: at(0)}
	job := func(state string, failedCount int32, entries ...v1alpha1.TaskStatus) v1alpha1.NodeUpgradeJobStatus {
		return v1alpha1.NodeUpgradeJobStatus{State: state, Time: at(time.Minute), Counts: v1alpha1.NodeCounts{Failed: failedCount}, NodeStatus: entries}
	}
	tests := []struct {
		name   string
		status v1alpha1.NodeUpgradeJobStatus
		now    time.Duration
		want   bool
	}{
		{"finished with a node that timed out an hour ago", job(v1alpha1.StateFailed, 1, timedOut, done), time.Hour, true},
		{"finished with a node that timed out a day ago", job(v1alpha1.StateFailed, 1, timedOut, done), WatchAfterTimeout, false},
		{"finished, its failure no timeout", job(v1alpha1.StateFailed, 1, failed, done), time.Hour, false},
		{"finished with every node upgraded", job(v1alpha1.StateSuccessful, 0, done), time.Hour, false},
		{"a time that does not parse is not watched", job(v1alpha1.StateFailed, 1, v1alpha1.TaskStatus{NodeName: "a", State: v1alpha1.StateFailed, Action: v1alpha1.ActionTimeOut, Time: "yesterday"}), time.Hour, false},
		{"running, with a node that timed out", job(v1alpha1.StateUpgrading, 1, timedOut), time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(Watching(tt.status, t0.Add(tt.now))).To(Equal(tt.want))
		})
	}
}

// A note survives the cuts fitStatus makes to fit a large job in etcd, and
// a cut note is not rewritten plan after plan.
func TestLateNoteSurvivesCuts(t *testing.T) {
	g := NewWithT(t)
	full := "upgraded after its timeout: the node reports v1.21.0 and is Ready; " + timedOutReason
	cut := Truncate(full, shortReasonBytes)
	note, base := splitNote(cut)
	g.Expect(noteKind(note)).To(Equal(noteUpgraded))
	g.Expect(base).To(BeEmpty())
	g.Expect(Truncate(lateNote(edgeNode("v1.21.0"), "v1.21.0")+base, shortReasonBytes)).To(Equal(cut), "recomputed and cut again: the same")

	note, base = splitNote(timedOutReason)
	g.Expect(note).To(BeEmpty())
	g.Expect(base).To(Equal(timedOutReason))
}

// A pod that succeeded while its node does not come back verified times
// out like a pod that hangs: action and event TimeOut, and it is watched.
func TestVerificationTimeoutIsWatched(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(1)
	p := start(c, names(1), nodes)
	pods := map[string]PodView{"node-00": {Phase: PodSucceeded, Tracked: true}}
	nodes["node-00"] = notReady(edgeNode("v1.21.0"))
	p = step(p, c, nodes, pods, t0.Add(300*time.Second))
	e := entry(p, "node-00")
	g.Expect(e).To(And(HaveField("Action", v1alpha1.ActionTimeOut), HaveField("Event", v1alpha1.EventTimeOut)))
	g.Expect(e.Reason).To(Equal("needs attention: the node is NotReady; upgrade pod succeeded but within 5m0s the node reports v1.21.0 and is NotReady, not v1.21.0 and Ready"))

	nodes["node-00"] = edgeNode("v1.21.0")
	p = step(p, c, nodes, pods, t0.Add(400*time.Second))
	g.Expect(entry(p, "node-00").Reason).To(HavePrefix("upgraded after its timeout: the node reports v1.21.0 and is Ready; upgrade pod succeeded"))
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateFailed), "the job's verdict stands")
}
