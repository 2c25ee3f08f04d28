package controller

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// trackedPod is an upgrade pod on node owned by the job name/uid.
func trackedPod(node, job string, uid types.UID) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: "pod-" + string(uid) + "-" + node, Namespace: v1alpha1.DefaultNamespace,
		Labels:      map[string]string{v1alpha1.LabelJob: job, v1alpha1.LabelNode: node},
		Annotations: map[string]string{v1alpha1.AnnotationNode: node},
		Finalizers:  []string{v1alpha1.FinalizerPodTracking},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "NodeUpgradeJob",
			Name: job, UID: uid, Controller: new(true)}},
	}}
}

// The sweep releases and deletes tracked pods whose job is gone, or was
// re-created under the same name, and leaves a live job's pods alone, and
// pods that are not upgrade pods or not tracked.
func TestSweepReleasesOrphansOnly(t *testing.T) {
	g := NewWithT(t)
	live := testJob("live", 1, "a")
	h := newHarness(t, live, edgeNodes("a"), nil)
	untracked := trackedPod("d", "gone", "uid-gone")
	untracked.Finalizers = nil
	foreign := trackedPod("e", "gone", "uid-gone")
	foreign.OwnerReferences = nil
	for _, p := range []*corev1.Pod{
		trackedPod("a", "live", live.UID),   // kept
		trackedPod("b", "gone", "uid-gone"), // released, deleted
		trackedPod("c", "live", "uid-old"),  // an older job of the same name: released, deleted
		untracked, foreign,                  // not the sweep's
	} {
		g.Expect(h.api.Create(h.ctx, p)).To(Succeed())
	}
	h.r.sweepOrphans(h.ctx)
	g.Expect(h.did()).To(ConsistOf("patch Pod b", "delete Pod b", "patch Pod c", "delete Pod c"))
	pods := h.pods()
	g.Expect(pods).To(HaveKey("a"))
	g.Expect(pods["a"].Finalizers).To(ContainElement(v1alpha1.FinalizerPodTracking))
	g.Expect(pods).NotTo(HaveKey("b"))
	g.Expect(pods).NotTo(HaveKey("c"))
	g.Expect(pods).To(HaveKey("d"))
	g.Expect(pods).To(HaveKey("e"))
	g.Expect(orphanSweep{r: h.r}.NeedLeaderElection()).To(BeTrue(), "only the leader sweeps")
}
