package integration_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
)

// The rollout scenarios an operator sees (selection, the sliding window,
// failureTolerate, timeouts, deletion) are proven through kubectl in
// test/e2e; NotReady nodes and deleted pods in test/chaos. What stays here
// needs the controller in this process: restarts at exact points, and
// flags that change what it does.

var _ = Describe("Rollout", func() {
	var ctl *localcluster.InProcessController
	BeforeEach(func() { ctl = startController() })
	AfterEach(func() { stopController(ctl) })

	It("never runs a second job's upgrade pod beside another job's on one node", func() {
		specs := framework.Fleet("overlap", 1)
		specs[0].Duration = 6 * time.Second
		createFleet(specs)
		first := watchPods("overlap-a")
		second := watchPods("overlap-b")
		Expect(k8s.Create(suiteCtx, framework.NewJob("overlap-a", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = framework.NodeNames(specs) }))).To(Succeed())
		Eventually(func() []corev1.Pod { return remainingPods("overlap-a") }, 10*time.Second).Should(HaveLen(1))
		Expect(k8s.Create(suiteCtx, framework.NewJob("overlap-b", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = framework.NodeNames(specs) }))).To(Succeed())
		Eventually(func() []v1alpha1.TaskStatus { return getJob("overlap-b").Status.NodeStatus }, 10*time.Second).
			Should(ContainElement(HaveField("Reason", "waiting: another upgrade is running on this node (job overlap-a)")))
		Expect(waitFinished("overlap-a", 60*time.Second).Status.State).To(Equal(v1alpha1.StateSuccessful))
		// Once the first pod is done the node is at the target: the second
		// job has nothing left to do there, and never made a pod beside it.
		Expect(waitFinished("overlap-b", 60*time.Second).Status.State).To(Equal(v1alpha1.StateSuccessful))
		first.ExpectOnePodEach(framework.NodeNames(specs))
		Expect(second.Creations()).To(BeEmpty())
	})

	It("refuses a job whose image repository is not allowed, before any pod exists", func() {
		stopController(ctl)
		ctl = startController("--allowed-image-repositories=docker.io/kubeedge/")
		specs := oneNodeJob("deny", "evil.example.com/rootkit")
		job := waitFinished("deny", 20*time.Second)
		Expect(job.Status.Reason).To(ContainSubstring(`image repository "evil.example.com/rootkit" is not allowed`))
		Expect(remainingPods("deny")).To(BeEmpty())
		Expect(nodeEntry(job, specs[0].Name).State).To(Equal(v1alpha1.StateNotAttempted))
	})
})

var _ = Describe("Restarts", func() {
	It("neither repeats nor forgets a node across controller restarts", func() {
		specs := framework.Fleet("restart", 8)
		createFleet(specs)
		w := watchPods("restart")
		ctl := startController()
		Expect(k8s.Create(suiteCtx, framework.NewJob("restart", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = framework.NodeNames(specs)
			s.Concurrency = 3
		}))).To(Succeed())
		for round := range 3 {
			// Stop at a different point each round: mid-dispatch, mid-run.
			time.Sleep(time.Duration(700+900*round) * time.Millisecond)
			stopController(ctl)
			time.Sleep(500 * time.Millisecond)
			ctl = startController()
		}
		job := waitFinished("restart", 90*time.Second)
		stopController(ctl)
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful))
		Expect(job.Status.Counts.Succeeded).To(Equal(int32(8)))
		w.ExpectOnePodEach(framework.NodeNames(specs))
		Expect(framework.Invariants(job, w.Report(), 3)).To(BeEmpty())
	})
})

// oneNodeJob creates a node and a job of that node with the given image.
func oneNodeJob(name, image string) []fleetsim.NodeSpec {
	GinkgoHelper()
	specs := framework.Fleet(name, 1)
	createFleet(specs)
	Expect(k8s.Create(suiteCtx, framework.NewJob(name, func(s *v1alpha1.NodeUpgradeJobSpec) {
		s.NodeNames = framework.NodeNames(specs)
		s.Image = image
	}))).To(Succeed())
	return specs
}

var _ = Describe("Sharded status", func() {
	It("neither repeats nor forgets a node across controller restarts when the job's records are in shards", func() {
		// The threshold is lowered so that 40 nodes shard (7 to a shard, 6
		// shards): the protocol is the one a 100,000-node job uses.
		shardFlags := []string{"--status-shard-threshold=10", "--status-shard-size=7"}
		specs := framework.Fleet("sharded", 40)
		createFleet(specs)
		w := watchPods("sharded")
		ctl := startController(shardFlags...)
		Expect(k8s.Create(suiteCtx, framework.NewJob("sharded", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = framework.NodeNames(specs)
			s.Concurrency = 6
		}))).To(Succeed())
		for round := range 4 {
			// Stop at a different point each round: mid-dispatch, mid-run.
			time.Sleep(time.Duration(700+900*round) * time.Millisecond)
			stopController(ctl)
			time.Sleep(300 * time.Millisecond)
			ctl = startController(shardFlags...)
		}
		job := waitFinished("sharded", 120*time.Second)
		stopController(ctl)

		stored := &v1alpha1.NodeUpgradeJob{}
		Expect(k8s.Get(suiteCtx, client.ObjectKey{Name: "sharded"}, stored)).To(Succeed())
		Expect(stored.Status.Shards).NotTo(BeNil(), "a job above the threshold keeps its records in shards")
		Expect(stored.Status.Shards.Revisions).To(HaveLen(6))
		Expect(len(stored.Status.NodeStatus)).To(BeNumerically("<=", v1alpha1.MaxSummaryNodes))
		shards := &corev1.ConfigMapList{}
		Expect(k8s.List(suiteCtx, shards, client.InNamespace(podNamespace), client.MatchingLabels{v1alpha1.LabelShardOf: string(stored.UID)})).To(Succeed())
		Expect(shards.Items).To(HaveLen(6))
		for _, cm := range shards.Items {
			Expect(cm.OwnerReferences).To(ContainElement(HaveField("UID", stored.UID)))
		}

		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful))
		Expect(job.Status.Counts.Succeeded).To(Equal(int32(40)))
		Expect(job.Status.NodeStatus).To(HaveLen(40))
		for _, e := range job.Status.NodeStatus {
			Expect(e.State).To(Equal(v1alpha1.StateSuccessful), "node %s", e.NodeName)
		}
		w.ExpectOnePodEach(framework.NodeNames(specs))
		Expect(framework.Invariants(job, w.Report(), 6)).To(BeEmpty())
	})
})
