package e2e_test

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
)

var _ = Describe("Upgrading with kubectl", func() {
	It("upgrades named nodes, shows it in get and describe", func() {
		specs := framework.Fleet("happy", 6)
		createFleet(specs)
		w := watchPods("e2e-happy")
		res := applyYAML(jobSpec{name: "e2e-happy", nodeNames: framework.NodeNames(specs), concurrency: 2, timeoutSeconds: 60}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())
		Expect(res.Stdout).To(ContainSubstring("nodeupgradejob.operations.kubeedge.io/e2e-happy created"))
		Eventually(func() int { return len(nodeEntries("e2e-happy")) }, 10*time.Second, 250*time.Millisecond).Should(Equal(6), "every node listed from the start")

		waitState("e2e-happy", "Successful", 90*time.Second)
		Expect(jsonpath("e2e-happy", "{.status.action} {.status.progress} {.status.counts.succeeded} {.status.historicVersion} {.status.currentVersion}")).
			To(Equal("Success 6/6 6 v1.20.0 v1.21.0"))
		Expect(jsonpath("e2e-happy", `{.status.conditions[?(@.type=="Complete")].status}`)).To(Equal("True"))
		for _, n := range framework.NodeNames(specs) {
			Expect(nodeEntries("e2e-happy")).To(HaveKeyWithValue(n, "Successful/Upgrade/Success/"))
			Expect(kubectl("get", "node", n, "-o", "jsonpath={.status.nodeInfo.kubeletVersion}")).To(Equal("v1.30.7-kubeedge-v1.21.0"))
		}
		w.ExpectOnePodEach(framework.NodeNames(specs))
		Expect(w.Peak()).To(Equal(2), "the window is full but never over")

		// The printer columns, as kubectl shows them.
		table := kubectl("get", "nodeupgradejobs")
		Expect(rowFields(table, "NAME")).To(HavePrefix("NAME VERSION STATE RESULT PROGRESS FAILED AGE"))
		Expect(rowFields(table, "e2e-happy")).To(HavePrefix("e2e-happy v1.21.0 Successful Success 6/6 "))
		wide := kubectl("get", "nodeupgradejob", "e2e-happy", "-o", "wide")
		Expect(rowFields(wide, "NAME")).To(ContainSubstring("IN-FLIGHT WAITING REASON"))
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
			{Name: "sel-a", Version: framework.FromVersion, Labels: map[string]string{"e2e-sel": "yes"}},
			{Name: "sel-b", Version: "v1.19.3", Labels: map[string]string{"e2e-sel": "yes"}},
			{Name: "sel-current", Version: framework.Target, Labels: map[string]string{"e2e-sel": "yes"}},
			{Name: "sel-cloud", NotEdge: true, Labels: map[string]string{"e2e-sel": "yes"}},
			{Name: "sel-other", Version: framework.FromVersion, Labels: map[string]string{"e2e-sel": "no"}},
			{Name: "sel-named", Version: framework.FromVersion},
		}
		createFleet(specs)
		res := applyYAML(jobSpec{name: "e2e-sel", matchLabels: map[string]string{"e2e-sel": "yes"}, concurrency: 3, failureTolerate: "0.5", timeoutSeconds: 60}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())
		// A name with no Node behind it, beside one that has.
		res = applyYAML(jobSpec{name: "e2e-byname", nodeNames: []string{"sel-named", "sel-missing"}, failureTolerate: "1", timeoutSeconds: 60}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())

		waitState("e2e-sel", "Successful", 60*time.Second)
		entries := nodeEntries("e2e-sel")
		Expect(entries).To(HaveLen(4), "exactly the labelled nodes, taken once")
		Expect(entries).To(HaveKeyWithValue("sel-a", "Successful/Upgrade/Success/"))
		Expect(entries).To(HaveKeyWithValue("sel-b", "Successful/Upgrade/Success/"))
		Expect(entries["sel-current"]).To(And(HavePrefix("Successful/"), HaveSuffix("/skipped: already at v1.21.0")))
		Expect(entries["sel-cloud"]).To(Equal("Skipped/Init//skipped: not an edge node (no label node-role.kubernetes.io/edge)"))
		Expect(jsonpath("e2e-sel", "{.status.progress} {.status.counts.selected} {.status.counts.succeeded} {.status.counts.failed} {.status.counts.skipped} {.status.historicVersion}")).
			To(Equal("4/4 4 3 0 1 v1.19.3,v1.20.0,v1.21.0"), "the cloud node is no failure")
		Expect(kubectl("get", "node", "sel-other", "-o", "jsonpath={.status.nodeInfo.kubeletVersion}")).
			To(Equal("v1.30.7-kubeedge-v1.20.0"), "a node outside the selector is not touched")

		waitState("e2e-byname", "Successful", 60*time.Second)
		entries = nodeEntries("e2e-byname")
		Expect(entries).To(HaveKeyWithValue("sel-named", "Successful/Upgrade/Success/"))
		Expect(entries["sel-missing"]).To(And(HavePrefix("Skipped/"), HaveSuffix("/skipped: node not found")))
		Expect(jsonpath("e2e-byname", "{.status.counts.failed}")).To(Equal("0"), "a name with no Node is skipped, not failed")
	})

	It("stops on failureTolerate: failed nodes, the rest not attempted", func() {
		specs := framework.Fleet("tol", 10)
		specs[0].Behavior, specs[0].Duration = fleetsim.BehaviorFail, 500*time.Millisecond
		specs[1].Behavior, specs[1].Duration = fleetsim.BehaviorFail, 500*time.Millisecond
		specs[2].Duration = 4 * time.Second // still in flight when the second failure lands
		createFleet(specs)
		res := applyYAML(jobSpec{name: "e2e-tol", nodeNames: framework.NodeNames(specs), concurrency: 3, failureTolerate: "0.1", timeoutSeconds: 60}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())

		waitState("e2e-tol", "Failed", 60*time.Second)
		Expect(jsonpath("e2e-tol", "{.status.action} {.status.progress} {.status.counts.failed} {.status.counts.succeeded} {.status.counts.notAttempted}")).
			To(Equal("Failure 10/10 2 1 7"))
		Expect(jsonpath("e2e-tol", "{.status.reason}")).To(ContainSubstring("2 of 10 nodes failed, more than failureTolerate 0.1"))
		entries := nodeEntries("e2e-tol")
		Expect(entries["tol-00000"]).To(And(HavePrefix("Failed/Rollback/Failure/"), ContainSubstring("simulated")))
		Expect(entries["tol-00001"]).To(HavePrefix("Failed/Rollback/Failure/"))
		Expect(entries["tol-00002"]).To(Equal("Successful/Upgrade/Success/"), "the node in flight finished")
		for _, n := range framework.NodeNames(specs)[3:] {
			Expect(entries[n]).To(HavePrefix("NotAttempted/"), "node %s", n)
		}
		Expect(rowFields(kubectl("get", "nodeupgradejobs"), "e2e-tol")).To(HavePrefix("e2e-tol v1.21.0 Failed Failure 10/10 2 "))
		Eventually(func() string { return kubectl("describe", "nodeupgradejob", "e2e-tol") }, 20*time.Second, time.Second).
			Should(And(MatchRegexp(`Warning\s+NodeFailed`), MatchRegexp(`Warning\s+FailureToleranceExceeded`), MatchRegexp(`Warning\s+JobFailed`)))
		Expect(kubectl("get", "node", "tol-00009", "-o", "jsonpath={.status.nodeInfo.kubeletVersion}")).
			To(Equal("v1.30.7-kubeedge-v1.20.0"), "a not-attempted node was not touched")
		Expect(jobPods("e2e-tol")).To(HaveLen(2), "failed pods stay for their logs")
	})

	It("times out a hanging node and deletes its pod", func() {
		specs := framework.Fleet("hang", 2)
		specs[0].Behavior = fleetsim.BehaviorHang
		createFleet(specs)
		res := applyYAML(jobSpec{name: "e2e-hang", nodeNames: framework.NodeNames(specs), failureTolerate: "1", timeoutSeconds: 4}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())

		Eventually(func() []string { return jobPods("e2e-hang") }, 10*time.Second, 250*time.Millisecond).Should(HaveLen(1), "the hanging node's pod runs")
		waitState("e2e-hang", "Successful", 60*time.Second)
		entries := nodeEntries("e2e-hang")
		Expect(entries["hang-00000"]).To(And(HavePrefix("Failed/TimeOut/TimeOut/"), ContainSubstring("did not finish within 4s")))
		Expect(entries["hang-00001"]).To(Equal("Successful/Upgrade/Success/"), "the slot was freed for the next node")
		Eventually(func() []string { return jobPods("e2e-hang") }, 20*time.Second, 500*time.Millisecond).Should(BeEmpty(), "the timed-out pod is gone")
	})

	It("cancels a running job on kubectl delete: job and pods gone", func() {
		specs := framework.Fleet("del", 4)
		for i := range specs {
			specs[i].Duration = time.Minute
		}
		createFleet(specs)
		res := applyYAML(jobSpec{name: "e2e-del", nodeNames: framework.NodeNames(specs), concurrency: 2, timeoutSeconds: 120}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())
		Eventually(func() []string { return jobPods("e2e-del") }, 15*time.Second, 250*time.Millisecond).Should(HaveLen(2))
		Expect(jsonpath("e2e-del", "{.metadata.finalizers}")).To(ContainSubstring("operations.kubeedge.io/cleanup"))

		Expect(kubectl("delete", "nodeupgradejob", "e2e-del", "--timeout=30s")).To(ContainSubstring(`"e2e-del" deleted`))
		gone := kubectlResult("get", "nodeupgradejob", "e2e-del")
		Expect(gone.ExitCode).NotTo(BeZero())
		Expect(gone.Stderr).To(ContainSubstring("NotFound"))
		Eventually(func() []string { return jobPods("e2e-del") }, 30*time.Second, 500*time.Millisecond).Should(BeEmpty(), "its pods go too")
		for _, n := range framework.NodeNames(specs) {
			Expect(kubectl("get", "node", n, "-o", "jsonpath={.status.nodeInfo.kubeletVersion}")).To(Equal("v1.30.7-kubeedge-v1.20.0"), "node %s", n)
		}
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
