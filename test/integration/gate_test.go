package integration_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
)

// spec.healthGate with the real controller on the real API server, fleetsim
// playing the kubelets: a node soaks (Verifying) before it counts; a node
// whose gate pod is not Running and Ready at the soak's end is rolled back
// (a rollback pod beside its upgrade pod).
var _ = Describe("Health gate", func() {
	It("counts a node only after its soak", func() {
		ctl := startController()
		defer stopController(ctl)
		specs := framework.Fleet("gatepass", 1)
		createFleet(specs)
		names := framework.NodeNames(specs)
		Expect(k8s.Create(suiteCtx, framework.NewJob("gatepass", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = names
			s.HealthGate = &v1alpha1.HealthGate{SoakSeconds: 4}
		}))).To(Succeed())
		Eventually(func() string { return nodeState(getJob("gatepass"), names[0]) }, 30*time.Second, 100*time.Millisecond).
			Should(Equal(v1alpha1.StateVerifying))
		soakFrom := time.Now()
		Expect(nodeEntry(getJob("gatepass"), names[0]).Reason).To(ContainSubstring("health gate: on"))
		job := waitFinished("gatepass", 30*time.Second)
		// The status's times are whole seconds: the soak of 4 s cannot end
		// in under 3 s of wall time from when it was seen.
		Expect(time.Since(soakFrom)).To(BeNumerically(">=", 3*time.Second))
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
		Expect(jobEvents(job)).To(ContainElements("NodeVerifying", "NodeUpgraded"))
	})

	It("rolls back a node whose gate pods are not Ready at the soak's end", func() {
		// fleetsim does not play rollback pods: this stops at the rollback
		// pod's creation; test/kubeedge runs one on a real node.
		ctl := startController()
		defer stopController(ctl)
		specs := framework.Fleet("gatefail", 1)
		createFleet(specs)
		names := framework.NodeNames(specs)
		// A pod of the gate's selector on the node that nothing runs: Pending.
		probe := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "gate-probe", Namespace: metav1.NamespaceDefault, Labels: map[string]string{"app": "gate-probe"}},
			Spec:       corev1.PodSpec{NodeName: names[0], Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none:v0"}}},
		}
		Expect(k8s.Create(suiteCtx, probe)).To(Succeed())
		defer func() { _ = k8s.Delete(suiteCtx, probe, client.GracePeriodSeconds(0)) }()
		Expect(k8s.Create(suiteCtx, framework.NewJob("gatefail", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = names
			s.HealthGate = &v1alpha1.HealthGate{SoakSeconds: 2,
				PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "gate-probe"}}}
		}))).To(Succeed())
		Eventually(func() string { return nodeState(getJob("gatefail"), names[0]) }, 30*time.Second, 100*time.Millisecond).
			Should(Equal(v1alpha1.StateRollingBack))
		e := nodeEntry(getJob("gatefail"), names[0])
		Expect(e.Event).To(Equal(v1alpha1.EventHealthGate))
		Expect(e.Reason).To(ContainSubstring("default/gate-probe is Pending"))
		// The rollback pod comes beside the upgrade pod, which keeps
		// holding the node.
		Eventually(func() bool {
			pod := &corev1.Pod{}
			err := k8s.Get(suiteCtx, client.ObjectKey{Namespace: podNamespace, Name: upgradepod.RollbackPodName(names[0])}, pod)
			return err == nil && upgradepod.IsRollback(pod)
		}, 30*time.Second, 100*time.Millisecond).Should(BeTrue())
		up := &corev1.Pod{}
		Expect(k8s.Get(suiteCtx, client.ObjectKey{Namespace: podNamespace, Name: upgradepod.PodName(names[0])}, up)).To(Succeed())
		Expect(up.DeletionTimestamp).To(BeNil())
		Expect(jobEvents(getJob("gatefail"))).To(ContainElement("NodeHealthGateFailed"))
	})
})

// spec.preStage with the real controller on the real API server, fleetsim
// playing the kubelets (a stage pod's pulls take no time there): every node
// stages at the stage concurrency before any upgrade, and each is upgraded
// only once Staged.
var _ = Describe("Pre-staging", func() {
	It("stages every node before upgrading it, at its own concurrency", func() {
		ctl := startController()
		defer stopController(ctl)
		specs := framework.Fleet("prestage", 3)
		createFleet(specs)
		names := framework.NodeNames(specs)
		Expect(k8s.Create(suiteCtx, framework.NewJob("prestage", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = names
			s.Concurrency = 1
			s.PreStage = &v1alpha1.PreStage{Concurrency: 3}
		}))).To(Succeed())
		job := waitFinished("prestage", 60*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
		for _, n := range names {
			Expect(nodeEntry(job, n).Stage).To(Equal(v1alpha1.StageStaged), n)
		}
		Expect(jobEvents(job)).To(ContainElements("NodeStaged", "NodeUpgraded"))
		// Every stage pod was created, and is deleted once its node staged.
		Eventually(func() int {
			list := &corev1.PodList{}
			Expect(k8s.List(suiteCtx, list, client.InNamespace(podNamespace))).To(Succeed())
			n := 0
			for i := range list.Items {
				if upgradepod.IsStage(&list.Items[i]) {
					n++
				}
			}
			return n
		}, 30*time.Second, 200*time.Millisecond).Should(BeZero())
	})
})
