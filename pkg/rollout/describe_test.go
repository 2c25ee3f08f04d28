package rollout

import (
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

func TestPlanString(t *testing.T) {
	g := NewWithT(t)
	deadline := t0.Add(5 * time.Minute)
	p := Plan{
		Status: v1alpha1.NodeUpgradeJobStatus{State: v1alpha1.StateUpgrading, Progress: "1/14",
			Reason: "upgrading: 1 succeeded, 0 failed, 12 in flight, 1 pending"},
		Cleanup: []PodCleanup{
			{Node: "node-a", Release: true, Delete: true, Cancel: "node timed out: did not finish within 5m0s"},
			{Node: "node-b", Release: true},
		},
		RequeueAfter: 30 * time.Second,
	}
	for i := range 12 {
		d := Dispatch{Node: fmt.Sprintf("node-%02d", i), FromVersion: "v1.20.0", Deadline: deadline}
		if i == 0 {
			d.Replaces = "job-b"
		}
		p.Dispatch = append(p.Dispatch, d)
	}
	lines := strings.Split(p.String(), "\n")
	g.Expect(lines).To(HaveLen(6), "one line per kind: job, dispatch, cancel, release, delete, requeue")
	g.Expect(lines[0]).To(Equal("job Upgrading 1/14: upgrading: 1 succeeded, 0 failed, 12 in flight, 1 pending"))
	g.Expect(lines[1]).To(HavePrefix("dispatch node-00 (from v1.20.0, deadline 2026-11-27T10:05:00Z, replaces job-b's kept pod), node-01 (from v1.20.0, deadline 2026-11-27T10:05:00Z), "))
	g.Expect(lines[1]).To(HaveSuffix("node-09 (from v1.20.0, deadline 2026-11-27T10:05:00Z), (and 2 more)"), "at most 10 nodes a line")
	g.Expect(lines[2:]).To(Equal([]string{
		"cancel node-a: node timed out: did not finish within 5m0s",
		"release node-a, node-b",
		"delete node-a",
		"requeue after 30s",
	}))

	finished := Plan{Status: v1alpha1.NodeUpgradeJobStatus{State: v1alpha1.StateSuccessful, Progress: "3/3"}, Finished: true}
	g.Expect(finished.String()).To(Equal("job Successful 3/3 finished"), "a plan with nothing to do is one line")
	g.Expect(Plan{}.String()).To(Equal("job - -"))
}
