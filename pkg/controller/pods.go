package controller

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

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
func (r *Reconciler) cleanupBudget() int { return 4 * r.opts.PodWorkers }

// applyPodActions carries out a committed plan: create the dispatched pods,
// take the tracking finalizer off pods whose outcome is recorded, and delete
// the pods that are cancelled or done. Creates and cancellations come first,
// then routine cleanup within cleanupBudget. It says how soon to plan again
// for what it could not do (0: as the plan says): cleanup left for later,
// or a create the API server refused because another job's pod holds the
// node, which the next plan, from a cache that shows that pod, turns into
// a wait.
func (r *Reconciler) applyPodActions(ctx context.Context, job *v1alpha1.NodeUpgradeJob, pods observedPods, plan rollout.Plan, installImage string) (time.Duration, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.PodWorkers)
	var refused atomic.Bool
	for _, d := range plan.Dispatch {
		if _, exists := pods.own[d.Node]; exists || d.Rollback {
			continue
		}
		g.Go(func() error {
			if d.Replaces != "" {
				if err := r.deleteKeptPod(gctx, job, pods.kept[d.Node]); err != nil {
					return err
				}
			}
			busy, err := r.createPod(gctx, job, d, installImage)
			if busy {
				refused.Store(true)
			}
			return err
		})
	}
	r.stageAndRollbackPods(gctx, g, job, pods, plan, installImage)
	for _, node := range plan.Approve {
		if pod, ok := pods.own[node]; ok {
			g.Go(func() error { return r.approvePod(gctx, pod) })
		}
	}
	// The plan orders its cleanup, cancellations first; only the budget is
	// the controller's.
	cleanup := plan.Cleanup
	more := len(cleanup) > r.cleanupBudget()
	if more {
		cleanup = cleanup[:r.cleanupBudget()]
	}
	// job.Status is what the plan wrote, or, when it could not, what is stored.
	history := historyEntries(job.Status, cleanup)
	for _, c := range cleanup {
		pod, ok := pods.own[c.Node]
		if !ok {
			continue
		}
		g.Go(func() error {
			if c.Release {
				if err := r.recordHistory(gctx, job, pod, history[c.Node]); err != nil {
					return err
				}
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
	err := g.Wait()
	switch {
	case more:
		return cleanupContinue, err
	case refused.Load():
		return refusedCreateRecheck, err
	}
	return 0, err
}

// approvePod tells a confirmed node's pod to go on: its confirm container
// reads the annotation through a downwardAPI volume, which the node's
// kubelet rewrites within seconds (measured on real edgecore: under 3 s).
func (r *Reconciler) approvePod(ctx context.Context, pod *corev1.Pod) error {
	if pod.Annotations[v1alpha1.AnnotationApproved] == "true" {
		return nil
	}
	base := pod.DeepCopy()
	patched := pod.DeepCopy()
	if patched.Annotations == nil {
		patched.Annotations = map[string]string{}
	}
	patched.Annotations[v1alpha1.AnnotationApproved] = "true"
	if err := r.client.Patch(ctx, patched, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("approving the upgrade pod of node %s: %w", pod.Annotations[v1alpha1.AnnotationNode], err)
	}
	klog.FromContext(ctx).V(2).Info("Upgrade pod approved", "pod", klog.KObj(pod))
	return nil
}

// createPod creates a dispatched node's upgrade pod. It reports busy when
// the API server refused it because another job's upgrade pod has the
// node's pod name: the node is busy, and the next plan puts it back to
// wait (rollout's requeueBusy).
func (r *Reconciler) createPod(ctx context.Context, job *v1alpha1.NodeUpgradeJob, d rollout.Dispatch, installImage string) (busy bool, err error) {
	log := klog.FromContext(ctx).WithValues("node", d.Node)
	build := upgradepod.Build
	if d.Rollback {
		build = upgradepod.BuildRollback
	}
	pod := build(upgradepod.Params{
		JobName: job.Name, JobUID: string(job.UID), NodeName: d.Node,
		Namespace:      r.opts.Namespace,
		RunnerImage:    r.opts.RunnerImage,
		InstallImage:   installImage,
		ImageDigest:    d.ImageDigest,
		PullSecrets:    r.opts.ImagePullSecrets,
		Version:        job.Spec.Version,
		FromVersion:    d.FromVersion,
		CheckItems:     job.Spec.CheckItems,
		Thresholds:     r.opts.Thresholds,
		KeepJobRecords: r.opts.NodeJobRecords,
		Deadline:       d.Deadline,

		RequireConfirmation: job.Spec.RequireConfirmation,
		OwnerRef:            metav1.NewControllerRef(job, v1alpha1.GroupVersion.WithKind("NodeUpgradeJob")),
	}, r.clock.Now())
	if err := r.client.Create(ctx, pod); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return r.alreadyExists(ctx, job, d.Node, pod.Name)
		}
		r.recordEvents(job, []rollout.Event{{Warning: true, Reason: "PodCreateFailed", Node: d.Node,
			Message: fmt.Sprintf("Creating the upgrade pod for node %s failed: %v", d.Node, err)}})
		return false, fmt.Errorf("creating upgrade pod for node %s: %w", d.Node, err)
	}
	r.metrics.dispatched(job)
	log.V(2).Info("Upgrade pod created", "pod", klog.KObj(pod), "deadline", d.Deadline)
	return false, nil
}

// alreadyExists finds out whose pod has the name of the node's upgrade
// pod, reading around the cache (which may not show it yet). The job's own
// pod, created by an earlier reconcile, is fine. Another job's means the
// node is busy: that is told, and reported as busy.
func (r *Reconciler) alreadyExists(ctx context.Context, job *v1alpha1.NodeUpgradeJob, node, name string) (bool, error) {
	pod := &corev1.Pod{}
	if err := r.apiReader.Get(ctx, client.ObjectKey{Namespace: r.opts.Namespace, Name: name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return true, nil // gone since: the next plan dispatches the node again
		}
		return false, fmt.Errorf("reading upgrade pod %s, which refused node %s's: %w", name, node, err)
	}
	if upgradepod.Owns(string(job.UID), pod) {
		return false, nil // created by an earlier reconcile whose pod the cache has not shown yet
	}
	other := upgradepod.JobOf(pod)
	state := string(upgradepod.View(pod).Phase)
	if pod.DeletionTimestamp != nil {
		state += ", being deleted"
	}
	klog.FromContext(ctx).Info("Node busy: another job's upgrade pod holds it", "node", node,
		"pod", klog.KObj(pod), "otherJob", other, "podUID", pod.UID, "phase", state)
	r.recordEvents(job, []rollout.Event{{Reason: "NodeBusy", Node: node,
		Message: fmt.Sprintf("Node %s is busy: job %s's upgrade pod %s (%s) is on it; the node waits for it", node, other, name, state)}})
	return true, nil
}

// deleteKeptPod deletes another job's finished upgrade pod, released and
// kept for its logs, that has the name this job's pod needs
// (rollout.Dispatch.Replaces): only that pod (UID precondition); a pod of
// that name that is not it any more, or is gone, is left to the create.
// Both jobs are told, since the other job's logs of that node go with it.
func (r *Reconciler) deleteKeptPod(ctx context.Context, job *v1alpha1.NodeUpgradeJob, pod *corev1.Pod) error {
	if pod == nil {
		return nil
	}
	node := pod.Annotations[v1alpha1.AnnotationNode]
	err := r.client.Delete(ctx, pod, client.Preconditions{UID: &pod.UID})
	switch {
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return nil
	case err != nil:
		return fmt.Errorf("deleting job %s's finished upgrade pod %s on node %s: %w", upgradepod.JobOf(pod), pod.Name, node, err)
	}
	other := upgradepod.JobOf(pod)
	klog.FromContext(ctx).Info("Deleted another job's finished upgrade pod, kept for its logs, to upgrade the node",
		"node", node, "pod", klog.KObj(pod), "podUID", pod.UID, "otherJob", other)
	r.recordEvents(job, []rollout.Event{{Reason: "KeptPodDeleted", Node: node,
		Message: fmt.Sprintf("Deleted job %s's finished upgrade pod %s on node %s, kept for its logs, to upgrade the node", other, pod.Name, node)}})
	if ref := metav1.GetControllerOf(pod); ref != nil {
		owner := &v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{Name: ref.Name, UID: ref.UID}}
		r.recordEvents(owner, []rollout.Event{{Reason: "KeptPodDeleted", Node: node,
			Message: fmt.Sprintf("Job %s deleted this job's finished upgrade pod %s on node %s, kept for its logs, to upgrade the node", job.Name, pod.Name, node)}})
	}
	return nil
}

// releasePod takes the tracking finalizer off a pod whose outcome is recorded.
func (r *Reconciler) releasePod(ctx context.Context, pod *corev1.Pod) error {
	if !controllerutil.ContainsFinalizer(pod, v1alpha1.FinalizerPodTracking) {
		return nil
	}
	patched := pod.DeepCopy()
	controllerutil.RemoveFinalizer(patched, v1alpha1.FinalizerPodTracking)
	if err := r.client.Patch(ctx, patched, client.MergeFrom(pod)); err != nil && !apierrors.IsNotFound(err) {
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
	err := r.client.Delete(ctx, pod, client.Preconditions{UID: &pod.UID})
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

// createStagePod creates a node's stage pod (spec.preStage); one that
// exists already (an earlier reconcile's, not yet in the cache) is fine.
func (r *Reconciler) createStagePod(ctx context.Context, job *v1alpha1.NodeUpgradeJob, st rollout.StageDispatch, installImage string) error {
	pod := upgradepod.BuildStage(upgradepod.Params{
		JobName: job.Name, JobUID: string(job.UID), NodeName: st.Node,
		Namespace:    r.opts.Namespace,
		RunnerImage:  r.opts.RunnerImage,
		InstallImage: installImage,
		ImageDigest:  st.ImageDigest,
		PullSecrets:  r.opts.ImagePullSecrets,
		OwnerRef:     metav1.NewControllerRef(job, v1alpha1.GroupVersion.WithKind("NodeUpgradeJob")),
	})
	if err := r.client.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the stage pod for node %s: %w", st.Node, err)
	}
	klog.FromContext(ctx).V(2).Info("Stage pod created", "node", st.Node, "pod", klog.KObj(pod))
	return nil
}

// stageAndRollbackPods carries out a plan's stage pods (spec.preStage) and
// health-gate rollback pods (spec.healthGate): creates and deletes.
func (r *Reconciler) stageAndRollbackPods(ctx context.Context, g *errgroup.Group, job *v1alpha1.NodeUpgradeJob, pods observedPods,
	plan rollout.Plan, installImage string) {
	for _, d := range plan.Dispatch {
		if _, exists := pods.rollback[d.Node]; d.Rollback && !exists {
			g.Go(func() error {
				_, err := r.createPod(ctx, job, d, installImage)
				return err
			})
		}
	}
	for _, st := range plan.Stage {
		if _, exists := pods.stage[st.Node]; !exists {
			g.Go(func() error { return r.createStagePod(ctx, job, st, installImage) })
		}
	}
	for _, del := range []struct {
		nodes []string
		pods  jobPods
	}{{plan.StageDelete, pods.stage}, {plan.RollbackDelete, pods.rollback}} {
		for _, node := range del.nodes {
			if pod, ok := del.pods[node]; ok {
				g.Go(func() error { return r.deletePod(ctx, pod, "") })
			}
		}
	}
}
