package integration_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
)

// spec.requireConfirmation on the real API server, with fleetsim playing
// the kubelets (its confirm step waits for the pod's approval annotation,
// as the runner's does).
var _ = Describe("Confirmation from the cloud", func() {
	approve := func(name string, nodes ...string) error {
		patch := `{"spec":{"approvedNodes":["` + nodes[0] + `"`
		for _, n := range nodes[1:] {
			patch += `,"` + n + `"`
		}
		patch += `]}}`
		return k8s.Patch(suiteCtx, &v1alpha1.NodeUpgradeJob{ObjectMeta: getJob(name).ObjectMeta},
			client.RawPatch(types.MergePatchType, []byte(patch)))
	}

	It("holds checked nodes without a slot or a clock until they are approved", func() {
		ctl := startController()
		defer stopController(ctl)
		specs := framework.Fleet("confirm", 3)
		createFleet(specs)
		names := framework.NodeNames(specs)
		Expect(k8s.Create(suiteCtx, framework.NewJob("confirm", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = names
			s.Concurrency = 1
			s.TimeoutSeconds = 10
			s.RequireConfirmation = true
		}))).To(Succeed())

		// Concurrency 1, yet every node is checked: a waiting node gives
		// its slot back.
		Eventually(func() []string {
			job := getJob("confirm")
			return []string{nodeState(job, names[0]), nodeState(job, names[1]), nodeState(job, names[2])}
		}, 30*time.Second, 200*time.Millisecond).Should(HaveEach(v1alpha1.StateWaitingConfirmation))
		// Past the timeout: no clock runs for a waiting node.
		Consistently(func() v1alpha1.NodeCounts { return getJob("confirm").Status.Counts }, 13*time.Second, time.Second).
			Should(And(HaveField("WaitingConfirmation", int32(3)), HaveField("InFlight", int32(0)), HaveField("Failed", int32(0))))
		job := getJob("confirm")
		Expect(job.Status.Reason).To(ContainSubstring("3 waiting for confirmation"))
		Expect(nodeEntry(job, names[0]).Reason).To(ContainSubstring("kubectl nodeupgrade approve"))
		Expect(jobEvents(job)).To(ContainElement("NodeWaitingConfirmation"))

		// A name the schema refuses, refused by the API server.
		err := approve("confirm", "Not_A_Node")
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("spec.approvedNodes"))

		Expect(approve("confirm", names[1])).To(Succeed())
		Eventually(func() string { return nodeState(getJob("confirm"), names[1]) }, 30*time.Second, 200*time.Millisecond).
			Should(Equal(v1alpha1.StateSuccessful))
		job = getJob("confirm")
		Expect(nodeState(job, names[0])).To(Equal(v1alpha1.StateWaitingConfirmation), "not approved")
		Expect(nodeState(job, names[2])).To(Equal(v1alpha1.StateWaitingConfirmation), "not approved")
		Expect(jobEvents(job)).To(ContainElement("NodeConfirmed"))
		pod := &corev1.Pod{}
		Expect(k8s.Get(suiteCtx, client.ObjectKey{Namespace: podNamespace, Name: upgradepod.PodName(names[0])}, pod)).To(Succeed())
		Expect(pod.Annotations).NotTo(HaveKey(v1alpha1.AnnotationApproved))

		Expect(approve("confirm", names[1], v1alpha1.ApproveAll)).To(Succeed())
		job = waitFinished("confirm", 60*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
		Expect(job.Status.Counts.Succeeded).To(Equal(int32(3)))
		for _, n := range names {
			var flow []string
			for _, a := range nodeEntry(job, n).ActionFlow {
				flow = append(flow, a.Action)
			}
			Expect(flow).To(Equal([]string{v1alpha1.FlowCheck, v1alpha1.FlowWaitingConfirmation, v1alpha1.FlowBackUp, v1alpha1.FlowUpgrade}), n)
		}
		Expect(k8s.Delete(suiteCtx, job)).To(Succeed())
	})
})
