package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodetext"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// barWidth is the progress bar's width in characters.
const barWidth = 30

func (a *app) statusCommand() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "status JOB",
		Short: "Show a job's progress: counts, failed and in-flight nodes, ETA (-w to follow it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if follow {
				return a.follow(cmd.Context(), args[0])
			}
			ctx, cancel := commandContext(cmd)
			defer cancel()
			job, err := a.getJob(ctx, args[0])
			if err != nil {
				return err
			}
			writeStatus(a.out, job, a.clock.Now())
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "watch", "w", false, "Follow the job until it is final")
	return cmd
}

func (a *app) getJob(ctx context.Context, name string) (*v1alpha1.NodeUpgradeJob, error) {
	job := &v1alpha1.NodeUpgradeJob{}
	if err := a.client.Get(ctx, client.ObjectKey{Name: name}, job); err != nil {
		return nil, apiError(err, "get", jobRef(name))
	}
	return job, nil
}

// follow prints the job's status, then again at every change, until the job
// is final. A watch the server ends is resumed from the last version seen.
func (a *app) follow(ctx context.Context, name string) error {
	getCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	job, err := a.getJob(getCtx, name)
	cancel()
	if err != nil {
		return err
	}
	writeStatus(a.out, job, a.clock.Now())
	for !rollout.JobFinal(job.Status.State) {
		w, err := a.client.Watch(ctx, &v1alpha1.NodeUpgradeJobList{}, client.MatchingFields{"metadata.name": name},
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: job.ResourceVersion}})
		if err != nil {
			return apiError(err, "watch", jobRef(name))
		}
		job, err = a.followEvents(ctx, w, job)
		w.Stop()
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// followEvents prints the job at each change until it is final or the watch
// ends, and returns the last job seen.
func (a *app) followEvents(ctx context.Context, w watch.Interface, job *v1alpha1.NodeUpgradeJob) (*v1alpha1.NodeUpgradeJob, error) {
	for ev := range w.ResultChan() {
		switch ev.Type {
		case watch.Deleted:
			return job, fmt.Errorf("%s was deleted", jobRef(job.Name))
		case watch.Error:
			// Usually "too old resource version": resume from a fresh read.
			getCtx, cancel := context.WithTimeout(ctx, requestTimeout)
			fresh, err := a.getJob(getCtx, job.Name)
			cancel()
			if err != nil {
				return job, err
			}
			return fresh, nil
		case watch.Added, watch.Modified:
			next, ok := ev.Object.(*v1alpha1.NodeUpgradeJob)
			if !ok {
				continue
			}
			job = next
			fmt.Fprintln(a.out)
			writeStatus(a.out, job, a.clock.Now())
			if rollout.JobFinal(job.Status.State) {
				return job, nil
			}
		}
	}
	return job, nil
}

// writeStatus renders a job's progress as of now. Reasons and events carry
// text from the nodes: they are printed through nodetext.Clean, so no
// escape sequence reaches the terminal.
func writeStatus(w io.Writer, job *v1alpha1.NodeUpgradeJob, now time.Time) {
	st := &job.Status
	c := st.Counts
	state := st.State
	if state == v1alpha1.StateNone {
		state = "not started"
	}
	cfg, _ := rollout.ConfigFromSpec(&job.Spec)
	fmt.Fprintf(w, "NodeUpgradeJob %s: %s, to %s (concurrency %d, timeout %s per node)\n", job.Name, state, job.Spec.Version, cfg.Concurrency, cfg.Timeout)
	if st.Reason != "" {
		fmt.Fprintf(w, "%s\n", nodetext.Clean(st.Reason))
	}
	paused := job.Spec.Suspend && !rollout.JobFinal(st.State)
	if paused {
		fmt.Fprintf(w, "Paused (spec.suspend): no node starts, nodes in flight finish; `kubectl nodeupgrade resume %s` continues\n", job.Name)
	}
	finished := int(c.Succeeded + c.Failed + c.NotAttempted + c.Skipped)
	fmt.Fprintf(w, "%s %d/%d finished\n", bar(finished, int(c.Selected)), finished, c.Selected)
	fmt.Fprintf(w, "succeeded %d, failed %d, in flight %d, pending %d, not attempted %d, skipped %d\n",
		c.Succeeded, c.Failed, c.InFlight, c.Pending, c.NotAttempted, c.Skipped)
	if c.WaitingConfirmation > 0 {
		fmt.Fprintf(w, "%d waiting for confirmation (no slot, no clock): `kubectl nodeupgrade approve %s NODE...|--all`\n", c.WaitingConfirmation, job.Name)
	}

	var failed, inFlight, waiting []v1alpha1.TaskStatus
	upgraded := 0
	for _, e := range st.NodeStatus {
		switch {
		case e.State == v1alpha1.StateFailed:
			failed = append(failed, e)
		case rollout.NodeInFlight(e.State):
			inFlight = append(inFlight, e)
		case e.State == v1alpha1.StateNone && e.Reason != "", e.State == v1alpha1.StateWaitingConfirmation:
			waiting = append(waiting, e)
		case e.State == v1alpha1.StateSuccessful && !strings.HasPrefix(e.Reason, "skipped:"):
			upgraded++
		}
	}
	if len(failed) > 0 {
		rows := make([][]string, 0, len(failed))
		for _, e := range failed {
			rows = append(rows, []string{e.NodeName, orDash(nodetext.Clean(e.Event)), nodetext.Clean(e.Reason)})
		}
		writeTable(w, []string{"FAILED", "EVENT", "REASON"}, rows)
	}
	if len(inFlight) > 0 {
		rows := make([][]string, 0, len(inFlight))
		for _, e := range inFlight {
			age, deadline := "-", "-"
			if t := rollout.ReadEntryTime(&e).Dispatched; !t.IsZero() {
				age = now.Sub(t).Round(time.Second).String()
				deadline = deadlineText(cfg.Deadline(t), now)
			}
			rows = append(rows, []string{e.NodeName, nodetext.Clean(e.State), age, deadline})
		}
		writeTable(w, []string{"IN FLIGHT", "STATE", "AGE", "DEADLINE"}, rows)
	}
	if len(waiting) > 0 {
		rows := make([][]string, 0, len(waiting))
		for _, e := range waiting {
			rows = append(rows, []string{e.NodeName, nodetext.Clean(e.Reason)})
		}
		writeTable(w, []string{"WAITING", "REASON"}, rows)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, eta(job, now, upgraded+len(failed)))
}

// eta estimates the time left from the pace of the job so far: nodes
// finished (upgraded or failed, not skipped) per time since the job was
// created.
func eta(job *v1alpha1.NodeUpgradeJob, now time.Time, done int) string {
	st := &job.Status
	created := job.CreationTimestamp.Time
	if rollout.JobFinal(st.State) {
		if end, err := time.Parse(time.RFC3339, st.Time); err == nil {
			return fmt.Sprintf("Finished %s at %s, %s after it was created", st.State, end.UTC().Format(time.RFC3339), end.Sub(created).Round(time.Second))
		}
		return "Finished " + st.State
	}
	if st.State == v1alpha1.StateNone {
		return "ETA: unknown: the controller has not started the job"
	}
	left := int(st.Counts.Pending + st.Counts.InFlight)
	if job.Spec.Suspend {
		return fmt.Sprintf("ETA: none while paused (%s left)", plural(left, "node"))
	}
	elapsed := now.Sub(created)
	if done == 0 || elapsed <= 0 {
		return fmt.Sprintf("ETA: unknown until a node finishes (%s left)", plural(left, "node"))
	}
	remaining := time.Duration(float64(elapsed) * float64(left) / float64(done)).Round(time.Second)
	return fmt.Sprintf("ETA: %s (%s left, at the pace so far: %s in %s)", remaining, plural(left, "node"), plural(done, "node"), elapsed.Round(time.Second))
}

func deadlineText(deadline, now time.Time) string {
	at := deadline.UTC().Format(time.RFC3339)
	if left := deadline.Sub(now); left > 0 {
		return fmt.Sprintf("%s (in %s)", at, left.Round(time.Second))
	}
	return fmt.Sprintf("%s (passed %s ago)", at, now.Sub(deadline).Round(time.Second))
}

// bar draws done/total as [#####-----] with a percentage.
func bar(done, total int) string {
	if total <= 0 {
		return "[" + strings.Repeat("-", barWidth) + "]   0%"
	}
	filled := done * barWidth / total
	return fmt.Sprintf("[%s%s] %3d%%", strings.Repeat("#", filled), strings.Repeat("-", barWidth-filled), done*100/total)
}
