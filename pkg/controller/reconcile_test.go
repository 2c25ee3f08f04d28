package controller

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

var jobsResource = schema.GroupResource{Group: v1alpha1.GroupVersion.Group, Resource: "nodeupgradejobs"}

// statusWrite matches the writes of the job's status.
func statusWrite(w write) bool { return w.Verb == "patch status" }

// expectCommittedFirst checks the last reconcile's writes: a pod of the
// job's is only created once the API holds its node's dispatch, only
// released or deleted once it holds the node's outcome, and no pod write
// comes before a status write of the same reconcile.
func expectCommittedFirst(g Gomega, h *harness) {
	statusAt := slices.IndexFunc(h.writes, statusWrite)
	for i, w := range h.writes {
		if w.Kind != "Pod" || !w.Own {
			continue
		}
		g.Expect(statusAt < 0 || statusAt < i).To(BeTrue(), "a pod write before the status write: %v", h.did())
		switch w.Verb {
		case "create":
			g.Expect(w.Committed).To(Equal(v1alpha1.StateInit), "pod of %s created while the API holds %q for it: %v", w.Node, w.Committed, h.did())
		default:
			g.Expect(rollout.NodeFinal(w.Committed)).To(BeTrue(), "pod of %s %sd while the API holds %q for it: %v", w.Node, w.Verb, w.Committed, h.did())
		}
	}
}

// Status is committed before any pod action, all the way through a job:
// every create finds its node's dispatch in the API, every release and
// delete its outcome. Reordering the write and the pod actions in
// reconcileNormal fails this test.
func TestStatusIsCommittedBeforePodActions(t *testing.T) {
	g := NewWithT(t)
	nodes := []string{"a", "b", "c", "d", "e"}
	h := newHarness(t, testJob("commit", 2, nodes...), edgeNodes(nodes...), nil)
	creates := map[string]int{}
	for round := 0; round < 20 && !rollout.JobFinal(h.stored().Status.State); round++ {
		h.mustReconcile()
		expectCommittedFirst(g, h)
		for _, w := range h.writes {
			if w.Kind == "Pod" && w.Verb == "create" {
				creates[w.Node]++
			}
		}
		// The nodes' runners: the first in flight succeeds, the third fails.
		for node, pod := range h.pods() {
			if pod.Status.Phase == "" && pod.DeletionTimestamp.IsZero() {
				h.finish(node, node != "c")
				break
			}
		}
	}
	job := h.stored()
	g.Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
	g.Expect(creates).To(Equal(map[string]int{"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}), "one pod per node")
	g.Expect(h.entry("c").Action).To(Equal(v1alpha1.ActionFailure))
	g.Expect(h.pods()).To(HaveLen(1), "only the failed node's pod stays, for its logs")
	g.Expect(h.pods()["c"].Finalizers).NotTo(ContainElement(v1alpha1.FinalizerPodTracking), "released once its outcome is recorded")
}

// A status write refused for anything but a conflict creates no pod: the
// dispatch was never committed. The refusal is made visible and returned,
// for the work queue to retry with backoff.
func TestRefusedStatusWriteCreatesNoPod(t *testing.T) {
	for _, refusal := range []error{
		apierrors.NewForbidden(jobsResource, "refused", errors.New("denied by policy")),
		apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("NodeUpgradeJob").GroupKind(), "refused", nil),
		apierrors.NewRequestEntityTooLargeError("limit is 3145728"),
	} {
		t.Run(string(apierrors.ReasonForError(refusal)), func(t *testing.T) {
			g := NewWithT(t)
			h := newHarness(t, testJob("refused", 2, "a", "b"), edgeNodes("a", "b"), nil)
			// Only the plan's write is refused; the condition's goes through.
			planWrites := 0
			h.refuse = func(w write) error {
				if statusWrite(w) {
					if planWrites++; planWrites%2 == 1 {
						return refusal
					}
				}
				return nil
			}
			_, err := h.reconcile()
			g.Expect(err).To(MatchError(ContainSubstring("writing status")))
			g.Expect(apierrors.ReasonForError(err)).To(Equal(apierrors.ReasonForError(refusal)), "the API's error, wrapped")
			g.Expect(h.did()).NotTo(ContainElement(HavePrefix("create Pod")))
			g.Expect(h.pods()).To(BeEmpty())
			job := h.stored()
			g.Expect(job.Status.NodeStatus).To(BeEmpty(), "nothing committed")
			cond := apimeta.FindStatusCondition(job.Status.Conditions, v1alpha1.ConditionStatusWriteFailed)
			g.Expect(cond).NotTo(BeNil())
			g.Expect(cond.Reason).To(Equal(string(apierrors.ReasonForError(refusal))))
			g.Expect(h.events.Events).To(Receive(HavePrefix("Warning " + v1alpha1.ConditionStatusWriteFailed)))

			h.refuse = nil
			h.mustReconcile()
			expectCommittedFirst(g, h)
			g.Expect(h.pods()).To(HaveLen(2), "the first write that goes through dispatches")
			g.Expect(apimeta.FindStatusCondition(h.stored().Status.Conditions, v1alpha1.ConditionStatusWriteFailed)).To(BeNil(), "and clears the condition")
		})
	}
}

// A conflict (someone wrote since the cache's copy) is a quiet retry: no
// error, a short requeue, nothing else written, nothing reported.
func TestConflictRequeues(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*harness)
	}{
		{"the cached job is stale when the finalizer goes on", func(h *harness) { h.staleCache = "1" }},
		{"the cached job is stale when the status is written", func(h *harness) {
			h.mustReconcile() // finalizer, status, pods
			h.finish("a", true)
			h.staleCache = "1"
		}},
		{"the API reports a conflict on the status write", func(h *harness) {
			h.refuse = func(w write) error {
				if statusWrite(w) {
					return apierrors.NewConflict(jobsResource, "conflict", errors.New("the object has been modified"))
				}
				return nil
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newHarness(t, testJob("conflict", 2, "a", "b", "c"), edgeNodes("a", "b", "c"), nil)
			tc.setup(h)
			podsBefore, statusBefore := len(h.pods()), h.stored().Status
			for len(h.events.Events) > 0 {
				<-h.events.Events
			}
			res, err := h.reconcile()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(res.RequeueAfter).To(Equal(conflictRetry))
			g.Expect(h.did()).NotTo(ContainElement(ContainSubstring("Pod")), "no pod touched")
			g.Expect(h.pods()).To(HaveLen(podsBefore))
			g.Expect(h.stored().Status).To(Equal(statusBefore))
			g.Expect(h.events.Events).To(BeEmpty(), "a conflict is not news")
		})
	}
}

// With no status change to carry the optimistic lock, a plan that creates
// pods is only trusted once the cached job is confirmed current.
func TestStaleCacheCreatesNoPodWithoutAWrite(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, testJob("stale", 2, "a", "b"), edgeNodes("a", "b"), nil)
	h.mustReconcile()
	// b's pod is not (yet) to be seen; the status holds b's dispatch, so
	// the plan creates the pod again without writing.
	g.Expect(h.api.Delete(h.ctx, h.pods()["b"])).To(Succeed())
	g.Expect(h.api.Patch(h.ctx, h.pods()["b"], client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))).To(Succeed())
	g.Expect(h.pods()).NotTo(HaveKey("b"))
	h.staleCache = "1"
	res := h.mustReconcile()
	g.Expect(res.RequeueAfter).To(Equal(staleCacheRetry))
	g.Expect(h.writes).To(BeEmpty())

	h.staleCache = ""
	h.mustReconcile()
	g.Expect(h.did()).To(Equal([]string{"create Pod b"}))
	expectCommittedFirst(g, h)
}

// Issue 29 item 5: while every status write is refused, with pods in
// flight, the pods whose outcome the stored status already records are
// still released and deleted, nothing new starts, and the outcomes that
// could not be written stay in their pods until a write goes through.
func TestCleanupWhileStatusWritesKeepFailing(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, testJob("cleanup", 2, "a", "b", "c"), edgeNodes("a", "b", "c"), nil)
	h.mustReconcile()
	g.Expect(h.pods()).To(HaveLen(2), "a and b in flight")

	// a succeeds and its outcome is committed, but its pod could not be
	// released (the API refused the pod patch): a's pod outlives its
	// recorded outcome, c is dispatched in the same write.
	h.finish("a", true)
	h.refuse = func(w write) error {
		if w.Kind == "Pod" && w.Node == "a" {
			return apierrors.NewServiceUnavailable("pod writes unavailable")
		}
		return nil
	}
	_, err := h.reconcile()
	g.Expect(err).To(HaveOccurred())
	g.Expect(h.entry("a").State).To(Equal(v1alpha1.StateSuccessful))
	g.Expect(h.pods()).To(HaveKey("a"))
	g.Expect(h.pods()).To(HaveKey("c"))

	// Now every status write is refused, the condition's too, while b
	// finishes and c runs.
	h.finish("b", false)
	h.refuse = func(w write) error {
		if statusWrite(w) {
			return apierrors.NewForbidden(jobsResource, "cleanup", errors.New("every status write denied"))
		}
		return nil
	}
	before := h.stored()
	for range 3 {
		_, err := h.reconcile()
		g.Expect(err).To(MatchError(ContainSubstring("every status write denied")))
		g.Expect(slices.IndexFunc(h.writes, func(w write) bool { return statusWrite(w) && !w.Refused })).To(Equal(-1))
		expectCommittedFirst(g, h)
	}
	g.Expect(h.pods()).NotTo(HaveKey("a"), "a's outcome is recorded: its pod is released and deleted")
	g.Expect(h.pods()).To(HaveKey("b"))
	g.Expect(h.pods()["b"].Finalizers).To(ContainElement(v1alpha1.FinalizerPodTracking), "b's outcome is not recorded: its pod stays tracked")
	g.Expect(h.pods()["c"].Finalizers).To(ContainElement(v1alpha1.FinalizerPodTracking), "c runs on")
	g.Expect(h.stored().Status).To(Equal(before.Status), "nothing written")
	var warnings []string
	for len(h.events.Events) > 0 {
		if e := <-h.events.Events; strings.HasPrefix(e, "Warning "+v1alpha1.ConditionStatusWriteFailed) {
			warnings = append(warnings, e)
		}
	}
	g.Expect(warnings).NotTo(BeEmpty(), "with the condition refused too, the Warning event is what shows the refusal")

	h.refuse = nil
	h.finish("c", true)
	for range 3 {
		h.mustReconcile()
		expectCommittedFirst(g, h)
	}
	job := h.stored()
	g.Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
	g.Expect(h.entry("b").Action).To(Equal(v1alpha1.ActionFailure), "b's outcome, kept by its pod, is recorded once a write goes through")
	g.Expect(h.pods()).To(HaveLen(1), "b's pod stays for its logs")
}

// A deleted job cancels its upgrades: every pod is released and deleted,
// then the job's cleanup finalizer comes off and the job goes.
func TestDeletedJobCancelsItsPods(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, testJob("deleted", 3, "a", "b", "c"), edgeNodes("a", "b", "c"), nil)
	h.mustReconcile()
	g.Expect(h.pods()).To(HaveLen(3))
	g.Expect(h.api.Delete(h.ctx, h.stored())).To(Succeed())
	h.mustReconcile()
	g.Expect(h.pods()).To(BeEmpty())
	err := h.api.Get(h.ctx, client.ObjectKey{Name: "deleted"}, &v1alpha1.NodeUpgradeJob{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the job goes once its pods are let go: %v", err)
	// The next reconcile finds nothing and does nothing.
	g.Expect(h.mustReconcile()).To(Equal(reconcile.Result{}))
	g.Expect(h.writes).To(BeEmpty())
}

// A job that another controller handles is left alone but for one
// condition; one that this controller finished stays finished.
func TestFinishedJobStaysFinished(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, testJob("done", 1, "a"), edgeNodes("a"), nil)
	h.mustReconcile()
	h.finish("a", true)
	h.mustReconcile()
	g.Expect(h.stored().Status.State).To(Equal(v1alpha1.StateSuccessful))
	h.clock.Step(time.Hour)
	res := h.mustReconcile()
	g.Expect(h.writes).To(BeEmpty())
	g.Expect(res.RequeueAfter).To(BeZero())
	g.Expect(controllerutil.ContainsFinalizer(h.stored(), v1alpha1.FinalizerJobCleanup)).To(BeTrue(), "until the job is deleted")
}

// Cleanup is bounded per reconcile (4 x PodWorkers) so a wave of finished
// nodes cannot hold up the next status write; the rest follows at once.
func TestCleanupBudgetContinuesAtOnce(t *testing.T) {
	g := NewWithT(t)
	nodes := []string{"a", "b", "c", "d", "e", "f"}
	h := newHarness(t, testJob("budget", 6, nodes...), edgeNodes(nodes...), func(o *Options) { o.PodWorkers = 1 })
	h.mustReconcile()
	for _, n := range nodes {
		h.finish(n, true)
	}
	res := h.mustReconcile()
	expectCommittedFirst(g, h)
	g.Expect(res.RequeueAfter).To(Equal(cleanupContinue))
	g.Expect(h.pods()).To(HaveLen(2), "4 of 6 cleaned up")
	res = h.mustReconcile()
	g.Expect(h.pods()).To(BeEmpty())
	g.Expect(res.RequeueAfter).To(BeZero(), "the job is done")
}

// A pod create the API refuses is reported on the job and retried: its
// node's dispatch stays recorded, so the next reconcile creates it.
func TestRefusedPodCreateIsReportedAndRetried(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, testJob("create", 1, "a"), edgeNodes("a"), nil)
	h.refuse = func(w write) error {
		if w.Verb == "create" {
			return apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("exceeded quota"))
		}
		return nil
	}
	_, err := h.reconcile()
	g.Expect(err).To(MatchError(ContainSubstring("creating upgrade pod for node a")))
	g.Expect(h.entry("a").State).To(Equal(v1alpha1.StateInit))
	var warning string
	for len(h.events.Events) > 0 {
		if e := <-h.events.Events; strings.Contains(e, "PodCreateFailed") {
			warning = e
		}
	}
	g.Expect(warning).To(ContainSubstring("exceeded quota"))
	h.refuse = nil
	h.mustReconcile()
	g.Expect(h.did()).To(Equal([]string{"create Pod a"}))
}

// Status writes of one job keep StatusWriteInterval apart: a change too
// soon after a write waits for the rest of the interval, unwritten.
func TestStatusWritesAreCoalesced(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, testJob("coalesce", 1, "a", "b"), edgeNodes("a", "b"), func(o *Options) { o.StatusWriteInterval = time.Second })
	h.mustReconcile()
	h.finish("a", true)
	h.clock.Step(300 * time.Millisecond)
	res := h.mustReconcile()
	g.Expect(res.RequeueAfter).To(Equal(700 * time.Millisecond))
	g.Expect(h.writes).To(BeEmpty())
	h.clock.Step(700 * time.Millisecond)
	h.mustReconcile()
	g.Expect(h.entry("a").State).To(Equal(v1alpha1.StateSuccessful))
	g.Expect(h.entry("b").State).To(Equal(v1alpha1.StateInit))
}

// A job naming an image outside the allow-list fails before any pod exists.
func TestImageOutsideTheAllowListIsRefused(t *testing.T) {
	g := NewWithT(t)
	job := testJob("image", 1, "a")
	job.Spec.Image = "registry.example.com/someone/installer"
	h := newHarness(t, job, edgeNodes("a"), nil)
	h.mustReconcile()
	g.Expect(h.pods()).To(BeEmpty())
	st := h.stored().Status
	g.Expect(st.State).To(Equal(v1alpha1.StateFailed))
	g.Expect(st.Reason).To(ContainSubstring(`image repository "registry.example.com/someone/installer" is not allowed`))
}
