//go:build kubeedge

package kubeedge

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

const (
	fromVersion = kubeedgeworld.DefaultNodeVersion
	toVersion   = kubeedgeworld.DefaultTargetVersion
	jobTimeout  = 15 * time.Minute
)

func startWorld(t *testing.T, nodes int, controllerArgs ...string) (context.Context, *kubeedgeworld.World) {
	t.Helper()
	return startWorldWith(t, kubeedgeworld.Options{Nodes: nodes}, controllerArgs...)
}

func startWorldWith(t *testing.T, opts kubeedgeworld.Options, controllerArgs ...string) (context.Context, *kubeedgeworld.World) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	t.Cleanup(cancel)
	w := kubeedgeworld.StartT(t, ctx, opts)
	if _, err := w.StartController(ctx, controllerArgs...); err != nil {
		t.Fatalf("start controller: %v", err)
	}
	return ctx, w
}

// TestUpgrade: one job upgrades a real v1.22.0 node to v1.23.1 with real
// keadm, exactly once, and edgecore outlives the upgrade pod.
func TestUpgrade(t *testing.T) {
	t.Parallel()
	ctx, w := startWorld(t, 1)
	n := w.Nodes()[0]
	before := snapshot(t, ctx, w, n)
	if len(before.starts) != 1 {
		t.Fatalf("edgecore started %d times before the job, want 1", len(before.starts))
	}

	jw := watchJob(ctx, w.Cluster.Client, "upgrade")
	defer jw.stop()
	start := time.Now()
	if err := w.Cluster.Client.Create(ctx, newJob("upgrade", toVersion, []string{n.Name()}, 1, []string{v1alpha1.CheckItemMem, v1alpha1.CheckItemDisk})); err != nil {
		t.Fatal(err)
	}
	job := jw.waitFinal(t, ctx, jobTimeout)
	t.Logf("per-node upgrade time on real edgecore: %s", time.Since(start).Round(time.Second))
	_, _, nodeStates := jw.snapshot()
	if job.Status.State != v1alpha1.StateSuccessful {
		t.Fatalf("job %s: %+v", job.Status.State, job.Status)
	}
	for _, s := range []string{v1alpha1.StateChecking, v1alpha1.StateUpgrading} {
		if !contains(nodeStates[n.Name()], s) {
			t.Errorf("state %s never observed for %s: %v", s, n.Name(), nodeStates[n.Name()])
		}
	}
	// Real keadm backup takes about half a second, faster than edgecore
	// reports pod status to the cloud, so the job may never show
	// BackingUp. The host then proves the backup ran: the step's record,
	// and keadm's backup of the old edgecore.
	if !contains(nodeStates[n.Name()], v1alpha1.StateBackingUp) {
		t.Logf("BackingUp not seen in the job status (states %v); checking the host", nodeStates[n.Name()])
	}
	if rec, err := n.ReadFile("/var/lib/nodeupgrade/jobs/" + string(job.UID) + "/backup.json"); err != nil || !strings.Contains(string(rec), `"result":"succeeded"`) {
		t.Errorf("backup record on %s: %s (%v)", n.Name(), rec, err)
	}
	if _, err := n.ReadFile("/etc/kubeedge/backup/" + fromVersion + "/edgecore"); err != nil {
		t.Errorf("keadm's backup of the %s edgecore on %s: %v", fromVersion, n.Name(), err)
	}
	if contains(nodeStates[n.Name()], v1alpha1.StateRollingBack) {
		t.Errorf("the job showed RollingBack for %s although nothing rolled back: %v", n.Name(), nodeStates[n.Name()])
	}

	waitPodsGone(t, ctx, w, n.Name(), 5*time.Minute)
	// Let a second run, if the pod's restart caused one, show itself.
	time.Sleep(20 * time.Second)
	if err := w.WaitNodesReady(ctx, 3*time.Minute, "kubeedge-"+toVersion, n.Name()); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, ctx, w, n)
	if after.state.ActiveState != "active" {
		t.Errorf("edgecore %s after the pod is gone", after.state.ActiveState)
	}
	if got := len(after.starts) - len(before.starts); got != 1 {
		t.Errorf("edgecore (re)started %d times during the job, want exactly 1 (starts %v)", got, after.starts)
	}
	if after.binSum != fileSumOf(t, kubeedgeworld.BinaryPath(toVersion, "edgecore")) {
		t.Errorf("/usr/local/bin/edgecore on %s is not the %s binary", n.Name(), toVersion)
	}
	if after.lockFile {
		t.Errorf("keadm's lock /etc/kubeedge/idempotency_record left on %s", n.Name())
	}
	if r, raw, err := readReport(n); err != nil || r.Event != "Upgrade" || !r.Success {
		t.Errorf("keadm's upgrade_report.json: %s (%v)", raw, err)
	}
	stops := strings.Count(n.Journal(ctx, "edgecore"), "Stopped edgecore.service")
	if stops != 1 {
		t.Errorf("edgecore stopped %d times by systemd, want 1 (one keadm upgrade)", stops)
	}
	copies := containerdLines(ctx, n, "RunPodSandbox for &PodSandboxMetadata{Name:edgecore,")
	t.Logf("keadm's CRI copy sandboxes: %d", len(copies))
}

func fileSumOf(t *testing.T, p string) string { return fileSum(t, p) }

// TestFailedUpgradeRollsBack: the target's edgecore exits at once; real
// keadm rollback puts the node back on v1.22.0 and the job fails.
func TestFailedUpgradeRollsBack(t *testing.T) {
	t.Parallel()
	ctx, w := startWorld(t, 1)
	n := w.Nodes()[0]
	before := snapshot(t, ctx, w, n)

	jw := watchJob(ctx, w.Cluster.Client, "broken")
	defer jw.stop()
	if err := w.Cluster.Client.Create(ctx, newJob("broken", kubeedgeworld.BrokenVersion, []string{n.Name()}, 1, nil)); err != nil {
		t.Fatal(err)
	}
	job := jw.waitFinal(t, ctx, jobTimeout)
	_, _, nodeStates := jw.snapshot()
	if job.Status.State != v1alpha1.StateFailed {
		t.Fatalf("job %s, want Failed: %+v", job.Status.State, job.Status)
	}
	var final v1alpha1.TaskStatus
	for _, ns := range job.Status.NodeStatus {
		if ns.NodeName == n.Name() {
			final = ns
		}
	}
	t.Logf("node status: %+v; states %v", final, nodeStates[n.Name()])
	// The rollback is not visible live (edgecore, the kubelet, is what is
	// being rolled back); the node's final status carries it.
	if final.State != v1alpha1.StateFailed || final.Event != v1alpha1.EventRollback {
		t.Errorf("node %s ended %s/%s, want Failed with event Rollback", n.Name(), final.State, final.Event)
	}
	if !strings.Contains(final.Reason, "rollback succeeded") || !strings.Contains(final.Reason, kubeedgeworld.BrokenVersion) {
		t.Errorf("reason %q does not say the rollback of %s succeeded", final.Reason, kubeedgeworld.BrokenVersion)
	}
	if pod := waitPodsKept(t, ctx, w, n.Name(), 5*time.Minute); pod.Status.Phase != corev1.PodFailed {
		t.Errorf("upgrade pod %s ended %s, want Failed", pod.Name, pod.Status.Phase)
	}
	if err := w.WaitNodesReady(ctx, 3*time.Minute, "kubeedge-"+fromVersion, n.Name()); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, ctx, w, n)
	if after.binSum != before.binSum {
		t.Errorf("/usr/local/bin/edgecore is not the %s binary after rollback", fromVersion)
	}
	if after.state.ActiveState != "active" {
		t.Errorf("edgecore %s after rollback", after.state.ActiveState)
	}
	if after.lockFile {
		t.Errorf("keadm's lock left behind")
	}
	if r, raw, err := readReport(n); err != nil || r.Event != "Rollback" || !r.Success {
		t.Errorf("keadm's report after the rollback: %s (%v)", raw, err)
	}
}

// TestCheckFails: a check over its threshold leaves the node untouched and
// edgecore never restarts; the check's container, not root, reaches only
// what its checks read.
func TestCheckFails(t *testing.T) {
	t.Parallel()
	ctx, w := startWorld(t, 1, "--check-cpu-threshold=1", "--check-mem-threshold=1")
	n := w.Nodes()[0]
	before := snapshot(t, ctx, w, n)

	jw := watchJob(ctx, w.Cluster.Client, "check")
	defer jw.stop()
	if err := w.Cluster.Client.Create(ctx, newJob("check", toVersion, []string{n.Name()}, 1, []string{v1alpha1.CheckItemCPU, v1alpha1.CheckItemMem})); err != nil {
		t.Fatal(err)
	}
	job := jw.waitFinal(t, ctx, jobTimeout)
	_, _, nodeStates := jw.snapshot()
	if job.Status.State != v1alpha1.StateFailed {
		t.Fatalf("job %s, want Failed: %+v", job.Status.State, job.Status)
	}
	t.Logf("node states %v, status %+v", nodeStates[n.Name()], job.Status.NodeStatus)
	for _, s := range []string{v1alpha1.StateBackingUp, v1alpha1.StateUpgrading, v1alpha1.StateRollingBack} {
		if contains(nodeStates[n.Name()], s) {
			t.Errorf("state %s observed after a failed check: %v", s, nodeStates[n.Name()])
		}
	}
	if pod := waitPodsKept(t, ctx, w, n.Name(), 5*time.Minute); pod.Status.Phase != corev1.PodFailed {
		t.Errorf("upgrade pod %s ended %s, want Failed", pod.Name, pod.Status.Phase)
	}
	after := snapshot(t, ctx, w, n)
	if len(after.starts) != len(before.starts) || after.state.MainPID != before.state.MainPID {
		t.Errorf("edgecore restarted: starts %v -> %v, MainPID %d -> %d", before.starts, after.starts, before.state.MainPID, after.state.MainPID)
	}
	if after.binSum != before.binSum {
		t.Errorf("/usr/local/bin/edgecore changed")
	}
	if _, err := n.ReadFile("/etc/kubeedge/upgrade_report.json"); err == nil {
		t.Errorf("keadm wrote a report although nothing should have run")
	}
	if !strings.HasSuffix(after.kubelet, "kubeedge-"+fromVersion) || !after.ready {
		t.Errorf("node at %q ready=%v", after.kubelet, after.ready)
	}
	// The check ran as its container runs it; now what that container
	// could reach on the node.
	probeCheckReach(t, ctx, w, n)
}

// TestConcurrencyOne: one job over two real nodes at concurrency 1 upgrades
// them one after the other, judged from the machines' own journals.
func TestConcurrencyOne(t *testing.T) {
	t.Parallel()
	ctx, w := startWorld(t, 2)
	nodes := w.Nodes()
	names := []string{nodes[0].Name(), nodes[1].Name()}

	jw := watchJob(ctx, w.Cluster.Client, "serial")
	defer jw.stop()
	if err := w.Cluster.Client.Create(ctx, newJob("serial", toVersion, names, 1, nil)); err != nil {
		t.Fatal(err)
	}
	job := jw.waitFinal(t, ctx, 2*jobTimeout)
	if job.Status.State != v1alpha1.StateSuccessful {
		t.Fatalf("job %s: %+v", job.Status.State, job.Status)
	}
	if err := w.WaitNodesReady(ctx, 3*time.Minute, "kubeedge-"+toVersion, names...); err != nil {
		t.Fatal(err)
	}
	// Each node's window: from the first upgrade-pod sandbox containerd
	// ran to edgecore's last start.
	type window struct{ from, to time.Time }
	var wins []window
	for _, n := range nodes {
		sandboxes := containerdLines(ctx, n, "RunPodSandbox for", podNamespace)
		starts, err := n.EdgecoreStarts(ctx)
		if err != nil || len(sandboxes) == 0 || len(starts) < 2 {
			t.Fatalf("node %s: sandboxes %d, edgecore starts %v, %v", n.Name(), len(sandboxes), starts, err)
		}
		wins = append(wins, window{sandboxes[0].at, starts[len(starts)-1]})
		t.Logf("node %s: upgrade pod sandbox at %s, edgecore restarted at %s", n.Name(), sandboxes[0].at.Format(time.StampMilli), starts[len(starts)-1].Format(time.StampMilli))
	}
	first, second := wins[0], wins[1]
	if second.from.Before(first.from) {
		first, second = second, first
	}
	if second.from.Before(first.to) {
		t.Errorf("upgrades overlapped: the second node's pod started at %s, before the first node's edgecore restart at %s", second.from.Format(time.StampMilli), first.to.Format(time.StampMilli))
	}
}
