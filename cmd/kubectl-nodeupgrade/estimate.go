package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// measuredJobs is how many of the latest finished jobs the per-node time is
// measured from: recent enough to reflect today's fleet and image.
const measuredJobs = 5

// perNode picks the per-node time of an estimate: the --per-node flag, else
// the median measured from the latest finished jobs, else the job's timeout
// (an upper bound). The warning is set when the jobs could not be read.
func (a *app) perNode(ctx context.Context, flag, timeout time.Duration) (perNode, string) {
	if flag > 0 {
		return perNode{d: flag, source: "--per-node"}, ""
	}
	jobs := &v1alpha1.NodeUpgradeJobList{}
	if err := a.client.List(ctx, jobs); err != nil {
		return timeoutPerNode(timeout), "per-node time not measured: " + apiError(err, "list", "nodeupgradejobs").Error()
	}
	if d, n := measurePerNode(jobs.Items); n > 0 {
		return perNode{d: d, source: fmt.Sprintf("measured: median of the last %d finished jobs", n)}, ""
	}
	return timeoutPerNode(timeout), ""
}

func timeoutPerNode(timeout time.Duration) perNode {
	return perNode{d: timeout, source: "the job's timeout, an upper bound: no --per-node and no finished job to measure"}
}

// measurePerNode estimates one node's upgrade time from finished jobs: each
// job's time from creation to its end, divided by the waves its upgraded
// nodes needed at its concurrency. Status keeps no dispatch time once a node
// is final, so a job's waves are the finest measure there is. It returns the
// median over the latest jobs and how many jobs it used.
func measurePerNode(jobs []v1alpha1.NodeUpgradeJob) (time.Duration, int) {
	type sample struct {
		end time.Time
		per time.Duration
	}
	var samples []sample
	for i := range jobs {
		job := &jobs[i]
		if job.Status.State != v1alpha1.StateSuccessful {
			continue
		}
		end, err := time.Parse(time.RFC3339, job.Status.Time)
		if err != nil {
			continue
		}
		attempted := 0
		for _, e := range job.Status.NodeStatus {
			if e.State == v1alpha1.StateFailed || e.State == v1alpha1.StateSuccessful && !strings.HasPrefix(e.Reason, "skipped:") {
				attempted++
			}
		}
		elapsed := end.Sub(job.CreationTimestamp.Time)
		if attempted == 0 || elapsed <= 0 {
			continue
		}
		concurrency := max(int(job.Spec.Concurrency), 1)
		waves := (attempted + concurrency - 1) / concurrency
		samples = append(samples, sample{end: end, per: (elapsed / time.Duration(waves)).Round(time.Second)})
	}
	if len(samples) == 0 {
		return 0, 0
	}
	slices.SortFunc(samples, func(a, b sample) int { return b.end.Compare(a.end) })
	samples = samples[:min(len(samples), measuredJobs)]
	pers := make([]time.Duration, len(samples))
	for i, s := range samples {
		pers[i] = s.per
	}
	slices.Sort(pers)
	return pers[len(pers)/2], len(pers)
}
