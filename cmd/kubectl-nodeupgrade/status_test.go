package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

func statusFixture() *v1alpha1.NodeUpgradeJob {
	created := now.Add(-10 * time.Minute)
	job := &v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{Name: "fleet-upgrade", CreationTimestamp: metav1.NewTime(created)}}
	job.Spec = v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", Concurrency: 2, TimeoutSeconds: 300}
	at := func(ago time.Duration) string { return now.Add(-ago).Format(time.RFC3339) }
	job.Status = v1alpha1.NodeUpgradeJobStatus{
		State: v1alpha1.StateUpgrading, Reason: "upgrading: 5 of 10 nodes finished",
		NodeStatus: []v1alpha1.TaskStatus{
			{NodeName: "edge-a", State: v1alpha1.StateSuccessful, Action: v1alpha1.ActionSuccess, Time: at(8 * time.Minute)},
			{NodeName: "edge-b", State: v1alpha1.StateSuccessful, Action: v1alpha1.ActionSuccess, Time: at(6 * time.Minute)},
			{NodeName: "edge-c", State: v1alpha1.StateFailed, Event: v1alpha1.EventRollback, Action: v1alpha1.ActionFailure, Reason: "upgrade failed: keadm exited 1; rolled back to v1.20.0", Time: at(5 * time.Minute)},
			{NodeName: "edge-d", State: v1alpha1.StateFailed, Event: v1alpha1.EventTimeOut, Action: v1alpha1.ActionTimeOut, Reason: "did not finish within 5m0s (last seen: Upgrading)", Time: at(time.Minute)},
			{NodeName: "edge-e", State: v1alpha1.StateUpgrading, Event: v1alpha1.EventUpgrade, Time: at(90 * time.Second)},
			{NodeName: "edge-f", State: v1alpha1.StateChecking, Event: v1alpha1.EventCheck, Time: at(6 * time.Minute)},
			{NodeName: "edge-g", State: v1alpha1.StateNone, Reason: "waiting: node is NotReady", Time: at(time.Minute)},
			{NodeName: "edge-h", State: v1alpha1.StateNone},
			{NodeName: "edge-i", State: v1alpha1.StateSuccessful, Action: v1alpha1.ActionSuccess, Reason: "skipped: already at v1.21.0", Time: at(10 * time.Minute)},
			{NodeName: "cloud-1", State: v1alpha1.StateSkipped, Reason: "skipped: not an edge node", Time: at(10 * time.Minute)},
		},
		Counts:   v1alpha1.NodeCounts{Selected: 10, Pending: 2, InFlight: 2, Succeeded: 3, Failed: 2, Skipped: 1},
		Progress: "6/10",
	}
	return job
}

func TestStatus(t *testing.T) {
	var out bytes.Buffer
	writeStatus(&out, statusFixture(), now, estimateBasis{})
	got := out.String()
	// 4 nodes (2 upgraded, 2 failed) in 10 minutes at concurrency 2: two
	// waves, 5m0s per node. edge-e (1m30s in) ends in 3m30s, edge-f (6m in)
	// any moment; the two pending nodes start then and take 5m each.
	for _, want := range []string{
		"ETA: 8m30s (4 nodes left: 2 in flight, 2 pending)\nper node: 5m0s (measured: this job's pace, 4 nodes in 10m0s at concurrency 2); 1 node in flight for longer, counted as ending now",
		"edge-f     Checking   6m0s", "passed 1m0s ago", "6/10 finished",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	golden(t, "status-running.golden", got)

	job := statusFixture()
	job.Spec.Suspend, job.Status.State = true, v1alpha1.StateSuspended
	out.Reset()
	writeStatus(&out, job, now, estimateBasis{})
	if !strings.Contains(out.String(), "Paused (spec.suspend)") || !strings.Contains(out.String(), "ETA: none while paused (4 nodes left)") {
		t.Errorf("a paused job says so:\n%s", out.String())
	}
	golden(t, "status-paused.golden", out.String())

	job = statusFixture()
	job.Status.State, job.Status.Time, job.Status.Reason = v1alpha1.StateFailed, now.Format(time.RFC3339), "failed: 3 of 9 nodes failed, more than failureTolerate 0.1"
	job.Status.NodeStatus = job.Status.NodeStatus[:4]
	job.Status.Counts = v1alpha1.NodeCounts{Selected: 4, Succeeded: 2, Failed: 2}
	out.Reset()
	writeStatus(&out, job, now.Add(time.Hour), estimateBasis{})
	if !strings.Contains(out.String(), "Finished Failed at 2026-12-03T10:00:00Z, 10m0s after it was created") {
		t.Errorf("a final job shows when it ended:\n%s", out.String())
	}
	golden(t, "status-finished.golden", out.String())
}

func TestETA(t *testing.T) {
	started := func(j *v1alpha1.NodeUpgradeJob) { j.Status.NodeStatus = j.Status.NodeStatus[4:] }
	for _, c := range []struct {
		name   string
		mutate func(*v1alpha1.NodeUpgradeJob)
		done   int
		basis  estimateBasis
		want   string
	}{
		{name: "watched nodes come first", done: 4, basis: estimateBasis{watched: []time.Duration{4 * time.Minute, time.Minute, 2 * time.Minute}, prior: perNode{d: time.Hour, source: "prior"}},
			// edge-e ends in 30s; edge-f is overdue; pending start at 0 and 30s.
			want: "ETA: 2m30s (4 nodes left: 2 in flight, 2 pending)\nper node: 2m0s (measured: median of 3 nodes of this job, dispatch to end); 1 node in flight for longer, counted as ending now"},
		{name: "nothing finished: plan's measure of finished jobs", mutate: started, basis: estimateBasis{prior: perNode{d: 7 * time.Minute, source: "measured: median of the last 2 finished jobs"}},
			// edge-e ends in 5m30s, edge-f in 1m; then 7m each.
			want: "ETA: 12m30s (4 nodes left: 2 in flight, 2 pending)\nper node: 7m0s (measured: median of the last 2 finished jobs)"},
		{name: "nothing measured: the timeout", mutate: started,
			want: "ETA: 8m30s (4 nodes left: 2 in flight, 2 pending)\nper node: 5m0s (the job's timeout, an upper bound: no --per-node and no finished job to measure); 1 node in flight for longer, counted as ending now"},
		{name: "not started", mutate: func(j *v1alpha1.NodeUpgradeJob) { j.Status = v1alpha1.NodeUpgradeJobStatus{} },
			want: "ETA: unknown: the controller has not started the job"},
		{name: "final without a time", mutate: func(j *v1alpha1.NodeUpgradeJob) { j.Status.State = v1alpha1.StateSuccessful },
			want: "Finished Successful"},
	} {
		t.Run(c.name, func(t *testing.T) {
			job := statusFixture()
			if c.mutate != nil {
				c.mutate(job)
			}
			ages := []time.Duration{90 * time.Second, 6 * time.Minute}
			if got := eta(job, now, c.done, ages, c.basis); got != c.want {
				t.Errorf("eta:\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestTimeLeft(t *testing.T) {
	m := time.Minute
	for _, c := range []struct {
		name        string
		ages        []time.Duration
		pending     int
		concurrency int
		want        time.Duration
	}{
		{name: "nothing left", concurrency: 2, want: 0},
		{name: "pending only: full waves", pending: 5, concurrency: 2, want: 3 * m},
		{name: "in flight only: the last to end", ages: []time.Duration{30 * time.Second, 10 * time.Second}, concurrency: 2, want: 50 * time.Second},
		{name: "an overdue node ends now", ages: []time.Duration{2 * m}, pending: 1, concurrency: 1, want: m},
		{name: "free slots start at once", ages: []time.Duration{0}, pending: 3, concurrency: 3, want: 2 * m},
		{name: "pending fill the earliest slot", ages: []time.Duration{45 * time.Second, 15 * time.Second}, pending: 2, concurrency: 2, want: m + 45*time.Second},
		// Concurrency lowered to 1 with three in flight: the pending node
		// starts when all three have ended.
		{name: "more in flight than the concurrency", ages: []time.Duration{0, 30 * time.Second, 50 * time.Second}, pending: 1, concurrency: 1, want: 2 * m},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := timeLeft(c.ages, c.pending, c.concurrency, m); got != c.want {
				t.Errorf("timeLeft = %s, want %s", got, c.want)
			}
		})
	}
}

func TestPickPerNode(t *testing.T) {
	job := statusFixture()
	for _, c := range []struct {
		name        string
		done        int
		concurrency int
		basis       estimateBasis
		want        time.Duration
		source      string
	}{
		{name: "watched: the median", done: 4, concurrency: 2, basis: estimateBasis{watched: []time.Duration{3 * time.Minute, time.Minute, 2 * time.Minute, 10 * time.Minute}}, want: 3 * time.Minute, source: "median of 4 nodes of this job"},
		{name: "pace: time over waves", done: 4, concurrency: 2, want: 5 * time.Minute, source: "this job's pace, 4 nodes in 10m0s at concurrency 2"},
		{name: "pace: a partial wave is a wave", done: 3, concurrency: 4, want: 10 * time.Minute, source: "3 nodes in 10m0s"},
		{name: "prior", concurrency: 2, basis: estimateBasis{prior: perNode{d: time.Minute, source: "measured: median of the last 1 finished jobs"}}, want: time.Minute, source: "finished jobs"},
		{name: "timeout", concurrency: 2, want: 5 * time.Minute, source: "the job's timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := pickPerNode(job, now, c.done, c.concurrency, c.basis)
			if got.d != c.want || !strings.Contains(got.source, c.source) {
				t.Errorf("pickPerNode = %s (%s), want %s (%s)", got.d, got.source, c.want, c.source)
			}
		})
	}
}

func TestNodeTimer(t *testing.T) {
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	job := func(entries ...v1alpha1.TaskStatus) *v1alpha1.NodeUpgradeJob {
		return &v1alpha1.NodeUpgradeJob{Status: v1alpha1.NodeUpgradeJobStatus{NodeStatus: entries}}
	}
	timer := newNodeTimer()
	timer.observe(job(
		v1alpha1.TaskStatus{NodeName: "a", State: v1alpha1.StateUpgrading, Time: at(0)},
		v1alpha1.TaskStatus{NodeName: "b", State: v1alpha1.StateSuccessful, Time: at(0)}, // never seen in flight
		v1alpha1.TaskStatus{NodeName: "c", State: v1alpha1.StateNone, Time: at(0)},       // deferred, not dispatched
	))
	timer.observe(job(
		v1alpha1.TaskStatus{NodeName: "a", State: v1alpha1.StateSuccessful, Time: at(2 * time.Minute)},
		v1alpha1.TaskStatus{NodeName: "b", State: v1alpha1.StateSuccessful, Time: at(0)},
		v1alpha1.TaskStatus{NodeName: "c", State: v1alpha1.StateInit, Time: at(time.Minute)},
	))
	timer.observe(job(
		v1alpha1.TaskStatus{NodeName: "a", State: v1alpha1.StateSuccessful, Time: at(2 * time.Minute)}, // seen again: counted once
		v1alpha1.TaskStatus{NodeName: "c", State: v1alpha1.StateFailed, Time: at(4 * time.Minute)},
	))
	if len(timer.times) != 2 || timer.times[0] != 2*time.Minute || timer.times[1] != 3*time.Minute {
		t.Errorf("times = %v, want [2m0s 3m0s]: a from dispatch to success, c to failure, b unseen in flight", timer.times)
	}
}

func TestBar(t *testing.T) {
	for _, c := range []struct {
		done, total int
		want        string
	}{{0, 0, "[------------------------------]   0%"}, {1, 3, "[##########--------------------]  33%"}, {3, 3, "[##############################] 100%"}} {
		if got := bar(c.done, c.total); got != c.want {
			t.Errorf("bar(%d, %d) = %q, want %q", c.done, c.total, got, c.want)
		}
	}
}

// A node waiting for its confirmation is counted, with how to approve it,
// and listed with what it waits for.
func TestStatusWaitingConfirmation(t *testing.T) {
	var out bytes.Buffer
	job := statusFixture()
	job.Spec.RequireConfirmation = true
	job.Status.NodeStatus[3].State, job.Status.NodeStatus[3].Reason = v1alpha1.StateWaitingConfirmation, "approved, waiting for a concurrency slot"
	job.Status.Counts.WaitingConfirmation = 1
	writeStatus(&out, job, now, estimateBasis{})
	if !strings.Contains(out.String(), "1 waiting for confirmation (no slot, no clock)") ||
		!strings.Contains(out.String(), job.Status.NodeStatus[3].NodeName) || !strings.Contains(out.String(), "approved, waiting for a concurrency slot") {
		t.Errorf("a node waiting for its confirmation is shown, with what it waits for:\n%s", out.String())
	}
}
