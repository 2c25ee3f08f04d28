package rollout

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodeversion"
)

// maxVersionsShown bounds the version lists in status.
const maxVersionsShown = 4

// NodeFinal reports whether a node's state is an end state.
func NodeFinal(state string) bool {
	switch state {
	case v1alpha1.StateSuccessful, v1alpha1.StateFailed, v1alpha1.StateNotAttempted, v1alpha1.StateSkipped:
		return true
	}
	return false
}

// NodeInFlight reports whether a node holds a concurrency slot. This
// controller no longer reports RollingBack (a rollback shows in the node's
// final status), but a status written by an earlier version may hold it.
func NodeInFlight(state string) bool {
	switch state {
	case v1alpha1.StateInit, v1alpha1.StateChecking, v1alpha1.StateBackingUp,
		v1alpha1.StateUpgrading, v1alpha1.StateRollingBack:
		return true
	}
	return false
}

// JobFinal reports whether a job's state is an end state.
func JobFinal(state string) bool {
	return state == v1alpha1.StateSuccessful || state == v1alpha1.StateFailed
}

// Decide computes the next plan. It never mutates its input.
func Decide(in Input) Plan {
	p := &planner{in: in, now: in.Now.UTC().Truncate(time.Second)}
	p.status = *in.Status.DeepCopy()
	if p.status.State == v1alpha1.StateNone && len(p.status.NodeStatus) == 0 {
		p.initialize()
	}
	if !JobFinal(p.status.State) {
		p.progressInFlight()
		p.startPending()
		p.summarize()
	}
	// A plan's write that succeeds ends an earlier write failure.
	meta.RemoveStatusCondition(&p.status.Conditions, v1alpha1.ConditionStatusWriteFailed)
	p.fitStatus()
	p.cleanupPods()
	p.plan.Status = p.status
	p.plan.Finished = JobFinal(p.status.State)
	return p.plan
}

// Cleanup is the part of a plan that needs no status write: releasing and
// deleting the pods whose outcome status already records. The controller
// runs it when it cannot write the status, so pods that are done still go.
func Cleanup(status v1alpha1.NodeUpgradeJobStatus, pods map[string]PodView) Plan {
	p := &planner{in: Input{Status: status, Pods: pods}, status: status}
	p.cleanupPods()
	return p.plan
}

type planner struct {
	in     Input
	now    time.Time
	status v1alpha1.NodeUpgradeJobStatus
	plan   Plan
	// failed and skipped count failed and skipped nodes as the plan goes,
	// so the tolerance check before each dispatch costs nothing at fleet
	// scale.
	failed, skipped int
}

func (p *planner) stamp() string { return p.now.Format(time.RFC3339) }

func (p *planner) event(warning bool, reason, node, format string, args ...any) {
	p.plan.Events = append(p.plan.Events, Event{Warning: warning, Reason: reason, Node: node, Message: fmt.Sprintf(format, args...)})
}

// wakeAt asks to plan again at t, when a deadline passes.
func (p *planner) wakeAt(t time.Time) {
	d := t.Sub(p.now)
	if d <= 0 {
		d = time.Second
	}
	if p.plan.RequeueAfter == 0 || d < p.plan.RequeueAfter {
		p.plan.RequeueAfter = d
	}
}

// initialize records the selection: every selected node gets its entry now,
// and nodes that cannot or need not be upgraded get their final entry at once.
func (p *planner) initialize() {
	names := slices.Clone(p.in.Selection)
	sort.Strings(names)
	names = slices.Compact(names)
	if why := tooLarge(names, p.in.ObjectBytes); why != "" {
		// Not one entry is written: they are what would not fit.
		p.setJobState(v1alpha1.StateUpgrading, v1alpha1.EventInit)
		p.finish(v1alpha1.StateFailed, "refused: "+why)
		n := int32(len(names))
		p.status.Counts = v1alpha1.NodeCounts{Selected: n, NotAttempted: n}
		p.status.Progress = fmt.Sprintf("%d/%d", n, n)
		p.event(true, ReasonJobRefused, "", "Job refused: %s", why)
		return
	}
	p.status.NodeStatus = make([]v1alpha1.TaskStatus, 0, len(names))
	p.status.HistoricVersion = p.versionsOf(names)
	p.setJobState(v1alpha1.StateUpgrading, v1alpha1.EventInit)
	if p.in.Config.Refusal != "" {
		for _, name := range names {
			p.status.NodeStatus = append(p.status.NodeStatus, v1alpha1.TaskStatus{
				NodeName: name, State: v1alpha1.StateNotAttempted, Event: v1alpha1.EventInit,
				Reason: "not attempted: the job was refused", Time: p.stamp(),
			})
		}
		p.finish(v1alpha1.StateFailed, "refused: "+p.in.Config.Refusal)
		p.event(true, ReasonJobRefused, "", "Job refused: %s", p.in.Config.Refusal)
		return
	}
	for _, name := range names {
		entry := v1alpha1.TaskStatus{NodeName: name, Event: v1alpha1.EventInit}
		p.settleIfNeedless(&entry)
		p.status.NodeStatus = append(p.status.NodeStatus, entry)
	}
	p.event(false, ReasonStarted, "", "Upgrading %d nodes selected by %s to %s", len(names), p.in.SelectionSource, p.in.Config.TargetVersion)
}

// settleIfNeedless gives a pending node its final entry when it cannot or
// need not be upgraded: it does not exist or is no edge node (Skipped, as
// KubeEdge's own controller skips them: a selector that also matches cloud
// nodes, or a typo in nodeNames, must not fail the fleet's job), or it
// already runs the target version (Successful). It reports whether it did.
func (p *planner) settleIfNeedless(e *v1alpha1.TaskStatus) bool {
	node, ok := p.in.Nodes[e.NodeName]
	switch {
	case !ok || !node.Exists:
		p.skip(e, "skipped: node not found")
		p.event(true, ReasonNodeSkipped, e.NodeName, "Node %s skipped: no Node has this name", e.NodeName)
	case !node.Edge:
		p.skip(e, fmt.Sprintf("skipped: not an edge node (no label %s)", p.in.Config.EdgeNodeLabel))
		p.event(false, ReasonNodeSkipped, e.NodeName, "Node %s skipped: not an edge node (no label %s)", e.NodeName, p.in.Config.EdgeNodeLabel)
	case nodeversion.AtLeast(node.Version, p.in.Config.TargetVersion):
		e.State, e.Action, e.Time = v1alpha1.StateSuccessful, v1alpha1.ActionSuccess, p.stamp()
		e.Reason = fmt.Sprintf("skipped: already at %s", node.Version)
		p.event(false, ReasonNodeSkipped, e.NodeName, "Node %s skipped: already at %s", e.NodeName, node.Version)
	default:
		return false
	}
	return true
}

func (p *planner) skip(e *v1alpha1.TaskStatus, reason string) {
	p.skipped++
	e.State, e.Action, e.Event, e.Reason, e.Time = v1alpha1.StateSkipped, "", v1alpha1.EventInit, reason, p.stamp()
}

func (p *planner) fail(e *v1alpha1.TaskStatus, action, event, reason string) {
	p.failed++
	e.State, e.Action, e.Event, e.Reason, e.Time = v1alpha1.StateFailed, action, event, reason, p.stamp()
	if action == v1alpha1.ActionTimeOut {
		p.event(true, ReasonNodeTimedOut, e.NodeName, "Node %s timed out: %s", e.NodeName, reason)
		return
	}
	p.event(true, ReasonNodeFailed, e.NodeName, "Node %s failed: %s", e.NodeName, reason)
}

// progressInFlight follows every dispatched node: its pod's phase, its
// outcome, its verification and its deadline.
func (p *planner) progressInFlight() {
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		if !NodeInFlight(e.State) {
			continue
		}
		dispatched, err := time.Parse(time.RFC3339, e.Time)
		if err != nil {
			// A dispatch time we cannot read (hand-edited status) starts the
			// clock now rather than failing or never timing out.
			dispatched, e.Time = p.now, p.stamp()
		}
		deadline := dispatched.Add(p.in.Config.Timeout)
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
		case !p.now.Before(deadline):
			last := e.State
			if !hasPod {
				last = "upgrade pod not created"
			}
			p.fail(e, v1alpha1.ActionTimeOut, v1alpha1.EventTimeOut,
				fmt.Sprintf("did not finish within %s (last seen: %s)", p.in.Config.Timeout, last))
		case !hasPod && p.in.Config.Refusal != "":
			p.fail(e, v1alpha1.ActionFailure, e.Event, "refused: "+p.in.Config.Refusal)
		case !hasPod:
			// Dispatched but not observed: the pod is being created, or the
			// controller stopped between recording the dispatch and creating
			// the pod. Creating it again is idempotent (its name is fixed).
			p.plan.Dispatch = append(p.plan.Dispatch, Dispatch{Node: e.NodeName, FromVersion: p.in.Nodes[e.NodeName].Version, Deadline: deadline})
			p.wakeAt(deadline)
		default:
			e.State, e.Event = phaseState(pod.Phase)
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

// startPending dispatches pending nodes in name order while slots are free
// and failures are within tolerance; it defers NotReady nodes without giving
// them a slot, and stops the job when tolerance is exceeded.
func (p *planner) startPending() {
	counts := tally(p.status.NodeStatus)
	p.failed, p.skipped = int(counts.Failed), int(counts.Skipped)
	// Settle every failure this plan can see before the first dispatch, so
	// that no node starts in a plan that also finds tolerance exceeded.
	// A suspended job's deferrals do not expire: see holdPending.
	for i := range p.status.NodeStatus {
		if e := &p.status.NodeStatus[i]; e.State == v1alpha1.StateNone && !p.settleIfNeedless(e) && !p.in.Config.Suspended {
			p.expireDeferral(e)
		}
	}
	free := p.in.Config.Concurrency - int(counts.InFlight) - p.draining()
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		if e.State != v1alpha1.StateNone {
			continue
		}
		if p.in.Config.Refusal != "" {
			// The controller now refuses a job it started under other rules
			// (say a stricter image allow-list after a restart): nothing new
			// starts, what runs finishes.
			e.State, e.Time = v1alpha1.StateNotAttempted, p.stamp()
			e.Reason = "not attempted: the job was refused"
			continue
		}
		if p.stopped() {
			e.State, e.Time = v1alpha1.StateNotAttempted, p.stamp()
			e.Reason = "not attempted: the job stopped on failureTolerate"
			continue
		}
		if p.in.Config.Suspended {
			holdPending(e)
			continue
		}
		node := p.in.Nodes[e.NodeName]
		if why := waitReason(node); why != "" {
			p.deferNode(e, free > 0, why)
			continue
		}
		if e.Time != "" { // was deferred, is Ready again
			e.Time, e.Reason = "", ""
		}
		if free <= 0 {
			continue
		}
		free--
		deadline := p.now.Add(p.in.Config.Timeout)
		e.State, e.Event, e.Action, e.Reason, e.Time = v1alpha1.StateInit, v1alpha1.EventInit, "", "", p.stamp()
		p.plan.Dispatch = append(p.plan.Dispatch, Dispatch{Node: e.NodeName, FromVersion: node.Version, Deadline: deadline})
		p.event(false, ReasonDispatched, e.NodeName, "Node %s dispatched: upgrading %s to %s", e.NodeName, node.Version, p.in.Config.TargetVersion)
		p.wakeAt(deadline)
		p.status.Event = v1alpha1.EventUpgrade
	}
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
		if pod, ok := p.in.Pods[e.NodeName]; ok && !pod.Deleting && pod.Phase != PodSucceeded && pod.Phase != PodFailed {
			n++
		}
	}
	return n
}

// waitReason says why a pending node cannot start now, as its reason in
// status ("" when it can): it is NotReady, or another job's upgrade pod
// still exists on it (running, rolling back, or being deleted).
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
		p.event(true, ReasonNodeDeferred, e.NodeName, "Node %s %s", e.NodeName, why)
	}
	e.Reason = why
	p.wakeAt(p.deferredSince(e).Add(p.in.Config.Timeout))
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
	if !p.now.Before(p.deferredSince(e).Add(p.in.Config.Timeout)) {
		why := fmt.Sprintf("node stayed NotReady for %s", p.in.Config.Timeout)
		if node.Ready {
			why = fmt.Sprintf("node stayed busy with job %s's upgrade pod for %s", node.BusyWith, p.in.Config.Timeout)
		}
		p.fail(e, v1alpha1.ActionFailure, v1alpha1.EventInit, why)
	}
}

func (p *planner) deferredSince(e *v1alpha1.TaskStatus) time.Time {
	since, err := time.Parse(time.RFC3339, e.Time)
	if err != nil {
		since, e.Time = p.now, p.stamp()
	}
	return since
}

func (p *planner) stopped() bool {
	return p.in.Config.ToleranceExceeded(p.failed, len(p.status.NodeStatus)-p.skipped)
}

// exceeded applies failureTolerate to counts: skipped nodes are outside
// the ratio, which is of the nodes the job can upgrade.
func (c Config) exceeded(n v1alpha1.NodeCounts) bool {
	return c.ToleranceExceeded(int(n.Failed), int(n.Selected-n.Skipped))
}

func tally(entries []v1alpha1.TaskStatus) v1alpha1.NodeCounts {
	var c v1alpha1.NodeCounts
	c.Selected = int32(len(entries))
	for i := range entries {
		switch e := &entries[i]; {
		case e.State == v1alpha1.StateSuccessful:
			c.Succeeded++
		case e.State == v1alpha1.StateFailed:
			c.Failed++
		case e.State == v1alpha1.StateNotAttempted:
			c.NotAttempted++
		case e.State == v1alpha1.StateSkipped:
			c.Skipped++
		case NodeInFlight(e.State):
			c.InFlight++
		default:
			c.Pending++
		}
	}
	return c
}

// summarize derives the job's counters, versions, conditions and final state
// from its nodes.
func (p *planner) summarize() {
	c := tally(p.status.NodeStatus)
	p.status.Counts = c
	p.status.Progress = fmt.Sprintf("%d/%d", finished(c), c.Selected)
	p.status.CurrentVersion = p.versionsOf(nodeNames(p.status.NodeStatus))
	exceeded := p.in.Config.exceeded(c)
	eligible := c.Selected - c.Skipped
	before := tally(p.in.Status.NodeStatus)
	if decile(before) < decile(c) && decile(c) < 10 {
		p.event(false, ReasonProgress, "", "Progress %d%%: %d of %d nodes finished (%d succeeded, %d failed)",
			decile(c)*10, finished(c), c.Selected, c.Succeeded, c.Failed)
	}
	if exceeded && !p.in.Config.exceeded(before) {
		p.event(true, ReasonToleranceExceeded, "", "Stopped dispatching: %d of %d nodes failed, more than failureTolerate %s",
			c.Failed, eligible, p.in.Config.Tolerance.FloatString(3))
	}
	if c.Pending > 0 || c.InFlight > 0 {
		reason := fmt.Sprintf("upgrading: %d succeeded, %d failed, %d in flight, %d pending", c.Succeeded, c.Failed, c.InFlight, c.Pending)
		if exceeded {
			reason = fmt.Sprintf("stopping: %d of %d nodes failed (more than failureTolerate %s); waiting for %d in flight",
				c.Failed, eligible, p.toleranceText(), c.InFlight)
		}
		p.setSuspended(c)
		if p.in.Config.Suspended {
			if !exceeded {
				reason = fmt.Sprintf("suspended: %d succeeded, %d failed, %d in flight, %d pending; no node starts until spec.suspend is false",
					c.Succeeded, c.Failed, c.InFlight, c.Pending)
			}
			p.setJobState(v1alpha1.StateSuspended, p.status.Event)
			p.status.Reason = reason
			// As a paused Deployment's: whether it progresses is up to the user.
			p.setCondition(v1alpha1.ConditionProgressing, metav1.ConditionUnknown, v1alpha1.ConditionSuspended, "spec.suspend is true")
			return
		}
		p.setJobState(v1alpha1.StateUpgrading, p.status.Event)
		p.status.Reason = reason
		p.setCondition(v1alpha1.ConditionProgressing, metav1.ConditionTrue, "Upgrading", "Nodes are being upgraded")
		return
	}
	switch {
	case p.in.Config.Refusal != "":
		p.finish(v1alpha1.StateFailed, "refused: "+p.in.Config.Refusal)
	case c.Selected == 0:
		p.finish(v1alpha1.StateFailed, "no node selected by "+p.in.SelectionSource)
	case eligible == 0:
		p.finish(v1alpha1.StateFailed, fmt.Sprintf("no edge node to upgrade: all %d nodes selected by %s were skipped", c.Selected, p.in.SelectionSource))
	case exceeded:
		p.finish(v1alpha1.StateFailed, fmt.Sprintf("failed: %d of %d nodes failed, more than failureTolerate %s; %d succeeded, %d not attempted",
			c.Failed, eligible, p.toleranceText(), c.Succeeded, c.NotAttempted)+skippedText(c))
	case c.Succeeded == 0:
		p.finish(v1alpha1.StateFailed, fmt.Sprintf("failed: none of %d nodes was upgraded", eligible)+skippedText(c))
	case c.Failed > 0:
		p.finish(v1alpha1.StateSuccessful, fmt.Sprintf("completed: %d of %d nodes upgraded, %d failed (within failureTolerate %s)",
			c.Succeeded, eligible, c.Failed, p.toleranceText())+skippedText(c))
	default:
		p.finish(v1alpha1.StateSuccessful, fmt.Sprintf("completed: all %d nodes run %s", eligible, p.in.Config.TargetVersion)+skippedText(c))
	}
}

// finished counts the nodes with a final entry.
func finished(c v1alpha1.NodeCounts) int32 {
	return c.Succeeded + c.Failed + c.NotAttempted + c.Skipped
}

// skippedText tells a final reason about skipped nodes, which the counts
// before it leave out.
func skippedText(c v1alpha1.NodeCounts) string {
	if c.Skipped == 0 {
		return ""
	}
	return fmt.Sprintf("; %d skipped (not edge nodes or not found)", c.Skipped)
}

// decile is how many tenths of the nodes are finished, for progress events
// that stay few however large the job.
func decile(c v1alpha1.NodeCounts) int32 {
	if c.Selected == 0 {
		return 0
	}
	return finished(c) * 10 / c.Selected
}

func (p *planner) toleranceText() string {
	return strings.TrimRight(strings.TrimRight(p.in.Config.Tolerance.FloatString(6), "0"), ".")
}

// setSuspended keeps the Suspended condition in step with spec.suspend on an
// unfinished job, with an event at each change. A job never suspended gets
// no condition, so its status stays what it was before the field existed.
func (p *planner) setSuspended(c v1alpha1.NodeCounts) {
	was := meta.IsStatusConditionTrue(p.status.Conditions, v1alpha1.ConditionSuspended)
	switch {
	case p.in.Config.Suspended && !was:
		p.setCondition(v1alpha1.ConditionSuspended, metav1.ConditionTrue, v1alpha1.ConditionSuspended,
			"spec.suspend is true: no node is started; nodes in flight finish")
		p.event(false, ReasonSuspended, "", "Job suspended: no node starts until spec.suspend is false; %d in flight finish, %d pending wait",
			c.InFlight, c.Pending)
	case !p.in.Config.Suspended && was:
		p.setCondition(v1alpha1.ConditionSuspended, metav1.ConditionFalse, ReasonResumed, "spec.suspend is false")
		p.event(false, ReasonResumed, "", "Job resumed: %d pending, %d in flight", c.Pending, c.InFlight)
	}
}

func (p *planner) finish(state, reason string) {
	if meta.IsStatusConditionTrue(p.status.Conditions, v1alpha1.ConditionSuspended) {
		// Finished while suspended (nothing was left to start): nothing is
		// held any more, whatever spec.suspend says.
		p.setCondition(v1alpha1.ConditionSuspended, metav1.ConditionFalse, "Finished", "the job finished: no node was left to start")
	}
	p.status.Counts = tally(p.status.NodeStatus)
	c := p.status.Counts
	p.status.Progress = fmt.Sprintf("%d/%d", finished(c), c.Selected)
	p.status.CurrentVersion = p.versionsOf(nodeNames(p.status.NodeStatus))
	p.setJobState(state, p.status.Event)
	p.status.Reason = reason
	p.setCondition(v1alpha1.ConditionProgressing, metav1.ConditionFalse, state, reason)
	if state == v1alpha1.StateSuccessful {
		p.status.Action = v1alpha1.ActionSuccess
		p.setCondition(v1alpha1.ConditionComplete, metav1.ConditionTrue, "Completed", reason)
		p.event(false, ReasonJobCompleted, "", "Job completed: %s", reason)
		return
	}
	p.status.Action = v1alpha1.ActionFailure
	p.setCondition(v1alpha1.ConditionFailed, metav1.ConditionTrue, "Failed", reason)
	p.event(true, ReasonJobFailed, "", "Job failed: %s", reason)
}

func (p *planner) setJobState(state, event string) {
	if p.status.State != state {
		p.status.State, p.status.Time = state, p.stamp()
	}
	p.status.Event = event
}

func (p *planner) setCondition(typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&p.status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message,
		ObservedGeneration: p.in.Generation, LastTransitionTime: metav1.NewTime(p.now),
	})
}

// versionsOf lists the distinct edgecore versions the named nodes report.
func (p *planner) versionsOf(names []string) string {
	seen := map[string]bool{}
	for _, name := range names {
		if n, ok := p.in.Nodes[name]; ok && n.Exists && n.Version != "" {
			seen[n.Version] = true
		}
	}
	versions := make([]string, 0, len(seen))
	for v := range seen {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	if len(versions) > maxVersionsShown {
		versions = append(versions[:maxVersionsShown], "...")
	}
	return strings.Join(versions, ",")
}

func nodeNames(entries []v1alpha1.TaskStatus) []string {
	names := make([]string, len(entries))
	for i := range entries {
		names[i] = entries[i].NodeName
	}
	return names
}

// cleanupPods lets go of pods whose outcome is recorded: the tracking
// finalizer comes off, pods of upgraded or cancelled nodes are deleted, and
// the terminated pods of failed nodes stay for their logs until the job is
// deleted. It runs in every plan, so a cleanup that failed is retried.
func (p *planner) cleanupPods() {
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		pod, ok := p.in.Pods[e.NodeName]
		if !ok || !NodeFinal(e.State) {
			continue
		}
		if pod.Tracked {
			p.plan.Release = append(p.plan.Release, e.NodeName)
		}
		terminated := pod.Phase == PodSucceeded || pod.Phase == PodFailed
		keepForLogs := terminated && e.Action != v1alpha1.ActionSuccess
		if !pod.Deleting && !keepForLogs {
			p.plan.Delete = append(p.plan.Delete, e.NodeName)
		}
	}
}
