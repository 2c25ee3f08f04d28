package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// The kubectl plugin, run as an operator runs it: built into a folder that
// is put first on PATH, and found by kubectl's plugin discovery as
// `kubectl nodeupgrade`.

var buildPlugin = sync.OnceValue(func() error {
	dir := filepath.Join(logDir, "plugin-bin")
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "kubectl-nodeupgrade"), "./cmd/kubectl-nodeupgrade")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return &buildError{err: err, out: string(out)}
	}
	// kubectl (run by cluster.Kubectl with this process's environment)
	// finds the plugin on PATH.
	return os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
})

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string {
	return "go build ./cmd/kubectl-nodeupgrade: " + e.err.Error() + "\n" + e.out
}

// plugin runs `kubectl nodeupgrade args...` and returns what happened.
func plugin(stdin string, args ...string) localcluster.KubectlResult {
	GinkgoHelper()
	Expect(buildPlugin()).To(Succeed())
	ctx, cancel := context.WithTimeout(suiteCtx, 2*time.Minute)
	defer cancel()
	return cluster.KubectlWithInput(ctx, []byte(stdin), append([]string{"nodeupgrade"}, args...)...)
}

// keepOutput writes what a plugin command printed to the suite's log
// folder (tmp/e2e), to read after a run.
func keepOutput(name string, r localcluster.KubectlResult) {
	GinkgoHelper()
	text := "$ kubectl " + strings.Join(r.Args, " ") + "\n" + r.Stdout + r.Stderr
	Expect(os.WriteFile(filepath.Join(logDir, "plugin-"+name), []byte(text), 0o600)).To(Succeed())
}

// planOutput is the part of `plan -o json` the tests compare.
type planOutput struct {
	Concurrency int `json:"concurrency"`
	Nodes       []struct {
		Name   string `json:"name"`
		Action string `json:"action"`
		Wave   int    `json:"wave"`
		Reason string `json:"reason"`
	} `json:"nodes"`
	Waves    [][]string `json:"waves"`
	Estimate struct {
		PerNode, Source, Total string
	} `json:"estimate"`
}

// firstPods watches a job's upgrade pods from before the job exists and
// returns the nodes of the first n pods created, an independent record of
// the controller's first dispatch.
func firstPods(job string, n int) func() []string {
	GinkgoHelper()
	w, err := cluster.Clientset.CoreV1().Pods(cluster.Namespace()).Watch(suiteCtx,
		metav1.ListOptions{LabelSelector: "operations.kubeedge.io/nodeupgradejob=" + job})
	Expect(err).NotTo(HaveOccurred())
	var mu sync.Mutex
	var nodes []string
	go func() {
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if ev.Type != watch.Added || !ok {
				continue
			}
			mu.Lock()
			nodes = append(nodes, pod.Annotations["operations.kubeedge.io/node-name"])
			mu.Unlock()
		}
	}()
	DeferCleanup(w.Stop)
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), nodes[:min(n, len(nodes))]...)
	}
}

func finalState(job string) string {
	state := jsonpath(job, "{.status.state}")
	if state == "Successful" || state == "Failed" {
		return state
	}
	return ""
}

var _ = Describe("The kubectl nodeupgrade plugin", func() {
	It("plans what the controller then does: selection, skips, deferral and first wave", func() {
		specs := framework.Fleet("plan", 5)
		for i := range specs {
			specs[i].Duration = 4 * time.Second // wave 2 starts only after wave 1's pods exist
		}
		specs = append(specs,
			fleetsim.NodeSpec{Name: "plan-current", Version: framework.Target},
			fleetsim.NodeSpec{Name: "plan-cloud", NotEdge: true},
			fleetsim.NodeSpec{Name: "plan-offline", Version: framework.FromVersion, Offline: true})
		createFleet(specs)
		names := append(framework.NodeNames(specs), "plan-missing")
		manifest := jobSpec{name: "e2e-plan", nodeNames: names, concurrency: 2, failureTolerate: "0.5", timeoutSeconds: 15}.manifest()
		file := filepath.Join(GinkgoT().TempDir(), "job.yaml")
		Expect(os.WriteFile(file, []byte(manifest), 0o600)).To(Succeed())

		res := plugin("", "plan", "-f", file, "-o", "json", "--per-node=4s")
		Expect(res.Err).NotTo(HaveOccurred(), res.String())
		var plan planOutput
		Expect(json.Unmarshal([]byte(res.Stdout), &plan)).To(Succeed(), res.Stdout)
		Expect(plan.Waves).To(Equal([][]string{{"plan-00000", "plan-00001"}, {"plan-00002", "plan-00003"}, {"plan-00004"}}))
		Expect(plan.Estimate.Total).To(Equal("12s"))
		Expect(plan.Estimate.Source).To(Equal("--per-node"))
		table := plugin("", "plan", "-f", file)
		Expect(table.Err).NotTo(HaveOccurred(), table.String())
		keepOutput("plan.txt", table)
		Expect(table.Stdout).To(And(ContainSubstring("5 to upgrade in 3 waves, 3 skipped, 1 deferred"),
			ContainSubstring("wave 1: plan-00000 plan-00001")))

		first := firstPods("e2e-plan", plan.Concurrency)
		w := watchPods("e2e-plan")
		follow := cluster.KubectlCommand(suiteCtx, "nodeupgrade", "status", "-w", "e2e-plan")
		var followed strings.Builder
		follow.Stdout, follow.Stderr = &followed, GinkgoWriter
		res = applyYAML(manifest)
		Expect(res.Err).NotTo(HaveOccurred(), res.String())
		Eventually(func() string { return jsonpath("e2e-plan", "{.status.state}") }, 20*time.Second, 200*time.Millisecond).ShouldNot(BeEmpty())
		Expect(follow.Start()).To(Succeed())

		Eventually(first, 30*time.Second, 100*time.Millisecond).Should(HaveLen(2))
		Expect(first()).To(ConsistOf(plan.Waves[0]), "the controller's first dispatch is the plan's first wave")
		// Its turn (a free slot) comes after four 4 s upgrades, later under
		// load; from then it waits deferred for the job's 15 s timeout, a
		// window the poll cannot miss.
		Eventually(func() string { return nodeEntries("e2e-plan")["plan-offline"] }, 60*time.Second, 250*time.Millisecond).
			Should(HaveSuffix("/deferred: node is NotReady"), "the offline node waits, deferred, when its turn comes")

		Eventually(func() string { return finalState("e2e-plan") }, 90*time.Second, time.Second).ShouldNot(BeEmpty())
		Expect(follow.Wait()).To(Succeed(), "status -w ends when the job is final")
		keepOutput("status-w.txt", localcluster.KubectlResult{Args: follow.Args[1:], Stdout: followed.String()})
		Expect(followed.String()).To(ContainSubstring("Finished Successful"))
		Expect(strings.Count(followed.String(), "NodeUpgradeJob e2e-plan:")).To(BeNumerically(">", 2), "status -w printed each change:\n%s", followed.String())
		// -w times each node it saw dispatched and then finished, and the
		// ETA uses those times: each simulated upgrade takes 4 s, and the
		// status's times are whole seconds.
		measured := regexpAll(`per node: (\S+) \(measured: median of \d+ nodes? of this job, dispatch to end\)`, followed.String())
		Expect(measured).NotTo(BeEmpty(), "status -w's ETA uses the node times it measured:\n%s", followed.String())
		for _, m := range measured {
			perNode, err := time.ParseDuration(m)
			Expect(err).NotTo(HaveOccurred())
			Expect(perNode).To(BeNumerically(">=", 3*time.Second), "a measured node time is at least the simulated upgrade's")
		}

		again := plugin("", "plan", "-f", file)
		Expect(again.Stdout).To(And(ContainSubstring("Warning: nodeupgradejob e2e-plan exists already (Successful)"),
			MatchRegexp(`measured: median of the last \d+ finished jobs`)), again.String())

		entries := nodeEntries("e2e-plan")
		Expect(entries).To(HaveLen(len(plan.Nodes)))
		for _, n := range plan.Nodes {
			switch n.Action {
			case "upgrade":
				Expect(entries[n.Name]).To(Equal("Successful/Upgrade/Success/"), "node %s", n.Name)
			case "skip":
				Expect(entries[n.Name]).To(HaveSuffix("/"+n.Reason), "node %s: the plan's reason is the controller's", n.Name)
			case "defer":
				Expect(n.Name).To(Equal("plan-offline"))
				Expect(n.Reason).To(ContainSubstring("NotReady"))
				Expect(entries[n.Name]).To(And(HavePrefix("Failed/"), HaveSuffix("/node stayed NotReady for 15s")), "a deferred node fails after timeoutSeconds NotReady")
			default:
				Fail("unexpected action " + n.Action + " for " + n.Name)
			}
		}
		Expect(plan.Nodes).To(HaveLen(9), "8 nodes and the missing name")
		// Pods for the nodes to upgrade, one each; none for the skipped
		// nodes, nor for the deferred one, which never came back.
		w.ExpectOnePodEach(framework.NodeNames(specs[:5]))
	})

	It("pauses a rollout, lets the nodes in flight finish, and resumes it", func() {
		specs := framework.Fleet("pause", 6)
		for i := range specs {
			// Long enough that the pause lands before the first wave ends.
			specs[i].Duration = 5 * time.Second
		}
		createFleet(specs)
		created := firstPods("e2e-pause", len(specs)+1)
		w := watchPods("e2e-pause")
		res := applyYAML(jobSpec{name: "e2e-pause", nodeNames: framework.NodeNames(specs), concurrency: 2, timeoutSeconds: 60}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())
		Eventually(created, 30*time.Second, 100*time.Millisecond).Should(HaveLen(2))

		paused := plugin("", "pause", "e2e-pause")
		Expect(paused.Err).NotTo(HaveOccurred(), paused.String())
		Expect(paused.Stdout).To(Equal("nodeupgradejob e2e-pause paused: no new node is dispatched; nodes in flight finish\n"))
		Expect(jsonpath("e2e-pause", "{.spec.suspend}")).To(Equal("true"))
		Expect(plugin("", "pause", "e2e-pause").Stdout).To(Equal("nodeupgradejob e2e-pause is paused already\n"))
		waitState("e2e-pause", "Suspended", 30*time.Second)
		Eventually(func() string { return jsonpath("e2e-pause", "{.status.counts.inFlight} {.status.counts.succeeded}") }, 30*time.Second, 250*time.Millisecond).
			Should(Equal("0 2"), "the first wave finishes while paused")
		Consistently(created, 3*time.Second, 250*time.Millisecond).Should(HaveLen(2), "no node starts while paused, though both slots are free")
		// How kubectl shows a suspended job: still Suspended, not finished,
		// with nodes left to start.
		Expect(jsonpath("e2e-pause", `{.status.state} {.status.counts.pending} {.status.conditions[?(@.type=="Suspended")].status}`)).To(Equal("Suspended 4 True"))
		Expect(jsonpath("e2e-pause", "{.status.reason}")).To(ContainSubstring("no node starts until spec.suspend is false"))
		Expect(rowFields(kubectl("get", "nodeupgradejobs"), "e2e-pause")).To(HavePrefix("e2e-pause v1.21.0 Suspended 2/6 0 "))
		wide := kubectl("get", "nodeupgradejob", "e2e-pause", "-o", "wide")
		Expect(rowFields(wide, "NAME")).To(ContainSubstring("REASON SUSPEND AGE"))
		Expect(rowFields(wide, "e2e-pause")).To(MatchRegexp(` true \S+$`))
		Eventually(func() string { return kubectl("describe", "nodeupgradejob", "e2e-pause") }, 20*time.Second, time.Second).
			Should(MatchRegexp(`Normal\s+Suspended\s+.*Job suspended: no node starts until spec.suspend is false`))
		status := plugin("", "status", "e2e-pause")
		Expect(status.Stdout).To(And(ContainSubstring("NodeUpgradeJob e2e-pause: Suspended"), ContainSubstring("Paused (spec.suspend)"),
			ContainSubstring("ETA: none while paused (4 nodes left)")), status.String())
		keepOutput("status-paused.txt", status)

		resumed := plugin("", "resume", "e2e-pause")
		Expect(resumed.Err).NotTo(HaveOccurred(), resumed.String())
		Expect(resumed.Stdout).To(Equal("nodeupgradejob e2e-pause resumed\n"))
		waitState("e2e-pause", "Successful", 90*time.Second)
		Expect(created()).To(ConsistOf(framework.NodeNames(specs)), "every node got one pod")
		w.ExpectOnePodEach(framework.NodeNames(specs))
		Expect(w.Peak()).To(BeNumerically("<=", 2))
		Expect(jsonpath("e2e-pause", `{.status.progress} {.status.counts.succeeded} {.status.conditions[?(@.type=="Suspended")].reason}`)).To(Equal("6/6 6 Resumed"))
		Eventually(func() string { return kubectl("describe", "nodeupgradejob", "e2e-pause") }, 20*time.Second, time.Second).
			Should(And(MatchRegexp(`Normal\s+Resumed\s+.*Job resumed`), MatchRegexp(`Normal\s+JobCompleted`)))
		Expect(plugin("", "resume", "e2e-pause").Stderr).To(HavePrefix("error: cannot resume nodeupgradejob e2e-pause: it has finished (Successful)"))
	})

	It("approves waiting nodes from the cloud: by name, by label, then all", func() {
		specs := framework.Fleet("approve", 3)
		createFleet(specs)
		names := framework.NodeNames(specs)
		Expect(kubectl("label", "node", names[2], "site=plant-2")).To(ContainSubstring("labeled"))
		res := applyYAML(jobSpec{name: "e2e-approve", nodeNames: names, concurrency: 1, timeoutSeconds: 10, requireConfirmation: true}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())
		Eventually(func() string {
			return jsonpath("e2e-approve", "{.status.counts.waitingConfirmation} {.status.counts.inFlight}")
		}, 30*time.Second, 250*time.Millisecond).
			Should(Equal("3 0"), "concurrency 1, yet all three checked: a waiting node holds no slot")
		wide := kubectl("get", "nodeupgradejob", "e2e-approve", "-o", "wide")
		Expect(rowFields(wide, "NAME")).To(ContainSubstring("IN-FLIGHT WAITING REASON"))
		Expect(rowFields(wide, "e2e-approve")).To(ContainSubstring(" 0 3 upgrading: 0 succeeded, 0 failed, 0 in flight, 0 pending, 3 waiting for confirmation"))
		Eventually(func() string { return kubectl("describe", "nodeupgradejob", "e2e-approve") }, 20*time.Second, time.Second).
			Should(MatchRegexp(`Normal\s+NodeWaitingConfirmation\s+.*passed its checks and waits for its confirmation`))

		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"approve", "e2e-approve"}, "error: approve needs exactly one of: node names, --all, -l SELECTOR"},
			{[]string{"approve", "e2e-approve", "no-such-node"}, "error: not nodes of nodeupgradejob e2e-approve: no-such-node"},
			{[]string{"approve", "e2e-approve", "-l", "site=nowhere"}, `error: no node of nodeupgradejob e2e-approve matches -l "site=nowhere"`},
		} {
			r := plugin("", c.args...)
			Expect(r.ExitCode).To(Equal(1), r.String())
			Expect(r.Stderr).To(HavePrefix(c.want), r.String())
		}

		approved := plugin("", "approve", "e2e-approve", names[0])
		Expect(approved.Err).NotTo(HaveOccurred(), approved.String())
		Expect(approved.Stdout).To(HavePrefix("nodeupgradejob e2e-approve: approved " + names[0] + "; 3 node(s) of the job were waiting"))
		Eventually(func() map[string]string { return nodeEntries("e2e-approve") }, 30*time.Second, 250*time.Millisecond).
			Should(HaveKeyWithValue(names[0], "Successful/Upgrade/Success/"))
		Expect(jsonpath("e2e-approve", "{.status.counts.waitingConfirmation}")).To(Equal("2"))
		Expect(plugin("", "approve", "e2e-approve", names[0]).Stdout).To(ContainSubstring("approved already"))

		Expect(plugin("", "approve", "e2e-approve", "-l", "site=plant-2").Err).NotTo(HaveOccurred())
		Eventually(func() map[string]string { return nodeEntries("e2e-approve") }, 30*time.Second, 250*time.Millisecond).
			Should(HaveKeyWithValue(names[2], "Successful/Upgrade/Success/"))
		Expect(jsonpath("e2e-approve", "{.spec.approvedNodes}")).To(Equal(`["` + names[0] + `","` + names[2] + `"]`))

		Expect(plugin("", "approve", "e2e-approve", "--all").Err).NotTo(HaveOccurred())
		waitState("e2e-approve", "Successful", 60*time.Second)
		Expect(plugin("", "approve", "e2e-approve", "--all").Stderr).To(HavePrefix("error: cannot approve nodes of nodeupgradejob e2e-approve: it has finished (Successful)"))
	})

	It("shows status and logs, retries failures, and refuses clearly", func() {
		specs := framework.Fleet("op", 4)
		specs[1].Behavior, specs[1].Duration = fleetsim.BehaviorFail, 500*time.Millisecond
		createFleet(specs)
		res := applyYAML(jobSpec{name: "e2e-op", nodeNames: framework.NodeNames(specs), concurrency: 2, failureTolerate: "0.5", timeoutSeconds: 30}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())
		waitState("e2e-op", "Successful", 60*time.Second)

		status := plugin("", "status", "e2e-op")
		Expect(status.Err).NotTo(HaveOccurred(), status.String())
		keepOutput("status.txt", status)
		Expect(status.Stdout).To(And(
			ContainSubstring("[##############################] 100% 4/4 finished"),
			ContainSubstring("succeeded 3, failed 1, in flight 0"),
			MatchRegexp(`op-00001\s+Rollback\s+.*simulated`),
			ContainSubstring("Finished Successful at ")))

		logs := plugin("", "logs", "e2e-op", "op-00001")
		headers := regexpAll(`==> \S+ (init container|container) (\S+) <==`, logs.Stdout)
		// No checkItems, so no check container. KWOK's nodes have no
		// kubelet to serve logs: every container says why it has none, and
		// the command fails after printing them all.
		Expect(headers).To(Equal([]string{"copy-keadm", "backup", "upgrade"}), logs.String())
		Expect(logs.Stdout).To(ContainSubstring("(no log: "))
		Expect(logs.Stderr).To(ContainSubstring("could not read the logs of 3 of 3 containers"))
		gone := plugin("", "logs", "e2e-op", "op-00000")
		Expect(gone.Err).To(HaveOccurred())
		Expect(gone.Stderr).To(ContainSubstring("deleted once their outcome is recorded"))

		declined := plugin("n\n", "retry", "e2e-op")
		keepOutput("retry.txt", declined)
		Expect(declined.Err).To(HaveOccurred(), declined.String())
		Expect(declined.Stdout).To(And(ContainSubstring("Retrying 1 node of nodeupgradejob e2e-op"),
			ContainSubstring("wave 1: op-00001"), ContainSubstring("Create nodeupgradejob e2e-op-retry-1? [y/N]"),
			// e2e-op is a finished job to measure the per-node time from.
			MatchRegexp(`Estimate: \d+s \(1 wave x \d+s per node; measured: median of the last \d+ finished jobs\)`)))
		Expect(declined.Stderr).To(ContainSubstring("aborted: nothing was created"))
		Expect(kubectlResult("get", "nodeupgradejob", "e2e-op-retry-1").Err).To(HaveOccurred(), "declined: no job")

		retried := plugin("", "retry", "e2e-op", "--yes")
		Expect(retried.Err).NotTo(HaveOccurred(), retried.String())
		Expect(retried.Stdout).To(ContainSubstring("nodeupgradejob e2e-op-retry-1 created"))
		Expect(jsonpath("e2e-op-retry-1", `{.spec.nodeNames} {.spec.version} {.spec.concurrency} {.spec.failureTolerate} {.spec.timeoutSeconds} {.metadata.annotations.operations\.kubeedge\.io/retry-of}`)).
			To(Equal(`["op-00001"] v1.21.0 2 0.5 30 e2e-op`))
		Eventually(func() string { return finalState("e2e-op-retry-1") }, 60*time.Second, time.Second).Should(Equal("Failed"), "the node fails again")

		// A user who may read everything but create nothing is refused at
		// the create, and told which.
		viewer := applyYAML(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-plugin-viewer}
rules:
- {apiGroups: [operations.kubeedge.io], resources: [nodeupgradejobs], verbs: [get, list, watch]}
- {apiGroups: [""], resources: [nodes, pods], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-plugin-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-plugin-viewer}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: e2e-viewer}
`)
		Expect(viewer.Err).NotTo(HaveOccurred(), viewer.String())

		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"status", "no-such-job"}, "error: nodeupgradejob no-such-job not found"},
			{[]string{"pause", "e2e-op"}, "error: cannot pause nodeupgradejob e2e-op: it has finished (Successful)"},
			{[]string{"status", "e2e-op", "--as=system:serviceaccount:default:nobody"}, `error: forbidden: cannot get nodeupgradejob e2e-op (`},
			{[]string{"plan", "-f", "-", "--as=system:serviceaccount:default:nobody"}, `error: forbidden: cannot list nodes (`},
			{[]string{"retry", "e2e-op-retry-1", "--as=system:serviceaccount:default:nobody"}, `error: forbidden: cannot get nodeupgradejob e2e-op-retry-1`},
			{[]string{"retry", "e2e-op", "--yes", "--as=e2e-viewer"}, `error: forbidden: cannot create nodeupgradejob e2e-op-retry-2 (`},
		} {
			stdin := ""
			if c.args[0] == "plan" {
				stdin = jobSpec{name: "x", nodeNames: []string{"op-00000"}}.manifest()
			}
			r := plugin(stdin, c.args...)
			Expect(r.ExitCode).To(Equal(1), r.String())
			Expect(r.Stderr).To(HavePrefix(c.want), r.String())
			Expect(strings.Count(strings.TrimSpace(r.Stderr), "\n")).To(BeZero(), "one line: %s", r.Stderr)
		}
	})
})

var _ = Describe("A sharded job", func() {
	It("reads as any other: kubectl get's columns, v1alpha2, status, logs and retry", func() {
		// The suite's controller is replaced by one that shards any job of
		// more than 3 nodes (5 to a shard), and put back afterwards.
		Expect(cluster.StopController()).To(Succeed())
		DeferCleanup(func() {
			Expect(cluster.StopController()).To(Succeed())
			_, err := cluster.StartController(suiteCtx, localcluster.ControllerOptions{Name: "controller-after-shards"})
			Expect(err).NotTo(HaveOccurred())
		})
		_, err := cluster.StartController(suiteCtx, localcluster.ControllerOptions{Name: "controller-sharded",
			Args: []string{"--status-shard-threshold=3", "--status-shard-size=5"}})
		Expect(err).NotTo(HaveOccurred())

		specs := framework.Fleet("shard", 12)
		specs[7].Behavior, specs[7].Duration = fleetsim.BehaviorFail, 500*time.Millisecond
		createFleet(specs)
		res := applyYAML(jobSpec{name: "e2e-shard", nodeNames: framework.NodeNames(specs), concurrency: 4, failureTolerate: "0.5", timeoutSeconds: 30}.manifest())
		Expect(res.Err).NotTo(HaveOccurred(), res.String())
		waitState("e2e-shard", "Successful", 90*time.Second)

		get := kubectl("get", "nodeupgradejobs", "e2e-shard")
		Expect(get).To(MatchRegexp(`NAME\s+VERSION\s+STATE\s+RESULT\s+PROGRESS\s+FAILED\s+AGE`))
		Expect(get).To(MatchRegexp(`e2e-shard\s+\S+\s+Successful\s+Success\s+12/12\s+1\s`))
		Expect(jsonpath("e2e-shard", `{.status.shards.kind} {.status.shards.nodes} {.status.shards.size} {.status.shards.revisions[*]}`)).
			To(MatchRegexp(`^ConfigMap 12 5 \d+ \d+ \d+$`))
		// The job's own nodeStatus keeps its failed and in-flight nodes.
		Expect(nodeEntries("e2e-shard")).To(ConsistOf(HavePrefix("Failed/Rollback/Failure/")))
		Expect(nodeEntries("e2e-shard")).To(HaveKey("shard-00007"))
		selector := jsonpath("e2e-shard", `{.status.shards.selector}`)
		Expect(strings.Fields(kubectl("get", "configmaps", "-n", cluster.Namespace(), "-l", selector, "-o", "name"))).To(HaveLen(3))
		// A v1alpha2 reader sees KubeEdge's phase and the same pointer.
		Expect(kubectl("get", "nodeupgradejobs.v1alpha2.operations.kubeedge.io", "e2e-shard", "-o",
			`jsonpath={.status.phase} {.status.shards.kind} {.status.nodeStatus[0].nodeName} {.status.nodeStatus[0].phase}`)).
			To(Equal("Completed ConfigMap shard-00007 Failure"))

		status := plugin("", "status", "e2e-shard")
		Expect(status.Err).NotTo(HaveOccurred(), status.String())
		keepOutput("status-sharded.txt", status)
		Expect(status.Stdout).To(And(
			ContainSubstring("100% 12/12 finished"),
			ContainSubstring("succeeded 11, failed 1, in flight 0"),
			ContainSubstring("per-node records: 3 shards of 5 nodes (ConfigMaps in namespace "),
			MatchRegexp(`shard-00007\s+Rollback\s+.*simulated`)))
		Expect(status.Stdout).NotTo(ContainSubstring("listing the failed and in-flight nodes"), "the plugin read every shard")

		logs := plugin("", "logs", "e2e-shard", "shard-00007")
		Expect(regexpAll(`==> \S+ (init container|container) (\S+) <==`, logs.Stdout)).To(Equal([]string{"copy-keadm", "backup", "upgrade"}), logs.String())
		gone := plugin("", "logs", "e2e-shard", "shard-00011")
		Expect(gone.Stderr).To(ContainSubstring("deleted once their outcome is recorded"), "the node's entry, in its shard, was found")

		retried := plugin("", "retry", "e2e-shard", "--yes")
		Expect(retried.Err).NotTo(HaveOccurred(), retried.String())
		Expect(jsonpath("e2e-shard-retry-1", `{.spec.nodeNames}`)).To(Equal(`["shard-00007"]`))
	})
})

// regexpAll returns the last submatch of every match of pattern in s.
func regexpAll(pattern, s string) []string {
	var out []string
	for _, m := range regexp.MustCompile(pattern).FindAllStringSubmatch(s, -1) {
		out = append(out, m[len(m)-1])
	}
	return out
}
