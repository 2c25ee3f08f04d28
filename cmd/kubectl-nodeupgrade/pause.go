package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

func (a *app) pauseCommand(suspend bool) *cobra.Command {
	use, short := "pause JOB", "Stop dispatching new nodes (spec.suspend=true); nodes in flight finish"
	if !suspend {
		use, short = "resume JOB", "Dispatch again (spec.suspend=false)"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := commandContext(cmd)
			defer cancel()
			return a.setSuspend(ctx, args[0], suspend)
		},
	}
}

// setSuspend patches spec.suspend with a JSON merge patch. The object is
// read back untyped: an API server whose CRD predates spec.suspend prunes
// the field without an error, and only the returned object shows that (the
// typed object would read the pruned field as false, a resume).
func (a *app) setSuspend(ctx context.Context, name string, suspend bool) error {
	verb := map[bool]string{true: "pause", false: "resume"}[suspend]
	job, err := a.getJob(ctx, name)
	if err != nil {
		return err
	}
	if rollout.JobFinal(job.Status.State) {
		return finishedRefusal(verb, name, job.Status.State)
	}
	if job.Spec.Suspend == suspend {
		fmt.Fprint(a.out, suspendUnchanged(name, suspend))
		return nil
	}
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("NodeUpgradeJob"))
	obj.SetName(name)
	patch := fmt.Appendf(nil, `{"spec":{"suspend":%t}}`, suspend)
	if err := a.client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return apiError(err, "patch", jobRef(name))
	}
	got, found, err := unstructured.NestedBool(obj.Object, "spec", "suspend")
	// A CRD's objects are stored as sent, so a server that knows the field
	// returns it, false included; one that does not prunes it silently.
	if err != nil || !found || got != suspend {
		return suspendDropped(verb, name)
	}
	fmt.Fprint(a.out, suspendMessage(name, suspend))
	return nil
}

func finishedRefusal(verb, name, state string) error {
	return fmt.Errorf("cannot %s %s: it has finished (%s)", verb, jobRef(name), state)
}

func suspendDropped(verb, name string) error {
	return fmt.Errorf("cannot %s %s: the API server dropped spec.suspend, so its NodeUpgradeJob CRD predates pausing; install a nodeupgrade release with spec.suspend", verb, jobRef(name))
}

func suspendUnchanged(name string, suspend bool) string {
	if suspend {
		return jobRef(name) + " is paused already\n"
	}
	return jobRef(name) + " is not paused\n"
}

func suspendMessage(name string, suspend bool) string {
	if suspend {
		return jobRef(name) + " paused: no new node is dispatched; nodes in flight finish\n"
	}
	return jobRef(name) + " resumed\n"
}
