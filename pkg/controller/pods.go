package controller

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
)

// +kubebuilder:rbac:groups="",namespace=nodeupgrade-system,resources=pods,verbs=get;list;watch;create;delete;patch
// +kubebuilder:rbac:groups=events.k8s.io,namespace=default,resources=events,verbs=create;patch

// cleanupBudget bounds the pod releases and deletes of one reconcile, so a
// wave of finished nodes cannot hold up the next status write; the rest
// follow in the next reconcile.
func (r *Reconciler) cleanupBudget() int { return 4 * r.Options.PodWorkers }

// applyPodActions carries out a committed plan: create the dispatched pods,
// take the tracking finalizer off pods whose outcome is recorded, and delete
// the pods that are cancelled or done. Creates and cancellations come first,
// then routine cleanup within cleanupBudget. It reports whether cleanup was
// left for later.
func (r *Reconciler) applyPodActions(ctx context.Context, job *v1alpha1.NodeUpgradeJob, pods jobPods, plan rollout.Plan, installImage string) (bool, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.Options.PodWorkers)
	for _, d := range plan.Dispatch {
		if _, exists := pods[d.Node]; exists {
			continue
		}
		g.Go(func() error { return r.createPod(gctx, job, d, installImage) })
	}
	// The plan orders its cleanup, cancellations first; only the budget is
	// the controller's.
	cleanup := plan.Cleanup
	more := len(cleanup) > r.cleanupBudget()
	if more {
		cleanup = cleanup[:r.cleanupBudget()]
	}
	for _, c := range cleanup {
		pod, ok := pods[c.Node]
		if !ok {
			continue
		}
		g.Go(func() error {
			if c.Release {
				if err := r.releasePod(gctx, pod); err != nil {
					return err
				}
			}
			if c.Delete {
				return r.deletePod(gctx, pod, c.Cancel)
			}
			return nil
		})
	}
	return more, g.Wait()
}

func (r *Reconciler) createPod(ctx context.Context, job *v1alpha1.NodeUpgradeJob, d rollout.Dispatch, installImage string) error {
	log := klog.FromContext(ctx).WithValues("node", d.Node)
	pod := upgradepod.BuildAt(upgradepod.Params{
		JobName: job.Name, JobUID: string(job.UID), NodeName: d.Node,
		Namespace:    r.Options.Namespace,
		RunnerImage:  r.Options.RunnerImage,
		InstallImage: installImage,
		PullSecrets:  r.Options.ImagePullSecrets,
		Version:      job.Spec.Version,
		FromVersion:  d.FromVersion,
		CheckItems:   job.Spec.CheckItems,
		Thresholds:   r.Options.Thresholds,
		Deadline:     d.Deadline,
		OwnerRef:     metav1.NewControllerRef(job, v1alpha1.GroupVersion.WithKind("NodeUpgradeJob")),
	}, r.Clock.Now())
	if err := r.Client.Create(ctx, pod); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil // created by an earlier reconcile whose pod the cache has not shown yet
		}
		r.recordEvents(job, []rollout.Event{{Warning: true, Reason: "PodCreateFailed", Node: d.Node,
			Message: fmt.Sprintf("Creating the upgrade pod for node %s failed: %v", d.Node, err)}})
		return fmt.Errorf("creating upgrade pod for node %s: %w", d.Node, err)
	}
	r.Metrics.dispatched(job)
	log.V(2).Info("Upgrade pod created", "pod", klog.KObj(pod), "deadline", d.Deadline)
	return nil
}

// releasePod takes the tracking finalizer off a pod whose outcome is recorded.
func (r *Reconciler) releasePod(ctx context.Context, pod *corev1.Pod) error {
	if !controllerutil.ContainsFinalizer(pod, v1alpha1.FinalizerPodTracking) {
		return nil
	}
	patched := pod.DeepCopy()
	controllerutil.RemoveFinalizer(patched, v1alpha1.FinalizerPodTracking)
	if err := r.Client.Patch(ctx, patched, client.MergeFrom(pod)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing upgrade pod %s: %w", pod.Name, err)
	}
	return nil
}

// deletePod deletes a pod; cancel says why when the pod still runs (its
// step is stopped), "" when it is done.
func (r *Reconciler) deletePod(ctx context.Context, pod *corev1.Pod, cancel string) error {
	if !pod.DeletionTimestamp.IsZero() {
		return nil
	}
	err := r.Client.Delete(ctx, pod, client.Preconditions{UID: &pod.UID})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting upgrade pod %s: %w", pod.Name, err)
	}
	log := klog.FromContext(ctx).WithValues("pod", klog.KObj(pod), "node", pod.Annotations[v1alpha1.AnnotationNode])
	if cancel != "" {
		log.Info("Upgrade pod cancelled", "reason", cancel)
		return nil
	}
	log.V(2).Info("Upgrade pod deleted")
	return nil
}
