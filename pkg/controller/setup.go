package controller

import (
	"context"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// SetupWithManager wires the reconciler: jobs, their pods (by owner) and the
// node changes that matter to a rollout (readiness, version, labels).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.client == nil {
		return errNotBuilt
	}
	if err := reportKubeEdgeAtStartup(mgr); err != nil {
		return err
	}
	if err := mgr.Add(orphanSweep{r: r, interval: r.opts.OrphanSweepInterval}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("nodeupgradejob").
		For(&v1alpha1.NodeUpgradeJob{}).
		Owns(&corev1.Pod{}).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.activeJobs), builder.WithPredicates(nodeChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.opts.MaxConcurrentReconciles}).
		Complete(r)
}

// activeJobs maps a node change to every unfinished job, and to every
// finished job that still watches a node that timed out (rollout.Watching):
// there are few at a time, and the node may be among their selections. A
// finished job needs no timer: what its timed-out nodes report comes as
// node events, and a restarted controller plans every job once.
func (r *Reconciler) activeJobs(ctx context.Context, _ client.Object) []reconcile.Request {
	jobs := &v1alpha1.NodeUpgradeJobList{}
	if err := r.client.List(ctx, jobs, client.UnsafeDisableDeepCopy); err != nil {
		klog.FromContext(ctx).Error(err, "Listing NodeUpgradeJobs for a node change")
		return nil
	}
	now := r.clock.Now()
	var reqs []reconcile.Request
	for i := range jobs.Items {
		if status := jobs.Items[i].Status; !rollout.JobFinal(status.State) || rollout.Watching(status, now) || mayWatchSharded(status, now) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: jobs.Items[i].Name}})
		}
	}
	return reqs
}

// nodeChanged passes node events that can change a plan and drops the
// heartbeats that make up nearly all node updates.
func nodeChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			oldNode, ok1 := e.ObjectOld.(*corev1.Node)
			newNode, ok2 := e.ObjectNew.(*corev1.Node)
			if !ok1 || !ok2 {
				return true
			}
			return rollout.NodeReady(oldNode) != rollout.NodeReady(newNode) ||
				oldNode.Status.NodeInfo.KubeletVersion != newNode.Status.NodeInfo.KubeletVersion ||
				!maps.Equal(oldNode.Labels, newNode.Labels)
		},
	}
}

// mayWatchSharded reports whether a finished sharded job may still watch a
// node that timed out: its own status lists only some failed nodes (the
// rest are in its shards), so any failure within rollout.WatchAfterTimeout
// of its end counts.
func mayWatchSharded(status v1alpha1.NodeUpgradeJobStatus, now time.Time) bool {
	if status.Shards == nil || status.Counts.Failed == 0 {
		return false
	}
	end, err := time.Parse(time.RFC3339, status.Time)
	return err == nil && now.Before(end.Add(rollout.WatchAfterTimeout))
}
