package integration_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// The controller, in this process, against test/localcluster's world: a
// real kube-apiserver and etcd, KWOK playing the edge nodes and fleetsim
// playing their kubelets and keadm. What this tier proves is what needs
// the controller in reach: status committed before any action, the
// finalizers, restarts at exact points, and its in-process metrics. The
// rollout rules are the planner's tests' and the simulation's; the kubectl
// surface is test/e2e's; faults are test/chaos's.
func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and KWOK")
	}
	RegisterFailHandler(Fail)
	RunSpecs(t, "NodeUpgradeJob controller integration")
}

var (
	cluster   *localcluster.Cluster
	k8s       client.Client
	clientset kubernetes.Interface
	suiteCtx  context.Context
	cancelAll context.CancelFunc
)

var _ = BeforeSuite(func() {
	ctrl.SetLogger(klog.NewKlogr())
	suiteCtx, cancelAll = context.WithCancel(context.Background())
	// Logs stay in tmp/integration after the run (git-ignored).
	dir := filepath.Join(testenv.RepoRoot(), "tmp", "integration")
	Expect(os.RemoveAll(dir)).To(Succeed())
	var err error
	cluster, err = localcluster.Start(suiteCtx, localcluster.Options{
		Dir:             dir,
		UpgradeDuration: 2 * time.Second,
		InProcessOnly:   true,
		Logger:          klog.Background().WithName("fleetsim"),
	})
	Expect(err).NotTo(HaveOccurred())
	k8s, clientset = cluster.Client, cluster.Clientset
})

var _ = AfterSuite(func() {
	if cluster != nil {
		Expect(cluster.Stop()).To(Succeed())
	}
	if cancelAll != nil {
		cancelAll()
	}
})

// startController starts a controller in this process, the way main does,
// from the Deployment's flags plus args.
func startController(args ...string) *localcluster.InProcessController {
	GinkgoHelper()
	ctl, err := cluster.StartInProcessController(args...)
	Expect(err).NotTo(HaveOccurred())
	return ctl
}

func stopController(ctl *localcluster.InProcessController) {
	GinkgoHelper()
	Expect(ctl.Stop()).To(Succeed())
}

var podNamespace = v1alpha1.DefaultNamespace

// createFleet creates the nodes and waits until the online ones are Ready.
func createFleet(specs []fleetsim.NodeSpec) {
	GinkgoHelper()
	Expect(cluster.CreateNodes(suiteCtx, specs)).To(Succeed())
}

func getJob(name string) *v1alpha1.NodeUpgradeJob {
	GinkgoHelper()
	job, err := framework.GetJob(suiteCtx, k8s, name)
	Expect(err).NotTo(HaveOccurred())
	return job
}

func waitFinished(name string, within time.Duration) *v1alpha1.NodeUpgradeJob {
	GinkgoHelper()
	job, err := framework.WaitFinished(suiteCtx, k8s, name, within)
	Expect(err).NotTo(HaveOccurred())
	return job
}

func nodeEntry(job *v1alpha1.NodeUpgradeJob, node string) v1alpha1.TaskStatus {
	GinkgoHelper()
	e, ok := framework.NodeEntry(job, node)
	Expect(ok).To(BeTrue(), "no nodeStatus entry for %s", node)
	return e
}

// nodeState is a node's state in job's status, "" before it has an entry.
func nodeState(job *v1alpha1.NodeUpgradeJob, node string) string {
	e, _ := framework.NodeEntry(job, node)
	return e.State
}

func jobEvents(job *v1alpha1.NodeUpgradeJob) []string {
	GinkgoHelper()
	reasons, err := framework.JobEvents(suiteCtx, k8s, job)
	Expect(err).NotTo(HaveOccurred())
	return reasons
}

func remainingPods(job string) []corev1.Pod {
	GinkgoHelper()
	pods, err := framework.JobPods(suiteCtx, k8s, podNamespace, job)
	Expect(err).NotTo(HaveOccurred())
	return pods
}

func watchPods(job string) *framework.PodWatcher {
	return framework.WatchPods(suiteCtx, cluster, job)
}
