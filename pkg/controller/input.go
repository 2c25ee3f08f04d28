package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/imageref"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
)

// jobPods are a job's upgrade pods keyed by node name.
type jobPods map[string]*corev1.Pod

// readInput gathers the planner's input from the cache: the job's config, its
// selection (only while status has none), its nodes and its pods.
func (r *Reconciler) readInput(ctx context.Context, job *v1alpha1.NodeUpgradeJob) (rollout.Input, jobPods, string, error) {
	in := rollout.Input{Generation: job.Generation, Status: job.Status, Now: r.Clock.Now()}
	cfg, err := rollout.ConfigFromSpec(&job.Spec)
	if err != nil {
		// Only an object stored before validation could get here; refuse it
		// rather than guess.
		defaults, _ := rollout.ConfigFromSpec(&v1alpha1.NodeUpgradeJobSpec{})
		cfg = defaults
		cfg.TargetVersion, cfg.Refusal = job.Spec.Version, err.Error()
	}
	installImage, refusal := r.checkImage(job)
	if cfg.Refusal == "" {
		cfg.Refusal = refusal
	}
	cfg.EdgeNodeLabel = r.Options.EdgeNodeLabel
	in.Config = cfg

	nodes := &corev1.NodeList{}
	// The nodes are only read; skipping the deep copy keeps a reconcile of a
	// 10,000-node job cheap.
	if err := r.Client.List(ctx, nodes, client.UnsafeDisableDeepCopy); err != nil {
		return in, nil, "", fmt.Errorf("listing nodes: %w", err)
	}
	if err := rollout.ObserveNodes(&in, job, nodes.Items, r.Options.EdgeNodeLabel); err != nil {
		in.Config.Refusal = err.Error()
	}

	pods, err := r.listPods(ctx, r.Client, job)
	if err != nil {
		return in, nil, "", err
	}
	if err := r.markBusyNodes(ctx, job, in.Nodes); err != nil {
		return in, nil, "", err
	}
	in.Pods = podViews(pods)
	in.ObjectBytes = rollout.ObjectBytes(job)
	return in, pods, installImage, nil
}

func podViews(pods jobPods) map[string]rollout.PodView {
	views := make(map[string]rollout.PodView, len(pods))
	for node, pod := range pods {
		views[node] = upgradepod.View(pod)
	}
	return views
}

// checkImage normalises the job's install image and applies the controller's
// allow-list. Anyone who may create a NodeUpgradeJob picks code that runs as
// root on every selected node, so a repository outside the list refuses the
// whole job before any pod exists.
func (r *Reconciler) checkImage(job *v1alpha1.NodeUpgradeJob) (string, string) {
	if err := imageref.ValidateVersion(job.Spec.Version); err != nil {
		return "", fmt.Sprintf("spec.version: %v", err)
	}
	if why := targetRefusal(job.Spec.Version); why != "" {
		return "", why
	}
	image, err := imageref.Normalize(job.Spec.Image, job.Spec.Version)
	if err != nil {
		return "", fmt.Sprintf("spec.image: %v", err)
	}
	repo, err := imageref.Repository(job.Spec.Image)
	if err != nil {
		return "", fmt.Sprintf("spec.image: %v", err)
	}
	if !imageref.RepositoryAllowed(repo, r.Options.AllowedImageRepositories) {
		return "", fmt.Sprintf("image repository %q is not allowed by this controller (allowed: %v)", repo, r.Options.AllowedImageRepositories)
	}
	return image, ""
}

// listPods returns the job's upgrade pods from reader (the cache, or the API
// server itself), keyed by node. Pods of an older job with the same name
// (another UID) are ignored.
func (r *Reconciler) listPods(ctx context.Context, reader client.Reader, job *v1alpha1.NodeUpgradeJob) (jobPods, error) {
	list := &corev1.PodList{}
	if err := reader.List(ctx, list, client.InNamespace(r.Options.Namespace),
		client.MatchingLabels{v1alpha1.LabelJob: upgradepod.JobLabelValue(job.Name)}); err != nil {
		return nil, fmt.Errorf("listing upgrade pods: %w", err)
	}
	pods := make(jobPods, len(list.Items))
	for i := range list.Items {
		pod := &list.Items[i]
		node := pod.Annotations[v1alpha1.AnnotationNode]
		if node == "" || pod.Name != upgradepod.PodName(string(job.UID), node) {
			continue
		}
		pods[node] = pod
	}
	return pods, nil
}

// markBusyNodes sets BusyWith on the job's pending nodes where an upgrade
// pod of another job still runs or is being deleted (an overlapping job, or
// a deleted or re-created job whose pod still rolls back), so that the
// planner does not start a second upgrade beside it.
func (r *Reconciler) markBusyNodes(ctx context.Context, job *v1alpha1.NodeUpgradeJob, nodes map[string]rollout.NodeView) error {
	if !rollout.MayStartNodes(job.Status) {
		return nil
	}
	list := &corev1.PodList{}
	if err := r.Client.List(ctx, list, client.InNamespace(r.Options.Namespace), client.HasLabels{v1alpha1.LabelNode},
		client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing upgrade pods of other jobs: %w", err)
	}
	upgradepod.MarkBusy(list.Items, string(job.UID), nodes)
	return nil
}
