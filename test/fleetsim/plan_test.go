package fleetsim

import (
	"encoding/json"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func upgradePod(initContainers ...string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
		Spec: corev1.PodSpec{
			NodeName: "edge-0",
			Containers: []corev1.Container{{
				Name: UpgradeContainer, Image: "kubeedge/installation-package:v1.21.0",
				Args: []string{"upgrade", "edge", "--to-version=v1.21.0"},
			}},
		},
	}
	for _, n := range initContainers {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: n, Image: "img"})
	}
	return pod
}

func TestParseBehavior(t *testing.T) {
	g := NewWithT(t)
	for in, want := range map[string][2]string{
		"":            {"succeed", ""},
		"succeed":     {"succeed", ""},
		"fail":        {"fail", ""},
		"hang":        {"hang", ""},
		"fail-check":  {"fail", "check"},
		"hang-backup": {"hang", "backup"},
	} {
		b, at, err := ParseBehavior(in)
		g.Expect(err).NotTo(HaveOccurred(), in)
		g.Expect([2]string{string(b), at}).To(Equal(want), in)
	}
	_, _, err := ParseBehavior("explode")
	g.Expect(err).To(HaveOccurred())
}

func TestPlanTimeline(t *testing.T) {
	g := NewWithT(t)
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	pod := upgradePod("copy-keadm", "check", "backup")
	// Weights 1, 2, 2 and 5 over 10s: steps begin at 0, 1, 3 and 5s.
	p := newPlan(pod, start, 10*time.Second, BehaviorSucceed, "")
	at := func(d time.Duration) int { return p.progressAt(start.Add(d)) }
	g.Expect([]int{at(0), at(999 * time.Millisecond), at(time.Second), at(3 * time.Second), at(5 * time.Second), at(10 * time.Second)}).
		To(Equal([]int{1, 1, 2, 3, 4, 5}))
	next, ok := p.nextChange(start.Add(4 * time.Second))
	g.Expect(ok).To(BeTrue())
	g.Expect(next).To(Equal(start.Add(5 * time.Second)))
	_, ok = p.nextChange(start.Add(10 * time.Second))
	g.Expect(ok).To(BeFalse())

	// While check runs the pod is Pending with copy-keadm done.
	st := p.podStatus(pod, 2, nil)
	g.Expect(st.Phase).To(Equal(corev1.PodPending))
	g.Expect(st.InitContainerStatuses[0].State.Terminated).NotTo(BeNil())
	g.Expect(st.InitContainerStatuses[1].State.Running).NotTo(BeNil())
	g.Expect(st.InitContainerStatuses[2].State.Waiting).NotTo(BeNil())
	pod.Status = st
	g.Expect(progressOf(pod)).To(Equal(2))

	st = p.podStatus(pod, 4, nil)
	g.Expect(st.Phase).To(Equal(corev1.PodRunning))
	g.Expect(st.ContainerStatuses[0].State.Running).NotTo(BeNil())
	pod.Status = st
	g.Expect(progressOf(pod)).To(Equal(4))

	st = p.podStatus(pod, 5, nil)
	g.Expect(st.Phase).To(Equal(corev1.PodSucceeded))
	g.Expect(st.ContainerStatuses[0].State.Terminated.ExitCode).To(BeZero())
}

func TestPlanFailures(t *testing.T) {
	g := NewWithT(t)
	start := time.Now()
	pod := upgradePod("copy-keadm", "check", "backup")

	p := newPlan(pod, start, 10*time.Second, BehaviorFail, "")
	g.Expect(p.progressAt(start.Add(9 * time.Second))).To(Equal(4))
	g.Expect(p.progressAt(start.Add(10 * time.Second))).To(Equal(p.done()))
	msg := failureMessage(UpgradeContainer, "v1.20.0", TargetVersion(pod))
	st := p.podStatus(pod, p.done(), &failure{step: p.stopStep, message: msg})
	g.Expect(st.Phase).To(Equal(corev1.PodFailed))
	term := st.ContainerStatuses[0].State.Terminated
	g.Expect(term.ExitCode).To(BeEquivalentTo(ExitUpgradeFailed))
	var m TerminationMessage
	g.Expect(json.Unmarshal([]byte(term.Message), &m)).To(Succeed())
	g.Expect(m).To(Equal(TerminationMessage{
		Step: "upgrade", Result: "failed", Reason: "simulated keadm failure",
		RolledBack: true, FromVersion: "v1.20.0", ToVersion: "v1.21.0",
	}))

	// fail-check ends when check would have ended, leaving backup unstarted.
	p = newPlan(pod, start, 10*time.Second, BehaviorFail, "check")
	g.Expect(p.progressAt(start.Add(2 * time.Second))).To(Equal(2))
	g.Expect(p.progressAt(start.Add(3 * time.Second))).To(Equal(p.done()))
	st = p.podStatus(pod, p.done(), &failure{step: p.stopStep, message: failureMessage("check", "", "")})
	g.Expect(st.Phase).To(Equal(corev1.PodFailed))
	g.Expect(st.InitContainerStatuses[1].State.Terminated.ExitCode).To(BeEquivalentTo(ExitStepFailed))
	g.Expect(st.InitContainerStatuses[2].State.Waiting).NotTo(BeNil())
	g.Expect(st.ContainerStatuses[0].State.Waiting).NotTo(BeNil())

	// hang stays in the upgrade container for good.
	p = newPlan(pod, start, 10*time.Second, BehaviorHang, "")
	g.Expect(p.progressAt(start.Add(time.Hour))).To(Equal(4))
	_, ok := p.nextChange(start.Add(time.Hour))
	g.Expect(ok).To(BeFalse())
}

func TestKilledStatus(t *testing.T) {
	g := NewWithT(t)
	start := time.Now()
	pod := upgradePod("copy-keadm", "backup")
	p := newPlan(pod, start, 10*time.Second, BehaviorSucceed, "")
	pod.Status = p.podStatus(pod, 3, nil)
	g.Expect(containersStopped(pod)).To(BeFalse())
	pod.Status = killedStatus(pod, start.Add(6*time.Second))
	g.Expect(containersStopped(pod)).To(BeTrue())
	g.Expect(pod.Status.Phase).To(Equal(corev1.PodFailed))
	g.Expect(pod.Status.ContainerStatuses[0].State.Terminated.ExitCode).To(BeEquivalentTo(ExitKilled))

	// A pod that never started gets a status all the same.
	fresh := upgradePod("copy-keadm")
	fresh.Status = killedStatus(fresh, start)
	g.Expect(fresh.Status.Phase).To(Equal(corev1.PodFailed))
	g.Expect(fresh.Status.ContainerStatuses).To(HaveLen(1))
}

func TestVersions(t *testing.T) {
	g := NewWithT(t)
	g.Expect(ReportedVersion("", "v1.20.0")).To(Equal("v1.30.7-kubeedge-v1.20.0"))
	g.Expect(KubeEdgeVersion("v1.30.7-kubeedge-v1.20.0")).To(Equal("v1.20.0"))
	g.Expect(KubeEdgeVersion("v1.30.7")).To(BeEmpty())
	g.Expect(withKubeEdgeVersion("v1.29.1-kubeedge-v1.19.0", "v1.20.1")).To(Equal("v1.29.1-kubeedge-v1.20.1"))

	pod := upgradePod()
	g.Expect(TargetVersion(pod)).To(Equal("v1.21.0"))
	pod.Spec.Containers[0].Args = []string{"--to-version", "v1.22.0"}
	g.Expect(TargetVersion(pod)).To(Equal("v1.22.0"))
	pod.Spec.Containers[0].Args = nil
	pod.Spec.Containers[0].Command = []string{"sh", "-c", "keadm upgrade edge --to-version=v1.23.0 --force"}
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
