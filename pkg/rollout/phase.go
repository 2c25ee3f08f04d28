package rollout

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// KubeEdge's v1alpha2 reads a job by status.phase, each node's phase and its
// actionFlow (github.com/kubeedge/api apis/operations/v1alpha2), and its
// schema requires status.phase: a status without it cannot be written back
// through v1alpha2, the version kubectl prefers. Every plan therefore
// derives them from the seed's state, event and action (kubeEdgeStatus),
// so both served versions read the same job truly.
//
// KubeEdge appends an actionFlow entry when an action ends on the node
// (edge/pkg/taskmanager/actions, reportActionStatus), with status True
// when it succeeded, False with the reason when it failed, and its finish
// time. This controller sees a node's steps through its pod, so it appends
// an entry when a plan sees the node past the action: the time is the
// plan's, and a step the status never showed (a half-second backup) gets
// the time of the plan that saw the next one. A timed-out action gets
// status Unknown: the job stopped waiting without learning how it ended.

// maxFlowReasonBytes bounds the reason of one actionFlow entry; the node's
// reason, beside it, has MaxNodeReasonBytes of the same text.
const maxFlowReasonBytes = 128

// JobPhase is KubeEdge v1alpha2's phase of a job in state. It is never
// Init (see v1alpha1.JobPhaseInit): from its first plan a job runs.
func JobPhase(state string) string {
	switch state {
	case v1alpha1.StateSuccessful:
		return v1alpha1.JobPhaseCompleted
	case v1alpha1.StateFailed:
		return v1alpha1.JobPhaseFailure
	}
	return v1alpha1.JobPhaseInProgress
}

// NodePhase is KubeEdge v1alpha2's phase of a node in state. A node the
// job never started (NotAttempted: the job stopped on failureTolerate, or
// was refused) stays Pending, as KubeEdge leaves a task it did not send; a
// Skipped node (no Node of that name, or not an edge node) has no outcome
// at all: Unknown. KubeEdge's executor has neither case (it stops on no
// tolerance and sends every task it is given).
func NodePhase(state string) string {
	switch {
	case state == v1alpha1.StateNone, state == v1alpha1.StateNotAttempted:
		return v1alpha1.NodeTaskPhasePending
	case NodeInFlight(state), state == v1alpha1.StateWaitingConfirmation:
		return v1alpha1.NodeTaskPhaseInProgress
	case state == v1alpha1.StateSuccessful:
		return v1alpha1.NodeTaskPhaseSuccessful
	case state == v1alpha1.StateFailed:
		return v1alpha1.NodeTaskPhaseFailure
	}
	return v1alpha1.NodeTaskPhaseUnknown
}

// kubeEdgeStatus sets the job's phase and each node's phase, and extends
// the actionFlow of every node whose state this plan changed. A node whose
// state stayed keeps its flow as it is, so the plan stays deterministic
// (fitStatus may have dropped a final node's flow to fit etcd's limit; it
// is not rebuilt) and a status written before flows existed gets one from
// its node's next change on.
func (p *planner) kubeEdgeStatus() {
	p.status.Phase = JobPhase(p.status.State)
	before := p.in.Status.NodeStatus
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		e.Phase = NodePhase(e.State)
		was := v1alpha1.StateNone
		if i < len(before) && before[i].NodeName == e.NodeName {
			was = before[i].State
		}
		if was == e.State {
			continue
		}
		for _, step := range impliedFlow(e, was) {
			if !hasAction(e.ActionFlow, step.Action) {
				step.Time = p.stamp()
				e.ActionFlow = append(e.ActionFlow, step)
			}
		}
	}
}

// impliedFlow lists the actions a node in e's state has been through, in
// order, with their status and reason; was is its state before this plan
// (for a timeout: the action it hung in). The flow's WaitingConfirmation
// entry is added only while the node waits (its state), as KubeEdge adds it
// when the node starts waiting.
func impliedFlow(e *v1alpha1.TaskStatus, was string) []v1alpha1.ActionStatus {
	done := func(actions ...string) []v1alpha1.ActionStatus {
		flow := make([]v1alpha1.ActionStatus, 0, len(actions)+1)
		for _, a := range actions {
			flow = append(flow, v1alpha1.ActionStatus{Action: a, Status: metav1.ConditionTrue})
		}
		return flow
	}
	failed := func(action string, status metav1.ConditionStatus) v1alpha1.ActionStatus {
		return v1alpha1.ActionStatus{Action: action, Status: status, Reason: Truncate(e.Reason, maxFlowReasonBytes)}
	}
	switch e.State {
	case v1alpha1.StateWaitingConfirmation, v1alpha1.StateConfirmed:
		// KubeEdge's edge reports WaitingConfirmation done when it starts
		// to wait (its action interrupts the flow).
		return done(v1alpha1.FlowCheck, v1alpha1.FlowWaitingConfirmation)
	case v1alpha1.StateBackingUp:
		return done(v1alpha1.FlowCheck)
	case v1alpha1.StateUpgrading, v1alpha1.StateRollingBack, v1alpha1.StateVerifying:
		return done(v1alpha1.FlowCheck, v1alpha1.FlowBackUp)
	case v1alpha1.StateSuccessful:
		if e.Event != v1alpha1.EventUpgrade {
			return nil // already at the target: nothing ran
		}
		return done(v1alpha1.FlowCheck, v1alpha1.FlowBackUp, v1alpha1.FlowUpgrade)
	case v1alpha1.StateFailed:
		switch e.Event {
		case v1alpha1.EventInit, v1alpha1.EventCheck:
			// KubeEdge's Check pulls the installation package too: a
			// refused pull or a node that never came back fails there.
			return []v1alpha1.ActionStatus{failed(v1alpha1.FlowCheck, metav1.ConditionFalse)}
		case v1alpha1.EventWaitingConfirmation:
			return append(done(v1alpha1.FlowCheck), failed(v1alpha1.FlowWaitingConfirmation, metav1.ConditionFalse))
		case v1alpha1.EventBackUp:
			return append(done(v1alpha1.FlowCheck), failed(v1alpha1.FlowBackUp, metav1.ConditionFalse))
		case v1alpha1.EventUpgrade:
			return append(done(v1alpha1.FlowCheck, v1alpha1.FlowBackUp), failed(v1alpha1.FlowUpgrade, metav1.ConditionFalse))
		case v1alpha1.EventRollback:
			flow := append(done(v1alpha1.FlowCheck, v1alpha1.FlowBackUp), failed(v1alpha1.FlowUpgrade, metav1.ConditionFalse))
			// The runner's reason for a failed rollback says so
			// (runner.ExitNeedsAttention); a rollback that worked needs no reason.
			if strings.Contains(e.Reason, "needs attention") {
				return append(flow, failed(v1alpha1.FlowRollBack, metav1.ConditionFalse))
			}
			return append(flow, v1alpha1.ActionStatus{Action: v1alpha1.FlowRollBack, Status: metav1.ConditionTrue})
		case v1alpha1.EventTimeOut:
			return timedOutFlow(was, done, failed)
		}
	}
	return nil
}

// timedOutFlow is the flow of a node that timed out in state was: the
// actions before it succeeded, the one it hung in is Unknown.
func timedOutFlow(was string, done func(...string) []v1alpha1.ActionStatus,
	failed func(string, metav1.ConditionStatus) v1alpha1.ActionStatus) []v1alpha1.ActionStatus {
	switch was {
	case v1alpha1.StateBackingUp:
		return append(done(v1alpha1.FlowCheck), failed(v1alpha1.FlowBackUp, metav1.ConditionUnknown))
	case v1alpha1.StateUpgrading, v1alpha1.StateRollingBack, v1alpha1.StateVerifying:
		return append(done(v1alpha1.FlowCheck, v1alpha1.FlowBackUp), failed(v1alpha1.FlowUpgrade, metav1.ConditionUnknown))
	}
	return []v1alpha1.ActionStatus{failed(v1alpha1.FlowCheck, metav1.ConditionUnknown)}
}

func hasAction(flow []v1alpha1.ActionStatus, action string) bool {
	for i := range flow {
		if flow[i].Action == action {
			return true
		}
	}
	return false
}
