package integration_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/controller"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
)

// --honor-hold-upgrade on the real API server: an approved node waiting for
// its confirmation stays held while a pod on it (any namespace) carries
// KubeEdge's edge.kubeedge.io/hold-upgrade=true, its reason naming the pod,
// and goes on once the annotation is gone.
var _ = Describe("KubeEdge's hold-upgrade annotation", func() {
	It("holds an approved node while a pod on it asks to hold upgrades", func() {
		ctl := startController("--honor-hold-upgrade")
		defer stopController(ctl)
		specs := framework.Fleet("hold", 1)
		createFleet(specs)
		node := specs[0].Name

		workload := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "robot-arm", Namespace: "default",
				Annotations: map[string]string{controller.AnnotationHoldUpgrade: "true"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "arm", Image: "registry.example.com/arm:1"}}},
		}
		Expect(k8s.Create(suiteCtx, workload)).To(Succeed())
		defer func() {
			_ = k8s.Delete(suiteCtx, workload, client.GracePeriodSeconds(0))
		}()

		Expect(k8s.Create(suiteCtx, framework.NewJob("hold", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = []string{node}
			s.RequireConfirmation = true
			s.ApprovedNodes = []string{v1alpha1.ApproveAll}
		}))).To(Succeed())
		Eventually(func() string {
			e, _ := framework.NodeEntry(getJob("hold"), node)
			return e.Reason
		}, 30*time.Second, 200*time.Millisecond).
			Should(And(ContainSubstring("approved, held"), ContainSubstring("default/robot-arm"), ContainSubstring(controller.AnnotationHoldUpgrade)))
		Consistently(func() string { return nodeState(getJob("hold"), node) }, 6*time.Second, 500*time.Millisecond).
			Should(Equal(v1alpha1.StateWaitingConfirmation), "held across a recheck")

		Expect(k8s.Patch(suiteCtx, workload, client.RawPatch(types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"`+controller.AnnotationHoldUpgrade+`":null}}}`)))).To(Succeed())
		job := waitFinished("hold", 60*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
		Expect(k8s.Delete(suiteCtx, job)).To(Succeed())
	})
})
