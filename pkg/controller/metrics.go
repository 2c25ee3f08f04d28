package controller

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// Metrics are the controller's Prometheus metrics, on controller-runtime's
// registry (served at the manager's metrics address). docs/metrics.md lists
// them. A nil *Metrics records nothing, for tests.
type Metrics struct {
	jobNodes        *prometheus.GaugeVec
	nodeDuration    *prometheus.HistogramVec
	jobsFinished    *prometheus.CounterVec
	dispatches      prometheus.Counter
	nodeResults     *prometheus.CounterVec
	toleranceWait   prometheus.Histogram
	statusWrites    prometheus.Counter
	shardWrites     prometheus.Counter
	statusBytes     *prometheus.GaugeVec
	statusFailures  *prometheus.CounterVec
	nodeSeconds     *prometheus.GaugeVec
	mu              sync.Mutex
	toleranceHitsAt map[string]time.Time
	// slowest holds, per job, the successful nodes nodeSeconds shows.
	slowest map[string][]nodeTime
	// failedShown counts, per job, the failed nodes nodeSeconds shows.
	failedShown map[string]int
}

// slowestKept is how many successful nodes of a job
// nodeupgrade_node_upgrade_seconds shows, the slowest: a dashboard's "slowest
// nodes" table without a series per node of a 10,000-node fleet. Failed
// nodes are all shown; failureTolerate bounds them.
const slowestKept = 10

// failedKept bounds the failed nodes of one job nodeupgrade_node_upgrade_seconds
// shows, the first to fail: failureTolerate bounds them as a share, and a
// share of 100,000 nodes is still too many series.
const failedKept = 100

type nodeTime struct {
	node    string
	seconds float64
}

var (
	metricsOnce sync.Once
	shared      *Metrics
)

// NewMetrics registers the metrics once per process and returns them.
func NewMetrics() *Metrics {
	metricsOnce.Do(func() {
		m := &Metrics{
			jobNodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "nodeupgrade_job_nodes", Help: "Nodes of each unfinished NodeUpgradeJob by state (pending, in_flight, waiting_confirmation, succeeded, failed, not_attempted, skipped).",
			}, []string{"job", "state"}),
			nodeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name: "nodeupgrade_node_upgrade_duration_seconds", Help: "Time from a node's dispatch to its final result.",
				Buckets: []float64{5, 15, 30, 60, 120, 180, 300, 600, 1200, 3600},
			}, []string{"result"}),
			jobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "nodeupgrade_jobs_finished_total", Help: "NodeUpgradeJobs that reached a final state, by result.",
			}, []string{"result"}),
			dispatches: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "nodeupgrade_node_dispatches_total", Help: "Upgrade pods created.",
			}),
			nodeResults: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "nodeupgrade_node_results_total", Help: "Nodes that reached a final result: Success, Failure, TimeOut, NotAttempted or Skipped (not an edge node, or no such node).",
			}, []string{"result"}),
			toleranceWait: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: "nodeupgrade_job_tolerance_wait_seconds", Help: "How long a job stopped by failureTolerate waited for its in-flight nodes before it ended.",
				Buckets: prometheus.ExponentialBuckets(1, 2, 12),
			}),
			statusWrites: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "nodeupgrade_status_writes_total", Help: "NodeUpgradeJob status writes.",
			}),
			shardWrites: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "nodeupgrade_status_shard_writes_total", Help: "Status shards (ConfigMaps holding a large job's per-node records) created or updated.",
			}),
			statusBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "nodeupgrade_job_status_bytes", Help: "Size of the last written NodeUpgradeJob status, in JSON bytes.",
			}, []string{"job"}),
			statusFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "nodeupgrade_status_write_failures_total", Help: "NodeUpgradeJob status writes the API server refused, other than conflicts, by reason (RequestEntityTooLarge, Invalid, Forbidden, ...).",
			}, []string{"reason"}),
			nodeSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "nodeupgrade_node_upgrade_seconds", Help: "Time from a node's dispatch to its final result (Success, Failure, TimeOut), for the first 100 failed nodes of a job and its 10 slowest successful ones, until the job is deleted.",
			}, []string{"job", "node", "result"}),
			toleranceHitsAt: map[string]time.Time{},
			slowest:         map[string][]nodeTime{},
			failedShown:     map[string]int{},
		}
		metrics.Registry.MustRegister(m.jobNodes, m.nodeDuration, m.jobsFinished, m.dispatches, m.nodeResults, m.toleranceWait, m.statusWrites, m.shardWrites, m.statusBytes, m.statusFailures, m.nodeSeconds)
		m.initResults()
		shared = m
	})
	return shared
}

// initResults exports every result at zero from the start: a series that
// appears at its first increment hides that increment from rate() and
// increase(), so the first failed node or job after a start (on a small
// fleet, the only one) would never show on the dashboard or in an alert
// (seen on the in-cluster world: one node per result, no per-node time).
func (m *Metrics) initResults() {
	for _, r := range []string{v1alpha1.ActionSuccess, v1alpha1.ActionFailure, v1alpha1.ActionTimeOut} {
		m.nodeDuration.WithLabelValues(r)
		m.nodeResults.WithLabelValues(r)
	}
	m.nodeResults.WithLabelValues(v1alpha1.StateNotAttempted)
	m.nodeResults.WithLabelValues(v1alpha1.StateSkipped)
	m.jobsFinished.WithLabelValues(v1alpha1.StateSuccessful)
	m.jobsFinished.WithLabelValues(v1alpha1.StateFailed)
}

func (m *Metrics) dispatched(*v1alpha1.NodeUpgradeJob) {
	if m != nil {
		m.dispatches.Inc()
	}
}

// observeStatusWrite counts a status write; stored is the job's status as
// written (for a sharded job, without the shards' entries).
func (m *Metrics) observeStatusWrite(job *v1alpha1.NodeUpgradeJob, stored *v1alpha1.NodeUpgradeJobStatus) {
	if m == nil {
		return
	}
	m.statusWrites.Inc()
	if b, err := json.Marshal(stored); err == nil {
		m.statusBytes.WithLabelValues(job.Name).Set(float64(len(b)))
	}
}

func (m *Metrics) observeShardWrites(n int) {
	if m != nil {
		m.shardWrites.Add(float64(n))
	}
}

// statusWriteFailed counts a refused write and shows the size of the status
// that was refused, so a job growing past the limit is seen in the gauge.
func (m *Metrics) statusWriteFailed(job *v1alpha1.NodeUpgradeJob, reason string, refused v1alpha1.NodeUpgradeJobStatus) {
	if m == nil {
		return
	}
	m.statusFailures.WithLabelValues(reason).Inc()
	if b, err := json.Marshal(refused); err == nil {
		m.statusBytes.WithLabelValues(job.Name).Set(float64(len(b)))
	}
}

// observePlan records what changed between the status the plan started from
// and the one it committed.
func (m *Metrics) observePlan(job *v1alpha1.NodeUpgradeJob, in rollout.Input, plan rollout.Plan) {
	if m == nil {
		return
	}
	before := make(map[string]v1alpha1.TaskStatus, len(in.Status.NodeStatus))
	for _, e := range in.Status.NodeStatus {
		before[e.NodeName] = e
	}
	for _, e := range plan.Status.NodeStatus {
		old, seen := before[e.NodeName]
		if !rollout.NodeFinal(e.State) || (seen && rollout.NodeFinal(old.State)) {
			continue
		}
		result := e.Action
		if e.State == v1alpha1.StateNotAttempted || e.State == v1alpha1.StateSkipped {
			result = e.State
		}
		m.nodeResults.WithLabelValues(result).Inc()
		if seen && rollout.NodeInFlight(old.State) {
			if dispatched := rollout.ReadEntryTime(&old).Dispatched; !dispatched.IsZero() {
				seconds := in.Now.Sub(dispatched).Seconds()
				m.nodeDuration.WithLabelValues(result).Observe(seconds)
				m.observeNodeTime(job.Name, e.NodeName, result, seconds)
			}
		}
	}
	for _, ev := range plan.Events {
		if ev.Reason == rollout.ReasonToleranceExceeded {
			m.mu.Lock()
			m.toleranceHitsAt[job.Name] = in.Now
			m.mu.Unlock()
		}
	}
	c := plan.Status.Counts
	if !plan.Finished {
		for state, n := range map[string]int32{"pending": c.Pending, "in_flight": c.InFlight, "waiting_confirmation": c.WaitingConfirmation, "succeeded": c.Succeeded, "failed": c.Failed, "not_attempted": c.NotAttempted, "skipped": c.Skipped} {
			m.jobNodes.WithLabelValues(job.Name, state).Set(float64(n))
		}
		return
	}
	if rollout.JobFinal(in.Status.State) {
		return // finished before this plan; counted then
	}
	m.jobsFinished.WithLabelValues(plan.Status.State).Inc()
	m.jobNodes.DeletePartialMatch(prometheus.Labels{"job": job.Name})
	m.statusBytes.DeleteLabelValues(job.Name)
	m.mu.Lock()
	if hit, ok := m.toleranceHitsAt[job.Name]; ok {
		m.toleranceWait.Observe(in.Now.Sub(hit).Seconds())
		delete(m.toleranceHitsAt, job.Name)
	}
	m.mu.Unlock()
}

// observeNodeTime shows a finished node in nodeSeconds: every failed one, and
// a successful one while it is among the job's slowestKept slowest.
func (m *Metrics) observeNodeTime(job, node, result string, seconds float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if result != v1alpha1.ActionSuccess {
		if m.failedShown[job] < failedKept {
			m.failedShown[job]++
			m.nodeSeconds.WithLabelValues(job, node, result).Set(seconds)
		}
		return
	}
	kept := m.slowest[job]
	if len(kept) < slowestKept {
		m.slowest[job] = append(kept, nodeTime{node, seconds})
		m.nodeSeconds.WithLabelValues(job, node, result).Set(seconds)
		return
	}
	fastest := 0
	for i := range kept {
		if kept[i].seconds < kept[fastest].seconds {
			fastest = i
		}
	}
	if seconds <= kept[fastest].seconds {
		return
	}
	m.nodeSeconds.DeleteLabelValues(job, kept[fastest].node, result)
	kept[fastest] = nodeTime{node, seconds}
	m.nodeSeconds.WithLabelValues(job, node, result).Set(seconds)
}

// forgetJob drops a deleted job's per-node series.
func (m *Metrics) forgetJob(job string) {
	if m == nil {
		return
	}
	m.nodeSeconds.DeletePartialMatch(prometheus.Labels{"job": job})
	m.mu.Lock()
	delete(m.slowest, job)
	delete(m.failedShown, job)
	m.mu.Unlock()
}
