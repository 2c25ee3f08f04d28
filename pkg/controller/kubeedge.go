package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// KubeEdge ships controllers for the same NodeUpgradeJob API: cloudcore's
// taskManager module, and on v1.21+ kubeedge-controller-manager. Two
// controllers on one job would upgrade nodes twice and overwrite each other's
// status, so this controller stands back from any job another one handles.

// How to stop each of KubeEdge's controllers, as the condition and event say.
const (
	disableControllerManager = "kubeedge-controller-manager handles this job: to let nodeupgrade handle NodeUpgradeJobs, start kubeedge-controller-manager with --feature-gates=disableNodeTaskV1alpha2=true (and cloudcore with modules.taskManager.enable: false), then create the job again"
	disableTaskManager       = "cloudcore's taskManager handles this job: to let nodeupgrade handle NodeUpgradeJobs, set modules.taskManager.enable: false in cloudcore's config (cloudcore.yaml) and restart cloudcore, then create the job again"
)

// Who runs a job is decided once, on the first reconcile that sees it:
//
//   - This controller's cleanup finalizer on the job means it took the job
//     (owns): it follows the job to its end whatever another controller
//     does, and reports the other's marks (foreignMarks) as the condition
//     OtherController and a Warning event. Its finalizer is put with an
//     optimistic lock on the version it judged, so a KubeEdge controller
//     that marked the job in between makes the patch fail, and the next
//     reconcile stands back.
//   - A NotHandled=True condition means it left the job alone: it stays
//     alone, even once the other controller's marks are gone.
//   - Otherwise handledElsewhere decides.
//
// This controller writes status.phase itself (KubeEdge v1alpha2's, see
// rollout.JobPhase), so a phase is a sign of another controller only on a
// job this controller has not taken.

// owns reports whether this controller took the job.
func owns(job *v1alpha1.NodeUpgradeJob) bool {
	return controllerutil.ContainsFinalizer(job, v1alpha1.FinalizerJobCleanup)
}

// handledElsewhere says why this controller must leave a job it has not
// taken alone, if it must: a condition reason and a message naming the
// controller and how to disable it. It reads only the job, so it is the
// same on every replica.
func handledElsewhere(job *v1alpha1.NodeUpgradeJob) (reason, message string, ok bool) {
	if cond := apimeta.FindStatusCondition(job.Status.Conditions, v1alpha1.ConditionNotHandled); cond != nil && cond.Status == metav1.ConditionTrue {
		return cond.Reason, cond.Message, true // decided before
	}
	if reason, message, ok := foreignMarks(job); ok {
		return reason, message, true
	}
	// status.phase on a job this controller has not taken was written by
	// KubeEdge's v1alpha2 task code.
	if job.Status.Phase != "" {
		return v1alpha1.ReasonKubeEdgeControllerManager, fmt.Sprintf("status.phase %q was written by another controller: %s", job.Status.Phase, disableControllerManager), true
	}
	return "", "", false
}

// foreignMarks says which of KubeEdge's controllers has marked the job, if
// one has: its finalizer, a field manager named after cloudcore, or a
// status written through v1alpha2 (this controller writes through
// v1alpha1 only).
func foreignMarks(job *v1alpha1.NodeUpgradeJob) (reason, message string, ok bool) {
	if controllerutil.ContainsFinalizer(job, v1alpha1.FinalizerKubeEdgeController) {
		return v1alpha1.ReasonKubeEdgeControllerManager, fmt.Sprintf("Finalizer %s is set: %s", v1alpha1.FinalizerKubeEdgeController, disableControllerManager), true
	}
	for _, mf := range job.ManagedFields {
		if strings.Contains(strings.ToLower(mf.Manager), "cloudcore") {
			return v1alpha1.ReasonKubeEdgeTaskManager, fmt.Sprintf("Field manager %q writes this job: %s", mf.Manager, disableTaskManager), true
		}
	}
	for _, mf := range job.ManagedFields {
		if mf.Subresource == "status" && mf.APIVersion == "operations.kubeedge.io/v1alpha2" {
			return v1alpha1.ReasonKubeEdgeControllerManager, fmt.Sprintf("Field manager %q writes the status through v1alpha2: %s", mf.Manager, disableControllerManager), true
		}
	}
	return "", "", false
}

// markOtherController keeps the OtherController condition of a job this
// controller owns true to foreignMarks, with a Warning event the first time
// this process sees each mark. The condition goes False once the marks are
// gone; a job never marked has none.
func (r *Reconciler) markOtherController(job *v1alpha1.NodeUpgradeJob, status *v1alpha1.NodeUpgradeJobStatus) {
	reason, message, marked := foreignMarks(job)
	switch {
	case marked:
		message = "this controller took the job first and follows it to its end; " + message
		if _, seen := r.notHandled.LoadOrStore(string(job.UID)+"/other/"+reason, struct{}{}); !seen && r.recorder != nil {
			r.recorder.Eventf(job, nil, corev1.EventTypeWarning, v1alpha1.ConditionOtherController, "Upgrade", "%s", message)
		}
		apimeta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: v1alpha1.ConditionOtherController,
			Status: metav1.ConditionTrue, Reason: reason, Message: message, ObservedGeneration: job.Generation,
			LastTransitionTime: metav1.NewTime(r.clock.Now())})
	case apimeta.IsStatusConditionTrue(status.Conditions, v1alpha1.ConditionOtherController):
		apimeta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: v1alpha1.ConditionOtherController,
			Status: metav1.ConditionFalse, Reason: "Gone", Message: "no other controller's mark is left on the job",
			ObservedGeneration: job.Generation, LastTransitionTime: metav1.NewTime(r.clock.Now())})
	}
}

// standBack leaves a job another controller handles untouched, apart from
// one NotHandled condition and one Warning event per job and reason.
func (r *Reconciler) standBack(ctx context.Context, job *v1alpha1.NodeUpgradeJob, reason, message string) (ctrl.Result, error) {
	log := klog.FromContext(ctx)
	kubeEdgeActive.Do(func() {
		if reason != v1alpha1.ReasonUnsupportedField {
			log.Info("KubeEdge's own NodeUpgradeJob controller appears to be active; jobs it handles are left alone", "reason", reason, "message", message)
		}
	})
	key := string(job.UID) + "/" + reason
	if _, seen := r.notHandled.LoadOrStore(key, struct{}{}); seen {
		return ctrl.Result{}, nil
	}
	log.Info("Leaving the job alone", "reason", reason, "message", message)
	if r.recorder != nil {
		r.recorder.Eventf(job, nil, corev1.EventTypeWarning, reason, "NotHandled", "%s", message)
	}
	cond := apimeta.FindStatusCondition(job.Status.Conditions, v1alpha1.ConditionNotHandled)
	if cond != nil && cond.Status == metav1.ConditionTrue && cond.Reason == reason && cond.Message == message {
		return ctrl.Result{}, nil
	}
	// A merge patch of the conditions alone: the other controller's fields
	// are not ours to write, and no optimistic lock is taken against it.
	base := job.DeepCopy()
	apimeta.SetStatusCondition(&job.Status.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionNotHandled, Status: metav1.ConditionTrue, Reason: reason, Message: message,
		ObservedGeneration: job.Generation,
	})
	if err := r.client.Status().Patch(ctx, job, client.MergeFrom(base)); err != nil {
		r.notHandled.Delete(key)
		return requeueOnConflict(err, "writing the NotHandled condition")
	}
	return ctrl.Result{}, nil
}

// kubeEdgeActive logs once per process that KubeEdge's controllers are active.
var kubeEdgeActive sync.Once

// reportKubeEdgeAtStartup lists the jobs once the caches are up and logs,
// once, when KubeEdge's controllers appear to handle some of them.
func reportKubeEdgeAtStartup(mgr manager.Manager) error {
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return nil
		}
		jobs := &v1alpha1.NodeUpgradeJobList{}
		if err := mgr.GetClient().List(ctx, jobs, client.UnsafeDisableDeepCopy); err != nil {
			klog.FromContext(ctx).Error(err, "Listing NodeUpgradeJobs to look for KubeEdge's controllers")
			return nil
		}
		for i := range jobs.Items {
			// A job this controller took is followed to its end whatever
			// marks KubeEdge's put on it later (markOtherController warns
			// on the job itself): it says nothing of jobs left alone.
			if owns(&jobs.Items[i]) {
				continue
			}
			if reason, message, ok := handledElsewhere(&jobs.Items[i]); ok && reason != v1alpha1.ReasonUnsupportedField {
				kubeEdgeActive.Do(func() {
					klog.FromContext(ctx).Info("KubeEdge's own NodeUpgradeJob controller appears to be active; jobs it handles are left alone",
						"nodeupgradejob", klog.KObj(&jobs.Items[i]), "reason", reason, "message", message)
				})
				break
			}
		}
		return nil
	}))
}
