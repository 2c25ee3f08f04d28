package localcluster_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
)

// The world's parts as every suite relies on them: KWOK keeps the fake
// edge nodes Ready (or NotReady) and heartbeating, and the fleet simulator
// plays each upgrade pod's steps the way a kubelet and keadm would. These
// tests play the controller's part themselves, creating upgrade pods
// exactly as it builds them, so the world runs no controller.

const (
	namespace = localcluster.DefaultNamespace
	// Pods run 2s each: long enough to watch every step, short for the suite.
	podDuration = 2 * time.Second
)

// fleet is the world the fleet tests share (and
// TestSentinelAdoptsOnlyItsOwnProcesses, as the world that must survive
// another's Stop). A fast heartbeat lets the tests see KWOK rewrite node
// status, and check that the reported version survives it; TestScale's
// thousands of nodes need a slow one and a quiet log.
var fleet = &localcluster.Shared{Options: fleetOptions()}

func fleetOptions() localcluster.Options {
	opts := localcluster.Options{UpgradeDuration: podDuration, KWOKHeartbeat: time.Second, InProcessOnly: true}
	if os.Getenv("FLEETSIM_SCALE_NODES") != "" {
		opts.KWOKHeartbeat, opts.KWOKLogLevel, opts.KWOKNodeParallelism = 10*time.Minute, "WARN", 16
		opts.NodeReadyTimeout = 30 * time.Minute
	}
	return opts
}

func TestMain(m *testing.M) { fleet.Main(m) }

// expectGone waits until the pod is no longer in the API.
func expectGone(ctx context.Context, g Gomega, k8s client.Client, pod *corev1.Pod) {
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}))
	}).WithTimeout(10 * time.Second).Should(BeTrue())
}

// upgradePod is an upgrade pod exactly as the controller builds it, with
// a five-minute deadline.
func upgradePod(node, job string) *corev1.Pod {
	const to = "v1.21.0"
	return upgradepod.Build(upgradepod.Params{
		JobName: job, JobUID: "uid-" + job, NodeName: node, Namespace: namespace,
		RunnerImage: "nodeupgrade-runner:test", InstallImage: "docker.io/kubeedge/installation-package:" + to,
		Version: to, FromVersion: "v1.20.0", CheckItems: []string{"cpu", "disk"},
		Deadline: time.Now().Add(5 * time.Minute),
	}, time.Now())
}

// containerStatus is the status of the named container; empty when absent.
func containerStatus(pod *corev1.Pod, name string) corev1.ContainerStatus {
	for _, s := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		if s.Name == name {
			return s
		}
	}
	return corev1.ContainerStatus{}
}

func getNode(g Gomega, k8s client.Client, name string) *corev1.Node {
	node := &corev1.Node{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Name: name}, node)).To(Succeed())
	return node
}

func readyStatus(node *corev1.Node) corev1.ConditionStatus {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

func removeFinalizers(g Gomega, k8s client.Client, pod *corev1.Pod) {
	g.Eventually(func() error {
		cur := &corev1.Pod{}
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(pod), cur); err != nil {
			return client.IgnoreNotFound(err)
		}
		cur.Finalizers = nil
		return k8s.Update(context.Background(), cur)
	}).Should(Succeed())
}

// stepOf names what a pod shows now: the first container, in run order,
// that runs and has no unfinished container before it (the later steps run
// too, waiting for it).
func stepOf(pod *corev1.Pod) string {
	for _, s := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		if s.State.Running != nil {
			return string(pod.Status.Phase) + "/" + s.Name
		}
		if s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
			break
		}
	}
	return string(pod.Status.Phase)
}

func TestFleet(t *testing.T) {
	k8s := fleet.Get(t).Client
	g := NewWithT(t)
	ctx := t.Context()
	specs := fleetsim.Fleet("ready", 5, "v1.20.0")
	specs[3].Offline = true
	specs[4].Behavior = fleetsim.BehaviorFail
	g.Expect(fleetsim.CreateNodes(ctx, k8s, specs, 4)).To(Succeed())

	for _, s := range specs {
		if s.Offline {
			continue
		}
		g.Eventually(func(g Gomega) {
			node := getNode(g, k8s, s.Name)
			g.Expect(readyStatus(node)).To(Equal(corev1.ConditionTrue))
			g.Expect(node.Status.NodeInfo.KubeletVersion).To(Equal("v1.30.7-kubeedge-v1.20.0"))
			g.Expect(node.Labels).To(HaveKeyWithValue(fleetsim.LabelEdgeRole, ""))
		}).WithTimeout(20*time.Second).Should(Succeed(), s.Name)
	}
	g.Eventually(func(g Gomega) {
		g.Expect(readyStatus(getNode(g, k8s, specs[3].Name))).To(Equal(corev1.ConditionUnknown))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(readyStatus(getNode(g, k8s, specs[3].Name))).NotTo(Equal(corev1.ConditionTrue))
	}).WithTimeout(2 * time.Second).Should(Succeed())

	// The heartbeat keeps a Ready node fresh.
	first := getNode(g, k8s, specs[0].Name)
	beat := func(n *corev1.Node) time.Time {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.LastHeartbeatTime.Time
			}
		}
		return time.Time{}
	}
	g.Eventually(func(g Gomega) {
		g.Expect(beat(getNode(g, k8s, specs[0].Name))).To(BeTemporally(">", beat(first)))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// Bringing the offline node back makes it Ready.
	g.Expect(fleetsim.SetOffline(ctx, k8s, specs[3].Name, false)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(readyStatus(getNode(g, k8s, specs[3].Name))).To(Equal(corev1.ConditionTrue))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

func TestUpgradePodSucceeds(t *testing.T) {
	k8s := fleet.Get(t).Client
	g := NewWithT(t)
	ctx := t.Context()
	g.Expect(fleetsim.CreateNodes(ctx, k8s, []fleetsim.NodeSpec{{Name: "ok-0"}}, 1)).To(Succeed())
	pod := upgradePod("ok-0", "job-ok")
	g.Expect(k8s.Create(ctx, pod)).To(Succeed())

	var seen []string
	g.Eventually(func(g Gomega) {
		cur := &corev1.Pod{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), cur)).To(Succeed())
		// What the controller's own observer makes of each status.
		if step := string(upgradepod.View(cur).Phase); len(seen) == 0 || seen[len(seen)-1] != step {
			seen = append(seen, step)
		}
		g.Expect(cur.Status.Phase).To(Equal(corev1.PodSucceeded))
	}).WithTimeout(15 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	t.Logf("steps seen: %v", seen)
	// Every step shows for at least 400ms, so polling at 50ms sees each.
	// Pending first only if the pod was seen before the simulator got to it.
	if seen[0] == string(rollout.PodPending) {
		seen = seen[1:]
	}
	g.Expect(seen).To(Equal([]string{"Checking", "BackingUp", "Upgrading", "Succeeded"}))

	// The node reports the new edgecore, and keeps doing so through heartbeats.
	g.Expect(fleetsim.NodeVersion(getNode(g, k8s, "ok-0"))).To(Equal("v1.21.0"))
	g.Consistently(func(g Gomega) {
		node := getNode(g, k8s, "ok-0")
		g.Expect(node.Status.NodeInfo.KubeletVersion).To(Equal("v1.30.7-kubeedge-v1.21.0"))
		g.Expect(readyStatus(node)).To(Equal(corev1.ConditionTrue))
	}).WithTimeout(2500 * time.Millisecond).Should(Succeed())

	removeFinalizers(g, k8s, pod)
	g.Expect(k8s.Delete(ctx, pod)).To(Succeed())
	expectGone(ctx, g, k8s, pod)
}

func TestUpgradePodFails(t *testing.T) {
	k8s := fleet.Get(t).Client
	g := NewWithT(t)
	ctx := t.Context()
	g.Expect(fleetsim.CreateNodes(ctx, k8s, []fleetsim.NodeSpec{
		{Name: "fail-0", Behavior: fleetsim.BehaviorFail},
		{Name: "fail-1", Behavior: "fail-check", Duration: time.Second},
	}, 2)).To(Succeed())
	pod := upgradePod("fail-0", "job-fail")
	checkPod := upgradePod("fail-1", "job-fail")
	g.Expect(k8s.Create(ctx, pod)).To(Succeed())
	g.Expect(k8s.Create(ctx, checkPod)).To(Succeed())

	cur := &corev1.Pod{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), cur)).To(Succeed())
		g.Expect(cur.Status.Phase).To(Equal(corev1.PodFailed))
	}).WithTimeout(15 * time.Second).Should(Succeed())
	term := containerStatus(cur, runner.ContainerUpgrade).State.Terminated
	g.Expect(term).NotTo(BeNil())
	g.Expect(term.ExitCode).To(BeEquivalentTo(runner.ExitRolledBack))
	var msg map[string]any
	g.Expect(json.Unmarshal([]byte(term.Message), &msg)).To(Succeed())
	g.Expect(msg).To(Equal(map[string]any{
		"step": "rollback", "result": "failed", "rolledBack": true,
		"reason":      "rollback succeeded, the node is back on v1.20.0; upgrade to v1.21.0 failed: simulated keadm failure",
		"fromVersion": "v1.20.0", "toVersion": "v1.21.0",
	}))
	g.Expect(upgradepod.View(cur).Phase).To(Equal(rollout.PodFailed))
	g.Expect(fleetsim.NodeVersion(getNode(g, k8s, "fail-0"))).To(Equal("v1.20.0"))

	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(checkPod), cur)).To(Succeed())
		g.Expect(cur.Status.Phase).To(Equal(corev1.PodFailed))
	}).WithTimeout(15 * time.Second).Should(Succeed())
	check := containerStatus(cur, runner.ContainerCheck).State.Terminated
	g.Expect(check.ExitCode).To(BeEquivalentTo(runner.ExitCheckFailed))
	g.Expect(check.Message).To(ContainSubstring(`"step":"check"`))
	// The later steps, started with it, did nothing.
	g.Expect(containerStatus(cur, runner.ContainerUpgrade).State.Terminated.ExitCode).To(BeEquivalentTo(runner.ExitNotRun))

	removeFinalizers(g, k8s, pod)
	removeFinalizers(g, k8s, checkPod)
}

func TestDeletedPodIsKilledButKeptForItsFinalizer(t *testing.T) {
	k8s := fleet.Get(t).Client
	g := NewWithT(t)
	ctx := t.Context()
	g.Expect(fleetsim.CreateNodes(ctx, k8s, []fleetsim.NodeSpec{{Name: "hang-0", Behavior: fleetsim.BehaviorHang}}, 1)).To(Succeed())
	pod := upgradePod("hang-0", "job-hang")
	g.Expect(k8s.Create(ctx, pod)).To(Succeed())
	cur := &corev1.Pod{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), cur)).To(Succeed())
		g.Expect(stepOf(cur)).To(Equal("Running/upgrade"))
	}).WithTimeout(15 * time.Second).Should(Succeed())
	// A hung pod stays running.
	g.Consistently(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), cur)).To(Succeed())
		g.Expect(stepOf(cur)).To(Equal("Running/upgrade"))
	}).WithTimeout(2 * time.Second).Should(Succeed())

	// The default (30s) grace period, as the controller would delete it.
	g.Expect(k8s.Delete(ctx, cur)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), cur)).To(Succeed())
		g.Expect(cur.Status.Phase).To(Equal(corev1.PodFailed))
		term := containerStatus(cur, runner.ContainerUpgrade).State.Terminated
		g.Expect(term).NotTo(BeNil())
		g.Expect(term.ExitCode).To(BeEquivalentTo(143))
		g.Expect(cur.DeletionGracePeriodSeconds).To(HaveValue(BeZero()))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	// The simulator leaves the controller's finalizer alone.
	g.Consistently(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), cur)).To(Succeed())
		g.Expect(cur.Finalizers).To(ConsistOf("operations.kubeedge.io/upgrade-tracking"))
	}).WithTimeout(time.Second).Should(Succeed())

	removeFinalizers(g, k8s, pod)
	expectGone(ctx, g, k8s, pod)
}

func TestOfflineNodeNeverRunsOrStopsPods(t *testing.T) {
	k8s := fleet.Get(t).Client
	g := NewWithT(t)
	ctx := t.Context()
	g.Expect(fleetsim.CreateNodes(ctx, k8s, []fleetsim.NodeSpec{{Name: "offline-0", Offline: true}}, 1)).To(Succeed())
	pod := upgradePod("offline-0", "job-offline")
	g.Expect(k8s.Create(ctx, pod)).To(Succeed())
	cur := &corev1.Pod{}
	g.Consistently(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), cur)).To(Succeed())
		g.Expect(cur.Status.StartTime).To(BeNil())
	}).WithTimeout(2 * time.Second).Should(Succeed())

	// Deleted while offline it stays (no kubelet confirms); once the node is
	// back its kubelet stops it, and without finalizers it is gone.
	g.Expect(k8s.Delete(ctx, cur)).To(Succeed())
	removeFinalizers(g, k8s, pod)
	g.Consistently(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pod), cur)).To(Succeed())
	}).WithTimeout(time.Second).Should(Succeed())
	g.Expect(fleetsim.SetOffline(ctx, k8s, "offline-0", false)).To(Succeed())
	expectGone(ctx, g, k8s, pod)
	t.Logf("simulator: %+v", fleet.Get(t).Simulator().Stats())
}
