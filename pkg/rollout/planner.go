package rollout

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// Decide computes the next plan. It never mutates its input.
//
// A plan is made in one pass, each phase in its own file:
//
//  1. initialize (initialize.go), on the first plan only: record the
//     selection, settle the nodes that need no upgrade.
//  2. refuse (initialize.go), when the job is refused: nothing new starts.
//  3. progressInFlight (progress.go): follow every dispatched node's pod to
//     its outcome or its deadline.
//  4. startPending (dispatch.go): dispatch, defer, or stop on tolerance.
//  5. watchTimedOut (late.go), in finished jobs too (their only phase):
//     what timed-out nodes reported since.
//  6. summarize (summarize.go): counters, conditions and the final state.
//  7. kubeEdgeStatus (phase.go): KubeEdge v1alpha2's phases and action
//     flows, derived from the states above.
//  8. fitStatus (size.go) and planCleanup (cleanup.go): keep the status in
//     etcd's limit, and decide what happens to the pods of final nodes.
func Decide(in Input) Plan {
	p := newPlanner(in)
	if !Initialized(p.status) {
		p.initialize()
	}
	if !JobFinal(p.status.State) {
		if in.Config.Refusal != "" {
			p.refuse()
		}
		p.progressInFlight()
		p.stage()
		p.startPending()
		p.watchTimedOut()
		p.summarize()
	} else {
		// Finished: a node that timed out may still report.
		p.watchTimedOut()
		p.dropStagePods()
	}
	p.dropRollbackPods()
	// A plan's write that succeeds ends an earlier write failure.
	meta.RemoveStatusCondition(&p.status.Conditions, v1alpha1.ConditionStatusWriteFailed)
	p.kubeEdgeStatus()
	p.fitStatus()
	p.planCleanup()
	p.plan.Status = p.status
	p.plan.Finished = JobFinal(p.status.State)
	return p.plan
}

// Cleanup is the part of a plan that needs no status write: releasing and
// deleting the pods whose outcome status already records. The controller
// runs it when it cannot write the status, so pods that are done still go.
func Cleanup(status v1alpha1.NodeUpgradeJobStatus, pods map[string]PodView) Plan {
	p := &planner{in: Input{Status: status, Pods: pods}, status: status}
	p.planCleanup()
	return p.plan
}

// Initialized reports whether a job's first plan is recorded: until it is,
// the job's selection is still to be made (and a plan may start any node).
func Initialized(status v1alpha1.NodeUpgradeJobStatus) bool {
	return status.State != v1alpha1.StateNone || len(status.NodeStatus) > 0
}

// MayStartNodes reports whether a plan of this job may start a node or
// create a pod: it is not initialised yet, a node is pending, or a
// dispatched node has no pod among pods (the job's own, by node). Only then
// do the planner's NodeViews need BusyWith and KeptPodOf, which cost the
// controller a list of every upgrade pod.
func MayStartNodes(status v1alpha1.NodeUpgradeJobStatus, pods map[string]PodView) bool {
	if !Initialized(status) {
		return true
	}
	for i := range status.NodeStatus {
		e := &status.NodeStatus[i]
		if _, hasPod := pods[e.NodeName]; e.State == v1alpha1.StateNone || NodeInFlight(e.State) && !hasPod {
			return true
		}
	}
	return false
}

// NodeFinal reports whether a node's state is an end state.
func NodeFinal(state string) bool {
	switch state {
	case v1alpha1.StateSuccessful, v1alpha1.StateFailed, v1alpha1.StateNotAttempted, v1alpha1.StateSkipped:
		return true
	}
	return false
}

// NodeInFlight reports whether a node holds a concurrency slot. A node
// waiting for its confirmation (WaitingConfirmation) holds none; once
// Confirmed it holds one again, its clock restarted. This
// controller no longer reports RollingBack (a rollback shows in the node's
// final status), but a status written by an earlier version may hold it.
func NodeInFlight(state string) bool {
	switch state {
	case v1alpha1.StateInit, v1alpha1.StateChecking, v1alpha1.StateConfirmed, v1alpha1.StateBackingUp,
		v1alpha1.StateUpgrading, v1alpha1.StateRollingBack, v1alpha1.StateVerifying:
		return true
	}
	return false
}

// JobFinal reports whether a job's state is an end state.
func JobFinal(state string) bool {
	return state == v1alpha1.StateSuccessful || state == v1alpha1.StateFailed
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
	// windows caches, per node zone label ("": the windows' own zones), what the
	// maintenance windows say now; waiting and nextWindow count the
	// pending nodes held by them and their earliest opening.
	windows    map[string]windowState
	waiting    int
	nextWindow time.Time
}

func newPlanner(in Input) *planner {
	return &planner{in: in, now: in.Now.UTC().Truncate(time.Second), status: *in.Status.DeepCopy()}
}

func (p *planner) stamp() string { return p.now.Format(time.RFC3339) }

// deadline is the one rule for every clock the planner keeps: a node
// dispatched, or waiting for its turn, at since has the job's timeout.
func (p *planner) deadline(since time.Time) time.Time { return p.in.Config.Deadline(since) }

// Deadline is when a node dispatched, or deferred, at since runs out of
// time: since plus the job's timeout.
func (c Config) Deadline(since time.Time) time.Time { return since.Add(c.Timeout) }

// normalEvent tells the user of something that went as it should: a
// Normal event on the job, about node ("" for the job itself).
func (p *planner) normalEvent(reason, node, format string, args ...any) {
	p.addEvent(false, reason, node, format, args...)
}

// warningEvent tells the user of something that needs their eye: a Warning
// event on the job, about node ("" for the job itself). Warnings are
// recorded at any job size (see the controller's perNodeEventLimit).
func (p *planner) warningEvent(reason, node, format string, args ...any) {
	p.addEvent(true, reason, node, format, args...)
}

func (p *planner) addEvent(warning bool, reason, node, format string, args ...any) {
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

// failure is why a node failed: the step it failed at, which becomes its
// entry's event (Init, Check, BackUp, Upgrade or Rollback), and the reason.
type failure struct {
	at, why string
}

// fail gives a node its Failed entry, action Failure, and tells why in a
// Warning event.
func (p *planner) fail(e *v1alpha1.TaskStatus, f failure) {
	p.failed++
	e.State, e.Action, e.Event, e.Reason, e.Time = v1alpha1.StateFailed, v1alpha1.ActionFailure, f.at, f.why, p.stamp()
	p.warningEvent(ReasonNodeFailed, e.NodeName, "Node %s failed: %s", e.NodeName, f.why)
}

// timeOut gives a node that ran out of time its Failed entry, event and
// action TimeOut, and tells why in a Warning event.
func (p *planner) timeOut(e *v1alpha1.TaskStatus, why string) {
	p.failed++
	e.State, e.Action, e.Event, e.Reason, e.Time = v1alpha1.StateFailed, v1alpha1.ActionTimeOut, v1alpha1.EventTimeOut, why, p.stamp()
	p.warningEvent(ReasonNodeTimedOut, e.NodeName, "Node %s timed out: %s", e.NodeName, why)
}
