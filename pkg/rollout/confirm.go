package rollout

import (
	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// A job with spec.requireConfirmation dispatches a node as any job does;
// its pod checks the node, then waits for the node's confirmation before
// anything on it changes (the runner's confirm step). While it waits the
// node is WaitingConfirmation: it holds no concurrency slot and no clock
// runs for it, so an unconfirmed node never stalls the others nor times
// out. It goes on, Confirmed, when
//
//   - the cloud approves it (spec.approvedNodes names it, or holds "*"),
//     no pod on it holds upgrades (KubeEdge's edge.kubeedge.io/hold-upgrade
//     annotation, Input.HeldBy), the job is not suspended and a slot is
//     free: the plan lists it in Approve, and the controller tells its pod
//     (v1alpha1.AnnotationApproved); or
//   - the person at the node confirms it there (the runner's approvals
//     file): its pod goes on by itself, and the plan sees it past its wait.
//     That node takes a slot at once, even past the job's concurrency: the
//     person at the node decides.
//
// A Confirmed node is in flight: its timeout runs from its confirmation.

// waitingForConfirmation is the reason of a node waiting for its
// confirmation that is not approved.
const waitingForConfirmation = "waiting for its confirmation: kubectl nodeupgrade approve, or on the node; it holds no slot and no clock runs"

// startWaiting records that a dispatched node's pod passed its checks and
// waits for the node's confirmation: the node gives its slot back.
func (p *planner) startWaiting(e *v1alpha1.TaskStatus) {
	e.State, e.Event, e.Time = v1alpha1.StateWaitingConfirmation, v1alpha1.EventWaitingConfirmation, p.stamp()
	p.normalEvent(ReasonNodeWaitingConfirmation, e.NodeName,
		"Node %s passed its checks and waits for its confirmation: kubectl nodeupgrade approve, or on the node; it holds no slot meanwhile", e.NodeName)
	e.Reason = waitingForConfirmation
}

// followWaiting follows the nodes that wait for their confirmation, in
// name order: it confirms the approved ones a slot is free for, sees the
// ones confirmed on the node, and ends the ones whose pod failed or went.
// It returns the slots left for pending nodes: a node already checked and
// approved goes before a node not yet started.
func (p *planner) followWaiting(free int) int {
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		if e.State != v1alpha1.StateWaitingConfirmation {
			continue
		}
		pod, hasPod := p.in.Pods[e.NodeName]
		switch {
		case !hasPod:
			// Its pod is gone unseen (it carries the tracking finalizer,
			// so someone removed that): nothing on the node changed, and
			// the node starts again from its checks.
			e.State, e.Event, e.Action, e.Reason, e.Time = v1alpha1.StateNone, v1alpha1.EventInit, "", "", ""
		case pod.Deleting:
			p.fail(e, failure{at: v1alpha1.EventWaitingConfirmation,
				why: "upgrade pod was deleted while the node waited for its confirmation; nothing on the node changed"})
		case pod.Phase == PodFailed:
			p.fail(e, failure{at: pod.FailedEvent, why: pod.Reason})
		case pastConfirmation(pod.Phase):
			free--
			p.confirm(e, "on the node")
		case p.stopped():
			e.State, e.Time = v1alpha1.StateNotAttempted, p.stamp()
			e.Reason = "not attempted: the job stopped on failureTolerate while the node waited for its confirmation; nothing on the node changed"
		case !p.in.Config.IsApproved(e.NodeName):
			e.Reason = waitingForConfirmation
		case p.in.Config.Suspended:
			e.Reason = "approved, waiting: the job is suspended"
		case free <= 0:
			e.Reason = "approved, waiting for a concurrency slot"
		default:
			if held := p.heldBy(e.NodeName); held != "" {
				e.Reason = "approved, held: " + held
				p.wakeAt(p.now.Add(BusyRecheck))
				continue
			}
			free--
			p.confirm(e, "from the cloud")
			p.plan.Approve = append(p.plan.Approve, e.NodeName)
		}
	}
	return free
}

// pastConfirmation reports whether a pod's phase is past its confirm step:
// the node was confirmed (on the node, when the plan did not confirm it).
func pastConfirmation(ph PodPhase) bool {
	switch ph {
	case PodBackingUp, PodUpgrading, PodSucceeded, PodDetached:
		return true
	}
	return false
}

// confirm gives a waiting node its slot: Confirmed, its timeout running
// from now.
func (p *planner) confirm(e *v1alpha1.TaskStatus, how string) {
	e.State, e.Reason, e.Time = v1alpha1.StateConfirmed, "", p.stamp()
	p.normalEvent(ReasonNodeConfirmed, e.NodeName, "Node %s confirmed %s: it goes on to back up and upgrade", e.NodeName, how)
	p.wakeAt(p.deadline(p.now))
}

// heldBy asks what holds a node's upgrade (see Input.HeldBy).
func (p *planner) heldBy(node string) string {
	if p.in.HeldBy == nil {
		return ""
	}
	return p.in.HeldBy(node)
}
