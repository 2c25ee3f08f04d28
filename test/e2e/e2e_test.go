package e2e_test

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
)

var _ = Describe("Upgrading with kubectl", func() {
	It("upgrades named nodes, shows it in get and describe", func() {
		specs := fleet("happy", 6)
		createFleet(specs)
		w := watchPods("e2e-happy")
		res := applyYAML(jobSpec{name: "e2e-happy", nodeNames: namesOf(specs), concurrency: 2, timeoutSeconds: 60}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())
		Expect(res.Stdout).To(ContainSubstring("nodeupgradejob.operations.kubeedge.io/e2e-happy created"))

		waitState("e2e-happy", "Successful", 90*time.Second)
		Expect(jsonpath("e2e-happy", "{.status.action} {.status.progress} {.status.counts.succeeded} {.status.historicVersion} {.status.currentVersion}")).
			To(Equal("Success 6/6 6 v1.20.0 v1.21.0"))
		for _, n := range namesOf(specs) {
			Expect(kubectl("get", "node", n, "-o", "jsonpath={.status.nodeInfo.kubeletVersion}")).To(Equal("v1.30.7-kubeedge-v1.21.0"))
		}
		for node, n := range w.Creations() {
			Expect(n).To(Equal(1), "node %s got %d pods", node, n)
		}
		Expect(w.Creations()).To(HaveLen(6))
		Expect(w.Peak()).To(BeNumerically("<=", 2), "concurrency 2 is never exceeded")

		// The printer columns, as kubectl shows them.
		table := kubectl("get", "nodeupgradejobs")
		Expect(rowFields(table, "NAME")).To(HavePrefix("NAME VERSION STATE RESULT PROGRESS FAILED AGE"))
		Expect(rowFields(table, "e2e-happy")).To(HavePrefix("e2e-happy v1.21.0 Successful Success 6/6 "))
		wide := kubectl("get", "nodeupgradejob", "e2e-happy", "-o", "wide")
		Expect(rowFields(wide, "NAME")).To(ContainSubstring("IN-FLIGHT REASON"))
		Expect(wide).To(ContainSubstring("completed: all 6 nodes run v1.21.0"))

		// The events tell the story, in kubectl describe. Which nodes are
		// named varies: the events.k8s.io recorder folds an event into an
		// earlier one with the same reason ("x2 over 4s"), keeping only the
		// earlier message.
		Eventually(func() string { return kubectl("describe", "nodeupgradejob", "e2e-happy") }, 20*time.Second, time.Second).
			Should(And(
				MatchRegexp(`Normal\s+Started\s+.*Upgrading 6 nodes selected by spec.nodeNames to v1.21.0`),
				MatchRegexp(`Normal\s+Dispatched\s+.*Node happy-0000[0-5] dispatched: upgrading v1.20.0 to v1.21.0`),
				MatchRegexp(`Normal\s+NodeUpgraded\s+.*Node happy-0000[0-5] upgraded to v1.21.0`),
				MatchRegexp(`Normal\s+JobCompleted\s+.*Job completed: completed: all 6 nodes run v1.21.0`),
			))
		Eventually(func() []string { return jobPods("e2e-happy") }, 20*time.Second, 500*time.Millisecond).Should(BeEmpty(), "succeeded pods are cleaned up")
	})

	It("selects nodes by label, skips one at the target and a cloud node", func() {
		specs := []fleetsim.NodeSpec{
			{Name: "sel-a", Version: fromVersion, Labels: map[string]string{"e2e-sel": "yes"}},
			{Name: "sel-b", Version: "v1.19.3", Labels: map[string]string{"e2e-sel": "yes"}},
			{Name: "sel-current", Version: target, Labels: map[string]string{"e2e-sel": "yes"}},
			{Name: "sel-cloud", NotEdge: true, Labels: map[string]string{"e2e-sel": "yes"}},
			{Name: "sel-other", Version: fromVersion, Labels: map[string]string{"e2e-sel": "no"}},
		}
		createFleet(specs)
		res := applyYAML(jobSpec{name: "e2e-sel", matchLabels: map[string]string{"e2e-sel": "yes"}, concurrency: 3, failureTolerate: "0.5", timeoutSeconds: 60}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())

		waitState("e2e-sel", "Successful", 60*time.Second)
		entries := nodeEntries("e2e-sel")
		Expect(entries).To(HaveLen(4), "exactly the labelled nodes, taken once")
		Expect(entries).To(HaveKeyWithValue("sel-a", "Successful/Upgrade/Success/"))
		Expect(entries).To(HaveKeyWithValue("sel-b", "Successful/Upgrade/Success/"))
		Expect(entries["sel-current"]).To(And(HavePrefix("Successful/"), HaveSuffix("/skipped: already at v1.21.0")))
		Expect(entries["sel-cloud"]).To(Equal("Skipped/Init//skipped: not an edge node (no label node-role.kubernetes.io/edge)"))
		Expect(jsonpath("e2e-sel", "{.status.progress} {.status.counts.failed} {.status.counts.skipped} {.status.historicVersion}")).To(Equal("4/4 0 1 v1.19.3,v1.20.0,v1.21.0"))
		Expect(kubectl("get", "node", "sel-other", "-o", "jsonpath={.status.nodeInfo.kubeletVersion}")).
			To(Equal("v1.30.7-kubeedge-v1.20.0"), "a node outside the selector is not touched")
	})

	It("stops on failureTolerate: failed nodes, the rest not attempted", func() {
		specs := fleet("tol", 10)
		specs[0].Behavior, specs[0].Duration = fleetsim.BehaviorFail, 500*time.Millisecond
		specs[1].Behavior, specs[1].Duration = fleetsim.BehaviorFail, 500*time.Millisecond
		specs[2].Duration = 4 * time.Second // still in flight when the second failure lands
		createFleet(specs)
		res := applyYAML(jobSpec{name: "e2e-tol", nodeNames: namesOf(specs), concurrency: 3, failureTolerate: "0.1", timeoutSeconds: 60}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())

		waitState("e2e-tol", "Failed", 60*time.Second)
		Expect(jsonpath("e2e-tol", "{.status.action} {.status.progress} {.status.counts.failed} {.status.counts.succeeded} {.status.counts.notAttempted}")).
			To(Equal("Failure 10/10 2 1 7"))
		Expect(jsonpath("e2e-tol", "{.status.reason}")).To(ContainSubstring("2 of 10 nodes failed, more than failureTolerate 0.1"))
		entries := nodeEntries("e2e-tol")
		Expect(entries["tol-00000"]).To(And(HavePrefix("Failed/Rollback/Failure/"), ContainSubstring("simulated")))
		Expect(entries["tol-00001"]).To(HavePrefix("Failed/Rollback/Failure/"))
		Expect(entries["tol-00002"]).To(Equal("Successful/Upgrade/Success/"), "the node in flight finished")
		for _, n := range namesOf(specs)[3:] {
			Expect(entries[n]).To(HavePrefix("NotAttempted/"), "node %s", n)
		}
		Expect(rowFields(kubectl("get", "nodeupgradejobs"), "e2e-tol")).To(HavePrefix("e2e-tol v1.21.0 Failed Failure 10/10 2 "))
		Eventually(func() string { return kubectl("describe", "nodeupgradejob", "e2e-tol") }, 20*time.Second, time.Second).
			Should(And(MatchRegexp(`Warning\s+NodeFailed`), MatchRegexp(`Warning\s+FailureToleranceExceeded`), MatchRegexp(`Warning\s+JobFailed`)))
		Expect(kubectl("get", "node", "tol-00009", "-o", "jsonpath={.status.nodeInfo.kubeletVersion}")).
			To(Equal("v1.30.7-kubeedge-v1.20.0"), "a not-attempted node was not touched")
	})

	It("times out a hanging node and deletes its pod", func() {
		specs := fleet("hang", 2)
		specs[0].Behavior = fleetsim.BehaviorHang
		createFleet(specs)
		res := applyYAML(jobSpec{name: "e2e-hang", nodeNames: namesOf(specs), failureTolerate: "1", timeoutSeconds: 4}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())

		Eventually(func() []string { return jobPods("e2e-hang") }, 10*time.Second, 250*time.Millisecond).Should(HaveLen(1), "the hanging node's pod runs")
		waitState("e2e-hang", "Successful", 60*time.Second)
		entries := nodeEntries("e2e-hang")
		Expect(entries["hang-00000"]).To(And(HavePrefix("Failed/TimeOut/TimeOut/"), ContainSubstring("did not finish within 4s")))
		Expect(entries["hang-00001"]).To(Equal("Successful/Upgrade/Success/"), "the slot was freed for the next node")
		Eventually(func() []string { return jobPods("e2e-hang") }, 20*time.Second, 500*time.Millisecond).Should(BeEmpty(), "the timed-out pod is gone")
	})

	It("cancels a running job on kubectl delete: job and pods gone", func() {
		specs := fleet("del", 4)
		for i := range specs {
			specs[i].Duration = time.Minute
		}
		createFleet(specs)
		res := applyYAML(jobSpec{name: "e2e-del", nodeNames: namesOf(specs), concurrency: 2, timeoutSeconds: 120}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())
		Eventually(func() []string { return jobPods("e2e-del") }, 15*time.Second, 250*time.Millisecond).Should(HaveLen(2))
		Expect(jsonpath("e2e-del", "{.metadata.finalizers}")).To(ContainSubstring("operations.kubeedge.io/cleanup"))

		Expect(kubectl("delete", "nodeupgradejob", "e2e-del", "--timeout=30s")).To(ContainSubstring(`"e2e-del" deleted`))
		gone := kubectlResult("get", "nodeupgradejob", "e2e-del")
		Expect(gone.ExitCode).NotTo(BeZero())
		Expect(gone.Stderr).To(ContainSubstring("NotFound"))
		Eventually(func() []string { return jobPods("e2e-del") }, 30*time.Second, 500*time.Millisecond).Should(BeEmpty(), "its pods go too")
		for _, n := range namesOf(specs) {
			Expect(kubectl("get", "node", n, "-o", "jsonpath={.status.nodeInfo.kubeletVersion}")).To(Equal("v1.30.7-kubeedge-v1.20.0"), "node %s", n)
		}
	})

	It("suspends a rollout mid-way with kubectl patch and resumes it: no pod while suspended, none twice", func() {
		specs := fleet("sus", 6)
		for i := range specs {
			specs[i].Duration = 3 * time.Second
		}
		createFleet(specs)
		w := watchPods("e2e-sus")
		res := applyYAML(jobSpec{name: "e2e-sus", nodeNames: namesOf(specs), concurrency: 2, timeoutSeconds: 60}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())
		Eventually(func() int { return len(w.Creations()) }, 20*time.Second, 100*time.Millisecond).Should(BeNumerically(">=", 2))

		// The plugin's patch, as `kubectl nodeupgrade pause` sends it.
		Expect(kubectl("patch", "nodeupgradejob", "e2e-sus", "--type=merge", "-p", `{"spec":{"suspend":true}}`)).
			To(ContainSubstring("nodeupgradejob.operations.kubeedge.io/e2e-sus patched"))
		waitState("e2e-sus", "Suspended", 20*time.Second)
		// Dispatches recorded before the suspension may still be on their
		// way; once the pods in flight are done, nothing may start.
		kubectl("wait", "--for=jsonpath={.status.counts.inFlight}=0", "nodeupgradejob/e2e-sus", "--timeout=30s")
		held := w.Creations()
		Expect(len(held)).To(BeNumerically("<", 6), "suspended before the last node started")
		Consistently(func() map[string]int { return w.Creations() }, 8*time.Second, 250*time.Millisecond).Should(Equal(held),
			"no pod starts while suspended, though slots are free for 8s (an upgrade takes 3s)")
		Expect(jsonpath("e2e-sus", "{.status.state} {.status.counts.pending} {.status.conditions[?(@.type==\"Suspended\")].status}")).
			To(Equal(fmt.Sprintf("Suspended %d True", 6-len(held))), "it stays Suspended, not finished, with nodes left to start")
		Expect(jsonpath("e2e-sus", "{.status.reason}")).To(ContainSubstring("no node starts until spec.suspend is false"))
		Expect(rowFields(kubectl("get", "nodeupgradejobs"), "e2e-sus")).To(HavePrefix(fmt.Sprintf("e2e-sus v1.21.0 Suspended %d/6 0 ", len(held))))
		wide := kubectl("get", "nodeupgradejob", "e2e-sus", "-o", "wide")
		Expect(rowFields(wide, "NAME")).To(ContainSubstring("REASON SUSPEND AGE"))
		Expect(rowFields(wide, "e2e-sus")).To(MatchRegexp(` true \S+$`))
		Eventually(func() string { return kubectl("describe", "nodeupgradejob", "e2e-sus") }, 20*time.Second, time.Second).
			Should(MatchRegexp(`Normal\s+Suspended\s+.*Job suspended: no node starts until spec.suspend is false`))

		Expect(kubectl("patch", "nodeupgradejob", "e2e-sus", "--type=merge", "-p", `{"spec":{"suspend":false}}`)).To(ContainSubstring("patched"))
		waitState("e2e-sus", "Successful", 90*time.Second)
		Expect(jsonpath("e2e-sus", "{.status.progress} {.status.counts.succeeded} {.status.conditions[?(@.type==\"Suspended\")].reason}")).
			To(Equal("6/6 6 Resumed"))
		for _, n := range namesOf(specs) {
			Expect(w.Creations()[n]).To(Equal(1), "node %s got exactly one pod", n)
		}
		Expect(w.Creations()).To(HaveLen(6))
		Expect(w.Peak()).To(BeNumerically("<=", 2))
		Eventually(func() string { return kubectl("describe", "nodeupgradejob", "e2e-sus") }, 20*time.Second, time.Second).
			Should(And(MatchRegexp(`Normal\s+Resumed\s+.*Job resumed`), MatchRegexp(`Normal\s+JobCompleted`)))

		// A finished job stays final: suspending it changes nothing.
		kubectl("patch", "nodeupgradejob", "e2e-sus", "--type=merge", "-p", `{"spec":{"suspend":true}}`)
		Consistently(func() string { return jsonpath("e2e-sus", "{.status.state}") }, 3*time.Second, 500*time.Millisecond).Should(Equal("Successful"))
	})

	DescribeTable("refuses invalid jobs and names the field",
		func(name, yaml string, wantStderr ...string) {
			res := applyYAML(yaml)
			Expect(res.ExitCode).NotTo(BeZero(), res.String())
			for _, w := range wantStderr {
				Expect(res.Stderr).To(ContainSubstring(w), res.String())
			}
			Expect(kubectlResult("get", "nodeupgradejob", name).Stderr).To(ContainSubstring("NotFound"), "nothing was stored")
		},
		Entry("failureTolerate as a percentage", "e2e-bad-tolerate",
			jobSpec{name: "e2e-bad-tolerate", nodeNames: []string{"x"}, failureTolerate: "10%"}.manifest(),
			"spec.failureTolerate", `"10%"`),
		Entry("a version without the v", "e2e-bad-version",
			jobSpec{name: "e2e-bad-version", nodeNames: []string{"x"}, version: "1.21"}.manifest(),
			"spec.version", `"1.21"`),
		Entry("both nodeNames and labelSelector", "e2e-bad-both",
			jobSpec{name: "e2e-bad-both", nodeNames: []string{"x"}, matchLabels: map[string]string{"a": "b"}}.manifest(),
			"exactly one of spec.nodeNames and spec.labelSelector must be set"),
		Entry("neither nodeNames nor labelSelector", "e2e-bad-neither",
			jobSpec{name: "e2e-bad-neither"}.manifest(),
			"exactly one of spec.nodeNames and spec.labelSelector must be set"),
		Entry("a negative timeout", "e2e-bad-timeout",
			"apiVersion: operations.kubeedge.io/v1alpha1\nkind: NodeUpgradeJob\nmetadata:\n  name: e2e-bad-timeout\nspec:\n  version: v1.21.0\n  nodeNames: [x]\n  timeoutSeconds: -1\n",
			"spec.timeoutSeconds"),
	)
})

var _ = Describe("Leader election", func() {
	It("hands a running job to the standby when the leader is SIGKILLed, without a second pod for any node", func() {
		// Two fresh replicas instead of the suite's controller.
		Expect(ctl.Stop()).To(Succeed())
		DeferCleanup(func() {
			Expect(cluster.KillController()).To(Succeed())
			ctl = startController(localcluster.ControllerOptions{Name: "controller"})
		})
		leArgs := []string{"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=1s"}
		a := startController(localcluster.ControllerOptions{Name: "replica-a", LeaderElect: true, Args: leArgs})
		b := startController(localcluster.ControllerOptions{Name: "replica-b", LeaderElect: true, Args: leArgs})

		var leader, standby *localcluster.Controller
		Eventually(func() (int, error) {
			leader, standby = nil, nil
			for _, c := range []*localcluster.Controller{a, b} {
				is, err := c.IsLeader(suiteCtx)
				if err != nil {
					return 0, err
				}
				if is {
					leader = c
				} else {
					standby = c
				}
			}
			if leader == nil {
				return 0, nil
			}
			return 1, nil
		}, 20*time.Second, 250*time.Millisecond).Should(Equal(1), "one replica leads")
		lease := func() string {
			return kubectl("get", "lease", "nodeupgrade-controller", "-n", cluster.Namespace(), "-o", "jsonpath={.spec.holderIdentity}")
		}
		firstHolder := lease()
		Expect(firstHolder).NotTo(BeEmpty())
		// The Lease names the same process the metrics do: controller-runtime
		// logs "<identity> became leader" in the winner's log.
		Expect(leader.Log()).To(ContainSubstring(firstHolder + " became leader"))
		Expect(standby.Log()).NotTo(ContainSubstring("became leader"))
		GinkgoWriter.Printf("leader %s (lease holder %s), standby %s\n", leader.Name(), firstHolder, standby.Name())

		specs := fleet("le", 8)
		for i := range specs {
			specs[i].Duration = 3 * time.Second
		}
		createFleet(specs)
		w := watchPods("e2e-le")
		res := applyYAML(jobSpec{name: "e2e-le", nodeNames: namesOf(specs), concurrency: 2, timeoutSeconds: 90}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())

		// Mid-job: some nodes done, two pods in flight. Wait for the log too:
		// the watch can see a pod before its creator has logged it.
		Eventually(func() int { return len(podCreations(leader)) }, 30*time.Second, 100*time.Millisecond).Should(BeNumerically(">=", 3))
		Expect(leader.Kill()).To(Succeed())
		killedAt := time.Now()
		leaderLog, standbyLog := podCreations(leader), podCreations(standby)
		Expect(standbyLog).To(BeEmpty(), "the standby created no pod while it was not leading")
		Expect(len(leaderLog)).To(BeNumerically(">=", 3), "the leader did the work so far")
		Expect(jsonpath("e2e-le", "{.status.state}")).To(Equal("Upgrading"), "killed mid-job")

		Eventually(lease, 30*time.Second, 250*time.Millisecond).ShouldNot(Equal(firstHolder), "the standby takes the lease")
		Eventually(standby.Log, 5*time.Second, 250*time.Millisecond).Should(ContainSubstring(lease() + " became leader"))
		Eventually(func() (bool, error) { return standby.IsLeader(suiteCtx) }, 10*time.Second, 250*time.Millisecond).Should(BeTrue())
		GinkgoWriter.Printf("takeover after %s\n", time.Since(killedAt).Round(100*time.Millisecond))

		waitState("e2e-le", "Successful", 90*time.Second)
		Expect(jsonpath("e2e-le", "{.status.progress} {.status.counts.succeeded}")).To(Equal("8/8 8"))
		for _, n := range namesOf(specs) {
			Expect(w.Creations()[n]).To(Equal(1), "node %s got exactly one pod", n)
		}
		Expect(w.Creations()).To(HaveLen(8))
		Expect(w.Peak()).To(BeNumerically("<=", 2), "no window overrun across the handover")
		// The new leader finished the job, and created no pod its
		// predecessor had logged. (A pod the old leader created in its last
		// instant may be in neither log; the watch above counts it.)
		after := podCreations(standby)
		Expect(after).NotTo(BeEmpty(), "the new leader did the rest")
		Expect(len(leaderLog) + len(after)).To(BeNumerically("<=", 8))
		for _, n := range leaderLog {
			Expect(after).NotTo(ContainElement(n), "the new leader did not create %s again", n)
		}
	})
})

var podCreatedLine = regexp.MustCompile(`"Upgrade pod created".*pod="[^"]*/nodeupgrade-[0-9a-f]{8}-(le-[0-9]+)"`)

// podCreations lists, from a controller's -v=2 log, the le- nodes it
// created an upgrade pod for.
func podCreations(c *localcluster.Controller) []string {
	GinkgoHelper()
	log, err := c.Log()
	Expect(err).NotTo(HaveOccurred())
	var nodes []string
	for _, m := range podCreatedLine.FindAllStringSubmatch(log, -1) {
		nodes = append(nodes, m[1])
	}
	return nodes
}

// rowFields finds the line of a kubectl table whose first column is first
// and returns its fields joined by single spaces.
func rowFields(table, first string) string {
	for line := range strings.SplitSeq(table, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == first {
			return strings.Join(f, " ")
		}
	}
	return ""
}
