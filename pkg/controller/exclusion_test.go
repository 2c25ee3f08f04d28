package controller

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
)

// otherJobsPod is the upgrade pod another job (UID uid-<job>) has on node
// a, as the controller builds it.
func otherJobsPod(job string) *corev1.Pod {
	const node = "a"
	owner := testJob(job, 1, node)
	pod := upgradepod.Build(upgradepod.Params{
		JobName: job, JobUID: string(owner.UID), NodeName: node, Namespace: v1alpha1.DefaultNamespace,
		RunnerImage: "runner", InstallImage: "docker.io/kubeedge/installation-package:" + toVersion, Version: toVersion,
		Deadline: time.Now().Add(time.Minute),
		OwnerRef: metav1.NewControllerRef(owner, v1alpha1.GroupVersion.WithKind("NodeUpgradeJob")),
	}, time.Now())
	pod.UID = types.UID("pod-of-" + job) // the fake API assigns none
	return pod
}

// drainEvents returns the events recorded so far.
func drainEvents(h *harness) []string {
	var out []string
	for len(h.events.Events) > 0 {
		out = append(out, <-h.events.Events)
	}
	return out
}

// Another job's pod created a moment before this job's, unseen by the
// cache the plan came from: the API server refuses this job's pod (one
// name per node). The controller finds whose pod it is, says so, and plans
// again soon; the next plan, from a cache that shows the pod, puts the
// node back to wait as a busy node, without a slot and without a failure.
func TestCreateRefusedByAnotherJobsPodWaits(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, testJob("late", 1, "a"), edgeNodes("a"), nil)
	other := otherJobsPod("early")
	created := false
	h.refuse = func(w write) error {
		if w.Verb == "create" && w.Kind == "Pod" && !created {
			// The other job's create lands first.
			g.Expect(h.api.Create(h.ctx, other)).To(Succeed())
			created = true
		}
		return nil
	}
	res, err := h.reconcile()
	g.Expect(err).NotTo(HaveOccurred(), "a lost race is no error")
	g.Expect(res.RequeueAfter).To(Equal(refusedCreateRecheck))
	g.Expect(h.entry("a").State).To(Equal(v1alpha1.StateInit))
	g.Expect(h.pods()["a"].UID).To(Equal(other.UID), "the other job's pod is the node's")
	g.Expect(drainEvents(h)).To(ContainElement(And(HavePrefix("Normal NodeBusy"),
		ContainSubstring("job early's upgrade pod "+upgradepod.PodName("a")))))

	h.refuse = nil
	h.mustReconcile()
	e := h.entry("a")
	g.Expect(e.State).To(Equal(v1alpha1.StateNone))
	g.Expect(e.Reason).To(Equal("waiting: another upgrade is running on this node (job early)"))
	g.Expect(h.stored().Status.Counts.Failed).To(BeZero())
	g.Expect(h.did()).NotTo(ContainElement(HavePrefix("create Pod")), "no create while the other pod holds the node")
}

// The job's own pod, created by an earlier reconcile the cache does not
// show yet, is no busy node.
func TestCreateRefusedByItsOwnPodIsFine(t *testing.T) {
	g := NewWithT(t)
	job := testJob("own", 1, "a")
	h := newHarness(t, job, edgeNodes("a"), nil)
	h.refuse = func(w write) error {
		if w.Verb == "create" && w.Kind == "Pod" {
			own := otherJobsPod("own")
			if err := h.api.Create(h.ctx, own); err != nil {
				return err
			}
		}
		return nil
	}
	res, err := h.reconcile()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.RequeueAfter).NotTo(Equal(refusedCreateRecheck))
	g.Expect(drainEvents(h)).NotTo(ContainElement(HavePrefix("Normal NodeBusy")))
	g.Expect(upgradepod.Owns(string(job.UID), h.pods()["a"])).To(BeTrue())
}

// Another job's finished pod, released and kept for its logs, has the
// node's pod name: the dispatch deletes it (that pod only: its UID is the
// precondition), then creates this job's pod, and both jobs are told.
func TestKeptPodOfAnotherJobIsDeletedBeforeTheCreate(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, testJob("next", 1, "a"), edgeNodes("a"), nil)
	kept := otherJobsPod("before")
	kept.Finalizers = nil
	g.Expect(h.api.Create(h.ctx, kept)).To(Succeed())
	kept.Status.Phase = corev1.PodFailed
	g.Expect(h.api.Status().Update(h.ctx, kept)).To(Succeed())

	h.mustReconcile()
	g.Expect(h.did()).To(Equal([]string{"patch NodeUpgradeJob", "patch status NodeUpgradeJob", "delete Pod a", "create Pod a"}))
	g.Expect(h.writes[2].Own).To(BeFalse())
	g.Expect(h.writes[3].Own).To(BeTrue())
	pod := h.pods()["a"]
	g.Expect(pod.UID).NotTo(Equal(kept.UID))
	g.Expect(upgradepod.Owns("uid-next", pod)).To(BeTrue())
	events := drainEvents(h)
	g.Expect(events).To(ContainElement(And(HavePrefix("Normal KeptPodDeleted"), ContainSubstring("Deleted job before's finished upgrade pod"))))
	g.Expect(events).To(ContainElement(And(HavePrefix("Normal KeptPodDeleted"), ContainSubstring("Job next deleted this job's"))))
}

// A pod of another job that still runs is never deleted: the node waits.
func TestRunningPodOfAnotherJobIsNotDeleted(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, testJob("polite", 1, "a"), edgeNodes("a"), nil)
	running := otherJobsPod("busy")
	g.Expect(h.api.Create(h.ctx, running)).To(Succeed())
	h.mustReconcile()
	g.Expect(h.did()).To(Equal([]string{"patch NodeUpgradeJob", "patch status NodeUpgradeJob"}))
	g.Expect(h.entry("a").Reason).To(ContainSubstring("job busy"))
	g.Expect(h.pods()["a"].UID).To(Equal(running.UID))
	g.Expect(strings.Join(drainEvents(h), "\n")).NotTo(ContainSubstring("KeptPodDeleted"))
}
