package rollout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

func TestJobAndNodePhases(t *testing.T) {
	g := NewWithT(t)
	for state, want := range map[string]string{
		v1alpha1.StateNone: v1alpha1.JobPhaseInProgress, v1alpha1.StateUpgrading: v1alpha1.JobPhaseInProgress,
		v1alpha1.StateSuspended: v1alpha1.JobPhaseInProgress, v1alpha1.StateSuccessful: v1alpha1.JobPhaseCompleted,
		v1alpha1.StateFailed: v1alpha1.JobPhaseFailure,
	} {
		g.Expect(JobPhase(state)).To(Equal(want), "job state %q", state)
		g.Expect(JobPhase(state)).NotTo(Equal(v1alpha1.JobPhaseInit), "Init starts cloudcore's taskManager")
	}
	for state, want := range map[string]string{
		v1alpha1.StateNone: v1alpha1.NodeTaskPhasePending, v1alpha1.StateNotAttempted: v1alpha1.NodeTaskPhasePending,
		v1alpha1.StateInit: v1alpha1.NodeTaskPhaseInProgress, v1alpha1.StateChecking: v1alpha1.NodeTaskPhaseInProgress,
		v1alpha1.StateBackingUp: v1alpha1.NodeTaskPhaseInProgress, v1alpha1.StateUpgrading: v1alpha1.NodeTaskPhaseInProgress,
		v1alpha1.StateRollingBack: v1alpha1.NodeTaskPhaseInProgress, v1alpha1.StateSuccessful: v1alpha1.NodeTaskPhaseSuccessful,
		v1alpha1.StateFailed: v1alpha1.NodeTaskPhaseFailure, v1alpha1.StateSkipped: v1alpha1.NodeTaskPhaseUnknown,
	} {
		g.Expect(NodePhase(state)).To(Equal(want), "node state %q", state)
	}
}

// flowOf is a flow without its times, for comparison.
func flowOf(e v1alpha1.TaskStatus) []v1alpha1.ActionStatus {
	out := make([]v1alpha1.ActionStatus, len(e.ActionFlow))
	for i, a := range e.ActionFlow {
		a.Time = ""
		out[i] = a
	}
	return out
}

func ok(action string) v1alpha1.ActionStatus {
	return v1alpha1.ActionStatus{Action: action, Status: metav1.ConditionTrue}
}

// TestActionFlowFollowsThePod drives one node through each way a pod can
// go and checks the flow KubeEdge's v1alpha2 would show: an entry per
// action the node is past, True when it passed, False with the reason when
// it failed, Unknown for the action a timeout cut; the phase beside it.
func TestActionFlowFollowsThePod(t *testing.T) {
	failedRollback := "rollback failed too, the node needs attention: keadm rollback edge exited 1"
	cases := []struct {
		name  string
		steps []PodView
		late  bool // the node times out after the steps
		phase string
		flow  []v1alpha1.ActionStatus
	}{
		{name: "upgraded", steps: []PodView{{Phase: PodChecking}, {Phase: PodBackingUp}, {Phase: PodUpgrading}, {Phase: PodSucceeded}},
			phase: v1alpha1.NodeTaskPhaseSuccessful, flow: []v1alpha1.ActionStatus{ok("Check"), ok("BackUp"), ok("Upgrade")}},
		{name: "upgraded, the backup unseen", steps: []PodView{{Phase: PodChecking}, {Phase: PodUpgrading}, {Phase: PodSucceeded}},
			phase: v1alpha1.NodeTaskPhaseSuccessful, flow: []v1alpha1.ActionStatus{ok("Check"), ok("BackUp"), ok("Upgrade")}},
		{name: "check failed", steps: []PodView{{Phase: PodChecking}, {Phase: PodFailed, FailedEvent: v1alpha1.EventCheck, Reason: "cpu usage 93% >= 80%"}},
			phase: v1alpha1.NodeTaskPhaseFailure, flow: []v1alpha1.ActionStatus{{Action: "Check", Status: metav1.ConditionFalse, Reason: "cpu usage 93% >= 80%"}}},
		{name: "backup failed", steps: []PodView{{Phase: PodBackingUp}, {Phase: PodFailed, FailedEvent: v1alpha1.EventBackUp, Reason: "keadm backup failed"}},
			phase: v1alpha1.NodeTaskPhaseFailure, flow: []v1alpha1.ActionStatus{ok("Check"), {Action: "BackUp", Status: metav1.ConditionFalse, Reason: "keadm backup failed"}}},
		{name: "rolled back", steps: []PodView{{Phase: PodUpgrading}, {Phase: PodFailed, FailedEvent: v1alpha1.EventRollback, Reason: "rollback succeeded"}},
			phase: v1alpha1.NodeTaskPhaseFailure, flow: []v1alpha1.ActionStatus{ok("Check"), ok("BackUp"),
				{Action: "Upgrade", Status: metav1.ConditionFalse, Reason: "rollback succeeded"}, ok("RollBack")}},
		{name: "rollback failed", steps: []PodView{{Phase: PodUpgrading}, {Phase: PodFailed, FailedEvent: v1alpha1.EventRollback, Reason: failedRollback}},
			phase: v1alpha1.NodeTaskPhaseFailure, flow: []v1alpha1.ActionStatus{ok("Check"), ok("BackUp"),
				{Action: "Upgrade", Status: metav1.ConditionFalse, Reason: failedRollback}, {Action: "RollBack", Status: metav1.ConditionFalse, Reason: failedRollback}}},
		{name: "pull refused", steps: []PodView{{Phase: PodPending, Pull: PullRefused, Reason: "copy-keadm: cannot pull R: not found"}},
			phase: v1alpha1.NodeTaskPhaseFailure},
		{name: "timed out upgrading", steps: []PodView{{Phase: PodUpgrading}}, late: true,
			phase: v1alpha1.NodeTaskPhaseFailure},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			nodes := fleet(1)
			p := start(cfg(1, "1"), names(1), nodes)
			now := t0
			for _, pod := range c.steps {
				now = now.Add(time.Second)
				if pod.Phase == PodSucceeded {
					nodes["node-00"] = edgeNode("v1.21.0")
				}
				p = Decide(Input{Config: cfg(1, "1"), Status: p.Status, Nodes: nodes, Pods: map[string]PodView{"node-00": pod}, Now: now})
				g.Expect(entry(p, "node-00").Phase).To(Equal(NodePhase(entry(p, "node-00").State)))
			}
			if c.late {
				p = Decide(Input{Config: cfg(1, "1"), Status: p.Status, Nodes: nodes, Pods: map[string]PodView{"node-00": c.steps[len(c.steps)-1]}, Now: t0.Add(time.Hour)})
			}
			e := entry(p, "node-00")
			g.Expect(e.Phase).To(Equal(c.phase))
			g.Expect(p.Status.Phase).To(Equal(JobPhase(p.Status.State)))
			switch c.name {
			case "pull refused":
				g.Expect(e.ActionFlow).To(HaveLen(1))
				g.Expect(e.ActionFlow[0].Action).To(Equal("Check"))
				g.Expect(e.ActionFlow[0].Status).To(Equal(metav1.ConditionFalse))
				g.Expect(e.ActionFlow[0].Reason).To(ContainSubstring("not found"))
			case "timed out upgrading":
				flow := flowOf(e)
				g.Expect(flow).To(HaveLen(3))
				g.Expect(flow[:2]).To(Equal([]v1alpha1.ActionStatus{ok("Check"), ok("BackUp")}))
				g.Expect(flow[2].Action).To(Equal("Upgrade"))
				g.Expect(flow[2].Status).To(Equal(metav1.ConditionUnknown), "the job stopped waiting without learning how the upgrade ended")
			default:
				g.Expect(flowOf(e)).To(Equal(c.flow))
			}
			for _, a := range e.ActionFlow {
				_, err := time.Parse(time.RFC3339, a.Time)
				g.Expect(err).NotTo(HaveOccurred(), "each entry has its time")
			}
		})
	}
}

// TestPhasesOfAWholeJob: pending, in flight, skipped and already at the
// target read as KubeEdge would; the job is InProgress from its first plan
// (never Init) and Completed or Failure at its end; a plan that changes
// nothing changes no flow (no status write).
func TestPhasesOfAWholeJob(t *testing.T) {
	g := NewWithT(t)
	nodes := fleet(3)
	nodes["node-02"] = edgeNode("v1.21.0")
	nodes["cloud"] = NodeView{Exists: true, Ready: true, Version: "v1.20.0"}
	p := start(cfg(1, "0"), append(names(3), "cloud"), nodes)
	g.Expect(p.Status.Phase).To(Equal(v1alpha1.JobPhaseInProgress))
	g.Expect(entry(p, "node-00").Phase).To(Equal(v1alpha1.NodeTaskPhaseInProgress))
	g.Expect(entry(p, "node-01").Phase).To(Equal(v1alpha1.NodeTaskPhasePending))
	g.Expect(entry(p, "node-02").Phase).To(Equal(v1alpha1.NodeTaskPhaseSuccessful))
	g.Expect(entry(p, "node-02").ActionFlow).To(BeEmpty(), "nothing ran on a node already at the target")
	g.Expect(entry(p, "cloud").Phase).To(Equal(v1alpha1.NodeTaskPhaseUnknown))

	again := Decide(Input{Config: cfg(1, "0"), Status: p.Status, Nodes: nodes, Pods: map[string]PodView{"node-00": {Phase: PodPending}}, Now: t0.Add(time.Second)})
	g.Expect(again.Status).To(Equal(p.Status), "a plan that sees no change writes nothing")

	failed := Decide(Input{Config: cfg(1, "0"), Status: p.Status, Nodes: nodes,
		Pods: map[string]PodView{"node-00": {Phase: PodFailed, FailedEvent: v1alpha1.EventCheck, Reason: "disk"}}, Now: t0.Add(2 * time.Second)})
	g.Expect(failed.Finished).To(BeTrue())
	g.Expect(failed.Status.Phase).To(Equal(v1alpha1.JobPhaseFailure))
	g.Expect(entry(failed, "node-01").Phase).To(Equal(v1alpha1.NodeTaskPhasePending), "NotAttempted: never started")
}
