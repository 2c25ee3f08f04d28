package rollout

import (
	"fmt"
	"slices"
	"sort"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodeversion"
)

// initialize records the selection: every selected node gets its entry now,
// and nodes that cannot or need not be upgraded get their final entry at once.
func (p *planner) initialize() {
	names := slices.Clone(p.in.Selection)
	sort.Strings(names)
	names = slices.Compact(names)
	if why := tooLarge(names, p.in.ObjectBytes); why != "" && !p.in.Sharded {
		// Not one entry is written: they are what would not fit.
		p.setJobState(v1alpha1.StateUpgrading, v1alpha1.EventInit)
		n := int32(len(names))
		p.status.Counts = v1alpha1.NodeCounts{Selected: n, NotAttempted: n}
		p.status.Progress = fmt.Sprintf("%d/%d", n, n)
		p.warningEvent(ReasonJobRefused, "", "Job refused: %s", why)
		p.finish(v1alpha1.StateFailed, "refused: "+why)
		return
	}
	p.status.NodeStatus = make([]v1alpha1.TaskStatus, 0, len(names))
	p.status.HistoricVersion = p.versionsOf(names)
	p.setJobState(v1alpha1.StateUpgrading, v1alpha1.EventInit)
	for _, name := range names {
		p.status.NodeStatus = append(p.status.NodeStatus, v1alpha1.TaskStatus{NodeName: name, Event: v1alpha1.EventInit})
	}
	if p.in.Config.Refusal != "" {
		return // refuse, next, gives every entry its NotAttempted state
	}
	for i := range p.status.NodeStatus {
		p.settleIfNeedless(&p.status.NodeStatus[i])
	}
	p.markCanary()
	p.normalEvent(ReasonStarted, "", "Upgrading %d nodes selected by %s to %s", len(names), p.in.SelectionSource, p.in.Config.TargetVersion)
}

// refuse applies Config.Refusal, the controller's verdict that it will not
// run this job's upgrades (an image repository it does not allow, a spec it
// cannot read), whether it comes on the first plan or later, say after a
// restart under a stricter allow-list: no node starts and nothing is judged
// about the pending nodes, which are NotAttempted; an in-flight node whose pod
// was never created fails, since with the job refused it will not be; the
// pods that run finish and are followed as usual. summarize gives the job
// its final reason.
func (p *planner) refuse() {
	refused := false
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		switch _, hasPod := p.in.Pods[e.NodeName]; {
		case e.State == v1alpha1.StateNone:
			e.State, e.Reason, e.Time = v1alpha1.StateNotAttempted, "not attempted: the job was refused", p.stamp()
			refused = true
		case NodeInFlight(e.State) && !hasPod:
			p.fail(e, failure{at: e.Event, why: "refused: " + p.in.Config.Refusal})
			refused = true
		case e.State == v1alpha1.StateWaitingConfirmation:
			// Its pod waits: nothing on the node changed (planCleanup
			// deletes the pod).
			e.State, e.Reason, e.Time = v1alpha1.StateNotAttempted, "not attempted: the job was refused while the node waited for its confirmation", p.stamp()
			refused = true
		}
	}
	if refused || p.in.Status.State == v1alpha1.StateNone { // told once: when it takes effect, or at once for a new job
		p.warningEvent(ReasonJobRefused, "", "Job refused: %s", p.in.Config.Refusal)
	}
}

// settleIfNeedless gives a pending node its final entry when it cannot or
// need not be upgraded: it does not exist or is no edge node (Skipped, as
// KubeEdge's own controller skips them: a selector that also matches cloud
// nodes, or a typo in nodeNames, must not fail the fleet's job), or it
// already runs the target version (Successful). It reports whether it did.
// It runs at initialize and again before each dispatch round, since a node
// may change while it waits.
func (p *planner) settleIfNeedless(e *v1alpha1.TaskStatus) bool {
	node, ok := p.in.Nodes[e.NodeName]
	switch {
	case !ok || !node.Exists:
		p.skip(e, "skipped: node not found")
		p.warningEvent(ReasonNodeSkipped, e.NodeName, "Node %s skipped: no Node has this name", e.NodeName)
	case !node.Edge:
		p.skip(e, fmt.Sprintf("skipped: not an edge node (no label %s)", p.in.Config.EdgeNodeLabel))
		p.normalEvent(ReasonNodeSkipped, e.NodeName, "Node %s skipped: not an edge node (no label %s)", e.NodeName, p.in.Config.EdgeNodeLabel)
	case node.OptedOut:
		p.skip(e, fmt.Sprintf("skipped: the node opts out of upgrades (label %s=true)", v1alpha1.LabelOptOut))
		p.normalEvent(ReasonNodeSkipped, e.NodeName, "Node %s skipped: it opts out of upgrades (label %s=true)", e.NodeName, v1alpha1.LabelOptOut)
	case nodeversion.AtLeast(node.Version, p.in.Config.TargetVersion):
		e.State, e.Action, e.Time = v1alpha1.StateSuccessful, v1alpha1.ActionSuccess, p.stamp()
		e.Reason = fmt.Sprintf("skipped: already at %s", node.Version)
		p.normalEvent(ReasonNodeSkipped, e.NodeName, "Node %s skipped: already at %s", e.NodeName, node.Version)
	default:
		return false
	}
	return true
}

func (p *planner) skip(e *v1alpha1.TaskStatus, reason string) {
	p.skipped++
	e.State, e.Action, e.Event, e.Reason, e.Time = v1alpha1.StateSkipped, "", v1alpha1.EventInit, reason, p.stamp()
}
