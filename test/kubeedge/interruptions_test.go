//go:build kubeedge

package kubeedge

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

// These scenarios interrupt a real upgrade on a real node at the instants
// that used to brick it: the upgrade pod's processes killed, the pod
// force-deleted, the machine's power cut, the new edgecore failing once the
// pod is gone, the link to the cloud down. After each, the node must end
// Ready on exactly one of the two versions with no human action, keadm's
// lock gone, edgecore active, nothing of the job's unit left, and a second
// job must then bring it to the target. Each world's controller runs on a
// clock ten minutes off the nodes' (ahead in one world, behind in the
// other), as an edge device without a battery-backed clock has it.

// instant is a moment of keadm upgrade on a node, seen from the host's
// /proc within milliseconds.
type instant struct {
	name string
	// reached reports whether the node is at the instant, given the host
	// pid of edgecore before the job.
	reached func(n *kubeedgeworld.Node, oldEdgecore int) bool
}

var (
	// keadmUpgrading: keadm upgrade runs (pulling and copying edgecore
	// out of the image); edgecore not touched yet.
	keadmUpgrading = instant{"keadm upgrade runs, before it stops edgecore", func(n *kubeedgeworld.Node, old int) bool {
		for _, pid := range n.Processes("keadm") {
			if isKeadm(pid, "upgrade") && processAlive(old) {
				return true
			}
		}
		return false
	}}
	// edgecoreStopped: keadm has stopped edgecore and copies the new
	// binary in.
	edgecoreStopped = instant{"keadm stopped edgecore, copying the new binary", func(n *kubeedgeworld.Node, old int) bool {
		return !processAlive(old) && len(n.Processes("edgecore")) == 0
	}}
	// newEdgecore: keadm started the new edgecore; the settle check has
	// not passed yet.
	newEdgecore = instant{"keadm started the new edgecore, before the settle check passed", func(n *kubeedgeworld.Node, old int) bool {
		for _, pid := range n.Processes("edgecore") {
			if pid != old {
				return true
			}
		}
		return false
	}}
)

func processAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// isKeadm reports whether pid runs `keadm <command> edge ...` (its path,
// /var/lib/nodeupgrade/..., holds "upgrade" too: look at its arguments).
func isKeadm(pid int, command string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv := strings.Split(string(data), "\x00")
	return len(argv) > 2 && argv[1] == command && argv[2] == "edge"
}

// waitInstant polls the node until it is at the instant.
func waitInstant(t *testing.T, n *kubeedgeworld.Node, at instant, oldEdgecore int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !at.reached(n, oldEdgecore) {
		if time.Now().After(deadline) {
			t.Fatalf("node %s never reached the instant %q within %s", n.Name(), at.name, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("node %s: %s", n.Name(), at.name)
}

// interruption is one scenario: an instant and what happens to the node
// there.
type interruption struct {
	name string
	at   instant
	// version is the job's target (default toVersion).
	version string
	// do interrupts; pod is the node's upgrade pod.
	do func(t *testing.T, ctx context.Context, w *kubeedgeworld.World, n *kubeedgeworld.Node, pod *corev1.Pod)
	// wantVersion, if set, is the version the node must end on.
	wantVersion string
	// timeout is the job's timeoutSeconds (default 600).
	timeout int64
	// judge checks the job's words about the node, given the version the
	// node ended on; default: Successful exactly when it ended on the
	// target.
	judge func(t *testing.T, ctx context.Context, w *kubeedgeworld.World, job *v1alpha1.NodeUpgradeJob, ended string)
}

// killPod kills every process of the upgrade pod, as the container runtime
// does when its containers die.
func killPod(t *testing.T, _ context.Context, _ *kubeedgeworld.World, n *kubeedgeworld.Node, pod *corev1.Pod) {
	killed, err := kubeedgeworld.KillContainer(string(pod.UID), "")
	if err != nil {
		t.Errorf("kill the upgrade pod's processes on %s: %v", n.Name(), err)
	}
	t.Logf("node %s: SIGKILLed %d processes of the upgrade pod", n.Name(), killed)
	if killed == 0 {
		t.Errorf("no process of the upgrade pod found on %s", n.Name())
	}
}

// forceDelete deletes the upgrade pod with grace period 0, as kubectl
// delete --force does.
func forceDelete(t *testing.T, ctx context.Context, w *kubeedgeworld.World, n *kubeedgeworld.Node, pod *corev1.Pod) {
	err := w.Cluster.Clientset.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	if err != nil {
		t.Errorf("force-delete %s: %v", pod.Name, err)
	}
	t.Logf("node %s: upgrade pod force-deleted", n.Name())
}

// powerCut cuts the machine's power and boots it again.
func powerCut(t *testing.T, ctx context.Context, w *kubeedgeworld.World, n *kubeedgeworld.Node, _ *corev1.Pod) {
	if err := w.PowerCut(n); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := w.PowerOn(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// linkDown takes the node's link to the cloud down for d.
func linkDown(d time.Duration) func(t *testing.T, ctx context.Context, w *kubeedgeworld.World, n *kubeedgeworld.Node, pod *corev1.Pod) {
	return func(t *testing.T, _ context.Context, w *kubeedgeworld.World, n *kubeedgeworld.Node, _ *corev1.Pod) {
		if err := w.SetLink(n, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d)
		if err := w.SetLink(n, true); err != nil {
			t.Fatal(err)
		}
	}
}

// linkDownPastTimeout takes the node's link down until the controller has
// timed the node out and, the node being NotReady, says it needs attention;
// then the link comes back.
func linkDownPastTimeout(t *testing.T, ctx context.Context, w *kubeedgeworld.World, n *kubeedgeworld.Node, pod *corev1.Pod) {
	if err := w.SetLink(n, false); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := w.SetLink(n, true); err != nil {
			t.Error(err)
		}
	}()
	name := "job-" + n.Name()
	waitJob(t, ctx, w, name, 6*time.Minute, "the node timed out and needs attention", func(job *v1alpha1.NodeUpgradeJob) bool {
		e := job.Status.NodeStatus[0]
		return e.Action == v1alpha1.ActionTimeOut && strings.HasPrefix(e.Reason, "needs attention: the node is NotReady") &&
			meta.IsStatusConditionTrue(job.Status.Conditions, v1alpha1.ConditionNeedsAttention)
	})
}

// upgradedAfterItsTimeout: the node timed out while it was cut off and
// upgraded alone; once it is back, the job says so, and nothing needs
// attention any more. The job's result stays what it was.
func upgradedAfterItsTimeout(t *testing.T, ctx context.Context, w *kubeedgeworld.World, job *v1alpha1.NodeUpgradeJob, ended string) {
	if ended != toVersion {
		t.Errorf("the node ended on %s, want %s", ended, toVersion)
	}
	waitJob(t, ctx, w, job.Name, 5*time.Minute, "the job says the node upgraded after its timeout", func(job *v1alpha1.NodeUpgradeJob) bool {
		e := job.Status.NodeStatus[0]
		return e.State == v1alpha1.StateFailed && e.Action == v1alpha1.ActionTimeOut &&
			strings.HasPrefix(e.Reason, "upgraded after its timeout: the node reports "+toVersion+" and is Ready") &&
			!meta.IsStatusConditionTrue(job.Status.Conditions, v1alpha1.ConditionNeedsAttention)
	})
}

// truthful: the job's words about the node match the version it ended
// on. On the target: Successful, or (its pod lost, the node slow to show
// it) timed out and then "upgraded after its timeout". Back on its old
// version: not Successful.
func truthful(version string) func(t *testing.T, ctx context.Context, w *kubeedgeworld.World, job *v1alpha1.NodeUpgradeJob, ended string) {
	return func(t *testing.T, ctx context.Context, w *kubeedgeworld.World, job *v1alpha1.NodeUpgradeJob, ended string) {
		e := job.Status.NodeStatus[0]
		switch {
		case ended != version && e.State == v1alpha1.StateSuccessful:
			t.Errorf("the node ended on %s but the job says Successful", ended)
		case ended == version && e.State != v1alpha1.StateSuccessful:
			if e.Action != v1alpha1.ActionTimeOut {
				t.Errorf("the node ended on %s but the job says %s/%s: %s", ended, e.State, e.Action, e.Reason)
				return
			}
			waitJob(t, ctx, w, job.Name, 5*time.Minute, "the job says the node upgraded after its timeout", func(job *v1alpha1.NodeUpgradeJob) bool {
				return strings.HasPrefix(job.Status.NodeStatus[0].Reason, "upgraded after its timeout: the node reports "+version)
			})
		}
	}
}

// waitJob polls the job until ok holds.
func waitJob(t *testing.T, ctx context.Context, w *kubeedgeworld.World, name string, timeout time.Duration, what string, ok func(*v1alpha1.NodeUpgradeJob) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	job := &v1alpha1.NodeUpgradeJob{}
	for {
		if err := w.Cluster.Client.Get(ctx, client.ObjectKey{Name: name}, job); err == nil && len(job.Status.NodeStatus) == 1 && ok(job) {
			t.Logf("job %s: %s: %s", name, what, job.Status.NodeStatus[0].Reason)
			return
		}
		if time.Now().After(deadline) {
			ready := "?"
			if len(job.Status.NodeStatus) == 1 {
				if node, err := w.Cluster.Clientset.CoreV1().Nodes().Get(ctx, job.Status.NodeStatus[0].NodeName, metav1.GetOptions{}); err == nil {
					for _, c := range node.Status.Conditions {
						if c.Type == corev1.NodeReady {
							ready = fmt.Sprintf("%s since %s (%s)", c.Status, c.LastTransitionTime, c.Reason)
						}
					}
				}
			}
			t.Fatalf("job %s: not %q after %s: nodes %+v, conditions %+v; the node is Ready=%s", name, what, timeout,
				job.Status.NodeStatus, job.Status.Conditions, ready)
		}
		time.Sleep(2 * time.Second)
	}
}

// runInterruptions runs each scenario on its own node of one world, at
// the same time, the controller's clock offset by clockOffset; with
// nodeLifecycle, kube-controller-manager's node lifecycle controller marks
// silent nodes NotReady, as on a real cluster.
func runInterruptions(t *testing.T, clockOffset time.Duration, nodeLifecycle bool, scenarios []interruption) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	t.Cleanup(cancel)
	w := kubeedgeworld.StartT(t, ctx, kubeedgeworld.Options{Nodes: len(scenarios), NodeLifecycle: nodeLifecycle})
	ctrl, err := w.StartControllerWithClockOffset(clockOffset)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctrl.Stop() })
	t.Logf("the controller's clock is %s off the nodes'", clockOffset)
	for i, sc := range scenarios {
		n := w.Nodes()[i]
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			runInterruption(t, ctx, w, n, sc)
		})
	}
}

func runInterruption(t *testing.T, ctx context.Context, w *kubeedgeworld.World, n *kubeedgeworld.Node, sc interruption) {
	version := sc.version
	if version == "" {
		version = toVersion
	}
	old := n.Processes("edgecore")
	if len(old) != 1 {
		t.Fatalf("node %s runs %d edgecore processes before the job, want 1", n.Name(), len(old))
	}
	name := "job-" + n.Name()
	jw := watchJob(ctx, w.Cluster.Client, name)
	defer jw.stop()
	job := newJob(name, version, []string{n.Name()}, 1, nil)
	if sc.timeout > 0 {
		job.Spec.TimeoutSeconds = sc.timeout
	}
	if err := w.Cluster.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	waitInstant(t, n, sc.at, old[0], 10*time.Minute)
	pods := upgradePods(ctx, w, n.Name())
	if len(pods) != 1 {
		t.Fatalf("%d upgrade pods for %s, want 1", len(pods), n.Name())
	}
	sc.do(t, ctx, w, n, &pods[0])

	// The node ends the story by itself: the job's unit gone from the
	// machine, edgecore active on one of the two versions.
	uid := string(pods[0].OwnerReferences[0].UID)
	waitUnitGone(t, ctx, n, uid, 10*time.Minute)
	// A node that was cut off reports its new version once it is back:
	// wait until what it reports is the binary it runs.
	candidates := []string{fromVersion}
	if version != kubeedgeworld.LateCrashVersion { // that one never reports itself
		candidates = append(candidates, version)
	}
	var s nodeSnapshot
	ended := ""
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(2 * time.Second) {
		s = snapshot(t, ctx, w, n)
		for _, v := range candidates {
			if s.ready && strings.HasSuffix(s.kubelet, "kubeedge-"+v) && s.binSum == fileSum(t, kubeedgeworld.BinaryPath(v, "edgecore")) {
				ended = v
			}
		}
		if ended != "" || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("node %s after the interruption: reports %q, edgecore %s; record: %s", n.Name(), s.kubelet, s.state.ActiveState, record(n, uid))
	if ended == "" {
		t.Fatalf("node %s is on no single version: reports %q, binary %s", n.Name(), s.kubelet, s.binSum)
	}
	if sc.wantVersion != "" && ended != sc.wantVersion {
		t.Errorf("node %s ended on %s, want %s", n.Name(), ended, sc.wantVersion)
	}
	if s.state.ActiveState != "active" {
		t.Errorf("edgecore %s on %s", s.state.ActiveState, n.Name())
	}
	if s.lockFile {
		t.Errorf("keadm's lock left on %s", n.Name())
	}
	if exists(n, runner.UnitPath(uid)) {
		t.Errorf("%s left on %s", runner.UnitPath(uid), n.Name())
	}
	// The unit removed the job's binaries. A kubelet that runs the pod
	// again after edgecore restarts runs copy-keadm again too; the pod's
	// containers, run again, remove them once more, and the next job's unit
	// removes what earlier jobs left.
	defer noBinariesLeft(t, n, uid)

	// The job's own words about the node match the node.
	final := jw.waitFinal(t, ctx, 15*time.Minute)
	entry := final.Status.NodeStatus[0]
	t.Logf("job %s: %s; node entry %s/%s/%s: %s", name, final.Status.State, entry.State, entry.Action, entry.Event, entry.Reason)
	judge := sc.judge
	if judge == nil {
		judge = truthful(version)
	}
	judge(t, ctx, w, &final, ended)

	if ended == version {
		return
	}
	second := name + "-again"
	jw2 := watchJob(ctx, w.Cluster.Client, second)
	defer jw2.stop()
	if err := w.Cluster.Client.Create(ctx, newJob(second, toVersion, []string{n.Name()}, 1, nil)); err != nil {
		t.Fatal(err)
	}
	if job2 := jw2.waitFinal(t, ctx, 15*time.Minute); job2.Status.State != v1alpha1.StateSuccessful {
		t.Fatalf("the second job on %s: %s %+v", n.Name(), job2.Status.State, job2.Status.NodeStatus)
	}
	if err := w.WaitNodesReady(ctx, 5*time.Minute, "kubeedge-"+toVersion, n.Name()); err != nil {
		t.Fatal(err)
	}
}

// noBinariesLeft checks, within a while, that the job's binaries are gone.
func noBinariesLeft(t *testing.T, n *kubeedgeworld.Node, uid string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); exists(n, runner.JobBinDir(uid)); time.Sleep(2 * time.Second) {
		if time.Now().After(deadline) {
			t.Errorf("%s left on %s", runner.JobBinDir(uid), n.Name())
			return
		}
	}
}

// waitUnitGone waits until the job's unit has removed itself from the
// machine and its process has ended.
func waitUnitGone(t *testing.T, ctx context.Context, n *kubeedgeworld.Node, uid string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		state := strings.TrimSpace(n.Exec(ctx, "systemctl", "is-active", runner.UnitName(uid)).Stdout)
		if !exists(n, runner.UnitPath(uid)) && state != "active" && state != "activating" && state != "deactivating" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job's unit on %s is still there after %s (%s):\n%s", n.Name(), timeout, state,
				n.Exec(ctx, "journalctl", "--no-pager", "-u", runner.UnitName(uid)).Stdout)
		}
		time.Sleep(time.Second)
	}
}

// exists reports whether p exists on the machine.
func exists(n *kubeedgeworld.Node, p string) bool {
	_, err := os.Lstat(n.HostPath(p))
	return err == nil
}

// record is the job's upgrade record on the node.
func record(n *kubeedgeworld.Node, uid string) string {
	data, err := n.ReadFile(runner.JobDir(uid) + "/" + runner.StepRecordFile(runner.StepUpgrade))
	if err != nil {
		return fmt.Sprintf("(none: %v)", err)
	}
	return string(data)
}

// TestInterruptionsOfTheUpgrade: the upgrade pod's processes killed at
// three instants of keadm upgrade, the pod force-deleted, and the power cut
// at two instants; the controller's clock ten minutes behind the nodes'.
func TestInterruptionsOfTheUpgrade(t *testing.T) {
	t.Parallel()
	runInterruptions(t, -10*time.Minute, false, []interruption{
		{name: "pod killed before keadm stops edgecore", at: keadmUpgrading, do: killPod, wantVersion: toVersion, timeout: 120},
		{name: "pod killed while keadm copies the new binary", at: edgecoreStopped, do: killPod, wantVersion: toVersion, timeout: 120},
		{name: "pod killed after keadm started the new edgecore", at: newEdgecore, do: killPod, wantVersion: toVersion, timeout: 120},
		{name: "pod force-deleted while keadm runs", at: keadmUpgrading, do: forceDelete, wantVersion: toVersion, timeout: 120},
		{name: "power cut while keadm runs", at: keadmUpgrading, do: powerCut, timeout: 120},
		{name: "power cut before the settle check passed", at: newEdgecore, do: powerCut, timeout: 120},
	})
}

// TestNodeGoesOnAlone: the new edgecore fails 20 s after it started, its
// pod long gone: the node goes back by itself; the link to the cloud down
// for 90 s during the upgrade: the job ends Successful with one upgrade;
// down past the node's timeout: the node upgrades alone and the job's words
// about it follow the truth (needs attention while it is NotReady, upgraded
// after its timeout once it is back); a plain upgrade beside them; the
// controller's clock ten minutes ahead of the nodes'; the node lifecycle
// controller running, as on a real cluster.
func TestNodeGoesOnAlone(t *testing.T) {
	t.Parallel()
	runInterruptions(t, 10*time.Minute, true, []interruption{
		{name: "new edgecore fails after the pod is gone", at: newEdgecore, version: kubeedgeworld.LateCrashVersion,
			do: killPod, wantVersion: fromVersion, timeout: 120},
		{name: "link down for 90 s during the upgrade", at: keadmUpgrading, do: linkDown(90 * time.Second), wantVersion: toVersion},
		{name: "link down past the node's timeout", at: keadmUpgrading, do: linkDownPastTimeout, wantVersion: toVersion,
			timeout: 120, judge: upgradedAfterItsTimeout},
		{name: "no interruption", at: keadmUpgrading, do: func(*testing.T, context.Context, *kubeedgeworld.World, *kubeedgeworld.Node, *corev1.Pod) {},
			wantVersion: toVersion},
	})
}
