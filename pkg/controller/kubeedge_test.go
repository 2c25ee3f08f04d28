package controller

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

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
			name:       "requireConfirmation",
			job:        v1alpha1.NodeUpgradeJob{Spec: v1alpha1.NodeUpgradeJobSpec{RequireConfirmation: true}},
			wantReason: v1alpha1.ReasonUnsupportedField, wantInMsg: "requireConfirmation",
		},
		{
			name:       "imageDigestGatter",
			job:        v1alpha1.NodeUpgradeJob{Spec: v1alpha1.NodeUpgradeJobSpec{ImageDigestGatter: &v1alpha1.ImageDigestGatter{AMD64: "sha256:0"}}},
			wantReason: v1alpha1.ReasonUnsupportedField, wantInMsg: "imageDigestGatter",
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
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	job := &v1alpha1.NodeUpgradeJob{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeedge-job", UID: "uid-1", Finalizers: []string{v1alpha1.FinalizerKubeEdgeController}},
		Spec:       v1alpha1.NodeUpgradeJobSpec{NodeNames: []string{"edge-1"}, Version: "v1.22.0"},
		Status:     v1alpha1.NodeUpgradeJobStatus{Phase: "InProgress"},
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(job).WithStatusSubresource(job).Build()
	rec := events.NewFakeRecorder(10)
	r := &Reconciler{client: c, apiReader: c, recorder: rec, clock: clocktesting.NewFakePassiveClock(time.Now()), metrics: NewMetrics()}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Name: job.Name}}
	for range 3 {
		if _, err := r.Reconcile(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}

	got := &v1alpha1.NodeUpgradeJob{}
	if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
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
	pods := &corev1.PodList{}
	if err := c.List(context.Background(), pods); err != nil || len(pods.Items) != 0 {
		t.Errorf("pods = %v (%v), want none", len(pods.Items), err)
	}
	if n := len(rec.Events); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
	if e := <-rec.Events; !strings.HasPrefix(e, "Warning KubeEdgeControllerManager") || !strings.Contains(e, "disableNodeTaskV1alpha2") {
		t.Errorf("event %q", e)
	}
}
