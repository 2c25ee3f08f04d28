package rollout

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// maxVersionsShown bounds the version lists in status.
const maxVersionsShown = 4

// summarize derives the job's counters, versions, conditions and final state
// from its nodes. It counts once; finish only names the outcome.
func (p *planner) summarize() {
	c := tally(p.status.NodeStatus)
	p.status.Counts = c
	p.status.Progress = fmt.Sprintf("%d/%d", finished(c), c.Selected)
	p.status.CurrentVersion = p.versionsOf(nodeNames(p.status.NodeStatus))
	// While the canary wave holds the job, a failure pauses it (canary.go).
	exceeded := p.in.Config.exceeded(judged(c, p.status.NodeStatus)) && !p.canaryHolds()
	eligible := c.Selected - c.Skipped
	before := tally(p.in.Status.NodeStatus)
	if decile(before) < decile(c) && decile(c) < 10 {
		p.normalEvent(ReasonProgress, "", "Progress %d%%: %d of %d nodes finished (%d succeeded, %d failed)",
			decile(c)*10, finished(c), c.Selected, c.Succeeded, c.Failed)
	}
	if exceeded && !p.in.Config.exceeded(judged(before, p.in.Status.NodeStatus)) {
		p.warningEvent(ReasonToleranceExceeded, "", "Stopped dispatching: %d of %d nodes failed, more than failureTolerate %s",
			c.Failed, eligible, p.in.Config.Tolerance.FloatString(3))
	}
	if c.Pending > 0 || c.InFlight > 0 || c.WaitingConfirmation > 0 {
		reason := fmt.Sprintf("upgrading: %d succeeded, %d failed, %d in flight, %d pending", c.Succeeded, c.Failed, c.InFlight, c.Pending)
		if c.WaitingConfirmation > 0 {
			reason += fmt.Sprintf(", %d waiting for confirmation", c.WaitingConfirmation)
		}
		if p.waiting > 0 {
			reason += fmt.Sprintf(", %d waiting for their maintenance window (next opens at %s)", p.waiting, p.status.NextWindow)
		}
		switch {
		case p.in.Config.Refusal != "":
			reason = fmt.Sprintf("stopping: refused: %s; waiting for %d in flight", p.in.Config.Refusal, c.InFlight)
		case exceeded:
			reason = fmt.Sprintf("stopping: %d of %d nodes failed (more than failureTolerate %s); waiting for %d in flight",
				c.Failed, eligible, p.toleranceText(), c.InFlight)
		}
		if why := p.in.Config.DigestsUnresolved; why != "" && !p.in.Config.Suspended && !exceeded && p.in.Config.Refusal == "" {
			reason = fmt.Sprintf("%s; %d pending start once they are read", why, c.Pending)
		}
		p.setSuspended(c)
		if p.in.Config.Suspended {
			if !exceeded && p.in.Config.Refusal == "" {
				reason = fmt.Sprintf("suspended: %d succeeded, %d failed, %d in flight, %d pending; no node starts until spec.suspend is false",
					c.Succeeded, c.Failed, c.InFlight, c.Pending)
				if cond := meta.FindStatusCondition(p.status.Conditions, v1alpha1.ConditionCanary); p.canaryHolds() && cond.Reason != v1alpha1.CanaryInProgress {
					reason = "suspended after the canary wave: " + cond.Message
				}
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
		within := "within failureTolerate " + p.toleranceText()
		if n := canaryFailures(p.status.NodeStatus); n > 0 {
			within += fmt.Sprintf(", which leaves out the %d of the canary wave, judged when the job was resumed", n)
		}
		p.finish(v1alpha1.StateSuccessful, fmt.Sprintf("completed: %d of %d nodes upgraded, %d failed (%s)",
			c.Succeeded, eligible, c.Failed, within)+skippedText(c))
	default:
		p.finish(v1alpha1.StateSuccessful, fmt.Sprintf("completed: all %d nodes run %s", eligible, p.in.Config.TargetVersion)+skippedText(c))
	}
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
		case e.State == v1alpha1.StateWaitingConfirmation:
			c.WaitingConfirmation++
		default:
			c.Pending++
		}
	}
	return c
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
		p.normalEvent(ReasonSuspended, "", "Job suspended: no node starts until spec.suspend is false; %d in flight finish, %d pending wait",
			c.InFlight, c.Pending)
	case !p.in.Config.Suspended && was:
		p.setCondition(v1alpha1.ConditionSuspended, metav1.ConditionFalse, ReasonResumed, "spec.suspend is false")
		p.normalEvent(ReasonResumed, "", "Job resumed: %d pending, %d in flight", c.Pending, c.InFlight)
	}
}

// finish gives the job its final state and reason; the counters are set
// before it by whoever counted.
func (p *planner) finish(state, reason string) {
	if meta.IsStatusConditionTrue(p.status.Conditions, v1alpha1.ConditionSuspended) {
		// Finished while suspended (nothing was left to start): nothing is
		// held any more, whatever spec.suspend says.
		p.setCondition(v1alpha1.ConditionSuspended, metav1.ConditionFalse, "Finished", "the job finished: no node was left to start")
	}
	p.setJobState(state, p.status.Event)
	p.status.Reason = reason
	p.setCondition(v1alpha1.ConditionProgressing, metav1.ConditionFalse, state, reason)
	if state == v1alpha1.StateSuccessful {
		p.status.Action = v1alpha1.ActionSuccess
		p.setCondition(v1alpha1.ConditionComplete, metav1.ConditionTrue, "Completed", reason)
		p.normalEvent(ReasonJobCompleted, "", "Job completed: %s", reason)
		return
	}
	p.status.Action = v1alpha1.ActionFailure
	p.setCondition(v1alpha1.ConditionFailed, metav1.ConditionTrue, "Failed", reason)
	p.warningEvent(ReasonJobFailed, "", "Job failed: %s", reason)
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
