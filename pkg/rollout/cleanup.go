package rollout

import (
	"slices"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// PodCleanup is what to do with the existing upgrade pod of a node whose
// outcome status records.
type PodCleanup struct {
	Node string
	// Release drops the tracking finalizer: the pod's outcome is recorded,
	// so nothing is lost when it goes.
	Release bool
	// Delete deletes the pod.
	Delete bool
	// Cancel, set with Delete, says why a pod that has not finished is
	// deleted (a timed-out node's, say): the deletion stops its step, and
	// frees the slot it holds (see draining). Empty for a pod that is done.
	Cancel string
}

// planCleanup lets go of pods whose outcome is recorded: the tracking
// finalizer comes off, pods of upgraded or cancelled nodes are deleted, and
// the terminated pods of failed nodes stay for their logs until the job is
// deleted. Cancellations come first, since each frees a slot; then the
// routine cleanup, in node order. It runs in every plan, so a cleanup that
// failed is retried.
func (p *planner) planCleanup() {
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		pod, ok := p.in.Pods[e.NodeName]
		if !ok || !NodeFinal(e.State) {
			continue
		}
		c := PodCleanup{Node: e.NodeName, Release: pod.Tracked}
		keepForLogs := pod.Phase.Terminated() && e.Action != v1alpha1.ActionSuccess
		if !pod.Deleting && !keepForLogs {
			c.Delete = true
			if !pod.Phase.Terminated() {
				c.Cancel = cancelReason(e)
			}
		}
		if c.Release || c.Delete {
			p.plan.Cleanup = append(p.plan.Cleanup, c)
		}
	}
	slices.SortStableFunc(p.plan.Cleanup, func(a, b PodCleanup) int {
		switch {
		case (a.Cancel != "") == (b.Cancel != ""):
			return 0
		case a.Cancel != "":
			return -1
		}
		return 1
	})
}

// cancelReason says why a final node's running pod is stopped.
func cancelReason(e *v1alpha1.TaskStatus) string {
	why := "node is " + e.State
	if e.Action == v1alpha1.ActionTimeOut {
		why = "node timed out"
	}
	// What the node showed since (the note before a timed-out node's
	// reason) is not why its pod stops.
	if _, reason := splitNote(e.Reason); reason != "" {
		why += ": " + reason
	}
	return why
}
