//go:build kubeedge

package kubeedge

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

// TestConfirmationFromTheCloud: a job with requireConfirmation over two
// real nodes and concurrency 1. Both nodes pass their checks and wait:
// the first gives its slot back, so the second is dispatched too (an
// unapproved node does not stall the other), and nothing on either node
// changes while they wait, past the job's timeout. `kubectl nodeupgrade
// approve` of the second node upgrades it alone; approving the first then
// finishes the job.
func TestConfirmationFromTheCloud(t *testing.T) {
	t.Parallel()
	ctx, w := startWorld(t, 2)
	nodes := w.Nodes()
	names := []string{nodes[0].Name(), nodes[1].Name()}
	plugin := buildPlugin(t)
	before := map[string]nodeSnapshot{}
	for _, n := range nodes {
		before[n.Name()] = snapshot(t, ctx, w, n)
	}

	jw := watchJob(ctx, w.Cluster.Client, "confirm")
	defer jw.stop()
	job := newJob("confirm", toVersion, names, 1, []string{v1alpha1.CheckItemMem})
	job.Spec.RequireConfirmation = true
	// Short: a waiting node's clock does not run, so it outlives this.
	job.Spec.TimeoutSeconds = 120
	if err := w.Cluster.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	waitNodeStates(t, ctx, jw, 10*time.Minute, map[string]string{names[0]: v1alpha1.StateWaitingConfirmation, names[1]: v1alpha1.StateWaitingConfirmation})
	waitingAt := time.Now()
	got, _, _ := jw.snapshot()
	if got.Status.Counts.WaitingConfirmation != 2 || got.Status.Counts.InFlight != 0 {
		t.Errorf("counts while both wait: %+v", got.Status.Counts)
	}
	// Past the job's timeout: neither node times out, and nothing changed.
	time.Sleep(time.Duration(job.Spec.TimeoutSeconds)*time.Second + 15*time.Second)
	got, _, _ = jw.snapshot()
	for _, name := range names {
		if e := entryOf(got, name); e.State != v1alpha1.StateWaitingConfirmation {
			t.Fatalf("node %s after %s waiting: %+v", name, time.Since(waitingAt).Round(time.Second), e)
		}
	}
	for _, n := range nodes {
		expectUnchanged(t, ctx, w, n, before[n.Name()], got)
	}

	out := runPlugin(t, ctx, w, plugin, "approve", "confirm", names[1])
	t.Logf("approve: %s", out)
	waitNodeStates(t, ctx, jw, jobTimeout, map[string]string{names[1]: v1alpha1.StateSuccessful})
	got, _, _ = jw.snapshot()
	if e := entryOf(got, names[0]); e.State != v1alpha1.StateWaitingConfirmation {
		t.Errorf("node %s, not approved, went on: %+v", names[0], e)
	}
	expectUnchanged(t, ctx, w, nodes[0], before[names[0]], got)

	runPlugin(t, ctx, w, plugin, "approve", "confirm", "--all")
	final := jw.waitFinal(t, ctx, jobTimeout)
	if final.Status.State != v1alpha1.StateSuccessful || final.Status.Counts.Succeeded != 2 {
		t.Fatalf("job %s: %+v", final.Status.State, final.Status)
	}
	if err := w.WaitNodesReady(ctx, 3*time.Minute, "kubeedge-"+toVersion, names...); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		flow := []string{}
		for _, a := range entryOf(final, name).ActionFlow {
			flow = append(flow, a.Action)
		}
		if strings.Join(flow, ",") != "Check,WaitingConfirmation,BackUp,Upgrade" {
			t.Errorf("node %s actionFlow %v", name, flow)
		}
	}
	for _, n := range nodes {
		waitPodsGone(t, ctx, w, n.Name(), 5*time.Minute)
	}
}

// waitNodeStates waits until each named node's entry is in its state.
func waitNodeStates(t *testing.T, ctx context.Context, jw *jobWatch, timeout time.Duration, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		job, _, states := jw.snapshot()
		ok := true
		for node, state := range want {
			ok = ok && entryOf(job, node).State == state
		}
		if ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("node states %v not reached in %s: states seen %v, status %+v", want, timeout, states, job.Status)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func entryOf(job v1alpha1.NodeUpgradeJob, node string) v1alpha1.TaskStatus {
	for _, e := range job.Status.NodeStatus {
		if e.NodeName == node {
			return e
		}
	}
	return v1alpha1.TaskStatus{}
}

// expectUnchanged checks that nothing of the upgrade ran on a waiting
// node: edgecore did not restart, its binary is the one it had, the job
// has no backup record and the node's pod waits in its confirm step.
func expectUnchanged(t *testing.T, ctx context.Context, w *kubeedgeworld.World, n *kubeedgeworld.Node, before nodeSnapshot, job v1alpha1.NodeUpgradeJob) {
	t.Helper()
	now := snapshot(t, ctx, w, n)
	if len(now.starts) != len(before.starts) || now.binSum != before.binSum {
		t.Errorf("node %s changed while it waited: edgecore starts %d -> %d, binary changed %v",
			n.Name(), len(before.starts), len(now.starts), now.binSum != before.binSum)
	}
	if rec, err := n.ReadFile("/var/lib/nodeupgrade/jobs/" + string(job.UID) + "/backup.json"); err == nil {
		t.Errorf("node %s has a backup record while it waits: %s", n.Name(), rec)
	}
	pod := &corev1.Pod{}
	if err := w.Cluster.Client.Get(ctx, client.ObjectKey{Namespace: podNamespace, Name: upgradepod.PodName(n.Name())}, pod); err == nil {
		for _, s := range pod.Status.ContainerStatuses {
			if s.Name == "confirm" && s.State.Running == nil {
				t.Errorf("node %s: the confirm container is not running: %+v", n.Name(), s.State)
			}
		}
	}
}

// buildPlugin builds kubectl-nodeupgrade from this tree.
func buildPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kubectl-nodeupgrade")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/kubectl-nodeupgrade")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the plugin: %v\n%s", err, out)
	}
	return bin
}

func runPlugin(t *testing.T, ctx context.Context, w *kubeedgeworld.World, bin string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", w.KubeconfigPath()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl nodeupgrade %v: %v\n%s", args, err, out)
	}
	return string(out)
}
