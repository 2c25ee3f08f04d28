package upgradepod

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// A health gate's rollback pod: the upgrade pod's name, copy-keadm, and one
// privileged rollback container running the runner's rollback step; marked
// so the controller tells it from the upgrade pod.
func TestBuildRollback(t *testing.T) {
	g := NewWithT(t)
	p := baseParams()
	p.RequireConfirmation = true // a rollback pod never waits
	pod := BuildRollback(p, buildTime)
	g.Expect(pod.Name).To(Equal("nodeupgrade-rollback-edge-node-1"), "not the upgrade pod's name, which that pod keeps holding")
	g.Expect(pod.Labels).NotTo(HaveKey(v1alpha1.LabelNode))
	g.Expect(pod.Finalizers).To(BeEmpty())
	g.Expect(IsRollback(pod)).To(BeTrue())
	g.Expect(IsRollback(Build(baseParams(), buildTime))).To(BeFalse())
	g.Expect(pod.Spec.InitContainers).To(HaveLen(1))
	g.Expect(pod.Spec.InitContainers[0].Name).To(Equal(runner.ContainerCopyKeadm))
	g.Expect(pod.Spec.Containers).To(HaveLen(1))
	c := pod.Spec.Containers[0]
	g.Expect(c.Name).To(Equal(runner.ContainerRollback))
	g.Expect(c.Args[0]).To(Equal(string(runner.StepRollback)))
	g.Expect(*c.SecurityContext.Privileged).To(BeTrue())
	g.Expect(pod.Spec.ActiveDeadlineSeconds).NotTo(BeNil())
	step, o, err := runner.ParseArgs(c.Args, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(step).To(Equal(runner.StepRollback))
	g.Expect(o.JobUID).To(Equal(p.JobUID))
}

// The rollback container follows the unit like backup and upgrade: its
// report is the verdict, and without one a killed container is lost, not a
// failure.
func TestViewRollbackPod(t *testing.T) {
	g := NewWithT(t)
	pod := BuildRollback(baseParams(), buildTime)
	rep := runner.Report{Step: runner.StepRollback, Result: runner.ResultFailed, RolledBack: true,
		Reason: "rollback succeeded, the node is back on v1.20.0"}
	pod.Status.Phase = corev1.PodFailed
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: runner.ContainerRollback, State: corev1.ContainerState{
		Terminated: &corev1.ContainerStateTerminated{ExitCode: runner.ExitRolledBack, Message: string(rep.Marshal())}}}}
	v := View(pod)
	g.Expect(v.Phase).To(Equal(rollout.PodFailed))
	g.Expect(v.FailedEvent).To(Equal(v1alpha1.EventRollback))
	g.Expect(v.Reason).To(ContainSubstring("rollback succeeded"))

	pod.Status.ContainerStatuses[0].State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 137}
	g.Expect(View(pod).Phase).To(Equal(rollout.PodDetached), "killed without a report: the unit goes on")
}

// A stage pod only pulls: the install image (by the job's digest when it
// pins one) and the runner image; nothing mounted, nothing privileged, no
// node label, no finalizer.
func TestBuildStage(t *testing.T) {
	g := NewWithT(t)
	p := baseParams()
	p.ImageDigest = "sha256:" + strings.Repeat("a", 64)
	p.PullSecrets = []string{"mirror"}
	pod := BuildStage(p)
	g.Expect(IsStage(pod)).To(BeTrue())
	g.Expect(pod.Name).To(Equal("nodeupgrade-stage-" + shortHash(p.JobUID, 8) + "-edge-node-1"))
	g.Expect(pod.Name).NotTo(Equal(PodName(p.NodeName)), "an upgrade pod of another job may be on the node")
	g.Expect(pod.Labels).To(HaveKey(v1alpha1.LabelJob))
	g.Expect(pod.Labels).NotTo(HaveKey(v1alpha1.LabelNode))
	g.Expect(pod.Finalizers).To(BeEmpty())
	g.Expect(pod.Spec.Volumes).To(BeEmpty())
	g.Expect(pod.Spec.HostPID).To(BeFalse())
	g.Expect(pod.Spec.ImagePullSecrets).To(Equal([]corev1.LocalObjectReference{{Name: "mirror"}}))
	g.Expect(pod.Spec.Containers).To(HaveLen(2))
	images := []string{}
	for _, c := range pod.Spec.Containers {
		images = append(images, c.Image)
		g.Expect(c.VolumeMounts).To(BeEmpty())
		g.Expect(c.SecurityContext.Privileged).To(Or(BeNil(), PointTo(BeFalse())))
		g.Expect(c.ImagePullPolicy).To(Equal(corev1.PullIfNotPresent))
	}
	g.Expect(images).To(Equal([]string{"docker.io/kubeedge/installation-package@" + p.ImageDigest, p.RunnerImage}))
	g.Expect(pod.Spec.Containers[1].Command).To(Equal([]string{RunnerCommand, runner.SubcommandStage}))

	ok := pod.DeepCopy()
	ok.Status.Phase = corev1.PodSucceeded
	g.Expect(View(ok).Phase).To(Equal(rollout.PodSucceeded))
}
