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

// handledElsewhere says why this controller must leave job alone, if it must:
// a condition reason and a message naming the controller and how to disable
// it. It reads only the job, so it is the same on every replica.
func handledElsewhere(job *v1alpha1.NodeUpgradeJob) (reason, message string, ok bool) {
	if controllerutil.ContainsFinalizer(job, v1alpha1.FinalizerKubeEdgeController) {
		return v1alpha1.ReasonKubeEdgeControllerManager, fmt.Sprintf("Finalizer %s is set: %s", v1alpha1.FinalizerKubeEdgeController, disableControllerManager), true
	}
	for _, mf := range job.ManagedFields {
		if strings.Contains(strings.ToLower(mf.Manager), "cloudcore") {
			return v1alpha1.ReasonKubeEdgeTaskManager, fmt.Sprintf("Field manager %q writes this job: %s", mf.Manager, disableTaskManager), true
		}
	}
	// This controller never writes status.phase (a v1alpha2 field) and
	// never writes through v1alpha2: either is KubeEdge's v1alpha2 task code.
	if job.Status.Phase != "" {
		return v1alpha1.ReasonKubeEdgeControllerManager, fmt.Sprintf("status.phase %q was written by another controller: %s", job.Status.Phase, disableControllerManager), true
	}
	for _, mf := range job.ManagedFields {
		if mf.Subresource == "status" && mf.APIVersion == "operations.kubeedge.io/v1alpha2" {
			return v1alpha1.ReasonKubeEdgeControllerManager, fmt.Sprintf("Field manager %q writes the status through v1alpha2: %s", mf.Manager, disableControllerManager), true
		}
	}
	if job.Spec.RequireConfirmation {
		return v1alpha1.ReasonUnsupportedField, "spec.requireConfirmation is true: nodeupgrade has no confirmation step; KubeEdge's own controllers implement it", true
	}
	if job.Spec.ImageDigestGatter != nil {
		return v1alpha1.ReasonUnsupportedField, "spec.imageDigestGatter is set: nodeupgrade does not check image digests, and will not upgrade without the check the job asks for; use KubeEdge's own controllers, or drop the field and pin the image instead", true
	}
	return "", "", false
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
