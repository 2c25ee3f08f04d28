package fleetsim

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// realPod is an upgrade pod exactly as the controller builds it, with a
// deadline far off unless the test says otherwise.
func realPod(withCheck bool, deadline time.Duration) *corev1.Pod {
	p := upgradepod.Params{
		JobName: "job", JobUID: "uid", NodeName: "edge-0", Namespace: "kubeedge",
		RunnerImage: "runner:v0", InstallImage: "docker.io/kubeedge/installation-package:v1.21.0",
		Version: "v1.21.0", FromVersion: "v1.20.0", Deadline: t0.Add(deadline),
	}
	if withCheck {
		p.CheckItems = []string{"cpu"}
	}
	return upgradepod.Build(p, t0)
}

// observeAt renders the pod at elapsed d and asks the controller's own
// observer what it sees.
func observeAt(g Gomega, pod *corev1.Pod, p timeline, d time.Duration) rollout.PodView {
	pod = pod.DeepCopy()
	progress := p.progressAt(t0.Add(d))
	pod.Status = p.podStatus(pod, progress)
	g.Expect(p.progressOf(pod)).To(Equal(progress), "progress read back at %s", d)
	return upgradepod.View(pod)
}

// upgradeReportAt is the report the upgrade container leaves at elapsed d.
func upgradeReportAt(g Gomega, pod *corev1.Pod, p timeline, d time.Duration) runner.Report {
	st := p.podStatus(pod, p.progressAt(t0.Add(d)))
	for _, c := range st.ContainerStatuses {
		if c.Name == runner.ContainerUpgrade {
			g.Expect(c.State.Terminated).NotTo(BeNil(), "the upgrade container has ended at %s", d)
			return report(g, c.State.Terminated.Message)
		}
	}
	g.Expect(st.ContainerStatuses).To(ContainElement(HaveField("Name", runner.ContainerUpgrade)))
	return runner.Report{}
}

func report(g Gomega, msg string) runner.Report {
	rep, err := runner.ParseReport(msg)
	g.Expect(err).NotTo(HaveOccurred())
	return rep
}

func TestParseBehavior(t *testing.T) {
	g := NewWithT(t)
	for in, want := range map[string][2]string{
		"":              {"succeed", ""},
		"succeed":       {"succeed", ""},
		"fail":          {"fail", ""},
		"fail-rollback": {"fail-rollback", ""},
		"hang":          {"hang", ""},
		"fail-check":    {"fail", "check"},
		"hang-backup":   {"hang", "backup"},
	} {
		b, at, err := ParseBehavior(in)
		g.Expect(err).NotTo(HaveOccurred(), in)
		g.Expect([2]string{string(b), at}).To(Equal(want), in)
	}
	_, _, err := ParseBehavior("explode")
	g.Expect(err).To(HaveOccurred())
}

func TestPlanSucceeds(t *testing.T) {
	g := NewWithT(t)
	pod := realPod(true, time.Hour)
	// Weights 1, 2, 2 and 5 over 10s: steps begin at 0, 1, 3 and 5s.
	p := newTimeline(pod, timelineInput{start: t0, duration: 10 * time.Second, nodeVersion: "v1.20.0"})
	g.Expect(p.succeeds()).To(BeTrue())
	phases := map[time.Duration]rollout.PodPhase{
		0:                      rollout.PodChecking, // copy-keadm counts as the first step
		999 * time.Millisecond: rollout.PodChecking,
		time.Second:            rollout.PodChecking,
		3 * time.Second:        rollout.PodBackingUp,
		5 * time.Second:        rollout.PodUpgrading,
		10 * time.Second:       rollout.PodSucceeded,
	}
	for d, want := range phases {
		g.Expect(observeAt(g, pod, p, d).Phase).To(Equal(want), "at %s", d)
	}
	next, ok := p.nextChange(t0.Add(4 * time.Second))
	g.Expect(ok).To(BeTrue())
	g.Expect(next).To(Equal(t0.Add(5 * time.Second)))
	_, ok = p.nextChange(t0.Add(10 * time.Second))
	g.Expect(ok).To(BeFalse())

	st := p.podStatus(pod, p.progressAt(t0.Add(6*time.Second)))
	g.Expect(st.Phase).To(Equal(corev1.PodRunning))
	// No readiness probe: a running container is Ready by the kubelet's
	// default, as real edgecore reported it; the finished ones are not.
	g.Expect(st.ContainerStatuses[2].Ready).To(BeTrue())
	g.Expect(st.ContainerStatuses[0].Ready).To(BeFalse())
	g.Expect(report(g, st.ContainerStatuses[0].State.Terminated.Message)).To(isReport("check", runner.ResultSucceeded))
	g.Expect(report(g, st.ContainerStatuses[1].State.Terminated.Message)).To(isReport("backup", runner.ResultSucceeded))
	g.Expect(st.ContainerStatuses[2].State.Running).NotTo(BeNil())

	// Before its turn a step runs already, waiting for the one before it.
	st = p.podStatus(pod, p.progressAt(t0.Add(2*time.Second)))
	g.Expect(st.Phase).To(Equal(corev1.PodRunning))
	g.Expect(st.ContainerStatuses[0].State.Running).NotTo(BeNil())
	g.Expect(st.ContainerStatuses[2].State.Running).NotTo(BeNil())

	g.Expect(observeAt(g, pod, p, 10*time.Second).Phase).To(Equal(rollout.PodSucceeded))
	g.Expect(upgradeReportAt(g, pod, p, 10*time.Second)).To(Equal(runner.Report{
		Step: runner.StepUpgrade, Result: runner.ResultSucceeded,
		Reason: "upgraded edgecore from v1.20.0 to v1.21.0", FromVersion: "v1.20.0", ToVersion: "v1.21.0",
	}))
}

// isReport matches a report's step and result.
func isReport(step string, result runner.Result) OmegaMatcher {
	return WithTransform(func(r runner.Report) [2]string { return [2]string{string(r.Step), string(r.Result)} },
		Equal([2]string{step, string(result)}))
}

func TestPlanFailures(t *testing.T) {
	g := NewWithT(t)
	pod := realPod(true, time.Hour)
	in := timelineInput{start: t0, duration: 10 * time.Second, nodeVersion: "v1.20.0", behavior: BehaviorFail}

	// The upgrade fails and the rollback works, inside the upgrade
	// container: the pod shows Upgrading until the runner's report.
	p := newTimeline(pod, in)
	g.Expect(observeAt(g, pod, p, 7*time.Second).Phase).To(Equal(rollout.PodUpgrading))
	g.Expect(observeAt(g, pod, p, 9*time.Second).Phase).To(Equal(rollout.PodUpgrading))
	obs := observeAt(g, pod, p, 10*time.Second)
	g.Expect(obs.Phase).To(Equal(rollout.PodFailed))
	g.Expect(obs.FailedEvent).To(Equal(v1alpha1.EventRollback))
	g.Expect(upgradeReportAt(g, pod, p, 10*time.Second)).To(Equal(runner.Report{
		Step: runner.StepRollback, Result: runner.ResultFailed, RolledBack: true,
		Reason:      "rollback succeeded, the node is back on v1.20.0; upgrade to v1.21.0 failed: simulated keadm failure",
		FromVersion: "v1.20.0", ToVersion: "v1.21.0",
	}))
	st := p.podStatus(pod, p.done())
	g.Expect(st.Phase).To(Equal(corev1.PodFailed))
	g.Expect(st.ContainerStatuses[2].State.Terminated.ExitCode).To(BeEquivalentTo(runner.ExitRolledBack))

	in.behavior = BehaviorFailRollback
	p = newTimeline(pod, in)
	st = p.podStatus(pod, p.done())
	g.Expect(st.ContainerStatuses[2].State.Terminated.ExitCode).To(BeEquivalentTo(runner.ExitNeedsAttention))
	g.Expect(report(g, st.ContainerStatuses[2].State.Terminated.Message).NeedsAttention).To(BeTrue())

	// fail-check ends when check would have ended; the later steps exit
	// without doing anything.
	in.behavior, in.at = BehaviorFail, runner.ContainerCheck
	p = newTimeline(pod, in)
	g.Expect(p.progressAt(t0.Add(2 * time.Second))).To(Equal(2))
	obs = observeAt(g, pod, p, 3*time.Second)
	g.Expect(obs.Phase).To(Equal(rollout.PodFailed))
	g.Expect(obs.FailedEvent).To(Equal(v1alpha1.EventCheck))
	st = p.podStatus(pod, p.done())
	g.Expect(st.ContainerStatuses[0].State.Terminated.ExitCode).To(BeEquivalentTo(runner.ExitCheckFailed))
	g.Expect(st.ContainerStatuses[1].State.Terminated.ExitCode).To(BeEquivalentTo(runner.ExitNotRun))
	g.Expect(st.ContainerStatuses[2].State.Terminated.ExitCode).To(BeEquivalentTo(runner.ExitNotRun))

	in.at = runner.ContainerBackup
	noCheck := realPod(false, time.Hour)
	p = newTimeline(noCheck, in)
	st = p.podStatus(noCheck, p.done())
	g.Expect(st.ContainerStatuses[0].State.Terminated.ExitCode).To(BeEquivalentTo(runner.ExitBackupFailed))
	noCheck.Status = st
	g.Expect(upgradepod.View(noCheck).FailedEvent).To(Equal(v1alpha1.EventBackUp))
}

func TestPlanHangAndDeadlines(t *testing.T) {
	g := NewWithT(t)
	// Without an active deadline a hung upgrade runs for good.
	pod := realPod(false, time.Hour)
	pod.Spec.ActiveDeadlineSeconds = nil
	p := newTimeline(pod, timelineInput{start: t0, duration: 10 * time.Second, behavior: BehaviorHang})
	g.Expect(observeAt(g, pod, p, time.Hour).Phase).To(Equal(rollout.PodUpgrading))
	_, ok := p.nextChange(t0.Add(time.Hour))
	g.Expect(ok).To(BeFalse())

	// With one, the kubelet kills it then: the deadline plus the
	// controller's grace, here 60s + DeadlineGrace.
	pod = realPod(false, time.Minute)
	p = newTimeline(pod, timelineInput{start: t0, duration: 10 * time.Second, behavior: BehaviorHang})
	killAt := time.Duration(*pod.Spec.ActiveDeadlineSeconds) * time.Second
	g.Expect(observeAt(g, pod, p, killAt-time.Second).Phase).To(Equal(rollout.PodUpgrading))
	obs := observeAt(g, pod, p, killAt)
	g.Expect(obs.Phase).To(Equal(rollout.PodFailed))
	g.Expect(obs.Reason).To(ContainSubstring("DeadlineExceeded"))

	// A step that would start after the deadline refuses to run (exit 5).
	pod = realPod(true, 4*time.Second)
	p = newTimeline(pod, timelineInput{start: t0, duration: 10 * time.Second})
	g.Expect(observeAt(g, pod, p, 3*time.Second).Phase).To(Equal(rollout.PodBackingUp))
	obs = observeAt(g, pod, p, 5*time.Second)
	g.Expect(obs.Phase).To(Equal(rollout.PodFailed))
	g.Expect(obs.FailedEvent).To(Equal(v1alpha1.EventUpgrade))
	g.Expect(obs.Reason).To(ContainSubstring("deadline"))
	st := p.podStatus(pod, p.done())
	g.Expect(st.ContainerStatuses[2].State.Terminated.ExitCode).To(BeEquivalentTo(runner.ExitDeadline))
	g.Expect(report(g, st.ContainerStatuses[1].State.Terminated.Message)).To(isReport("backup", runner.ResultSucceeded))
}

func TestKilledStatus(t *testing.T) {
	g := NewWithT(t)
	pod := realPod(false, time.Hour)
	p := newTimeline(pod, timelineInput{start: t0, duration: 10 * time.Second})
	pod.Status = p.podStatus(pod, p.progressAt(t0.Add(6*time.Second)))
	g.Expect(containersStopped(pod)).To(BeFalse())
	pod.Status = killedStatus(pod, t0.Add(6*time.Second))
	g.Expect(containersStopped(pod)).To(BeTrue())
	g.Expect(pod.Status.Phase).To(Equal(corev1.PodFailed))
	g.Expect(pod.Status.ContainerStatuses[1].State.Terminated.ExitCode).To(BeEquivalentTo(ExitKilled))
	// Its backup and upgrade containers only followed the job's unit on the
	// node: killed, they give no verdict, and the Node shows the outcome.
	g.Expect(upgradepod.View(pod).Phase).To(Equal(rollout.PodDetached))

	// A pod that never started gets a status all the same.
	fresh := realPod(false, time.Hour)
	fresh.Status = killedStatus(fresh, t0)
	g.Expect(fresh.Status.Phase).To(Equal(corev1.PodFailed))
	g.Expect(fresh.Status.ContainerStatuses).To(HaveLen(2))
}

func TestVersions(t *testing.T) {
	g := NewWithT(t)
	g.Expect(ReportedVersion("", "v1.20.0")).To(Equal("v1.30.7-kubeedge-v1.20.0"))
	g.Expect(NodeVersion(&corev1.Node{Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.30.7-kubeedge-v1.20.0"}}})).To(Equal("v1.20.0"))
	g.Expect(NodeVersion(&corev1.Node{Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.30.7"}}})).To(BeEmpty())
	g.Expect(withKubeEdgeVersion("v1.29.1-kubeedge-v1.19.0", "v1.20.1")).To(Equal("v1.29.1-kubeedge-v1.20.1"))

	pod := realPod(false, time.Hour)
	g.Expect(TargetVersion(pod)).To(Equal("v1.21.0"))
	g.Expect(argValue(pod, "--from-version")).To(Equal("v1.20.0"))
	d, ok := podDeadline(pod)
	g.Expect(ok).To(BeTrue())
	g.Expect(d).To(Equal(t0.Add(time.Hour)))
	up := &pod.Spec.Containers[len(pod.Spec.Containers)-1]
	up.Args = []string{"--to-version", "v1.22.0"}
	g.Expect(TargetVersion(pod)).To(Equal("v1.22.0"))
	up.Args = nil
	up.Command = []string{"sh", "-c", "keadm upgrade edge --to-version=v1.23.0 --force"}
	g.Expect(TargetVersion(pod)).To(Equal("v1.23.0"))
}

func TestNodeSpec(t *testing.T) {
	g := NewWithT(t)
	n := NodeSpec{Name: "e", Behavior: BehaviorFail, Offline: true, Duration: 5 * time.Second}.Node()
	g.Expect(n.Annotations).To(Equal(map[string]string{
		AnnotationFakeNode: FakeNodeValue, AnnotationBehavior: "fail", AnnotationOffline: "true", AnnotationDuration: "5s",
	}))
	g.Expect(n.Labels).To(HaveKeyWithValue(LabelEdgeRole, ""))
	g.Expect(n.Spec.Taints).To(ConsistOf(corev1.Taint{Key: TaintEdge, Effect: corev1.TaintEffectNoSchedule}))
	g.Expect(NodeVersion(n)).To(Equal(DefaultVersion))

	cloud := NodeSpec{Name: "c", NotEdge: true, Version: "v1.19.0"}.Node()
	g.Expect(cloud.Labels).NotTo(HaveKey(LabelEdgeRole))
	g.Expect(cloud.Spec.Taints).To(BeEmpty())
	g.Expect(NodeVersion(cloud)).To(Equal("v1.19.0"))
}

// A pod whose node still holds a deleted pod's runner (rolling back after
// its pod left the API, as on real KubeEdge) waits in its first step for the
// node lock, and every step after it finishes that much later; a runner that
// stays past the deadline makes the step give up without running.
func TestPlanWaitsForLingeringRunner(t *testing.T) {
	g := NewWithT(t)
	pod := realPod(true, time.Hour)
	// Weights 1, 2, 2 and 5 over 10s: check begins at 1s and waits until 7s.
	in := timelineInput{start: t0, duration: 10 * time.Second, nodeBusyUntil: t0.Add(7 * time.Second)}
	p := newTimeline(pod, in)
	g.Expect(p.succeeds()).To(BeTrue())
	for d, want := range map[time.Duration]rollout.PodPhase{
		2 * time.Second:  rollout.PodChecking,
		8 * time.Second:  rollout.PodChecking,
		9 * time.Second:  rollout.PodBackingUp,
		12 * time.Second: rollout.PodUpgrading,
		16 * time.Second: rollout.PodSucceeded,
	} {
		g.Expect(observeAt(g, pod, p, d).Phase).To(Equal(want), "at %s", d)
	}
	// Gone before this pod's steps began: no wait.
	in.nodeBusyUntil = t0.Add(500 * time.Millisecond)
	g.Expect(observeAt(g, pod, newTimeline(pod, in), 10*time.Second).Phase).To(Equal(rollout.PodSucceeded))

	// Still there at the deadline: the check gives up, nothing was run.
	pod = realPod(true, 5*time.Second)
	in.nodeBusyUntil = t0.Add(time.Minute)
	p = newTimeline(pod, in)
	g.Expect(observeAt(g, pod, p, 4*time.Second).Phase).To(Equal(rollout.PodChecking))
	obs := observeAt(g, pod, p, 5*time.Second)
	g.Expect(obs.Phase).To(Equal(rollout.PodFailed))
	g.Expect(obs.FailedEvent).To(Equal(v1alpha1.EventCheck))
	g.Expect(obs.Reason).To(ContainSubstring("node lock"))
	st := p.podStatus(pod, p.done())
	g.Expect(st.ContainerStatuses[0].State.Terminated.ExitCode).To(BeEquivalentTo(runner.ExitDeadline))
	g.Expect(st.ContainerStatuses[2].State.Terminated.ExitCode).To(BeEquivalentTo(runner.ExitNotRun))
}
