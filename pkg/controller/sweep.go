package controller

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// orphanSweep releases and deletes every tracked upgrade pod whose job no
// longer exists: once the job is gone, no reconcile ever looks at its pods
// again, and the tracking finalizer would keep them forever. The job's
// deletion normally takes them (reconcileDelete, which reads the pods
// around the cache); this catches what that cannot, such as a job whose
// cleanup finalizer someone removed by hand. It runs on the leader only.
type orphanSweep struct {
	r        *Reconciler
	interval time.Duration
}

func (s orphanSweep) NeedLeaderElection() bool { return true }

func (s orphanSweep) Start(ctx context.Context) error {
	wait.UntilWithContext(ctx, s.r.sweepOrphans, s.interval)
	return nil
}

func (r *Reconciler) sweepOrphans(ctx context.Context) {
	log := klog.FromContext(ctx).WithName("orphan-sweep")
	pods := &corev1.PodList{}
	if err := r.client.List(ctx, pods, client.InNamespace(r.opts.Namespace), client.HasLabels{v1alpha1.LabelJob}); err != nil {
		log.Error(err, "Listing upgrade pods")
		return
	}
	for i := range pods.Items {
		pod := &pods.Items[i]
		owner := jobOwner(pod)
		if owner == nil || !controllerutil.ContainsFinalizer(pod, v1alpha1.FinalizerPodTracking) {
			continue
		}
		if !r.jobGone(ctx, owner.Name, string(owner.UID)) {
			continue
		}
		log.Info("Releasing the upgrade pod of a job that no longer exists", "pod", klog.KObj(pod), "job", owner.Name)
		if err := r.releasePod(ctx, pod); err != nil {
			log.Error(err, "Releasing an orphaned upgrade pod", "pod", klog.KObj(pod))
			continue
		}
		if err := r.deletePod(ctx, pod, ""); err != nil {
			log.Error(err, "Deleting an orphaned upgrade pod", "pod", klog.KObj(pod))
		}
	}
}

// jobGone reports whether no job of this name and UID exists. The cache is
// asked first; only a job it does not show is confirmed with the API server,
// so a lagging cache never releases a live job's pod.
func (r *Reconciler) jobGone(ctx context.Context, name, uid string) bool {
	job := &v1alpha1.NodeUpgradeJob{}
	if err := r.client.Get(ctx, client.ObjectKey{Name: name}, job); err == nil && string(job.UID) == uid {
		return false
	}
	err := r.apiReader.Get(ctx, client.ObjectKey{Name: name}, job)
	switch {
	case apierrors.IsNotFound(err):
		return true
	case err != nil:
		return false // unknown: leave it for the next sweep
	}
	return string(job.UID) != uid
}

// jobOwner is the pod's owner reference to its NodeUpgradeJob, if any.
func jobOwner(pod *corev1.Pod) *metav1.OwnerReference {
	for i := range pod.OwnerReferences {
		ref := &pod.OwnerReferences[i]
		if ref.Kind == "NodeUpgradeJob" && ref.APIVersion == v1alpha1.GroupVersion.String() {
			return ref
		}
	}
	return nil
}
