package rollout

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// startPending dispatches pending nodes in name order while slots are free
// and failures are within tolerance; it defers NotReady and busy nodes
// without giving them a slot, and stops the job when tolerance is exceeded.
// A refused job has no pending node left (see refuse).
func (p *planner) startPending() {
	counts := tally(p.status.NodeStatus)
	p.failed, p.skipped = int(counts.Failed)-canaryFailures(p.status.NodeStatus), int(counts.Skipped)
	// Settle every failure this plan can see before the first dispatch, so
	// that no node starts in a plan that also finds tolerance exceeded.
	// A suspended job's deferrals do not expire: see holdPending.
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		if e.State != v1alpha1.StateNone {
			continue
		}
		settled := p.settleIfNeedless(e)
		if !settled && !p.in.Config.Suspended && p.in.Config.DigestsUnresolved == "" {
			p.expireDeferral(e)
		}
	}
	p.followCanary()
	free := p.followWaiting(p.in.Config.Concurrency - int(counts.InFlight) - p.draining())
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		if e.State != v1alpha1.StateNone {
			continue
		}
		if p.stopped() {
			e.State, e.Time = v1alpha1.StateNotAttempted, p.stamp()
			e.Reason = "not attempted: the job stopped on failureTolerate"
			continue
		}
		if p.in.Config.Suspended || p.in.Config.DigestsUnresolved != "" || p.canaryRuns() && !e.Canary {
			holdPending(e)
			continue
		}
		node := p.in.Nodes[e.NodeName]
		if held, why := p.outsideWindow(e, node); held {
			continue
		} else if why != "" {
			p.fail(e, failure{at: v1alpha1.EventInit, why: why})
			continue
		}
		if why := waitReason(node); why != "" {
			p.deferNode(e, free > 0, why)
			continue
		}
		if e.Time != "" { // was deferred, is Ready again
			e.Time, e.Reason = "", ""
		}
		if free <= 0 || p.notStaged(e) {
			continue
		}
		digest, why := p.in.Config.pinnedDigest(node.Arch)
		if why != "" {
			p.fail(e, failure{at: v1alpha1.EventInit, why: why})
			continue
		}
		free--
		deadline := p.deadline(p.now)
		e.State, e.Event, e.Action, e.Reason, e.Time = v1alpha1.StateInit, v1alpha1.EventInit, "", "", p.stamp()
		p.plan.Dispatch = append(p.plan.Dispatch, Dispatch{Node: e.NodeName, FromVersion: node.Version, Deadline: deadline,
			Replaces: node.KeptPodOf, ImageDigest: digest})
		p.normalEvent(ReasonDispatched, e.NodeName, "Node %s dispatched: upgrading %s to %s", e.NodeName, node.Version, p.in.Config.TargetVersion)
		p.wakeAt(deadline)
		p.status.Event = v1alpha1.EventUpgrade
	}
	p.showWindow()
}

// outsideWindow holds a pending node outside its maintenance windows, as a
// suspension holds it (no clock runs: see holdPending), and notes when its
// next window opens. why is set when the node's zone label names no zone:
// its windows cannot be read, and it fails.
func (p *planner) outsideWindow(e *v1alpha1.TaskStatus, node NodeView) (held bool, why string) {
	if len(p.in.Config.Windows) == 0 {
		return false, ""
	}
	st, why := p.nodeWindow(node)
	if why != "" || st.open {
		return false, why
	}
	holdPending(e)
	p.waiting++
	if p.nextWindow.IsZero() || st.next.Before(p.nextWindow) {
		p.nextWindow = st.next
	}
	return true, ""
}

// showWindow shows the job waiting for a maintenance window: status
// nextWindow, the WaitingForWindow condition and, when the wait starts, an
// event; and wakes the job when the window opens (no polling).
func (p *planner) showWindow() {
	was := meta.IsStatusConditionTrue(p.status.Conditions, v1alpha1.ConditionWaitingForWindow)
	if p.waiting == 0 {
		p.status.NextWindow = ""
		if was {
			p.setCondition(v1alpha1.ConditionWaitingForWindow, metav1.ConditionFalse, ReasonWindowOpen, "no pending node waits for its maintenance window")
			p.normalEvent(ReasonWindowOpen, "", "Maintenance window open: pending nodes may start")
		}
		return
	}
	next := p.nextWindow.UTC().Format(time.RFC3339)
	msg := fmt.Sprintf("%d pending node(s) wait for their maintenance window; the next opens at %s", p.waiting, next)
	if !was || p.status.NextWindow != next {
		p.normalEvent(ReasonWaitingForWindow, "", "%s", msg)
	}
	p.status.NextWindow = next
	p.setCondition(v1alpha1.ConditionWaitingForWindow, metav1.ConditionTrue, ReasonWaitingForWindow, msg)
	p.wakeAt(p.nextWindow)
}

// holdPending keeps a pending node of a suspended job waiting without a
// clock. A deferral is a wait that starts when the node's turn comes (see
// deferNode); a suspension takes every node's turn away, so the wait is
// cleared and starts afresh, with the whole timeout, when its turn comes
// after the job is resumed. Otherwise a node NotReady or busy when the job
// was suspended would fail on resume for time that passed while the job
// itself held it back.
func holdPending(e *v1alpha1.TaskStatus) {
	e.Time, e.Reason = "", ""
}

// draining counts nodes that are final in status but whose pod still runs
// and is not yet being deleted: a timed-out node's pod until its deletion is
// under way. Such a pod keeps its slot, so a replacement never runs beside
// it and concurrency holds for the pods on the nodes, not only in status.
func (p *planner) draining() int {
	n := 0
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		if !NodeFinal(e.State) {
			continue
		}
		if pod, ok := p.in.Pods[e.NodeName]; ok && !pod.Deleting && !pod.Phase.Terminated() {
			n++
		}
	}
	return n
}

// waitReason says why a pending node cannot start now, as its reason in
// status ("" when it can): it is NotReady, or another job's upgrade pod
// still holds it (running, rolling back, being deleted, or not yet
// released by its job; see NodeView.BusyWith).
func waitReason(node NodeView) string {
	switch {
	case !node.Ready:
		return "deferred: node is NotReady"
	case node.BusyWith != "":
		return fmt.Sprintf("waiting: another upgrade is running on this node (job %s)", node.BusyWith)
	}
	return ""
}

// deferNode handles a pending node that cannot start (see waitReason). The
// wait starts when the node's turn comes (a slot is free for it);
// expireDeferral fails it once it has waited for the job's timeout.
func (p *planner) deferNode(e *v1alpha1.TaskStatus, itsTurn bool, why string) {
	if e.Time == "" {
		if !itsTurn {
			return
		}
		e.Time = p.stamp()
		p.warningEvent(ReasonNodeDeferred, e.NodeName, "Node %s %s", e.NodeName, why)
	}
	e.Reason = why
	p.restartUnreadableClock(e)
	p.wakeAt(p.deadline(ReadEntryTime(e).DeferredSince))
	if p.in.Nodes[e.NodeName].BusyWith != "" {
		// A node turning Ready wakes the job through its Node's event; the
		// other job's pod going away does not (it is not this job's pod), so
		// look again soon. Measured on a real cluster: a job created just
		// after another ended waited on the other's deleting pod until its
		// own timeout.
		p.wakeAt(p.now.Add(BusyRecheck))
	}
}

// BusyRecheck is how often a job looks again at a node another job's
// upgrade pod holds.
const BusyRecheck = 5 * time.Second

// expireDeferral fails a deferred node that still cannot start at the end
// of its wait.
func (p *planner) expireDeferral(e *v1alpha1.TaskStatus) {
	node := p.in.Nodes[e.NodeName]
	if e.Time == "" || waitReason(node) == "" {
		return
	}
	p.restartUnreadableClock(e)
	if !p.now.Before(p.deadline(ReadEntryTime(e).DeferredSince)) {
		why := fmt.Sprintf("node stayed NotReady for %s", p.in.Config.Timeout)
		if node.Ready {
			why = fmt.Sprintf("node stayed busy with job %s's upgrade pod for %s", node.BusyWith, p.in.Config.Timeout)
		}
		p.fail(e, failure{at: v1alpha1.EventInit, why: why})
	}
}

// stopped reports whether failureTolerate is exceeded by the failures this
// plan has counted so far.
func (p *planner) stopped() bool {
	return !p.canaryHolds() && p.in.Config.ToleranceExceeded(p.failed, len(p.status.NodeStatus)-p.skipped)
}

// noDigestFor says why a node of a job that pins its image by digest
// cannot start: no digest fits its architecture.
func noDigestFor(arch string, digests map[string]string) string {
	given := slices.Sorted(maps.Keys(digests))
	if arch == "" {
		arch = "unknown (no kubernetes.io/arch label)"
	}
	return fmt.Sprintf("nothing was run: spec.imageDigestGatter pins the install image for %v only, not for the node's architecture %s",
		given, arch)
}
