package integration_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
)

const target = "v1.21.0"

// createFleet creates the nodes and waits until KWOK reports the online ones Ready.
func createFleet(specs []fleetsim.NodeSpec) {
	GinkgoHelper()
	Expect(fleetsim.CreateNodes(suiteCtx, k8s, specs, 8)).To(Succeed())
	for _, s := range specs {
		if s.Offline {
			continue
		}
		Eventually(func() bool {
			node := &corev1.Node{}
			if err := k8s.Get(suiteCtx, client.ObjectKey{Name: s.Name}, node); err != nil {
				return false
			}
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady {
					return c.Status == corev1.ConditionTrue
				}
			}
			return false
		}, 60*time.Second, 200*time.Millisecond).Should(BeTrue(), "node %s never became Ready", s.Name)
	}
}

func fleet(prefix string, n int) []fleetsim.NodeSpec {
	return fleetsim.Fleet(prefix, n, "v1.20.0")
}

func nodeNames(specs []fleetsim.NodeSpec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

func newJob(name string, mutate func(*v1alpha1.NodeUpgradeJobSpec)) *v1alpha1.NodeUpgradeJob {
	job := &v1alpha1.NodeUpgradeJob{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.NodeUpgradeJobSpec{Version: target, TimeoutSeconds: 60, FailureTolerate: "0.1"},
	}
	mutate(&job.Spec)
	return job
}

func getJob(name string) *v1alpha1.NodeUpgradeJob {
	GinkgoHelper()
	job := &v1alpha1.NodeUpgradeJob{}
	Expect(k8s.Get(suiteCtx, client.ObjectKey{Name: name}, job)).To(Succeed())
	return job
}

func waitFinished(name string, within time.Duration) *v1alpha1.NodeUpgradeJob {
	GinkgoHelper()
	Eventually(func() string { return getJob(name).Status.State }, within, 200*time.Millisecond).
		Should(Or(Equal(v1alpha1.StateSuccessful), Equal(v1alpha1.StateFailed)))
	return getJob(name)
}

func nodeEntry(job *v1alpha1.NodeUpgradeJob, node string) v1alpha1.TaskStatus {
	GinkgoHelper()
	for _, e := range job.Status.NodeStatus {
		if e.NodeName == node {
			return e
		}
	}
	Fail("no nodeStatus entry for " + node)
	return v1alpha1.TaskStatus{}
}

func reportedVersion(node string) string {
	GinkgoHelper()
	n := &corev1.Node{}
	Expect(k8s.Get(suiteCtx, client.ObjectKey{Name: node}, n)).To(Succeed())
	return fleetsim.NodeVersion(n)
}

func jobEvents(job *v1alpha1.NodeUpgradeJob) []string {
	GinkgoHelper()
	list := &eventsv1.EventList{}
	Expect(k8s.List(suiteCtx, list)).To(Succeed())
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.UID == job.UID {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

func remainingPods(jobName string) []corev1.Pod {
	GinkgoHelper()
	pods := &corev1.PodList{}
	Expect(k8s.List(suiteCtx, pods, client.InNamespace(podNamespace), client.MatchingLabels{v1alpha1.LabelJob: jobName})).To(Succeed())
	return pods.Items
}

var _ = Describe("Rollout", func() {
	var ctl *runningController
	BeforeEach(func() { ctl = startController() })
	AfterEach(func() { ctl.stop() })

	It("upgrades every node in a sliding window, verifies versions, and tells the story", func() {
		specs := fleet("happy", 6)
		specs[1].Duration = 6 * time.Second // a slow node: others must overtake it
		createFleet(specs)
		w := watchPods("happy")
		defer w.Stop()
		Expect(k8s.Create(suiteCtx, newJob("happy", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = nodeNames(specs)
			s.Concurrency = 2
		}))).To(Succeed())

		Eventually(func() int { return len(getJob("happy").Status.NodeStatus) }, 10*time.Second).Should(Equal(6), "every node listed from the start")
		job := waitFinished("happy", 90*time.Second)

		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful))
		Expect(job.Status.Action).To(Equal(v1alpha1.ActionSuccess))
		Expect(job.Status.Progress).To(Equal("6/6"))
		Expect(job.Status.Counts.Succeeded).To(Equal(int32(6)))
		Expect(job.Status.HistoricVersion).To(Equal("v1.20.0"))
		Expect(job.Status.CurrentVersion).To(Equal(target))
		for _, s := range specs {
			Expect(nodeEntry(job, s.Name)).To(And(HaveField("State", v1alpha1.StateSuccessful), HaveField("Action", v1alpha1.ActionSuccess)))
			Expect(reportedVersion(s.Name)).To(Equal(target))
		}
		Expect(w.Creations()).To(HaveLen(6))
		for node, n := range w.Creations() {
			Expect(n).To(Equal(1), "node %s got %d pods", node, n)
		}
		Expect(w.Peak()).To(Equal(2), "the window is full but never over")
		Eventually(func() []corev1.Pod { return remainingPods("happy") }, 20*time.Second).Should(BeEmpty(), "succeeded pods are cleaned up")
		Eventually(func() []string { return jobEvents(job) }, 10*time.Second).Should(ContainElements("Started", "Dispatched", "NodeUpgraded", "JobCompleted"))
		Expect(meta(job, v1alpha1.ConditionComplete)).To(Equal(metav1.ConditionTrue))
	})

	It("records nodes it cannot or need not upgrade and goes on with the rest", func() {
		specs := []fleetsim.NodeSpec{
			{Name: "sel-edge-a", Version: "v1.20.0", Labels: map[string]string{"team": "sel"}},
			{Name: "sel-current", Version: target, Labels: map[string]string{"team": "sel"}},
			{Name: "sel-cloud", NotEdge: true, Labels: map[string]string{"team": "sel"}},
			{Name: "sel-edge-b", Version: "v1.19.3", Labels: map[string]string{"team": "sel"}},
			{Name: "sel-other", Version: "v1.20.0"},
		}
		createFleet(specs)
		Expect(k8s.Create(suiteCtx, newJob("by-label", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.LabelSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "sel"}}
			s.FailureTolerate = "0.5"
			s.Concurrency = 3
		}))).To(Succeed())
		Expect(k8s.Create(suiteCtx, newJob("by-name", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = []string{"sel-other", "sel-missing"}
			s.FailureTolerate = "1"
		}))).To(Succeed())

		job := waitFinished("by-label", 60*time.Second)
		Expect(job.Status.NodeStatus).To(HaveLen(4), "the selector picked exactly the labelled nodes")
		Expect(nodeEntry(job, "sel-current")).To(And(HaveField("State", v1alpha1.StateSuccessful), HaveField("Reason", ContainSubstring("skipped"))))
		Expect(nodeEntry(job, "sel-cloud")).To(And(HaveField("State", v1alpha1.StateSkipped),
			HaveField("Reason", "skipped: not an edge node (no label node-role.kubernetes.io/edge)")))
		Expect(nodeEntry(job, "sel-edge-a").Action).To(Equal(v1alpha1.ActionSuccess))
		Expect(nodeEntry(job, "sel-edge-b").Action).To(Equal(v1alpha1.ActionSuccess))
		Expect(job.Status.HistoricVersion).To(Equal("v1.19.3,v1.20.0,v1.21.0"))
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful))
		Expect(job.Status.Counts).To(Equal(v1alpha1.NodeCounts{Selected: 4, Succeeded: 3, Skipped: 1}), "the cloud node is no failure")

		byName := waitFinished("by-name", 60*time.Second)
		Expect(nodeEntry(byName, "sel-missing")).To(And(HaveField("State", v1alpha1.StateSkipped), HaveField("Reason", "skipped: node not found")))
		Expect(byName.Status.Counts.Failed).To(BeZero(), "a name with no Node is skipped, not failed")
		Expect(nodeEntry(byName, "sel-other").Action).To(Equal(v1alpha1.ActionSuccess))
	})

	It("stops on failureTolerate: in-flight nodes finish, the rest are not attempted", func() {
		specs := fleet("tol", 10)
		specs[0].Behavior, specs[0].Duration = fleetsim.BehaviorFail, 500*time.Millisecond
		specs[1].Behavior, specs[1].Duration = fleetsim.BehaviorFail, 500*time.Millisecond
		specs[2].Duration = 4 * time.Second // still in flight when the second failure lands
		createFleet(specs)
		Expect(k8s.Create(suiteCtx, newJob("tol", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = nodeNames(specs)
			s.Concurrency = 3
		}))).To(Succeed())
		job := waitFinished("tol", 60*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateFailed))
		Expect(job.Status.Counts.Failed).To(Equal(int32(2)))
		// The first failure frees a slot that a fourth node may take before the
		// second failure lands; after that nothing new starts.
		Expect(nodeEntry(job, specs[2].Name).Action).To(Equal(v1alpha1.ActionSuccess), "the in-flight node finished after the stop")
		Expect(job.Status.Counts.Succeeded).To(BeNumerically("<=", 2))
		Expect(job.Status.Counts.NotAttempted).To(Equal(8 - job.Status.Counts.Succeeded))
		Expect(job.Status.Reason).To(ContainSubstring("2 of 10 nodes failed, more than failureTolerate 0.1"))
		Expect(nodeEntry(job, specs[0].Name)).To(And(HaveField("Event", v1alpha1.EventRollback), HaveField("Reason", ContainSubstring("simulated"))))
		Expect(nodeEntry(job, specs[9].Name).State).To(Equal(v1alpha1.StateNotAttempted))
		Expect(reportedVersion(specs[9].Name)).To(Equal("v1.20.0"), "a not-attempted node was not touched")
		Eventually(func() []string { return jobEvents(job) }, 10*time.Second).Should(ContainElements("NodeFailed", "FailureToleranceExceeded", "JobFailed"))
		Expect(remainingPods("tol")).To(HaveLen(2), "failed pods stay for their logs")
	})

	It("times out a hanging node, cancels its pod and frees its slot", func() {
		specs := fleet("hang", 2)
		specs[0].Behavior = fleetsim.BehaviorHang
		createFleet(specs)
		Expect(k8s.Create(suiteCtx, newJob("hang", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = nodeNames(specs)
			s.TimeoutSeconds = 4
			s.FailureTolerate = "1"
		}))).To(Succeed())
		job := waitFinished("hang", 60*time.Second)
		Expect(nodeEntry(job, specs[0].Name)).To(And(HaveField("Action", v1alpha1.ActionTimeOut), HaveField("Event", v1alpha1.EventTimeOut),
			HaveField("Reason", ContainSubstring("did not finish within 4s"))))
		Expect(nodeEntry(job, specs[1].Name).Action).To(Equal(v1alpha1.ActionSuccess), "the slot was freed for the next node")
		Eventually(func() []corev1.Pod { return remainingPods("hang") }, 20*time.Second).Should(BeEmpty(), "the timed-out pod was deleted")
	})

	It("defers a NotReady node without holding a slot and fails it after the timeout", func() {
		specs := fleet("offline", 3)
		specs[0].Offline = true
		createFleet(specs)
		Expect(k8s.Create(suiteCtx, newJob("offline", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = nodeNames(specs)
			s.TimeoutSeconds = 8
			s.FailureTolerate = "1"
		}))).To(Succeed())
		Eventually(func() []v1alpha1.TaskStatus { return getJob("offline").Status.NodeStatus }, 10*time.Second).
			Should(ContainElement(And(HaveField("NodeName", specs[0].Name), HaveField("Reason", "deferred: node is NotReady"))))
		job := waitFinished("offline", 60*time.Second)
		Expect(nodeEntry(job, specs[0].Name)).To(And(HaveField("Action", v1alpha1.ActionFailure), HaveField("Reason", "node stayed NotReady for 8s")))
		Expect(nodeEntry(job, specs[1].Name).Action).To(Equal(v1alpha1.ActionSuccess))
		Expect(nodeEntry(job, specs[2].Name).Action).To(Equal(v1alpha1.ActionSuccess))
	})

	It("never runs a second job's upgrade pod beside another job's on one node", func() {
		specs := fleet("overlap", 1)
		specs[0].Duration = 6 * time.Second
		createFleet(specs)
		first := watchPods("overlap-a")
		defer first.Stop()
		second := watchPods("overlap-b")
		defer second.Stop()
		Expect(k8s.Create(suiteCtx, newJob("overlap-a", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = nodeNames(specs) }))).To(Succeed())
		Eventually(func() []corev1.Pod { return remainingPods("overlap-a") }, 10*time.Second).Should(HaveLen(1))
		Expect(k8s.Create(suiteCtx, newJob("overlap-b", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = nodeNames(specs) }))).To(Succeed())
		Eventually(func() []v1alpha1.TaskStatus { return getJob("overlap-b").Status.NodeStatus }, 10*time.Second).
			Should(ContainElement(HaveField("Reason", "waiting: another upgrade is running on this node (job overlap-a)")))
		Expect(waitFinished("overlap-a", 60*time.Second).Status.State).To(Equal(v1alpha1.StateSuccessful))
		// Once the first pod is done the node is at the target: the second
		// job has nothing left to do there, and never made a pod beside it.
		Expect(waitFinished("overlap-b", 60*time.Second).Status.State).To(Equal(v1alpha1.StateSuccessful))
		Expect(first.Creations()).To(Equal(map[string]int{specs[0].Name: 1}))
		Expect(second.Creations()).To(BeEmpty())
	})

	It("fails a node whose pod is deleted behind its back, and never recreates it", func() {
		specs := fleet("yank", 1)
		specs[0].Duration = 30 * time.Second
		createFleet(specs)
		w := watchPods("yank")
		defer w.Stop()
		Expect(k8s.Create(suiteCtx, newJob("yank", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = nodeNames(specs) }))).To(Succeed())
		Eventually(func() []corev1.Pod { return remainingPods("yank") }, 10*time.Second).Should(HaveLen(1))
		pod := remainingPods("yank")[0]
		Expect(pod.Finalizers).To(ContainElement(v1alpha1.FinalizerPodTracking))
		Expect(k8s.Delete(suiteCtx, &pod)).To(Succeed())
		job := waitFinished("yank", 30*time.Second)
		Expect(nodeEntry(job, specs[0].Name).Reason).To(ContainSubstring("deleted before it finished"))
		Expect(w.Creations()).To(Equal(map[string]int{specs[0].Name: 1}))
	})

	It("refuses a job whose image repository is not allowed, before any pod exists", func() {
		ctl.stop()
		ctl = startController("--allowed-image-repositories=docker.io/kubeedge/")
		specs := oneNodeJob("deny", "evil.example.com/rootkit")
		job := waitFinished("deny", 20*time.Second)
		Expect(job.Status.Reason).To(ContainSubstring(`image repository "evil.example.com/rootkit" is not allowed`))
		Expect(remainingPods("deny")).To(BeEmpty())
		Expect(nodeEntry(job, specs[0].Name).State).To(Equal(v1alpha1.StateNotAttempted))
	})
})

var _ = Describe("Restarts and deletion", func() {
	It("neither repeats nor forgets a node across controller restarts", func() {
		specs := fleet("restart", 8)
		createFleet(specs)
		w := watchPods("restart")
		defer w.Stop()
		ctl := startController()
		Expect(k8s.Create(suiteCtx, newJob("restart", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = nodeNames(specs)
			s.Concurrency = 3
		}))).To(Succeed())
		for round := range 3 {
			// Stop at a different point each round: mid-dispatch, mid-run.
			time.Sleep(time.Duration(700+900*round) * time.Millisecond)
			ctl.stop()
			time.Sleep(500 * time.Millisecond)
			ctl = startController()
		}
		job := waitFinished("restart", 90*time.Second)
		ctl.stop()
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful))
		Expect(job.Status.Counts.Succeeded).To(Equal(int32(8)))
		for _, s := range specs {
			Expect(w.Creations()[s.Name]).To(Equal(1), "node %s", s.Name)
		}
		Expect(w.Peak()).To(BeNumerically("<=", 3))
	})

	It("cancels in-flight upgrades of a deleted job and leaves nothing behind", func() {
		ctl := startController()
		defer ctl.stop()
		specs := fleet("del", 4)
		for i := range specs {
			specs[i].Duration = time.Minute
		}
		createFleet(specs)
		Expect(k8s.Create(suiteCtx, newJob("del", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = nodeNames(specs)
			s.Concurrency = 2
		}))).To(Succeed())
		Eventually(func() []corev1.Pod { return remainingPods("del") }, 10*time.Second).Should(HaveLen(2))
		Expect(getJob("del").Finalizers).To(ContainElement(v1alpha1.FinalizerJobCleanup))
		Expect(k8s.Delete(suiteCtx, getJob("del"))).To(Succeed())
		Eventually(func() bool {
			err := k8s.Get(suiteCtx, client.ObjectKey{Name: "del"}, &v1alpha1.NodeUpgradeJob{})
			return apierrors.IsNotFound(err)
		}, 20*time.Second).Should(BeTrue(), "the job goes away")
		Eventually(func() []corev1.Pod { return remainingPods("del") }, 30*time.Second).Should(BeEmpty(), "its pods go too")
		for _, s := range specs[2:] {
			Expect(reportedVersion(s.Name)).To(Equal("v1.20.0"), "nodes never started stay as they were")
		}
	})
})

// oneNodeJob creates a node and a job of that node with the given image.
func oneNodeJob(name, image string) []fleetsim.NodeSpec {
	GinkgoHelper()
	specs := fleet(name, 1)
	createFleet(specs)
	Expect(k8s.Create(suiteCtx, newJob(name, func(s *v1alpha1.NodeUpgradeJobSpec) {
		s.NodeNames = nodeNames(specs)
		s.Image = image
	}))).To(Succeed())
	return specs
}

func meta(job *v1alpha1.NodeUpgradeJob, typ string) metav1.ConditionStatus {
	for _, c := range job.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return metav1.ConditionUnknown
}
