package rollout

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodeversion"
)

// The health gate (spec.healthGate). Without it a node counts as upgraded
// the moment it reports the target version and Ready (verify). With it, that
// moment starts its soak instead:
//
//	Upgrading --(on the target and Ready)--> Verifying (its slot held, its
//	entry's time the soak's start)
//	Verifying --(still on the target and Ready at the soak's end, and the
//	selected pods on it Running and Ready)--> Successful
//	Verifying --(NotReady, gone or off the target during the soak, or the
//	selected pods not Running and Ready at its end)--> RollingBack (event
//	HealthGate, its clock the job's timeout from then): the node's
//	rollback pod runs keadm rollback edge through the job's unit on the
//	node, from the backup the upgrade made
//	RollingBack --> Failed, event Rollback: back on an older version and
//	Ready; or the rollback's own failure; or a timeout.
//
// Every decision reads the injected clock (Input.Now) and the views: the
// planner never waits, it asks to be woken (wakeAt) at the soak's end.

// GateConfig is spec.healthGate, parsed.
type GateConfig struct {
	// Soak is how long the node must stay Ready on the target.
	Soak time.Duration
	// PodSelector is the pod selector's text ("" when the job names none:
	// no pod is looked at). The controller answers Input.GatePods with it.
	PodSelector string
}

// gateConfig parses spec.healthGate; nil when the job has none.
func gateConfig(g *v1alpha1.HealthGate) (*GateConfig, error) {
	if g == nil {
		return nil, nil
	}
	if g.SoakSeconds < 1 || g.SoakSeconds > 86400 {
		return nil, fmt.Errorf("spec.healthGate.soakSeconds %d is not in [1, 86400]", g.SoakSeconds)
	}
	cfg := &GateConfig{Soak: time.Duration(g.SoakSeconds) * time.Second}
	if g.PodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(g.PodSelector)
		if err != nil {
			return nil, fmt.Errorf("spec.healthGate.podSelector is not a valid label selector: %w", err)
		}
		cfg.PodSelector = sel.String()
	}
	return cfg, nil
}

// ReasonNodeGateFailed: a node failed its health gate and is rolled back.
const ReasonNodeGateFailed = "NodeHealthGateFailed"

// ReasonNodeVerifying: a node reached the target and Ready; its soak began.
const ReasonNodeVerifying = "NodeVerifying"

// gateFailedPrefix starts the reason of a node that failed its gate, kept
// through its rollback and into its final reason.
const gateFailedPrefix = "health gate failed: "

// startGate puts a node that reached the target and Ready into its soak.
func (p *planner) startGate(e *v1alpha1.TaskStatus, node NodeView) {
	g := p.in.Config.Gate
	e.State, e.Event, e.Time = v1alpha1.StateVerifying, v1alpha1.EventHealthGate, p.stamp()
	e.Reason = p.soakingReason(node, p.now)
	p.normalEvent(ReasonNodeVerifying, e.NodeName, "Node %s reports %s and Ready: its health gate soaks for %s", e.NodeName, node.Version, g.Soak)
	p.wakeAt(p.now.Add(g.Soak))
}

func (p *planner) soakingReason(node NodeView, since time.Time) string {
	g := p.in.Config.Gate
	r := fmt.Sprintf("health gate: on %s and Ready since %s; soaking until %s", node.Version, since.Format(time.RFC3339),
		since.Add(g.Soak).Format(time.RFC3339))
	if g.PodSelector != "" {
		r += fmt.Sprintf(", then pods %q on the node must be Running and Ready", g.PodSelector)
	}
	return r
}

// followGate judges a Verifying node: it stays in its soak, passes, or
// fails and is rolled back.
func (p *planner) followGate(e *v1alpha1.TaskStatus) {
	g := p.in.Config.Gate
	node := p.in.Nodes[e.NodeName]
	if g == nil {
		// The spec is immutable, so only a hand-edited status gets here.
		p.upgraded(e, node)
		return
	}
	since := ReadEntryTime(e).GateSince
	if since.IsZero() {
		e.Time, since = p.stamp(), p.now // an unreadable time: the soak starts again
	}
	target := p.in.Config.TargetVersion
	if !node.Exists || !node.Ready || !nodeversion.AtLeast(node.Version, target) {
		p.failGate(e, fmt.Sprintf("the node %s during its soak of %s (it was on %s and Ready from %s)",
			describeNode(node), g.Soak, target, since.Format(time.RFC3339)))
		return
	}
	end := since.Add(g.Soak)
	if p.now.Before(end) {
		e.Reason = p.soakingReason(node, since)
		p.wakeAt(end)
		return
	}
	if g.PodSelector != "" {
		bad, ok := p.gatePods(e.NodeName)
		if !ok && p.now.Before(end.Add(p.in.Config.Timeout)) {
			// A gate that cannot be checked is not passed; give the
			// reads the job's timeout (a missing grant: docs/operating.md).
			e.Reason = fmt.Sprintf("health gate: soaked for %s; the pods %q on the node could not be read: %s", g.Soak, g.PodSelector, bad)
			p.wakeAt(p.now.Add(BusyRecheck))
			return
		}
		if !ok {
			p.failGate(e, fmt.Sprintf("the pods %q on the node could not be read within %s after its soak of %s: %s",
				g.PodSelector, p.in.Config.Timeout, g.Soak, bad))
			return
		}
		if bad != "" {
			p.failGate(e, fmt.Sprintf("after its soak of %s, pods %q on the node are not Running and Ready: %s", g.Soak, g.PodSelector, bad))
			return
		}
	}
	p.upgraded(e, node)
}

// gatePods asks which of the gate's pods on node are not Running and Ready
// (see Input.GatePods).
func (p *planner) gatePods(node string) (string, bool) {
	if p.in.GatePods == nil {
		return "", true
	}
	return p.in.GatePods(node)
}

// failGate starts the rollback of a node that failed its gate: it keeps
// its slot, and its clock (the job's timeout) restarts for the rollback.
func (p *planner) failGate(e *v1alpha1.TaskStatus, why string) {
	e.State, e.Event, e.Time = v1alpha1.StateRollingBack, v1alpha1.EventHealthGate, p.stamp()
	e.Reason = gateFailedPrefix + why
	p.warningEvent(ReasonNodeGateFailed, e.NodeName, "Node %s failed its health gate, rolling back: %s", e.NodeName, why)
	p.followGateRollback(e)
}

// gateRollback reports whether an entry is a node rolled back after its
// health gate failed (a RollingBack entry written by an earlier version of
// the controller has another event).
func gateRollback(e *v1alpha1.TaskStatus) bool {
	return e.State == v1alpha1.StateRollingBack && e.Event == v1alpha1.EventHealthGate
}

// followGateRollback follows the rollback pod of a node that failed its
// gate. The node's upgrade pod stays, holding the node; the rollback runs
// in the job's unit on the node, so, as for an upgrade, the Node shows how
// it ended when the pod cannot say.
func (p *planner) followGateRollback(e *v1alpha1.TaskStatus) {
	deadline := p.deadline(ReadEntryTime(e).Dispatched)
	pod, hasPod := p.in.RollbackPods[e.NodeName]
	node := p.in.Nodes[e.NodeName]
	why := strings.TrimPrefix(e.Reason, gateFailedPrefix)
	target := p.in.Config.TargetVersion
	rolledBack := node.Exists && node.Ready && node.Version != "" && !nodeversion.AtLeast(node.Version, target)
	switch {
	case hasPod && pod.Phase == PodFailed && !pod.Deleting:
		p.fail(e, failure{at: v1alpha1.EventRollback, why: gateFailedPrefix + why + "; " + pod.Reason})
	case rolledBack && hasPod:
		// The Node says it, whatever the pod shows: the rollback restarts
		// edgecore, the kubelet that reports the pod, and only a rollback
		// takes a node that passed the target back below it.
		p.fail(e, failure{at: v1alpha1.EventRollback,
			why: fmt.Sprintf("%s%s; rollback succeeded, the node is back on %s", gateFailedPrefix, why, node.Version)})
	case !p.now.Before(deadline):
		// Not a timeout that a later report could turn into an upgrade
		// (watchTimedOut): the gate failed whatever the node shows next.
		p.fail(e, failure{at: v1alpha1.EventRollback, why: fmt.Sprintf("%s%s; within %s of the rollback the node %s, "+
			"not an older version and Ready: the node needs attention", gateFailedPrefix, why, p.in.Config.Timeout, describeNode(node))})
	case !hasPod:
		p.plan.Dispatch = append(p.plan.Dispatch, Dispatch{Node: e.NodeName, FromVersion: node.Version, Deadline: deadline, Rollback: true})
		p.wakeAt(deadline)
	default:
		p.wakeAt(deadline)
	}
}

// dropRollbackPods deletes the rollback pods of nodes that are final (all
// of them once the job is).
func (p *planner) dropRollbackPods() {
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		if _, ok := p.in.RollbackPods[e.NodeName]; ok && NodeFinal(e.State) {
			p.plan.RollbackDelete = append(p.plan.RollbackDelete, e.NodeName)
		}
	}
}

// upgraded counts a node as upgraded: on the target and Ready (and past its
// gate, when the job has one).
func (p *planner) upgraded(e *v1alpha1.TaskStatus, node NodeView) {
	// No reason on success: at 10,000 nodes every byte per entry counts
	// against etcd's request limit, and action and currentVersion say it.
	e.State, e.Event, e.Action, e.Time, e.Reason = v1alpha1.StateSuccessful, v1alpha1.EventUpgrade, v1alpha1.ActionSuccess, p.stamp(), ""
	p.normalEvent(ReasonNodeUpgraded, e.NodeName, "Node %s upgraded to %s", e.NodeName, node.Version)
}
