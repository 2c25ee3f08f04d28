package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/jobinput"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
)

// jobPods are upgrade pods keyed by node name: a job's own, or other jobs'
// pods kept for their logs on the job's nodes (see upgradepod.MarkBusy).
type jobPods map[string]*corev1.Pod

// observedPods are the upgrade pods a plan was made from.
type observedPods struct {
	// own are the job's pods.
	own jobPods
	// kept are other jobs' finished pods, released and kept for their logs,
	// that have the name of a node of this job: a dispatch that Replaces
	// one deletes it first.
	kept jobPods
	// stage are the job's stage pods (spec.preStage); rollback its health
	// gate's rollback pods.
	stage, rollback jobPods
}

// readInput gathers the planner's input from the cache: the job's config,
// refusal and selection (jobinput.Build, as `kubectl nodeupgrade plan`
// does), its nodes and its pods.
func (r *Reconciler) readInput(ctx context.Context, job *v1alpha1.NodeUpgradeJob) (rollout.Input, observedPods, string, error) {
	nodes := &corev1.NodeList{}
	// The nodes are only read; skipping the deep copy keeps a reconcile of a
	// 10,000-node job cheap.
	if err := r.client.List(ctx, nodes, client.UnsafeDisableDeepCopy); err != nil {
		return rollout.Input{}, observedPods{}, "", fmt.Errorf("listing nodes: %w", err)
	}
	in, installImage := jobinput.Build(job, nodes.Items, r.policy(), r.clock.Now())

	var pods observedPods
	var err error
	if pods.own, err = r.listPods(ctx, r.client, job); err != nil {
		return in, pods, "", err
	}
	if pods.stage, pods.rollback, err = r.listStageAndRollbackPods(ctx, job); err != nil {
		return in, pods, "", err
	}
	in.RollbackPods = podViews(pods.rollback)
	in.Pods = podViews(pods.own)
	in.StagePods = podViews(pods.stage)
	in.GatePods = r.gatePods(ctx, job)
	in.HeldBy = r.holdUpgrade(ctx)
	if pods.kept, err = r.markBusyNodes(ctx, job, in.Nodes, in.Pods); err != nil {
		return in, pods, "", err
	}
	return in, pods, installImage, nil
}

// policy is what the controller's options say about jobs.
func (r *Reconciler) policy() jobinput.Policy {
	return jobinput.Policy{EdgeNodeLabel: r.opts.EdgeNodeLabel, AllowedImageRepositories: r.opts.AllowedImageRepositories,
		RequireImageDigest: r.opts.RequireImageDigest}
}

func podViews(pods jobPods) map[string]rollout.PodView {
	views := make(map[string]rollout.PodView, len(pods))
	for node, pod := range pods {
		views[node] = upgradepod.View(pod)
	}
	return views
}

// listPods returns the job's upgrade pods from reader (the cache, or the API
// server itself), keyed by node: those the job owns (upgradepod.Owns), so
// the pod of an older job of the same name, or of another job on the
// node, is never taken for this job's.
func (r *Reconciler) listPods(ctx context.Context, reader client.Reader, job *v1alpha1.NodeUpgradeJob) (jobPods, error) {
	return r.listJobPods(ctx, reader, job, "")
}

// listJobPods lists the job's own pods of one kind by node: its upgrade
// pods (action ""), or the pods of a v1alpha1.AnnotationPodAction.
func (r *Reconciler) listJobPods(ctx context.Context, reader client.Reader, job *v1alpha1.NodeUpgradeJob, action string) (jobPods, error) {
	list := &corev1.PodList{}
	if err := reader.List(ctx, list, client.InNamespace(r.opts.Namespace),
		client.MatchingLabels{v1alpha1.LabelJob: upgradepod.JobLabelValue(job.Name)}); err != nil {
		return nil, fmt.Errorf("listing upgrade pods: %w", err)
	}
	pods := make(jobPods, len(list.Items))
	for i := range list.Items {
		pod := &list.Items[i]
		node := pod.Annotations[v1alpha1.AnnotationNode]
		if node == "" || !upgradepod.Owns(string(job.UID), pod) || pod.Annotations[v1alpha1.AnnotationPodAction] != action {
			continue
		}
		pods[node] = pod
	}
	return pods, nil
}

// markBusyNodes sets BusyWith on the job's nodes where an upgrade pod of
// another job still holds the node (an overlapping job, or a deleted or
// re-created job whose pod still rolls back), so that the planner does not
// start a second upgrade beside it, and KeptPodOf where another job's
// finished pod, kept for its logs, has the node's pod name. It returns
// those kept pods. The cache may not show a pod created a moment ago: the
// API server's refusal of a second pod of one name is what keeps one
// upgrade per node (see createPod); this check spares the attempt.
func (r *Reconciler) markBusyNodes(ctx context.Context, job *v1alpha1.NodeUpgradeJob, nodes map[string]rollout.NodeView, own map[string]rollout.PodView) (jobPods, error) {
	if !rollout.MayStartNodes(job.Status, own) {
		return nil, nil
	}
	list := &corev1.PodList{}
	if err := r.client.List(ctx, list, client.InNamespace(r.opts.Namespace), client.HasLabels{v1alpha1.LabelNode},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing upgrade pods of other jobs: %w", err)
	}
	kept := upgradepod.MarkBusy(list.Items, string(job.UID), nodes)
	for node, pod := range kept {
		kept[node] = pod.DeepCopy() // the list shares the cache's objects
	}
	return kept, nil
}

// listStageAndRollbackPods returns the job's stage pods (spec.preStage)
// and health-gate rollback pods (spec.healthGate) from the cache, by node;
// none for a job without either.
func (r *Reconciler) listStageAndRollbackPods(ctx context.Context, job *v1alpha1.NodeUpgradeJob) (stage, rollback jobPods, err error) {
	if job.Spec.PreStage != nil {
		if stage, err = r.listJobPods(ctx, r.client, job, v1alpha1.PodActionStage); err != nil {
			return nil, nil, err
		}
	}
	if job.Spec.HealthGate != nil {
		if rollback, err = r.listJobPods(ctx, r.client, job, v1alpha1.PodActionRollback); err != nil {
			return nil, nil, err
		}
	}
	return stage, rollback, nil
}
