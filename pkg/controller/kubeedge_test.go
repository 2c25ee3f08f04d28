package controller

import (
	"slices"
	"strings"
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

func TestHandledElsewhere(t *testing.T) {
	ours := metav1.ManagedFieldsEntry{Manager: "nodeupgrade-controller", APIVersion: "operations.kubeedge.io/v1alpha1", Subresource: "status"}
	for _, tc := range []struct {
		name       string
		job        v1alpha1.NodeUpgradeJob
		wantReason string
		wantInMsg  string
	}{
		{name: "plain job", job: v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{ours}}}},
		{
			name:       "kubeedge-controller-manager finalizer",
			job:        v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{Finalizers: []string{v1alpha1.FinalizerJobCleanup, "kubeedge.io/nodeupgradejob-controller"}}},
			wantReason: v1alpha1.ReasonKubeEdgeControllerManager, wantInMsg: "--feature-gates=disableNodeTaskV1alpha2=true",
		},
		{
			name:       "v1alpha2 phase",
			job:        v1alpha1.NodeUpgradeJob{Status: v1alpha1.NodeUpgradeJobStatus{Phase: "InProgress"}},
			wantReason: v1alpha1.ReasonKubeEdgeControllerManager, wantInMsg: "disableNodeTaskV1alpha2",
		},
		{
			name:       "status written through v1alpha2",
			job:        v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{ours, {Manager: "controllermanager", APIVersion: "operations.kubeedge.io/v1alpha2", Subresource: "status"}}}},
			wantReason: v1alpha1.ReasonKubeEdgeControllerManager, wantInMsg: "disableNodeTaskV1alpha2",
		},
		{
			name:       "cloudcore writes the job",
			job:        v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "cloudcore", APIVersion: "operations.kubeedge.io/v1alpha1", Subresource: "status"}}}},
			wantReason: v1alpha1.ReasonKubeEdgeTaskManager, wantInMsg: "modules.taskManager.enable: false",
		},
		{
			// nodeupgrade confirms nodes itself (spec.approvedNodes).
			name: "requireConfirmation is handled here",
			job:  v1alpha1.NodeUpgradeJob{Spec: v1alpha1.NodeUpgradeJobSpec{RequireConfirmation: true}},
		},
		{
			// Honoured here (jobinput.Refuse judges its digests).
			name: "imageDigestGatter is handled here",
			job:  v1alpha1.NodeUpgradeJob{Spec: v1alpha1.NodeUpgradeJobSpec{ImageDigestGatter: &v1alpha1.ImageDigestGatter{AMD64: "sha256:0"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, msg, ok := handledElsewhere(&tc.job)
			if ok != (tc.wantReason != "") || reason != tc.wantReason {
				t.Fatalf("handledElsewhere = %q, %v; want %q", reason, ok, tc.wantReason)
			}
			if !strings.Contains(msg, tc.wantInMsg) {
				t.Errorf("message %q does not say %q", msg, tc.wantInMsg)
			}
		})
	}
}

// A job kubeedge-controller-manager holds gets one NotHandled condition and
// one Warning event, and nothing else: no finalizer of ours, no pod.
func TestReconcileStandsBackFromKubeEdge(t *testing.T) {
	job := &v1alpha1.NodeUpgradeJob{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeedge-job", UID: "uid-1", Finalizers: []string{v1alpha1.FinalizerKubeEdgeController}},
		Spec:       v1alpha1.NodeUpgradeJobSpec{NodeNames: []string{"edge-1"}, Version: "v1.22.0"},
		Status:     v1alpha1.NodeUpgradeJobStatus{Phase: "InProgress"},
	}
	h := newHarness(t, job, edgeNodes("edge-1"), nil)
	var did []string
	for range 3 {
		h.mustReconcile()
		did = append(did, h.did()...)
	}
	if !slices.Equal(did, []string{"patch status NodeUpgradeJob"}) {
		t.Errorf("writes = %q, want the condition's alone, once", did)
	}

	got := h.stored()
	if !slices.Equal(got.Finalizers, []string{v1alpha1.FinalizerKubeEdgeController}) {
		t.Errorf("finalizers = %v, want KubeEdge's alone", got.Finalizers)
	}
	cond := apimeta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionNotHandled)
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != v1alpha1.ReasonKubeEdgeControllerManager ||
		!strings.Contains(cond.Message, "disableNodeTaskV1alpha2=true") {
		t.Errorf("NotHandled condition = %+v", cond)
	}
	if got.Status.Phase != "InProgress" || got.Status.State != "" || len(got.Status.NodeStatus) != 0 {
		t.Errorf("status beyond the condition changed: %+v", got.Status)
	}
	if pods := h.pods(); len(pods) != 0 {
		t.Errorf("pods = %v, want none", len(pods))
	}
	if n := len(h.events.Events); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
	if e := <-h.events.Events; !strings.HasPrefix(e, "Warning KubeEdgeControllerManager") || !strings.Contains(e, "disableNodeTaskV1alpha2") {
		t.Errorf("event %q", e)
	}
}

// A job this controller took is followed to its end when one of KubeEdge's
// controllers marks it later (as both did during a move between them): the
// nodes are upgraded, the pods released, and the marks reported once as
// the OtherController condition and a Warning event. Before ownership was
// decided once, the mark made the controller stand back mid-rollout.
func TestOwnedJobIsFollowedDespiteKubeEdgeMarks(t *testing.T) {
	job := testJob("taken-first", 1, "edge-1")
	h := newHarness(t, job, edgeNodes("edge-1"), nil)
	h.mustReconcile()
	if h.storedState("edge-1") != v1alpha1.StateInit {
		t.Fatalf("edge-1 = %q, want dispatched", h.storedState("edge-1"))
	}
	if got := h.stored().Status.Phase; got != v1alpha1.JobPhaseInProgress {
		t.Errorf("status.phase = %q, want InProgress", got)
	}

	// kubeedge-controller-manager puts its finalizer on the job.
	stored := h.stored()
	stored.Finalizers = append(stored.Finalizers, v1alpha1.FinalizerKubeEdgeController)
	if err := h.api.Update(h.ctx, stored); err != nil {
		t.Fatal(err)
	}
	h.finish("edge-1", true)
	for range 3 {
		h.mustReconcile()
	}
	got := h.stored()
	if got.Status.State != v1alpha1.StateSuccessful || got.Status.Phase != v1alpha1.JobPhaseCompleted {
		t.Fatalf("job = %q/%q, want Successful/Completed", got.Status.State, got.Status.Phase)
	}
	if apimeta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionNotHandled) != nil {
		t.Errorf("a job this controller took was reported NotHandled")
	}
	cond := apimeta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionOtherController)
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != v1alpha1.ReasonKubeEdgeControllerManager {
		t.Errorf("OtherController condition = %+v", cond)
	}
	if pods := h.pods(); len(pods) != 0 {
		t.Errorf("the upgraded node's pod is left: %d pods", len(pods))
	}
	warnings := 0
	for len(h.events.Events) > 0 {
		if e := <-h.events.Events; strings.HasPrefix(e, "Warning OtherController") {
			warnings++
		}
	}
	if warnings != 1 {
		t.Errorf("%d OtherController warnings, want 1", warnings)
	}
}

// A job left alone stays alone once the other controller's mark is gone:
// the decision is the NotHandled condition, not the mark.
func TestJobLeftAloneStaysAlone(t *testing.T) {
	job := testJob("kubeedge-first", 1, "edge-1")
	job.Finalizers = []string{v1alpha1.FinalizerKubeEdgeController}
	h := newHarness(t, job, edgeNodes("edge-1"), nil)
	h.mustReconcile()
	stored := h.stored()
	stored.Finalizers = nil
	if err := h.api.Update(h.ctx, stored); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		h.mustReconcile()
	}
	got := h.stored()
	if len(got.Finalizers) != 0 || got.Status.State != "" || len(h.pods()) != 0 {
		t.Errorf("the controller took a job it had left alone: finalizers %v, state %q, %d pods", got.Finalizers, got.Status.State, len(h.pods()))
	}
}
