//go:build kubeedge

package kubeedge

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
)

// TestPreStage measures what pre-staging (spec.preStage) takes off a real
// node's upgrade. Two nodes of one world, one job after the other: edge-1
// upgraded by a job without staging (its pod pulls the 250 MB installation
// package and the runner image), edge-2 by a job that stages first. It
// logs, for each, the time from the node's dispatch to Successful, and the
// staging's own time; it asserts that edge-2 was staged before it was
// dispatched, and both ended on the target.
func TestPreStage(t *testing.T) {
	t.Parallel()
	ctx, w := startWorld(t, 2)
	plainNode, stagedNode := w.Nodes()[0].Name(), w.Nodes()[1].Name()

	type timing struct{ created, staged, dispatched, done time.Time }
	// lastPod is each node's upgrade pod as last seen: a Successful job's
	// pods are deleted once it ends.
	lastPod := map[string]*corev1.Pod{}
	run := func(name, node string, stage bool) (timing, v1alpha1.NodeUpgradeJob) {
		t.Helper()
		job := newJob(name, toVersion, []string{node}, 1, nil)
		if stage {
			job.Spec.PreStage = &v1alpha1.PreStage{Concurrency: 1}
		}
		var tm timing
		tm.created = time.Now()
		if err := w.Cluster.Client.Create(ctx, job); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(jobTimeout)
		for time.Now().Before(deadline) {
			got := &v1alpha1.NodeUpgradeJob{}
			if err := w.Cluster.Client.Get(ctx, client.ObjectKey{Name: name}, got); err == nil && len(got.Status.NodeStatus) == 1 {
				e := got.Status.NodeStatus[0]
				now := time.Now()
				if tm.staged.IsZero() && e.Stage == v1alpha1.StageStaged {
					tm.staged = now
				}
				if tm.dispatched.IsZero() && e.State != v1alpha1.StateNone {
					tm.dispatched = now
					if stage && e.Stage != v1alpha1.StageStaged {
						t.Errorf("%s dispatched while its stage is %q", node, e.Stage)
					}
				}
				pod := &corev1.Pod{}
				if err := w.Cluster.Client.Get(ctx, client.ObjectKey{Namespace: podNamespace, Name: upgradepod.PodName(node)}, pod); err == nil {
					lastPod[node] = pod
				}
				if got.Status.State == v1alpha1.StateSuccessful || got.Status.State == v1alpha1.StateFailed {
					tm.done = now
					return tm, *got
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("job %s did not finish within %s", name, jobTimeout)
		return tm, v1alpha1.NodeUpgradeJob{}
	}

	plain, plainJob := run("plain", plainNode, false)
	staged, stagedJob := run("staged", stagedNode, true)
	for _, j := range []v1alpha1.NodeUpgradeJob{plainJob, stagedJob} {
		if j.Status.State != v1alpha1.StateSuccessful {
			t.Errorf("job %s: %s (%s)", j.Name, j.Status.State, j.Status.Reason)
		}
	}
	if got := stagedJob.Status.NodeStatus[0].Stage; got != v1alpha1.StageStaged {
		t.Errorf("%s's stage %q, want %s", stagedNode, got, v1alpha1.StageStaged)
	}
	if plainJob.Status.NodeStatus[0].Stage != "" {
		t.Errorf("a job without preStage shows stage %q", plainJob.Status.NodeStatus[0].Stage)
	}
	t.Logf("without staging: %s from dispatch to Successful (%s from job create)",
		plain.done.Sub(plain.dispatched).Round(100*time.Millisecond), plain.done.Sub(plain.created).Round(100*time.Millisecond))
	t.Logf("with staging: staged %s after job create; %s from dispatch to Successful (%s from job create)",
		staged.staged.Sub(staged.created).Round(100*time.Millisecond), staged.done.Sub(staged.dispatched).Round(100*time.Millisecond),
		staged.done.Sub(staged.created).Round(100*time.Millisecond))
	// Where the time went on each node, from its upgrade pod as last seen:
	// copy-keadm starts once the install image is on the node,
	// the step containers once the runner image is too.
	for _, node := range []string{plainNode, stagedNode} {
		pod := lastPod[node]
		if pod == nil {
			t.Errorf("no upgrade pod of %s was seen", node)
			continue
		}
		created := pod.CreationTimestamp.Time
		var copyStarted, stepsStarted time.Time
		for _, st := range pod.Status.InitContainerStatuses {
			if t := st.State.Terminated; t != nil {
				copyStarted = t.StartedAt.Time
			}
		}
		for _, st := range pod.Status.ContainerStatuses {
			var at time.Time
			switch {
			case st.State.Terminated != nil:
				at = st.State.Terminated.StartedAt.Time
			case st.State.Running != nil:
				at = st.State.Running.StartedAt.Time
			}
			if !at.IsZero() && (stepsStarted.IsZero() || at.Before(stepsStarted)) {
				stepsStarted = at
			}
		}
		t.Logf("%s: upgrade pod created %s, copy-keadm started +%s (install image there), first step started +%s (runner image there)",
			node, created.Format("15:04:05"), copyStarted.Sub(created), stepsStarted.Sub(created))
	}
	if err := w.WaitNodesReady(ctx, 3*time.Minute, "kubeedge-"+toVersion, plainNode, stagedNode); err != nil {
		t.Fatal(err)
	}
	// The stage pod is gone once its node staged.
	pods := &corev1.PodList{}
	if err := w.Cluster.Client.List(ctx, pods, client.InNamespace(podNamespace)); err != nil {
		t.Fatal(err)
	}
	for i := range pods.Items {
		if upgradepod.IsStage(&pods.Items[i]) {
			t.Errorf("stage pod %s left after the job", pods.Items[i].Name)
		}
	}
}
