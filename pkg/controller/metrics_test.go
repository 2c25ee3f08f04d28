package controller

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
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
