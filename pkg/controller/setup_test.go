package controller

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// A node change wakes every unfinished job, not the finished ones.
func TestNodeChangeWakesUnfinishedJobs(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, testJob("running", 1, "a"), edgeNodes("a"), nil)
	done := testJob("done", 1, "a")
	g.Expect(h.api.Create(h.ctx, done)).To(Succeed())
	done.Status.State = v1alpha1.StateSuccessful
	g.Expect(h.api.Status().Update(h.ctx, done)).To(Succeed())
	g.Expect(h.r.activeJobs(h.ctx, nil)).To(ConsistOf(reconcile.Request{NamespacedName: types.NamespacedName{Name: "running"}}))
}

// Only the node changes a plan reads pass: readiness, version, labels; not
// heartbeats.
func TestNodeChangedPredicate(t *testing.T) {
	base := edgeNodes("a")[0]
	changed := func(f func(*corev1.Node)) *corev1.Node {
		n := base.DeepCopy()
		f(n)
		return n
	}
	p := nodeChanged()
	for _, tc := range []struct {
		name string
		new  *corev1.Node
		want bool
	}{
		{"heartbeat", changed(func(n *corev1.Node) { n.Status.Conditions[0].LastHeartbeatTime.Time = n.CreationTimestamp.Add(1) }), false},
		{"annotations", changed(func(n *corev1.Node) { n.Annotations = map[string]string{"x": "y"} }), false},
		{"NotReady", changed(func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }), true},
		{"version", changed(func(n *corev1.Node) { n.Status.NodeInfo.KubeletVersion = kubeletVersion(toVersion) }), true},
		{"labels", changed(func(n *corev1.Node) { n.Labels["fleet"] = "b" }), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(p.Update(event.UpdateEvent{ObjectOld: base, ObjectNew: tc.new})).To(Equal(tc.want))
		})
	}
}
