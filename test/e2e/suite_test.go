package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// End to end, as an operator sees it: the real controller binary runs as
// its own process against a real kube-apiserver, KWOK keeps the fake edge
// nodes Ready, fleetsim plays their kubelets, and every action and
// assertion on NodeUpgradeJobs goes through kubectl. Go clients are used
// only to build the fleet (node status cannot be set by kubectl apply) and
// for an independent pod watch.
func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane, KWOK and controller processes")
	}
	RegisterFailHandler(Fail)
	RunSpecs(t, "nodeupgrade kubectl end-to-end")
}

var (
	cluster  *localcluster.Cluster
	suiteCtx context.Context
	cancel   context.CancelFunc
	logDir   string
)

var _ = BeforeSuite(func() {
	suiteCtx, cancel = context.WithCancel(context.Background())
	// Logs stay in tmp/e2e after the run (git-ignored), to read on failure.
	logDir = filepath.Join(testenv.RepoRoot(), "tmp", "e2e")
	Expect(os.RemoveAll(logDir)).To(Succeed())
	var err error
	cluster, err = localcluster.Start(suiteCtx, localcluster.Options{
		Dir:             logDir,
		UpgradeDuration: 2 * time.Second,
	})
	Expect(err).NotTo(HaveOccurred())
	GinkgoWriter.Printf("cluster up; kubeconfig %s\n", cluster.KubeconfigPath())
	_, err = cluster.StartController(suiteCtx, localcluster.ControllerOptions{Name: "controller"})
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if cluster != nil {
		Expect(cluster.Stop()).To(Succeed())
	}
	if cancel != nil {
		cancel()
	}
})

// On failure, show the end of every controller's log.
var _ = AfterEach(func() {
	if !CurrentSpecReport().Failed() || cluster == nil {
		return
	}
	for _, c := range cluster.Controllers() {
		log, _ := c.Log()
		GinkgoWriter.Printf("\n--- last lines of %s:\n%s\n", c.LogPath(), lastBytes(log, 4000))
	}
})

// kubectl runs kubectl against the cluster and fails the spec if it fails.
func kubectl(args ...string) string {
	GinkgoHelper()
	res := kubectlResult(args...)
	Expect(res.Err).NotTo(HaveOccurred(), res.String())
	return res.Stdout
}

// kubectlResult runs kubectl and returns what happened, failing or not.
func kubectlResult(args ...string) localcluster.KubectlResult {
	ctx, cancel := context.WithTimeout(suiteCtx, 2*time.Minute)
	defer cancel()
	return cluster.Kubectl(ctx, args...)
}

// applyYAML writes a manifest to a file and `kubectl apply -f`s it.
func applyYAML(yaml string) localcluster.KubectlResult {
	GinkgoHelper()
	f, err := os.CreateTemp(GinkgoT().TempDir(), "job-*.yaml")
	Expect(err).NotTo(HaveOccurred())
	_, err = f.WriteString(yaml)
	Expect(err).NotTo(HaveOccurred())
	Expect(f.Close()).To(Succeed())
	return kubectlResult("apply", "-f", f.Name())
}

// jobSpec is what the tests vary in a NodeUpgradeJob manifest.
type jobSpec struct {
	name            string
	nodeNames       []string
	matchLabels     map[string]string
	version         string
	concurrency     int
	failureTolerate string
	timeoutSeconds  int
	// requireConfirmation makes each node wait after its checks for an
	// approval (kubectl nodeupgrade approve).
	requireConfirmation bool
}

// manifest renders the job as YAML, as a user would write it.
func (j jobSpec) manifest() string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: operations.kubeedge.io/v1alpha1\nkind: NodeUpgradeJob\nmetadata:\n  name: %s\nspec:\n", j.name)
	v := j.version
	if v == "" {
		v = framework.Target
	}
	fmt.Fprintf(&b, "  version: %q\n", v)
	if len(j.nodeNames) > 0 {
		b.WriteString("  nodeNames:\n")
		for _, n := range j.nodeNames {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	if len(j.matchLabels) > 0 {
		b.WriteString("  labelSelector:\n    matchLabels:\n")
		for k, val := range j.matchLabels {
			fmt.Fprintf(&b, "      %s: %q\n", k, val)
		}
	}
	if j.concurrency > 0 {
		fmt.Fprintf(&b, "  concurrency: %d\n", j.concurrency)
	}
	if j.failureTolerate != "" {
		fmt.Fprintf(&b, "  failureTolerate: %q\n", j.failureTolerate)
	}
	if j.timeoutSeconds > 0 {
		fmt.Fprintf(&b, "  timeoutSeconds: %d\n", j.timeoutSeconds)
	}
	if j.requireConfirmation {
		b.WriteString("  requireConfirmation: true\n")
	}
	return b.String()
}

// createFleet builds the test's nodes and waits until the online ones are Ready.
func createFleet(specs []fleetsim.NodeSpec) {
	GinkgoHelper()
	Expect(cluster.CreateNodes(suiteCtx, specs)).To(Succeed())
}

// watchPods observes one job's upgrade pods, independently of kubectl.
func watchPods(job string) *framework.PodWatcher {
	return framework.WatchPods(suiteCtx, cluster, job)
}

// jsonpath reads one field of a job with kubectl.
func jsonpath(job, path string) string {
	GinkgoHelper()
	return kubectl("get", "nodeupgradejob", job, "-o", "jsonpath="+path)
}

// waitState blocks in `kubectl wait` until the job reaches state.
func waitState(job, state string, timeout time.Duration) {
	GinkgoHelper()
	kubectl("wait", "--for=jsonpath={.status.state}="+state, "nodeupgradejob/"+job, fmt.Sprintf("--timeout=%s", timeout))
}

// nodeEntries reads status.nodeStatus with kubectl: node -> "state/event/action/reason".
func nodeEntries(job string) map[string]string {
	GinkgoHelper()
	out := jsonpath(job, `{range .status.nodeStatus[*]}{.nodeName}{"\t"}{.state}/{.event}/{.action}/{.reason}{"\n"}{end}`)
	entries := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if name, rest, ok := strings.Cut(line, "\t"); ok {
			entries[name] = rest
		}
	}
	return entries
}

// jobPods lists the names of a job's upgrade pods with kubectl.
func jobPods(job string) []string {
	GinkgoHelper()
	out := kubectl("get", "pods", "-n", cluster.Namespace(), "-l", "operations.kubeedge.io/nodeupgradejob="+job, "-o", "name")
	return strings.Fields(out)
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
