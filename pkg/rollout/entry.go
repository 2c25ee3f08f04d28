package rollout

import (
	"time"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// EntryTime is a node entry's status time, read by what it means in the
// entry's state. KubeEdge's TaskStatus has one time field, which this
// controller uses for three clocks and one mark: the dispatch (or the
// confirmation) of an in-flight node, the start of a pending node's wait,
// the finish of a final node (shown to users; a timed-out node is watched
// from it), and when a node began to wait for its confirmation. This is the one place that
// decodes it; a time that is not RFC 3339 (a hand-edited status) reads as
// zero, and the planner restarts that clock.
type EntryTime struct {
	// Dispatched is when an in-flight node was dispatched; its deadline is
	// Config.Deadline(Dispatched).
	Dispatched time.Time
	// DeferredSince is when a pending node's wait for its turn began (it is
	// NotReady or busy); it fails at Config.Deadline(DeferredSince). Zero
	// while the node is not waiting.
	DeferredSince time.Time
	// Finished is when a final node got its final entry. A node that timed
	// out is watched for WatchAfterTimeout from then (watchTimedOut).
	Finished time.Time
	// WaitingSince is when a node of a job with requireConfirmation began
	// to wait for its confirmation. No clock runs from it: it is shown.
	// A Confirmed node is in flight: its Dispatched is its confirmation.
	WaitingSince time.Time
	// GateSince is when a Verifying node's health-gate soak began; it
	// passes at GateSince plus the soak (see gate.go).
	GateSince time.Time
}

// restartUnreadableClock stamps an entry whose clock runs (an in-flight
// node's, a deferred node's) with now when its time cannot be read (a
// hand-edited status): the clock starts again rather than running out at
// once or never.
func (p *planner) restartUnreadableClock(e *v1alpha1.TaskStatus) {
	if t := ReadEntryTime(e); t.Dispatched.IsZero() && t.DeferredSince.IsZero() {
		e.Time = p.stamp()
	}
}

// ReadEntryTime decodes e's time.
func ReadEntryTime(e *v1alpha1.TaskStatus) EntryTime {
	t, err := time.Parse(time.RFC3339, e.Time)
	if err != nil {
		return EntryTime{}
	}
	switch {
	case e.State == v1alpha1.StateVerifying:
		return EntryTime{GateSince: t}
	case NodeInFlight(e.State):
		return EntryTime{Dispatched: t}
	case e.State == v1alpha1.StateNone:
		return EntryTime{DeferredSince: t}
	case NodeFinal(e.State):
		return EntryTime{Finished: t}
	case e.State == v1alpha1.StateWaitingConfirmation:
		return EntryTime{WaitingSince: t}
	}
	return EntryTime{}
}
