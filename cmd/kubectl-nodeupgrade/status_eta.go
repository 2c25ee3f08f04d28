package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// estimateBasis is what status knows of per-node upgrade times besides the
// job's own status.
type estimateBasis struct {
	// watched are upgrade times of this job's nodes, each from the dispatch
	// to the end -w saw (nodeTimer).
	watched []time.Duration
	// prior is plan's per-node time: the median of the latest finished
	// jobs, else the job's timeout. Zero when it was not read.
	prior perNode
}

// nodeTimer measures the upgrade time of each node status -w sees first in
// flight and later final. Status keeps a node's dispatch time only while
// it is in flight, so only a watcher can pair the two.
type nodeTimer struct {
	dispatched map[string]time.Time
	times      []time.Duration
}

func newNodeTimer() *nodeTimer {
	return &nodeTimer{dispatched: map[string]time.Time{}}
}

// observe records the dispatch of nodes in flight and the time of those
// that finished since they were seen in flight.
func (n *nodeTimer) observe(job *v1alpha1.NodeUpgradeJob) {
	for i := range job.Status.NodeStatus {
		e := &job.Status.NodeStatus[i]
		t := rollout.ReadEntryTime(e)
		switch {
		case !t.Dispatched.IsZero():
			n.dispatched[e.NodeName] = t.Dispatched
		case !t.Finished.IsZero():
			if start, ok := n.dispatched[e.NodeName]; ok {
				delete(n.dispatched, e.NodeName)
				if d := t.Finished.Sub(start); d >= 0 {
					n.times = append(n.times, d)
				}
			}
		}
	}
}

// priorPerNode reads plan's per-node time for a job that is not final; a
// final job needs none.
func (a *app) priorPerNode(ctx context.Context, job *v1alpha1.NodeUpgradeJob) perNode {
	if rollout.JobFinal(job.Status.State) {
		return perNode{}
	}
	cfg, _ := rollout.ConfigFromSpec(&job.Spec)
	getCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	per, warning := a.perNode(getCtx, 0, cfg.Timeout)
	if warning != "" {
		per.source = "the job's timeout, an upper bound: " + warning
	}
	return per
}

// pickPerNode chooses the per-node time of a running job's estimate, the
// closest measure first: this job's nodes timed by -w; this job's pace
// (its time so far over the waves its finished nodes needed, as plan
// measures a finished job); plan's measure of the latest finished jobs;
// the job's timeout.
func pickPerNode(job *v1alpha1.NodeUpgradeJob, now time.Time, done, concurrency int, basis estimateBasis) perNode {
	if n := len(basis.watched); n > 0 {
		times := slices.Clone(basis.watched)
		slices.Sort(times)
		return perNode{d: times[n/2].Round(time.Second), source: fmt.Sprintf("measured: median of %s of this job, dispatch to end", plural(n, "node"))}
	}
	if elapsed := now.Sub(job.CreationTimestamp.Time); done > 0 && elapsed > 0 {
		waves := (done + concurrency - 1) / concurrency
		return perNode{
			d:      (elapsed / time.Duration(waves)).Round(time.Second),
			source: fmt.Sprintf("measured: this job's pace, %s in %s at concurrency %d", plural(done, "node"), elapsed.Round(time.Second), concurrency),
		}
	}
	if basis.prior.d > 0 {
		return basis.prior
	}
	cfg, _ := rollout.ConfigFromSpec(&job.Spec)
	return timeoutPerNode(cfg.Timeout)
}

// timeLeft is when the last node should end: each node in flight takes per
// from its dispatch (one past per may end at any moment: it counts as
// ending now), and each pending node starts when a slot of the concurrency
// frees and takes per.
func timeLeft(ages []time.Duration, pending, concurrency int, per time.Duration) time.Duration {
	ends := make([]time.Duration, len(ages))
	for i, age := range ages {
		ends[i] = max(per-age, 0)
	}
	slices.Sort(ends)
	last := time.Duration(0)
	if len(ends) > 0 {
		last = ends[len(ends)-1]
	}
	// With more nodes in flight than the concurrency (it was lowered), a
	// pending node starts only when enough of them have ended: the slots
	// free at the latest `concurrency` ends.
	slots := make([]time.Duration, concurrency)
	copy(slots[max(concurrency-len(ends), 0):], ends[max(len(ends)-concurrency, 0):])
	for range pending {
		first := slices.Index(slots, slices.Min(slots))
		slots[first] += per
		last = max(last, slots[first])
	}
	return last
}

// overdue counts the nodes in flight for longer than per.
func overdue(ages []time.Duration, per time.Duration) int {
	n := 0
	for _, age := range ages {
		if age > per {
			n++
		}
	}
	return n
}

// eta says when a job should end: for a running job, the time left from a
// per-node time (pickPerNode) and the nodes in flight and pending; for a
// final one, when it ended.
func eta(job *v1alpha1.NodeUpgradeJob, now time.Time, done int, ages []time.Duration, basis estimateBasis) string {
	st := &job.Status
	if rollout.JobFinal(st.State) {
		if end, err := time.Parse(time.RFC3339, st.Time); err == nil {
			return fmt.Sprintf("Finished %s at %s, %s after it was created", st.State, end.UTC().Format(time.RFC3339), end.Sub(job.CreationTimestamp.Time).Round(time.Second))
		}
		return "Finished " + st.State
	}
	if st.State == v1alpha1.StateNone {
		return "ETA: unknown: the controller has not started the job"
	}
	pending := int(st.Counts.Pending)
	if job.Spec.Suspend {
		return fmt.Sprintf("ETA: none while paused (%s left)", plural(len(ages)+pending, "node"))
	}
	left := fmt.Sprintf("%s left: %d in flight, %d pending", plural(len(ages)+pending, "node"), len(ages), pending)
	cfg, _ := rollout.ConfigFromSpec(&job.Spec)
	concurrency := max(cfg.Concurrency, 1)
	per := pickPerNode(job, now, done, concurrency, basis)
	text := fmt.Sprintf("ETA: %s (%s)\nper node: %s (%s)", timeLeft(ages, pending, concurrency, per.d).Round(time.Second), left, per.d, per.source)
	if late := overdue(ages, per.d); late > 0 {
		text += fmt.Sprintf("; %s in flight for longer, counted as ending now", plural(late, "node"))
	}
	return text
}
