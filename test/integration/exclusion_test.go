package integration_test

import (
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
)

// Two jobs created in the same instant over the same nodes plan from
// caches that do not yet show each other's pods: both dispatch every node.
// The API server lets one upgrade pod per node exist (it is named after the
// node); the other job's nodes wait, and run after. The rule for two
// targets (docs/architecture.md): the node ends at the higher one, and no
// job downgrades it.
var _ = Describe("Two jobs created at once", func() {
	It("never has two upgrade pods on a node, ends both jobs, and leaves every node at the higher target", func() {
		ctl := startController()
		defer stopController(ctl)
		const low, high = "v1.21.0", "v1.22.0"
		for round := range 3 {
			prefix := fmt.Sprintf("race%d", round)
			specs := framework.Fleet(prefix, 3)
			createFleet(specs)
			nodes := framework.NodeNames(specs)
			watcher, err := framework.WatchNodePods(suiteCtx, clientset, podNamespace, nodes)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(watcher.Stop)
			jobs := map[string]*v1alpha1.NodeUpgradeJob{}
			for _, version := range []string{low, high} {
				jobs[version] = framework.NewJob(fmt.Sprintf("%s-%s", prefix, version[1:5]), func(s *v1alpha1.NodeUpgradeJobSpec) {
					s.NodeNames, s.Concurrency, s.Version, s.FailureTolerate = nodes, 3, version, "0"
				})
			}
			// The same instant: both creates wait for one signal.
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make([]error, 2)
			for i, version := range []string{low, high} {
				wg.Go(func() {
					<-start
					errs[i] = k8s.Create(suiteCtx, jobs[version])
				})
			}
			close(start)
			wg.Wait()
			Expect(errs).To(HaveEach(Succeed()))

			lowJob := waitFinished(jobs[low].Name, 90*time.Second)
			highJob := waitFinished(jobs[high].Name, 90*time.Second)
			Expect(watcher.Overlaps()).To(BeEmpty(), "round %d: one upgrade pod per node at any instant", round)
			Expect(lowJob.Status.State).To(Equal(v1alpha1.StateSuccessful), "round %d: %s", round, lowJob.Status.Reason)
			Expect(highJob.Status.State).To(Equal(v1alpha1.StateSuccessful), "round %d: %s", round, highJob.Status.Reason)
			for _, node := range nodes {
				n, err := clientset.CoreV1().Nodes().Get(suiteCtx, node, metav1.GetOptions{})
				Expect(err).NotTo(HaveOccurred())
				Expect(fleetsim.NodeVersion(n)).To(Equal(high), "round %d: node %s ends at the higher target", round, node)
				Expect(nodeEntry(highJob, node)).To(And(HaveField("State", v1alpha1.StateSuccessful), HaveField("Event", v1alpha1.EventUpgrade)))
				lowEntry := nodeEntry(lowJob, node)
				switch order := watcher.Order(node); {
				case len(order) == 2 && order[0] == lowJob.Name && order[1] == highJob.Name:
					// The lower target's pod came first; the higher job
					// waited for it, then upgraded the node further.
					Expect(lowEntry).To(And(HaveField("State", v1alpha1.StateSuccessful), HaveField("Action", v1alpha1.ActionSuccess), HaveField("Reason", "")),
						"round %d: node %s", round, node)
				case len(order) == 1 && order[0] == highJob.Name:
					// The higher target's pod came first; the lower job
					// found the node above its target and left it alone.
					Expect(lowEntry).To(And(HaveField("State", v1alpha1.StateSuccessful), HaveField("Reason", "skipped: already at "+high)),
						"round %d: node %s", round, node)
				default:
					Fail(fmt.Sprintf("round %d: node %s got pods of %v: one of each job at most, the lower target's never after the higher's", round, node, order))
				}
				GinkgoWriter.Printf("round %d: node %s: pods of %v\n", round, node, watcher.Order(node))
			}
			Expect(watcher.Stop()).To(Succeed(), "the pod watch must not have failed")
		}
	})

	It("deletes another job's finished pod, kept for its logs, to upgrade its node, and tells both jobs", func() {
		ctl := startController()
		defer stopController(ctl)
		specs := framework.Fleet("kept", 1)
		specs[0].Behavior = fleetsim.BehaviorFail
		createFleet(specs)
		node := specs[0].Name
		Expect(k8s.Create(suiteCtx, framework.NewJob("kept-a", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = []string{node} }))).To(Succeed())
		first := waitFinished("kept-a", 60*time.Second)
		Expect(nodeEntry(first, node).State).To(Equal(v1alpha1.StateFailed))
		Eventually(func(g Gomega) {
			pods := remainingPods("kept-a")
			g.Expect(pods).To(HaveLen(1), "the failed node's pod is kept for its logs")
			g.Expect(pods[0].Finalizers).To(BeEmpty(), "and released")
		}, 10*time.Second).Should(Succeed())

		Expect(fleetsim.SetBehavior(suiteCtx, k8s, node, fleetsim.BehaviorSucceed)).To(Succeed())
		Expect(k8s.Create(suiteCtx, framework.NewJob("kept-b", func(s *v1alpha1.NodeUpgradeJobSpec) { s.NodeNames = []string{node} }))).To(Succeed())
		second := waitFinished("kept-b", 60*time.Second)
		Expect(second.Status.State).To(Equal(v1alpha1.StateSuccessful), second.Status.Reason)
		Expect(remainingPods("kept-a")).To(BeEmpty(), "the kept pod made way")
		Eventually(func() []string { return jobEvents(getJob("kept-b")) }, 10*time.Second).Should(ContainElement("KeptPodDeleted"))
		Eventually(func() []string { return jobEvents(getJob("kept-a")) }, 10*time.Second).Should(ContainElement("KeptPodDeleted"))
	})
})

// What a job shows of a node that timed out while NotReady and reported
// later (docs/architecture.md, "After the timeout").
var _ = Describe("After the timeout", func() {
	It("says a node that timed out NotReady needs attention, then that it upgraded after all, and keeps the job's result", func() {
		ctl := startController()
		defer stopController(ctl)
		specs := framework.Fleet("late", 1)
		specs[0].Duration = time.Minute
		createFleet(specs)
		node := specs[0].Name
		Expect(k8s.Create(suiteCtx, framework.NewJob("late", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames, s.TimeoutSeconds = []string{node}, 8
		}))).To(Succeed())
		Eventually(func() string { return nodeState(getJob("late"), node) }, 10*time.Second, 50*time.Millisecond).
			Should(BeElementOf(v1alpha1.StateChecking, v1alpha1.StateBackingUp, v1alpha1.StateUpgrading))
		// The link goes down mid-upgrade, for longer than the timeout.
		Expect(fleetsim.SetOffline(suiteCtx, k8s, node, true)).To(Succeed())

		job := waitFinished("late", 30*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateFailed))
		entry := nodeEntry(job, node)
		Expect(entry).To(And(HaveField("State", v1alpha1.StateFailed), HaveField("Action", v1alpha1.ActionTimeOut),
			HaveField("Reason", HavePrefix("needs attention: the node is NotReady; did not finish within 8s"))))
		Expect(condition(job, v1alpha1.ConditionNeedsAttention)).To(And(Not(BeNil()), HaveField("Status", metav1.ConditionTrue),
			HaveField("Message", ContainSubstring(node))))
		counts, reason := job.Status.Counts, job.Status.Reason

		// The upgrade ended on the host while the link was down: the node
		// comes back on the target.
		Expect(fleetsim.SetVersion(suiteCtx, k8s, node, framework.Target)).To(Succeed())
		Expect(fleetsim.SetOffline(suiteCtx, k8s, node, false)).To(Succeed())
		Eventually(func() string { e, _ := framework.NodeEntry(getJob("late"), node); return e.Reason }, 20*time.Second, 100*time.Millisecond).
			Should(HavePrefix("upgraded after its timeout: the node reports " + framework.Target + " and is Ready since "))
		job = getJob("late")
		Expect(condition(job, v1alpha1.ConditionNeedsAttention)).To(And(Not(BeNil()), HaveField("Status", metav1.ConditionFalse)))
		Expect(job.Status.State).To(Equal(v1alpha1.StateFailed), "the job's result stands")
		Expect(job.Status.Counts).To(Equal(counts))
		Expect(job.Status.Reason).To(Equal(reason))
		timedOut := strings.TrimPrefix(entry.Reason, "needs attention: the node is NotReady; ")
		Expect(nodeEntry(job, node)).To(And(HaveField("State", v1alpha1.StateFailed), HaveField("Action", v1alpha1.ActionTimeOut),
			HaveField("Time", entry.Time), HaveField("Reason", HaveSuffix("; "+timedOut))), "the node's verdict stands, with what it reported since")
		Eventually(func() []string { return jobEvents(getJob("late")) }, 10*time.Second).
			Should(ContainElements("NodeTimedOut", "NodeNeedsAttention", "NodeReportedAfterTimeout"))
	})
})

func condition(job *v1alpha1.NodeUpgradeJob, typ string) *metav1.Condition {
	for i := range job.Status.Conditions {
		if job.Status.Conditions[i].Type == typ {
			return &job.Status.Conditions[i]
		}
	}
	return nil
}
