package integration_test

import (
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
)

// The canary wave, the opt-out label, the nodes' history and maintenance
// windows against the real API server, fleetsim playing the nodes.

func canaryCondition(job *v1alpha1.NodeUpgradeJob) metav1.Condition {
	cond := meta.FindStatusCondition(job.Status.Conditions, v1alpha1.ConditionCanary)
	if cond == nil {
		return metav1.Condition{}
	}
	return *cond
}

func setSuspend(name string, suspend bool) {
	GinkgoHelper()
	patch := `{"spec":{"suspend":false}}`
	if suspend {
		patch = `{"spec":{"suspend":true}}`
	}
	Expect(k8s.Patch(suiteCtx, &v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{Name: name}},
		client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
}

func lastUpgrade(node string) v1alpha1.NodeUpgradeRecord {
	GinkgoHelper()
	n := &corev1.Node{}
	Expect(k8s.Get(suiteCtx, client.ObjectKey{Name: node}, n)).To(Succeed())
	var r v1alpha1.NodeUpgradeRecord
	if v, ok := n.Annotations[v1alpha1.AnnotationLastUpgrade]; ok {
		Expect(json.Unmarshal([]byte(v), &r)).To(Succeed())
	}
	return r
}

var _ = Describe("Canary", func() {
	It("upgrades the wave, suspends the job itself, and goes on when an operator resumes it; opted-out nodes are skipped, every upgraded node has its history", func() {
		ctl := startController()
		defer stopController(ctl)
		specs := framework.Fleet("canary", 5)
		specs[4].Labels = map[string]string{v1alpha1.LabelOptOut: "true"}
		createFleet(specs)
		names := framework.NodeNames(specs)
		Expect(k8s.Create(suiteCtx, framework.NewJob("canary", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames, s.Concurrency = names, 3
			one := int32(1)
			s.Canary = &v1alpha1.Canary{Count: &one}
		}))).To(Succeed())

		Eventually(func(g Gomega) {
			job := getJob("canary")
			g.Expect(job.Spec.Suspend).To(BeTrue(), "the controller suspends the job after its wave")
			g.Expect(canaryCondition(job)).To(And(HaveField("Reason", v1alpha1.CanaryPassed), HaveField("Status", metav1.ConditionTrue)))
		}, 60*time.Second, 200*time.Millisecond).Should(Succeed())
		job := getJob("canary")
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuspended))
		Expect(job.Status.Reason).To(ContainSubstring("suspended after the canary wave"))
		Expect(nodeEntry(job, names[0])).To(And(HaveField("State", v1alpha1.StateSuccessful), HaveField("Canary", true)))
		for _, n := range names[1:4] {
			Expect(nodeState(job, n)).To(Equal(v1alpha1.StateNone), "only the wave ran: %s", n)
		}
		Expect(nodeEntry(job, names[4])).To(And(HaveField("State", v1alpha1.StateSkipped), HaveField("Reason", ContainSubstring(v1alpha1.LabelOptOut))))
		Eventually(func() []string { return jobEvents(getJob("canary")) }, 10*time.Second).Should(ContainElement("CanaryPaused"))
		// Paused, it stays paused.
		Consistently(func() int32 { return getJob("canary").Status.Counts.InFlight }, 3*time.Second, 500*time.Millisecond).Should(BeZero())

		setSuspend("canary", false)
		job = waitFinished("canary", 60*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
		Expect(canaryCondition(job).Reason).To(Equal(v1alpha1.CanaryResumed))
		for _, n := range names[:4] {
			Eventually(func() v1alpha1.NodeUpgradeRecord { return lastUpgrade(n) }, 10*time.Second).Should(And(
				HaveField("Job", "canary"), HaveField("From", framework.FromVersion), HaveField("To", framework.Target),
				HaveField("Result", v1alpha1.ActionSuccess), HaveField("Time", Not(BeEmpty()))), "node %s", n)
		}
		Expect(lastUpgrade(names[4])).To(BeZero(), "an opted-out node was never upgraded")
	})

	It("pauses on a failed canary node rather than failing the job, and resumes a passed wave by itself after its soak", func() {
		ctl := startController()
		defer stopController(ctl)
		specs := framework.Fleet("canfail", 3)
		specs[0].Behavior = fleetsim.BehaviorFail
		createFleet(specs)
		names := framework.NodeNames(specs)
		Expect(k8s.Create(suiteCtx, framework.NewJob("canfail", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames, s.Concurrency, s.FailureTolerate = names, 2, "0"
			one := int32(1)
			s.Canary = &v1alpha1.Canary{Count: &one, SoakSeconds: 2}
		}))).To(Succeed())
		Eventually(func(g Gomega) {
			job := getJob("canfail")
			g.Expect(job.Spec.Suspend).To(BeTrue())
			g.Expect(canaryCondition(job)).To(And(HaveField("Reason", v1alpha1.CanaryFailed), HaveField("Status", metav1.ConditionFalse)))
		}, 60*time.Second, 200*time.Millisecond).Should(Succeed())
		// A failed wave is not resumed by the soak, and failureTolerate 0
		// did not fail the job.
		Consistently(func() string { return getJob("canfail").Status.State }, 4*time.Second, 500*time.Millisecond).Should(Equal(v1alpha1.StateSuspended))
		Eventually(func() v1alpha1.NodeUpgradeRecord { return lastUpgrade(names[0]) }, 10*time.Second).Should(And(
			HaveField("Job", "canfail"), HaveField("Result", v1alpha1.ActionFailure)))

		specs = framework.Fleet("cansoak", 3)
		createFleet(specs)
		names = framework.NodeNames(specs)
		Expect(k8s.Create(suiteCtx, framework.NewJob("cansoak", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames, s.Concurrency = names, 2
			s.Canary = &v1alpha1.Canary{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": names[1]}}, SoakSeconds: 2}
		}))).To(Succeed())
		job := waitFinished("cansoak", 60*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
		Expect(nodeEntry(job, names[1]).Canary).To(BeTrue(), "the selector chose the wave")
		Expect(nodeEntry(job, names[0]).Canary).To(BeFalse())
		Expect(jobEvents(job)).To(ContainElements("CanaryPaused", "CanaryResumed"))
		Expect(job.Spec.Suspend).To(BeFalse(), "the controller resumed it")
	})
})

// offsetClock is the real clock moved by offset: the controller's time is
// set to just before a window opens, and the window opens as real time
// passes, so the job is woken by its own requeue, not by polling.
type offsetClock struct{ offset time.Duration }

func (c offsetClock) Now() time.Time                  { return time.Now().Add(c.offset) }
func (c offsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

var _ = Describe("Maintenance windows", func() {
	It("starts a node at its own zone's night while the job's zone is at day, and shows when the next window opens", func() {
		// The controller's clock: 3 s before 13:00 UTC, when it is 22:00 in
		// Tokyo and 14:00 in Berlin (a day in winter, no daylight saving).
		real := time.Now()
		day := time.Date(real.Year(), real.Month(), real.Day()+1, 0, 0, 0, 0, time.UTC)
		for day.Month() >= time.April && day.Month() <= time.October {
			day = day.AddDate(0, 1, 0)
		}
		target := day.Add(13*time.Hour - 3*time.Second)
		ctl, err := cluster.StartInProcessControllerWithClock(offsetClock{offset: target.Sub(real)})
		Expect(err).NotTo(HaveOccurred())
		defer stopController(ctl)

		specs := framework.Fleet("window", 2)
		specs[1].Labels = map[string]string{v1alpha1.LabelTimeZone: "Asia.Tokyo"}
		createFleet(specs)
		names := framework.NodeNames(specs)
		Expect(k8s.Create(suiteCtx, framework.NewJob("window", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames, s.Concurrency = names, 2
			s.MaintenanceWindows = []v1alpha1.MaintenanceWindow{{StartTime: "22:00", EndTime: "01:00", TimeZone: "Europe/Berlin"}}
		}))).To(Succeed())
		Eventually(func() string { return getJob("window").Status.NextWindow }, 10*time.Second, 100*time.Millisecond).
			Should(Equal(day.Add(13 * time.Hour).Format(time.RFC3339)))
		job := getJob("window")
		Expect(meta.IsStatusConditionTrue(job.Status.Conditions, v1alpha1.ConditionWaitingForWindow)).To(BeTrue())
		Expect(remainingPods("window")).To(BeEmpty(), "nothing starts before the window")

		// Tokyo's window opens: its node upgrades; Berlin's waits for 21:00 UTC.
		Eventually(func() string { return nodeState(getJob("window"), names[1]) }, 30*time.Second, 200*time.Millisecond).
			Should(Equal(v1alpha1.StateSuccessful))
		job = getJob("window")
		Expect(nodeState(job, names[0])).To(Equal(v1alpha1.StateNone))
		Expect(job.Status.NextWindow).To(Equal(day.Add(21 * time.Hour).Format(time.RFC3339)))
		Expect(job.Status.Reason).To(ContainSubstring("1 waiting for their maintenance window"))
		Expect(jobEvents(job)).To(ContainElement("WaitingForWindow"))
		Expect(k8s.Delete(suiteCtx, job)).To(Succeed())
	})
})
