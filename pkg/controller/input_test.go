package controller

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// Per-node events of large jobs would cost the API server more than the
// upgrades: above perNodeEventLimit only warnings and progress are recorded,
// below it progress is left out (every node has its event), and a long
// message is cut to what events.k8s.io accepts.
func TestRecordEventsAtScale(t *testing.T) {
	record := func(nodes int, evs []rollout.Event) []string {
		rec := events.NewFakeRecorder(100)
		r := &Reconciler{recorder: rec}
		job := &v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{Name: "job"}}
		job.Status.NodeStatus = make([]v1alpha1.TaskStatus, nodes)
		r.recordEvents(job, evs)
		close(rec.Events)
		var out []string
		for e := range rec.Events {
			out = append(out, e)
		}
		return out
	}
	evs := []rollout.Event{
		{Reason: rollout.ReasonDispatched, Node: "n1", Message: "Node n1 dispatched"},
		{Warning: true, Reason: rollout.ReasonNodeFailed, Node: "n2", Message: "Node n2 failed: " + strings.Repeat("x", 2000)},
		{Reason: rollout.ReasonProgress, Message: "Progress 10%"},
	}
	g := NewWithT(t)
	small := record(10, evs)
	g.Expect(small).To(HaveLen(2))
	g.Expect(small[0]).To(Equal("Normal Dispatched Node n1 dispatched"))
	g.Expect(len(small[1])).To(BeNumerically("<=", len("Warning NodeFailed ")+maxEventNote))

	large := record(perNodeEventLimit+1, evs)
	g.Expect(large).To(HaveLen(2))
	g.Expect(large[0]).To(HavePrefix("Warning NodeFailed Node n2 failed"))
	g.Expect(large[1]).To(Equal("Normal Progress Progress 10%"))
}
