package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/nodetext"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/statusshard"
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
			writeStatus(a.out, job, a.clock.Now(), estimateBasis{prior: a.priorPerNode(ctx, job)})
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "watch", "w", false, "Follow the job until it is final; the ETA uses the upgrade times of the nodes it sees")
	return cmd
}

// getJob reads a job with every node's entry in status.nodeStatus: a job
// of more nodes than the controller's --status-shard-threshold keeps them
// in shards (ConfigMaps in its namespace), read here. The controller writes
// the job before its shards, so a read in between is tried again.
func (a *app) getJob(ctx context.Context, name string) (*v1alpha1.NodeUpgradeJob, error) {
	for attempt := 0; ; attempt++ {
		job := &v1alpha1.NodeUpgradeJob{}
		if err := a.client.Get(ctx, client.ObjectKey{Name: name}, job); err != nil {
			return nil, apiError(err, "get", jobRef(name))
		}
		full, err := statusshard.Full(ctx, a.client, job)
		switch {
		case err == nil:
			return full, nil
		case apierrors.IsForbidden(err) || attempt == 4:
			return nil, fmt.Errorf("%s keeps its %d nodes' records in status shards (ConfigMaps in namespace %s, %s), which cannot be read: %w",
				jobRef(name), job.Status.Shards.Nodes, job.Status.Shards.Namespace, job.Status.Shards.Selector, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// follow prints the job's status, then again at every change, until the job
// is final. A watch the server ends is resumed from the last version seen.
// Each node seen dispatched and then finished is timed, and the ETA uses
// those times once there are any.
func (a *app) follow(ctx context.Context, name string) error {
	getCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	job, err := a.getJob(getCtx, name)
	cancel()
	if err != nil {
		return err
	}
	timer := newNodeTimer()
	prior := a.priorPerNode(ctx, job)
	show := func(job *v1alpha1.NodeUpgradeJob) {
		timer.observe(job)
		writeStatus(a.out, job, a.clock.Now(), estimateBasis{watched: timer.times, prior: prior})
	}
	show(job)
	for !rollout.JobFinal(job.Status.State) {
		w, err := a.client.Watch(ctx, &v1alpha1.NodeUpgradeJobList{}, client.MatchingFields{"metadata.name": name},
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: job.ResourceVersion}})
		if err != nil {
			return apiError(err, "watch", jobRef(name))
		}
		job, err = a.followEvents(ctx, w, job, show)
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

// followEvents shows the job at each change until it is final or the watch
// ends, and returns the last job seen.
func (a *app) followEvents(ctx context.Context, w watch.Interface, job *v1alpha1.NodeUpgradeJob, show func(*v1alpha1.NodeUpgradeJob)) (*v1alpha1.NodeUpgradeJob, error) {
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
			show(job)
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
func writeStatus(w io.Writer, job *v1alpha1.NodeUpgradeJob, now time.Time, basis estimateBasis) {
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
	if sh := st.Shards; sh != nil {
		fmt.Fprintf(w, "per-node records: %d shards of %d nodes (ConfigMaps in namespace %s, %s)\n", len(sh.Revisions), sh.Size, sh.Namespace, sh.Selector)
		if len(st.NodeStatus) < int(sh.Nodes) {
			fmt.Fprintf(w, "listing the failed and in-flight nodes the job keeps (at most %d); `kubectl nodeupgrade status %s` reads them all\n", v1alpha1.MaxSummaryNodes, job.Name)
		}
	}
	done, ages := writeNodeTables(w, job, cfg, now)
	fmt.Fprintln(w)
	fmt.Fprintln(w, eta(job, now, done, ages, basis))
}

// writeNodeTables lists the failed, in-flight and waiting nodes. It returns
// how many nodes were attempted and ended (upgraded or failed, not skipped)
// and the age of each node in flight, for the ETA.
func writeNodeTables(w io.Writer, job *v1alpha1.NodeUpgradeJob, cfg rollout.Config, now time.Time) (int, []time.Duration) {
	var failed, inFlight, waiting [][]string
	var ages []time.Duration
	upgraded := 0
	for i := range job.Status.NodeStatus {
		e := &job.Status.NodeStatus[i]
		switch {
		case e.State == v1alpha1.StateFailed:
			failed = append(failed, []string{e.NodeName, orDash(nodetext.Clean(e.Event)), nodetext.Clean(e.Reason)})
		case rollout.NodeInFlight(e.State):
			// A node without its dispatch time counts as just dispatched.
			age, ageText, deadline := time.Duration(0), "-", "-"
			if t := rollout.ReadEntryTime(e).Dispatched; !t.IsZero() {
				age = now.Sub(t)
				ageText, deadline = age.Round(time.Second).String(), deadlineText(cfg.Deadline(t), now)
			}
			ages = append(ages, age)
			inFlight = append(inFlight, []string{e.NodeName, nodetext.Clean(e.State), ageText, deadline})
		case e.State == v1alpha1.StateNone && e.Reason != "", e.State == v1alpha1.StateWaitingConfirmation:
			waiting = append(waiting, []string{e.NodeName, nodetext.Clean(e.Reason)})
		case e.State == v1alpha1.StateSuccessful && !strings.HasPrefix(e.Reason, "skipped:"):
			upgraded++
		}
	}
	if len(failed) > 0 {
		writeTable(w, []string{"FAILED", "EVENT", "REASON"}, failed)
	}
	if len(inFlight) > 0 {
		writeTable(w, []string{"IN FLIGHT", "STATE", "AGE", "DEADLINE"}, inFlight)
	}
	if len(waiting) > 0 {
		writeTable(w, []string{"WAITING", "REASON"}, waiting)
	}
	return upgraded + len(failed), ages
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
