package controller

import (
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// Every label value a metric takes is named in its Help, so docs/metrics.md
// and /metrics' own description agree with what is emitted.
func TestMetricHelpNamesEveryLabelValue(t *testing.T) {
	g := NewWithT(t)
	// A job with a node skipped, one upgraded and one failed, run through
	// the reconciler: every state and result the metrics take.
	job := testJob("metrics", 3, "a", "b", "missing")
	h := newHarness(t, job, edgeNodes("a", "b"), nil)
	h.mustReconcile()
	h.finish("a", true)
	h.mustReconcile()
	families, err := metrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	seen := map[string]bool{}
	for _, f := range families {
		label := map[string]string{"nodeupgrade_job_nodes": "state", "nodeupgrade_node_results_total": "result"}[f.GetName()]
		if label == "" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					seen[f.GetName()+"/"+l.GetValue()] = true
					g.Expect(f.GetHelp()).To(ContainSubstring(l.GetValue()), "%s's help names %s=%s", f.GetName(), label, l.GetValue())
				}
			}
		}
	}
	for _, want := range []string{"nodeupgrade_job_nodes/skipped", "nodeupgrade_node_results_total/Skipped", "nodeupgrade_node_results_total/Success"} {
		g.Expect(seen).To(HaveKey(want), "the test saw %s", strings.ReplaceAll(want, "/", " "))
	}
}

// nodeupgrade_node_upgrade_seconds shows every failed node and the slowest
// successful ones, whatever order they finish in, until the job is deleted.
func TestNodeUpgradeSecondsKeepsTheSlowestAndTheFailed(t *testing.T) {
	g := NewWithT(t)
	m := &Metrics{
		nodeSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_node_upgrade_seconds"}, []string{"job", "node", "result"}),
		slowest:     map[string][]nodeTime{},
		failedShown: map[string]int{},
	}
	for i, s := range []int{7, 3, 12, 1, 9, 5, 11, 2, 8, 4, 10, 6} {
		m.observeNodeTime("fleet", fmt.Sprintf("ok-%02d", s), v1alpha1.ActionSuccess, float64(s))
		if i == 4 {
			m.observeNodeTime("fleet", "broken", v1alpha1.ActionFailure, 30)
			m.observeNodeTime("fleet", "silent", v1alpha1.ActionTimeOut, 300)
		}
	}
	m.observeNodeTime("other", "ok-01", v1alpha1.ActionSuccess, 1)
	g.Expect(testutil.CollectAndCount(m.nodeSeconds)).To(Equal(slowestKept + 2 + 1))
	for s := 3; s <= 12; s++ {
		g.Expect(testutil.ToFloat64(m.nodeSeconds.WithLabelValues("fleet", fmt.Sprintf("ok-%02d", s), v1alpha1.ActionSuccess))).To(BeEquivalentTo(s))
	}
	g.Expect(testutil.ToFloat64(m.nodeSeconds.WithLabelValues("fleet", "silent", v1alpha1.ActionTimeOut))).To(BeEquivalentTo(300))
	m.forgetJob("fleet")
	g.Expect(testutil.CollectAndCount(m.nodeSeconds)).To(Equal(1), "only the other job's node is left")
	g.Expect(m.slowest).NotTo(HaveKey("fleet"))
}

// A job of 100,000 nodes may fail thousands: the per-node series stop at
// failedKept a job, so the metric stays bounded.
func TestNodeUpgradeSecondsBoundsTheFailed(t *testing.T) {
	g := NewWithT(t)
	m := &Metrics{
		nodeSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_node_upgrade_seconds_bounded"}, []string{"job", "node", "result"}),
		slowest:     map[string][]nodeTime{},
		failedShown: map[string]int{},
	}
	for i := range 3 * failedKept {
		m.observeNodeTime("fleet", fmt.Sprintf("bad-%04d", i), v1alpha1.ActionFailure, 30)
	}
	g.Expect(testutil.CollectAndCount(m.nodeSeconds)).To(Equal(failedKept))
	m.forgetJob("fleet")
	g.Expect(testutil.CollectAndCount(m.nodeSeconds)).To(BeZero())
}
