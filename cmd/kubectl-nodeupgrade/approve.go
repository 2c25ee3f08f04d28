package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// approveOptions are approve's ways of naming the nodes: names, every node,
// or a label selector on the Nodes.
type approveOptions struct {
	all      bool
	selector string
}

func (a *app) approveCommand() *cobra.Command {
	o := &approveOptions{}
	cmd := &cobra.Command{
		Use:   "approve JOB [NODE...] | --all | -l SELECTOR",
		Short: "Confirm nodes of a job with spec.requireConfirmation (adds them to spec.approvedNodes)",
		Long: "Confirm, from the cloud, nodes of a job with spec.requireConfirmation: each waits after its checks, " +
			"before anything on it changes, until it is approved here (or on the node: touch /var/lib/nodeupgrade/approved/JOB). " +
			"An approved node goes on once a concurrency slot is free for it. The approval is recorded in the job's " +
			"spec.approvedNodes, which the API server validates and its audit log shows.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := commandContext(cmd)
			defer cancel()
			return a.approve(ctx, args[0], args[1:], *o)
		},
	}
	cmd.Flags().BoolVar(&o.all, "all", false, `Approve every node of the job ("*"), those not yet waiting too`)
	cmd.Flags().StringVarP(&o.selector, "selector", "l", "", "Approve the job's nodes whose Node matches this label selector")
	return cmd
}

// approveConflicts bounds the retries when the job changes between the
// read and the patch (another approval, the controller's finalizer).
const approveConflicts = 5

// approve adds the named nodes to the job's spec.approvedNodes with a
// merge patch that carries the version it read, so two approvals made at
// once never drop each other's nodes.
func (a *app) approve(ctx context.Context, name string, nodes []string, o approveOptions) error {
	if n := countTrue(len(nodes) > 0, o.all, o.selector != ""); n != 1 {
		return errors.New("approve needs exactly one of: node names, --all, -l SELECTOR")
	}
	for attempt := 0; ; attempt++ {
		job, err := a.getJob(ctx, name)
		if err != nil {
			return err
		}
		add, err := a.nodesToApprove(ctx, job, nodes, o)
		if err != nil {
			return err
		}
		approved := approvedAfter(job.Spec.ApprovedNodes, add)
		if slices.Equal(approved, job.Spec.ApprovedNodes) {
			fmt.Fprintf(a.out, "%s: %s approved already\n", jobRef(name), strings.Join(add, ", "))
			return nil
		}
		err = a.patchApproved(ctx, job, approved)
		if apierrors.IsConflict(err) && attempt < approveConflicts {
			continue
		}
		if err != nil {
			return apiError(err, "patch", jobRef(name))
		}
		fmt.Fprintf(a.out, "%s: approved %s; %s\n", jobRef(name), strings.Join(add, ", "), waitingNote(job))
		return nil
	}
}

// nodesToApprove checks the request against the job and names the nodes.
func (a *app) nodesToApprove(ctx context.Context, job *v1alpha1.NodeUpgradeJob, nodes []string, o approveOptions) ([]string, error) {
	switch {
	case !job.Spec.RequireConfirmation:
		return nil, fmt.Errorf("%s does not require confirmation (spec.requireConfirmation is false): its nodes need no approval", jobRef(job.Name))
	case rollout.JobFinal(job.Status.State):
		return nil, finishedRefusal("approve nodes of", job.Name, job.Status.State)
	case o.all:
		return []string{v1alpha1.ApproveAll}, nil
	}
	ofJob := jobNodes(job)
	if o.selector != "" {
		sel, err := labels.Parse(o.selector)
		if err != nil {
			return nil, fmt.Errorf("-l %q: %w", o.selector, err)
		}
		list := &corev1.NodeList{}
		if err := a.client.List(ctx, list, client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil, apiError(err, "list", "nodes")
		}
		for i := range list.Items {
			if ofJob[list.Items[i].Name] {
				nodes = append(nodes, list.Items[i].Name)
			}
		}
		if len(nodes) == 0 {
			return nil, fmt.Errorf("no node of %s matches -l %q", jobRef(job.Name), o.selector)
		}
	}
	var unknown []string
	for _, n := range nodes {
		if !ofJob[n] {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("not nodes of %s: %s", jobRef(job.Name), strings.Join(unknown, ", "))
	}
	slices.Sort(nodes)
	return slices.Compact(nodes), nil
}

// jobNodes are the nodes a job selected (its status), or names (before its
// first plan, spec.nodeNames).
func jobNodes(job *v1alpha1.NodeUpgradeJob) map[string]bool {
	nodes := map[string]bool{}
	for i := range job.Status.NodeStatus {
		nodes[job.Status.NodeStatus[i].NodeName] = true
	}
	if len(nodes) == 0 {
		for _, n := range job.Spec.NodeNames {
			nodes[n] = true
		}
	}
	return nodes
}

// approvedAfter is spec.approvedNodes with add, sorted, without repeats.
func approvedAfter(approved, add []string) []string {
	out := slices.Concat(approved, add)
	slices.Sort(out)
	out = slices.Compact(out)
	if slices.Equal(out, slices.Sorted(slices.Values(approved))) {
		return approved
	}
	return out
}

// patchApproved writes spec.approvedNodes with the job's resourceVersion
// as a precondition.
func (a *app) patchApproved(ctx context.Context, job *v1alpha1.NodeUpgradeJob, approved []string) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": job.ResourceVersion},
		"spec":     map[string]any{"approvedNodes": approved},
	})
	if err != nil {
		return err
	}
	return a.client.Patch(ctx, job, client.RawPatch(types.MergePatchType, patch))
}

// waitingNote tells how many of the job's nodes wait, as the job last
// showed them.
func waitingNote(job *v1alpha1.NodeUpgradeJob) string {
	return fmt.Sprintf("%d node(s) of the job were waiting; an approved node goes on once a concurrency slot is free for it",
		job.Status.Counts.WaitingConfirmation)
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
