package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// annotationRetryOf names the job a retry job was made from.
const annotationRetryOf = "operations.kubeedge.io/retry-of"

// maxCreateTries bounds the names tried when others create retry jobs at
// the same moment.
const maxCreateTries = 5

func (a *app) retryCommand() *cobra.Command {
	var yes bool
	var per time.Duration
	cmd := &cobra.Command{
		Use:   "retry JOB",
		Short: "Create JOB-retry-N for the failed and not-attempted nodes of a finished job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := commandContext(cmd)
			defer cancel()
			return a.retry(ctx, args[0], yes, per)
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "Create the job without asking")
	cmd.Flags().DurationVar(&per, "per-node", 0, "Time one node takes, for the plan's estimate")
	return cmd
}

func (a *app) retry(ctx context.Context, name string, yes bool, per time.Duration) error {
	src, err := a.getJob(ctx, name)
	if err != nil {
		return err
	}
	if !rollout.JobFinal(src.Status.State) {
		state := src.Status.State
		if state == v1alpha1.StateNone {
			state = "not started"
		}
		// A retry beside a running job would race it for the same nodes.
		return fmt.Errorf("cannot retry %s: it has not finished (%s); retry once it is Successful or Failed", jobRef(name), state)
	}
	list := &v1alpha1.NodeUpgradeJobList{}
	if err := a.client.List(ctx, list); err != nil {
		return apiError(err, "list", "nodeupgradejobs")
	}
	taken := map[string]bool{}
	for i := range list.Items {
		taken[list.Items[i].Name] = true
	}
	next, err := retryJob(src, retryName(name, taken))
	if err != nil {
		return err
	}
	report, err := a.plan(ctx, next, per)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.out, "Retrying %s of %s (failed or not attempted) as a new job:\n\n", plural(len(next.Spec.NodeNames), "node"), jobRef(name))
	if err := writePlan(a.out, report, ""); err != nil {
		return err
	}
	if !yes {
		ok, err := confirm(a.in, a.out, fmt.Sprintf("\nCreate %s? [y/N]: ", jobRef(next.Name)))
		if err != nil {
			return err
		}
		if !ok {
			return errAborted
		}
	}
	for range maxCreateTries {
		err = a.client.Create(ctx, next)
		if !apierrors.IsAlreadyExists(err) {
			break
		}
		// Someone took the name since the list: take the next one.
		taken[next.Name] = true
		next.Name = retryName(name, taken)
	}
	if err != nil {
		return apiError(err, "create", jobRef(next.Name))
	}
	fmt.Fprintf(a.out, "%s created\n", jobRef(next.Name))
	return nil
}

// retryName is name-retry-N with the first N from 1 not taken.
func retryName(name string, taken map[string]bool) string {
	for n := 1; ; n++ {
		if candidate := fmt.Sprintf("%s-retry-%d", name, n); !taken[candidate] {
			return candidate
		}
	}
}

// retryJob is a new job for src's failed and not-attempted nodes, by name,
// with src's version, image, checks and limits.
func retryJob(src *v1alpha1.NodeUpgradeJob, name string) (*v1alpha1.NodeUpgradeJob, error) {
	var nodes []string
	for _, e := range src.Status.NodeStatus {
		if e.State == v1alpha1.StateFailed || e.State == v1alpha1.StateNotAttempted {
			nodes = append(nodes, e.NodeName)
		}
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("nothing to retry: %s has no failed or not-attempted node", jobRef(src.Name))
	}
	spec := *src.Spec.DeepCopy()
	// A retry is meant to run: it does not inherit a pause.
	spec.NodeNames, spec.LabelSelector, spec.Suspend = nodes, nil, false
	return &v1alpha1.NodeUpgradeJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "NodeUpgradeJob"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{annotationRetryOf: src.Name}},
		Spec:       spec,
	}, nil
}

// confirm asks a yes/no question; only "y" or "yes" is a yes, and no answer
// (stdin closed, as in a script) is a no.
func confirm(in io.Reader, out io.Writer, question string) (bool, error) {
	fmt.Fprint(out, question)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && err != io.EOF {
		return false, fmt.Errorf("reading the answer: %w", err)
	}
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes", nil
}
