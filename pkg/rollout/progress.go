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
		dispatched := ReadEntryTime(e).Dispatched
		if dispatched.IsZero() {
			// A dispatch time we cannot read (hand-edited status) starts the
			// clock now rather than failing or never timing out.
			dispatched, e.Time = p.now, p.stamp()
		}
		deadline := p.deadline(dispatched)
		pod, hasPod := p.in.Pods[e.NodeName]
		switch {
		case hasPod && pod.Phase == PodSucceeded:
			p.verify(e, deadline)
		case hasPod && pod.Deleting:
			// Checked before Failed: a kubelet that kills a deleted pod also
			// marks it Failed, and the deletion is the cause worth telling.
			reason := "upgrade pod was deleted before it finished"
			if pod.Reason != "" {
				reason += " (" + pod.Reason + ")"
			}
			p.fail(e, v1alpha1.ActionFailure, e.Event, reason)
		case hasPod && pod.Phase == PodFailed:
			p.fail(e, v1alpha1.ActionFailure, pod.FailedEvent, pod.Reason)
		case hasPod && pod.Pull == PullRefused:
			p.followPull(e, pod)
		case !p.now.Before(deadline):
			// What the pod shows now, not what the last plan recorded: the
			// step it hung in may be one the status never showed.
			last := "upgrade pod not created"
			if hasPod {
				last, _ = phaseState(pod.Phase)
			}
			p.fail(e, v1alpha1.ActionTimeOut, v1alpha1.EventTimeOut, p.timeoutReason(e, last))
		case !hasPod:
			// Dispatched but not observed: the pod is being created, or the
			// controller stopped between recording the dispatch and creating
			// the pod. Creating it again is idempotent (its name is fixed).
			p.plan.Dispatch = append(p.plan.Dispatch, Dispatch{Node: e.NodeName, FromVersion: p.in.Nodes[e.NodeName].Version, Deadline: deadline})
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

// phaseState maps a running pod's phase to the node's state and event.
func phaseState(phase PodPhase) (string, string) {
	switch phase {
	case PodChecking:
		return v1alpha1.StateChecking, v1alpha1.EventCheck
	case PodBackingUp:
		return v1alpha1.StateBackingUp, v1alpha1.EventBackUp
	case PodUpgrading:
		return v1alpha1.StateUpgrading, v1alpha1.EventUpgrade
	}
	return v1alpha1.StateInit, v1alpha1.EventInit
}

// verify counts a node whose pod succeeded as upgraded only once the node
// itself reports the target version and is Ready, within its deadline.
func (p *planner) verify(e *v1alpha1.TaskStatus, deadline time.Time) {
	node := p.in.Nodes[e.NodeName]
	target := p.in.Config.TargetVersion
	if node.Exists && node.Ready && nodeversion.AtLeast(node.Version, target) {
		// No reason on success: at 10,000 nodes every byte per entry counts
		// against etcd's request limit, and action and currentVersion say it.
		e.State, e.Event, e.Action, e.Time, e.Reason = v1alpha1.StateSuccessful, v1alpha1.EventUpgrade, v1alpha1.ActionSuccess, p.stamp(), ""
		p.event(false, ReasonNodeUpgraded, e.NodeName, "Node %s upgraded to %s", e.NodeName, node.Version)
		return
	}
	seen := describeNode(node)
	if !p.now.Before(deadline) {
		p.fail(e, v1alpha1.ActionFailure, v1alpha1.EventUpgrade,
			fmt.Sprintf("upgrade pod succeeded but within %s the node %s, not %s and Ready", p.in.Config.Timeout, seen, target))
		return
	}
	e.State, e.Event = v1alpha1.StateUpgrading, v1alpha1.EventUpgrade
	e.Reason = fmt.Sprintf("verifying: waiting for the node to report %s and Ready; it %s", target, seen)
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
