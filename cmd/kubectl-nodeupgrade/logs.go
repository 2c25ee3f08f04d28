package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodetext"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
)

func (a *app) logsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logs JOB NODE",
		Short: "Print the logs of a node's upgrade pod, every container in the order they run",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := commandContext(cmd)
			defer cancel()
			return a.logs(ctx, args[0], args[1])
		},
	}
}

// logSource opens one container's log.
type logSource func(ctx context.Context, container string) (io.ReadCloser, error)

func (a *app) logs(ctx context.Context, jobName, node string) error {
	job, err := a.getJob(ctx, jobName)
	if err != nil {
		return err
	}
	var entry *v1alpha1.TaskStatus
	for i := range job.Status.NodeStatus {
		if job.Status.NodeStatus[i].NodeName == node {
			entry = &job.Status.NodeStatus[i]
		}
	}
	if entry == nil {
		return fmt.Errorf("node %s is not in %s", node, jobRef(jobName))
	}
	pod, err := a.jobPod(ctx, job, node)
	if err != nil {
		return err
	}
	if pod == nil {
		return fmt.Errorf("node %s of %s has no upgrade pod (pod %s/%s): %s", node, jobRef(jobName), a.namespace, upgradepod.PodName(node), noPodWhy(entry))
	}
	open := func(ctx context.Context, container string) (io.ReadCloser, error) {
		return a.kube.CoreV1().Pods(a.namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: container}).Stream(ctx)
	}
	return writeLogs(ctx, a.out, pod, open)
}

// jobPod finds the job's upgrade pod on node, nil when it has none. The pod
// is named after the node, whichever job it belongs to (an earlier
// controller named it after the job too): the job's own is the one it owns.
func (a *app) jobPod(ctx context.Context, job *v1alpha1.NodeUpgradeJob, node string) (*corev1.Pod, error) {
	pods := &corev1.PodList{}
	if err := a.client.List(ctx, pods, client.InNamespace(a.namespace),
		client.MatchingLabels{v1alpha1.LabelNode: upgradepod.NodeLabelValue(node)}); err != nil {
		return nil, apiError(err, "list", "pods in "+a.namespace)
	}
	for i := range pods.Items {
		if pod := &pods.Items[i]; pod.Annotations[v1alpha1.AnnotationNode] == node && upgradepod.Owns(string(job.UID), pod) {
			return pod, nil
		}
	}
	return nil, nil
}

// noPodWhy explains a missing pod from the node's entry.
func noPodWhy(e *v1alpha1.TaskStatus) string {
	switch {
	case e.State == v1alpha1.StateNone || e.State == v1alpha1.StateNotAttempted || e.State == v1alpha1.StateSkipped:
		return "the node was never dispatched"
	case e.Action == v1alpha1.ActionSuccess:
		return "the pods of upgraded nodes are deleted once their outcome is recorded"
	}
	return "it was deleted (failed pods are kept until the job is deleted, or until a later job needs the node)"
}

// writeLogs prints every container's log, init containers first, each
// under a header, line by line through nodetext.Clean: the node writes the
// logs, and no escape sequence of theirs reaches the terminal. A container whose log cannot be read (not started yet, or
// its node unreachable) gets the reason in place of its log, and the others
// are still printed; the error then says how many could not be read.
func writeLogs(ctx context.Context, w io.Writer, pod *corev1.Pod, open logSource) error {
	type container struct{ name, kind string }
	var containers []container
	for _, c := range pod.Spec.InitContainers {
		containers = append(containers, container{c.Name, "init container"})
	}
	for _, c := range pod.Spec.Containers {
		containers = append(containers, container{c.Name, "container"})
	}
	var failed []string
	for i, c := range containers {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "==> %s/%s %s %s <==\n", pod.Namespace, pod.Name, c.kind, c.name)
		if err := copyLog(ctx, w, c.name, open); err != nil {
			fmt.Fprintf(w, "(no log: %s)\n", strings.ReplaceAll(err.Error(), "\n", " "))
			failed = append(failed, c.name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("could not read the logs of %d of %d containers of pod %s/%s (%s)",
			len(failed), len(containers), pod.Namespace, pod.Name, strings.Join(failed, ", "))
	}
	return nil
}

func copyLog(ctx context.Context, w io.Writer, container string, open logSource) error {
	r, err := open(ctx, container)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	lines := bufio.NewReader(r)
	for {
		line, err := lines.ReadString('\n')
		if _, werr := io.WriteString(w, nodetext.Clean(line)); werr != nil {
			return werr
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
