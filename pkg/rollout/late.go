package rollout

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodeversion"
)

// WatchAfterTimeout is how long after a node timed out the planner keeps
// reading what the node reports, to tell in its reason what became of it.
// An edge node that lost its link goes on alone, for minutes or hours: an
// upgrade the job gave up on may end there, well or badly, after the job's
// timeout, and shows only when the node reports again.
const WatchAfterTimeout = 24 * time.Hour

// The notes put before a timed-out node's reason, each for what an
// operator does next: look at the node (it is NotReady), or nothing (it is
// upgraded after all). A node Ready on an older version gets none: its
// reason stands (a retry is what it needs), and it may yet upgrade (an
// upgrade the pod started goes on on the host). A note leads the reason,
// so it survives the cuts that keep the status within etcd's limit
// (fitStatus), and it ends at the first "; ".
const (
	noteNeedsAttention = "needs attention: "
	noteUpgraded       = "upgraded after its timeout: "
)

var notes = []string{noteNeedsAttention, noteUpgraded}

// timedOut reports whether a node's entry is a timeout: the job stopped
// waiting for the node without learning how its upgrade ended (the pod did
// not finish in time, or it finished and the node did not report the
// target version and Ready in time). Such a node stays Failed/TimeOut, as
// failureTolerate and the job's result counted it; what the node shows
// afterwards is added to its reason (watchTimedOut).
func timedOut(e *v1alpha1.TaskStatus) bool {
	return e.State == v1alpha1.StateFailed && e.Action == v1alpha1.ActionTimeOut
}

// watchTimedOut keeps a timed-out node's reason true to what the node
// reports, for WatchAfterTimeout after it timed out, in running and in
// finished jobs alike: the note before the reason says the node is
// NotReady and needs attention, or is Ready on the target version
// (upgraded after its timeout); Ready on an older one, it has no note. Its state,
// action and time, the job's counters, result and reason stay as they
// were: the job decided with what it knew at the timeout, and
// failureTolerate counted the failure. The NeedsAttention condition lists
// the timed-out nodes whose note says NotReady.
func (p *planner) watchTimedOut() {
	var attention []string
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		if !timedOut(e) {
			continue
		}
		if finished := ReadEntryTime(e).Finished; !finished.IsZero() && p.now.Before(finished.Add(WatchAfterTimeout)) {
			p.noteLate(e)
		}
		if note, _ := splitNote(e.Reason); strings.HasPrefix(note, noteNeedsAttention) {
			attention = append(attention, e.NodeName)
		}
	}
	p.setNeedsAttention(attention)
}

// noteLate puts the note for what the node shows now before a timed-out
// node's reason, with an event when the note changes kind.
func (p *planner) noteLate(e *v1alpha1.TaskStatus) {
	node := p.in.Nodes[e.NodeName]
	old, base := splitNote(e.Reason)
	note := lateNote(node, p.in.Config.TargetVersion)
	if note == old {
		return
	}
	e.Reason = note + base
	if noteKind(note) == noteKind(old) {
		return
	}
	switch noteKind(note) {
	case noteNeedsAttention:
		p.warningEvent(ReasonNodeNeedsAttention, e.NodeName,
			"Node %s is NotReady after it timed out: how its upgrade ended is unknown until it reports; look at the node", e.NodeName)
	case noteUpgraded:
		p.normalEvent(ReasonNodeReportedAfterTimeout, e.NodeName,
			"Node %s reports %s and is Ready after it timed out: it is upgraded (the job still counts it failed)", e.NodeName, node.Version)
	default:
		if node.Exists {
			p.normalEvent(ReasonNodeReportedAfterTimeout, e.NodeName,
				"Node %s is Ready again after it timed out, and %s: it is not upgraded", e.NodeName, describeNode(node))
		}
	}
}

// lateNote is the note for what a timed-out node shows now: "" for a node
// Ready on an older version, or that no longer exists.
func lateNote(n NodeView, target string) string {
	switch {
	case !n.Exists:
		return ""
	case !n.Ready:
		return noteNeedsAttention + "the node is NotReady; "
	case nodeversion.AtLeast(n.Version, target):
		since := ""
		if !n.ReadySince.IsZero() {
			since = " since " + n.ReadySince.UTC().Format(time.RFC3339)
		}
		return noteUpgraded + "the node reports " + n.Version + " and is Ready" + since + "; "
	}
	return ""
}

// splitNote parts a reason into its note (with its "; ") and the reason
// the node timed out with. A note cut short by fitStatus is all note.
func splitNote(reason string) (note, base string) {
	if noteKind(reason) == "" {
		return "", reason
	}
	i := strings.Index(reason, "; ")
	if i < 0 {
		return reason, ""
	}
	return reason[:i+2], reason[i+2:]
}

// noteKind is the prefix a note starts with, "" for none.
func noteKind(note string) string {
	for _, kind := range notes {
		if strings.HasPrefix(note, kind) {
			return kind
		}
	}
	return ""
}

// maxNamesShown bounds the node names in the NeedsAttention condition.
const maxNamesShown = 5

// setNeedsAttention keeps the NeedsAttention condition in step with the
// timed-out nodes whose note says NotReady: True with their names while
// there are any, False once there are none. A job none of whose nodes ever
// needed attention has no such condition.
func (p *planner) setNeedsAttention(nodes []string) {
	if len(nodes) == 0 {
		if meta.IsStatusConditionTrue(p.status.Conditions, v1alpha1.ConditionNeedsAttention) {
			p.setCondition(v1alpha1.ConditionNeedsAttention, metav1.ConditionFalse, "NodesReported",
				"every node that timed out NotReady has reported since; their reasons say how")
		}
		return
	}
	shown := strings.Join(nodes[:min(len(nodes), maxNamesShown)], ", ")
	if len(nodes) > maxNamesShown {
		shown += fmt.Sprintf(" and %d more", len(nodes)-maxNamesShown)
	}
	what := "1 node that timed out is NotReady"
	if len(nodes) > 1 {
		what = fmt.Sprintf("%d nodes that timed out are NotReady", len(nodes))
	}
	p.setCondition(v1alpha1.ConditionNeedsAttention, metav1.ConditionTrue, "TimedOutNodesNotReady",
		fmt.Sprintf("%s: %s; how their upgrade ended is unknown until they report: look at them", what, shown))
}

// Watching reports whether a job's plan may still change with what its
// nodes report although the job may be finished: a node of it timed out
// less than WatchAfterTimeout ago. The controller maps node changes to
// unfinished jobs and to these.
func Watching(status v1alpha1.NodeUpgradeJobStatus, now time.Time) bool {
	if status.Counts.Failed == 0 && JobFinal(status.State) {
		return false
	}
	// A final job's time is when it finished, after every node did.
	if t, err := time.Parse(time.RFC3339, status.Time); err == nil && JobFinal(status.State) && !now.Before(t.Add(WatchAfterTimeout)) {
		return false
	}
	for i := range status.NodeStatus {
		e := &status.NodeStatus[i]
		if finished := ReadEntryTime(e).Finished; timedOut(e) && !finished.IsZero() && now.Before(finished.Add(WatchAfterTimeout)) {
			return true
		}
	}
	return false
}
