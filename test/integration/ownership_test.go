package integration_test

import (
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
	kubeedge "github.com/nodeupgrade/nodeupgrade/test/kubeedgeapi/operations/v1alpha2"
)

// Who runs a job is decided once (pkg/controller/kubeedge.go). KubeEdge's
// kubeedge-controller-manager is played by its two marks on a job, written
// as it writes them: its finalizer, and a status write through v1alpha2
// under its own field manager.
var _ = Describe("One owner per job", func() {
	markAsKubeEdge := func(name string) {
		GinkgoHelper()
		job := getJob(name)
		base := job.DeepCopy()
		controllerutil.AddFinalizer(job, v1alpha1.FinalizerKubeEdgeController)
		Expect(k8s.Patch(suiteCtx, job, client.MergeFrom(base), client.FieldOwner("kubeedge-controller-manager"))).To(Succeed())
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("operations.kubeedge.io/v1alpha2")
		u.SetKind("NodeUpgradeJob")
		u.SetName(name)
		Expect(k8s.Status().Patch(suiteCtx, u, client.RawPatch(types.MergePatchType, []byte(`{"status":{"phase":"InProgress"}}`)),
			client.FieldOwner("kubeedge-controller-manager"))).To(Succeed())
	}
	dropKubeEdgeFinalizer := func(name string) {
		GinkgoHelper()
		Eventually(func() error {
			job := &v1alpha1.NodeUpgradeJob{}
			if err := k8s.Get(suiteCtx, client.ObjectKey{Name: name}, job); err != nil {
				return client.IgnoreNotFound(err)
			}
			base := job.DeepCopy()
			controllerutil.RemoveFinalizer(job, v1alpha1.FinalizerKubeEdgeController)
			return k8s.Patch(suiteCtx, job, client.MergeFrom(base))
		}, 10*time.Second).Should(Succeed())
	}

	It("follows a job it took first to its end when KubeEdge's controller marks it mid-rollout", func() {
		ctl := startController()
		defer stopController(ctl)
		specs := framework.Fleet("owned", 2)
		specs[0].Duration = 4 * time.Second
		specs[1].Duration = 4 * time.Second
		createFleet(specs)
		w := watchPods("owned")
		Expect(k8s.Create(suiteCtx, framework.NewJob("owned", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = framework.NodeNames(specs)
			s.Concurrency = 1
		}))).To(Succeed())
		Eventually(func() string { return nodeState(getJob("owned"), specs[0].Name) }, 10*time.Second).ShouldNot(BeEmpty())

		markAsKubeEdge("owned")
		job := waitFinished("owned", 60*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
		Expect(job.Status.Phase).To(Equal(v1alpha1.JobPhaseCompleted))
		Expect(job.Status.Counts.Succeeded).To(Equal(int32(2)))
		Expect(apimeta.FindStatusCondition(job.Status.Conditions, v1alpha1.ConditionNotHandled)).To(BeNil())
		cond := apimeta.FindStatusCondition(job.Status.Conditions, v1alpha1.ConditionOtherController)
		Expect(cond).NotTo(BeNil())
		Expect(cond.Status).To(Equal(metav1.ConditionTrue))
		Expect(cond.Reason).To(Equal(v1alpha1.ReasonKubeEdgeControllerManager))
		Expect(jobEvents(job)).To(ContainElement(v1alpha1.ConditionOtherController))
		w.ExpectOnePodEach(framework.NodeNames(specs))
		Eventually(func() []corev1.Pod { return remainingPods("owned") }, 20*time.Second).Should(BeEmpty(), "every pod released and deleted")

		// KubeEdge's own v1alpha2 Go types read the stored job as it ended.
		raw, err := clientset.Discovery().RESTClient().Get().AbsPath("/apis/operations.kubeedge.io/v1alpha2/nodeupgradejobs/owned").DoRaw(suiteCtx)
		Expect(err).NotTo(HaveOccurred())
		var theirs kubeedge.NodeUpgradeJob
		Expect(json.Unmarshal(raw, &theirs)).To(Succeed())
		Expect(theirs.Status.Phase).To(Equal(kubeedge.JobPhaseCompleted))
		for _, n := range theirs.Status.NodeStatus {
			Expect(n.Phase).To(Equal(kubeedge.NodeTaskPhaseSuccessful), n.NodeName)
			var flow []kubeedge.NodeUpgradeJobAction
			for _, a := range n.ActionFlow {
				Expect(a.Status).To(Equal(metav1.ConditionTrue))
				flow = append(flow, a.Action)
			}
			Expect(flow).To(Equal([]kubeedge.NodeUpgradeJobAction{kubeedge.NodeUpgradeJobActionCheck,
				kubeedge.NodeUpgradeJobActionBackUp, kubeedge.NodeUpgradeJobActionUpgrade}), n.NodeName)
		}

		Expect(k8s.Delete(suiteCtx, job)).To(Succeed())
		Eventually(func() []string { return getJob("owned").Finalizers }, 10*time.Second).
			Should(Equal([]string{v1alpha1.FinalizerKubeEdgeController}), "only this controller's own finalizer is removed")
		dropKubeEdgeFinalizer("owned")
	})

	It("leaves a job KubeEdge's controller took first alone, even once its mark is gone", func() {
		ctl := startController()
		defer stopController(ctl)
		specs := framework.Fleet("theirs", 1)
		createFleet(specs)
		job := framework.NewJob("theirs", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = framework.NodeNames(specs) })
		job.Finalizers = []string{v1alpha1.FinalizerKubeEdgeController}
		Expect(k8s.Create(suiteCtx, job)).To(Succeed())
		Eventually(func() *metav1.Condition {
			return apimeta.FindStatusCondition(getJob("theirs").Status.Conditions, v1alpha1.ConditionNotHandled)
		}, 10*time.Second).ShouldNot(BeNil())

		dropKubeEdgeFinalizer("theirs")
		Consistently(func(g Gomega) {
			got := getJob("theirs")
			g.Expect(got.Finalizers).To(BeEmpty())
			g.Expect(got.Status.State).To(BeEmpty())
			g.Expect(got.Status.NodeStatus).To(BeEmpty())
			g.Expect(remainingPods("theirs")).To(BeEmpty())
		}, 5*time.Second, 500*time.Millisecond).Should(Succeed())
		Expect(k8s.Delete(suiteCtx, getJob("theirs"))).To(Succeed())
	})
})
