package rollout

import (
	"fmt"
	"strings"
	"time"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodeversion"
)

// progressInFlight follows every dispatched node: its pod's phase, its
// outcome, its verification and its deadline.
func (p *planner) progressInFlight() {
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		if !NodeInFlight(e.State) {
			continue
		}
		switch {
		case e.State == v1alpha1.StateVerifying:
			p.followGate(e)
			continue
		case gateRollback(e):
			p.restartUnreadableClock(e)
			p.followGateRollback(e)
			continue
		}
		p.restartUnreadableClock(e)
		deadline := p.deadline(ReadEntryTime(e).Dispatched)
		pod, hasPod := p.in.Pods[e.NodeName]
		switch {
		case !hasPod && p.in.Nodes[e.NodeName].BusyWith != "":
			p.requeueBusy(e)
		case hasPod && pod.Phase == PodSucceeded:
			p.verify(e, deadline, "upgrade pod succeeded")
		case hasPod && pod.Phase == PodDetached:
			p.verify(e, deadline, pod.Reason)
		case hasPod && pod.Deleting && unitMayRun(e, pod):
			// The pod's containers only followed the job's unit on the
			// node, which its deletion does not stop: the node shows
			// how the upgrade ends.
			reason := "upgrade pod was deleted while the node's upgrade unit ran"
			if pod.Reason != "" {
				reason += " (" + pod.Reason + ")"
			}
			p.verify(e, deadline, reason)
		case hasPod && pod.Deleting:
			// Checked before Failed: a kubelet that kills a deleted pod also
			// marks it Failed, and the deletion is the cause worth telling.
			reason := "upgrade pod was deleted before it finished"
			if pod.Reason != "" {
				reason += " (" + pod.Reason + ")"
			}
			p.fail(e, failure{at: e.Event, why: reason})
		case hasPod && pod.Phase == PodFailed:
			p.fail(e, failure{at: pod.FailedEvent, why: pod.Reason})
		case hasPod && pod.Pull == PullRefused:
			p.followPull(e, pod)
		case !p.now.Before(deadline):
			// What the pod shows now, not what the last plan recorded: the
			// step it hung in may be one the status never showed.
			last := "upgrade pod not created"
			if hasPod {
				last, _ = phaseState(pod.Phase)
			}
			p.timeOut(e, p.timeoutReason(e, last))
		case hasPod && (pod.Phase == PodWaitingConfirmation || e.State == v1alpha1.StateConfirmed && !pastConfirmation(pod.Phase)):
			p.stillWaiting(e, deadline)
		case !hasPod:
			// Dispatched but not observed: the pod is being created, or the
			// controller stopped between recording the dispatch and creating
			// the pod. Creating it again is idempotent (its name is fixed).
			node := p.in.Nodes[e.NodeName]
			digest, _ := p.in.Config.DigestFor(node.Arch)
			p.plan.Dispatch = append(p.plan.Dispatch, Dispatch{Node: e.NodeName, FromVersion: node.Version, Deadline: deadline,
				Replaces: node.KeptPodOf, ImageDigest: digest})
			p.wakeAt(deadline)
		default:
			if !p.followPull(e, pod) {
				e.State, e.Event = phaseState(pod.Phase)
				if strings.HasPrefix(e.Reason, pullWaitPrefix) {
					e.Reason = "" // the pull went through
				}
			}
			p.wakeAt(deadline)
		}
	}
}

// stillWaiting handles an in-flight node whose pod waits for the node's
// confirmation: a node just checked starts waiting, without its slot
// (startWaiting); a Confirmed node's pod has not yet seen its approval
// (the kubelet rewrites the pod's annotations file within seconds), so it
// is told again.
func (p *planner) stillWaiting(e *v1alpha1.TaskStatus, deadline time.Time) {
	if e.State != v1alpha1.StateConfirmed {
		p.startWaiting(e)
		return
	}
	p.plan.Approve = append(p.plan.Approve, e.NodeName)
	p.wakeAt(deadline)
}

// unitMayRun reports whether the node's upgrade unit may be running for a
// pod: the pod got to its backup or upgrade (the unit's steps), as it shows
// or as the status last recorded.
func unitMayRun(e *v1alpha1.TaskStatus, pod PodView) bool {
	switch pod.Phase {
	case PodBackingUp, PodUpgrading, PodDetached:
		return true
	}
	return e.State == v1alpha1.StateBackingUp || e.State == v1alpha1.StateUpgrading
}

// requeueBusy puts a dispatched node back among the pending ones when it
// has no pod of this job and another job's pod holds it: the API server
// refused this job's pod (the name is the node's, see upgradepod.PodName),
// or will. Two jobs that planned from caches which did not yet show each
// other's pods both dispatch; one create wins, and the other job's node
// waits as any busy node does (startPending: deferred without a slot, its
// wait starting when its turn comes, failing after the timeout), rather
// than holding a slot until it times out with "upgrade pod not created".
// Should this job's pod exist after all, unseen by a lagging cache, its
// next dispatch finds it (AlreadyExists, its own) and follows it.
func (p *planner) requeueBusy(e *v1alpha1.TaskStatus) {
	e.State, e.Event, e.Action, e.Reason, e.Time = v1alpha1.StateNone, v1alpha1.EventInit, "", "", ""
}

// phaseState maps a running pod's phase to the node's state and event.
func phaseState(phase PodPhase) (string, string) {
	switch phase {
	case PodChecking:
		return v1alpha1.StateChecking, v1alpha1.EventCheck
	case PodWaitingConfirmation:
		// Only named in a timeout's reason: a node whose pod waits is
		// handled by stillWaiting.
		return v1alpha1.StateWaitingConfirmation, v1alpha1.EventWaitingConfirmation
	case PodBackingUp:
		return v1alpha1.StateBackingUp, v1alpha1.EventBackUp
	case PodUpgrading:
		return v1alpha1.StateUpgrading, v1alpha1.EventUpgrade
	}
	return v1alpha1.StateInit, v1alpha1.EventInit
}

// verify counts a node as upgraded only once the node itself reports the
// target version and is Ready, within its deadline: after its pod succeeded,
// or after its pod ended without the verdict of the node's upgrade unit
// (which goes on on the node). because says which, in the reasons.
func (p *planner) verify(e *v1alpha1.TaskStatus, deadline time.Time, because string) {
	node := p.in.Nodes[e.NodeName]
	target := p.in.Config.TargetVersion
	if node.Exists && node.Ready && nodeversion.AtLeast(node.Version, target) {
		if p.in.Config.Gate != nil {
			p.startGate(e, node)
			return
		}
		p.upgraded(e, node)
		return
	}
	seen := describeNode(node)
	if !p.now.Before(deadline) {
		// A timeout like any other: the job stops waiting, and what the
		// node reports later is watched (watchTimedOut).
		p.timeOut(e, fmt.Sprintf("%s but within %s the node %s, not %s and Ready", because, p.in.Config.Timeout, seen, target))
		return
	}
	e.State, e.Event = v1alpha1.StateUpgrading, v1alpha1.EventUpgrade
	e.Reason = fmt.Sprintf("verifying: waiting for the node to report %s and Ready; it %s", target, seen)
	if because != "upgrade pod succeeded" {
		e.Reason += "; " + because
	}
	p.wakeAt(deadline)
}

func describeNode(n NodeView) string {
	switch {
	case !n.Exists:
		return "no longer exists"
	case n.Version == "" && !n.Ready:
		return fmt.Sprintf("reports no edgecore version (%q) and is NotReady", n.Reported)
	case n.Version == "":
		return fmt.Sprintf("reports no edgecore version (%q)", n.Reported)
	case !n.Ready:
		return fmt.Sprintf("reports %s and is NotReady", n.Version)
	}
	return "reports " + n.Version
}
