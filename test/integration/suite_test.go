package integration_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/manager"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/kwokworld"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// The controller against a real kube-apiserver and etcd, with KWOK playing
// the edge nodes and fleetsim playing their kubelets and keadm.
func TestIntegration(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "NodeUpgradeJob controller integration")
}

const podNamespace = v1alpha1.DefaultNamespace

var (
	env       *envtest.Environment
	cfg       *rest.Config
	k8s       client.Client
	clientset kubernetes.Interface
	world     *kwokworld.World
	suiteCtx  context.Context
	cancelAll context.CancelFunc
)

var _ = BeforeSuite(func() {
	ctrl.SetLogger(klog.NewKlogr())
	suiteCtx, cancelAll = context.WithCancel(context.Background())
	var err error
	env, err = testenv.New()
	Expect(err).NotTo(HaveOccurred())
	cfg, err = env.Start()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	clientset = kubernetes.NewForConfigOrDie(cfg)
	Expect(k8s.Create(suiteCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: podNamespace}})).To(Succeed())

	logDir := filepath.Join(testenv.RepoRoot(), "tmp", "integration")
	Expect(os.MkdirAll(logDir, 0o755)).To(Succeed())
	world, err = kwokworld.Start(suiteCtx, kwokworld.Options{RESTConfig: cfg, LogPath: filepath.Join(logDir, "kwok.log"), HeartbeatInterval: 5 * time.Second})
	Expect(err).NotTo(HaveOccurred())

	sim, err := fleetsim.NewSimulator(cfg, fleetsim.Options{UpgradeDuration: 2 * time.Second, Namespace: podNamespace, Logger: klog.Background().WithName("fleetsim")})
	Expect(err).NotTo(HaveOccurred())
	go func() { _ = sim.Run(suiteCtx) }()
	Eventually(sim.Synced(), 30*time.Second).Should(BeClosed())
})

var _ = AfterSuite(func() {
	if cancelAll != nil {
		cancelAll()
	}
	if world != nil {
		Expect(world.Stop()).To(Succeed())
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

// controllerArgs are the Deployment's flags (config/manager), minus what only
// makes sense in a cluster: probes and metrics are off, and the image list
// allows the test registry.
func controllerArgs(extra ...string) []string {
	return append([]string{
		"--namespace=" + podNamespace,
		"--runner-image=ghcr.io/nodeupgrade/nodeupgrade:test",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=0",
	}, extra...)
}

// runningController is one controller process, in-process.
type runningController struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startController starts a controller the way main does, from flags.
func startController(args ...string) *runningController {
	GinkgoHelper()
	fs := flag.NewFlagSet("nodeupgrade-controller", flag.ContinueOnError)
	c := manager.BindFlags(fs)
	Expect(fs.Parse(controllerArgs(args...))).To(Succeed())
	mgr, err := manager.New(cfg, c)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(suiteCtx)
	rc := &runningController{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer GinkgoRecover()
		defer close(rc.done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	return rc
}

func (rc *runningController) stop() {
	rc.cancel()
	Eventually(rc.done, 30*time.Second).Should(BeClosed())
}
