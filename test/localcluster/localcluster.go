// Package localcluster starts a whole local nodeupgrade world as a library:
// a real etcd and kube-apiserver (envtest, with the project's CRD), KWOK
// keeping fake KubeEdge edge nodes Ready (test/kwokworld), the fleet
// simulator playing their kubelets and keadm (test/fleetsim), and the REAL
// nodeupgrade-controller binary as separate processes, or the controller
// in the caller's process (StartInProcessController).
//
// It is the one world every suite runs in, composed in one place: the
// integration, end-to-end and chaos suites, the benchmark, the demo and
// test/kubeedgeworld all start it, and Shared gives a test binary one of
// them for all its tests. A person can point kubectl at it: Start writes
// an admin kubeconfig to a file.
//
// Every process it starts runs in a process group of its own, and a small
// sentinel process kills those groups if the caller dies without calling
// Stop (a panic in a goroutine, a test timeout, SIGKILL), so a crashed run
// leaves no etcd, apiserver, KWOK or controller behind.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/kwokworld"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// DefaultNamespace holds the upgrade pods and the leader-election Lease; it
// is the controller's own default.
const DefaultNamespace = v1alpha1.DefaultNamespace

// Options configures Start. The zero value is a usable empty world.
type Options struct {
	// Dir holds the kubeconfig and every log (apiserver excepted). Empty: a
	// new temporary folder, removed by Stop. A given folder is kept, so its
	// logs can be read after a failed run.
	Dir string
	// Namespace of the upgrade pods and the Lease. Empty: DefaultNamespace.
	Namespace string
	// Nodes are created before Start returns; Start waits until the online
	// ones are Ready.
	Nodes []fleetsim.NodeSpec
	// UpgradeDuration is how long a simulated upgrade pod runs unless its
	// node says otherwise. Zero: fleetsim's default.
	UpgradeDuration time.Duration
	// NodeReadyTimeout bounds the wait for nodes to turn Ready. Zero: 90s.
	NodeReadyTimeout time.Duration
	// KWOKHeartbeat is KWOK's node heartbeat interval. Zero: kwokworld's
	// default. Nothing in this world reads heartbeat age, so slow is cheap.
	KWOKHeartbeat time.Duration
	// KWOKLogLevel and KWOKNodeParallelism are kwokworld's LogLevel and
	// NodePlayStageParallelism, for fleets of thousands. Zero: KWOK's own.
	KWOKLogLevel        string
	KWOKNodeParallelism int
	// ControllerBinary is a prebuilt nodeupgrade-controller. Empty: Start
	// builds ./cmd/nodeupgrade-controller into bin/localcluster/ (go build
	// is incremental, so this costs a second when nothing changed).
	ControllerBinary string
	// Logger receives the simulator's errors (and its pod transitions at
	// V(1)). Zero: discarded.
	Logger logr.Logger
	// NoFleet starts neither KWOK nor the fleet simulator: the caller brings
	// real nodes (test/kubeedgeworld). Nodes must then be empty.
	NoFleet bool
	// ServeOn is a host IP the apiserver serves and advertises on instead of
	// 127.0.0.1, so machines on a bridge (test/kubeedgeworld's kubelet
	// nodes) reach it and the `kubernetes` Service points at it; its serving
	// certificate also names that IP and the Service. It also turns on the
	// ServiceAccount admission plugin (envtest turns it off), so pods get
	// their ServiceAccount's token as on a real cluster. Empty: loopback.
	ServeOn string
	// NoCRD leaves the project's CRD out of the control plane: the caller
	// installs it, as a user does (test/kubeedgeworld installs KubeEdge's
	// CRDs first and this project's over them).
	NoCRD bool
	// InProcessOnly: the caller runs its controllers in its own process
	// (StartInProcessController), so Start builds no controller binary and
	// StartController refuses.
	InProcessOnly bool
}

// Cluster is a running local world. Its exported fields are ready after
// Start and safe for concurrent use.
type Cluster struct {
	// Client reaches the apiserver as an admin, with testenv.Scheme().
	Client client.Client
	// Clientset is a typed client-go client, for watches.
	Clientset kubernetes.Interface

	opts       Options
	dir        string
	ownDir     bool
	kubeconfig string
	restConfig *rest.Config
	env        *envtest.Environment
	envUp      bool
	world      *kwokworld.World
	sim        *fleetsim.Simulator
	simCancel  context.CancelFunc
	simDone    chan struct{}
	simErr     error
	reaper     *reaper
	binary     string
	caPEM      []byte // the serving CA when ServeOn is set

	mu          sync.Mutex
	controllers []*Controller
	inProcess   []*InProcessController
	stopOnce    sync.Once
	stopErr     error
}

// Start brings the world up: control plane, admin kubeconfig, namespace,
// KWOK, simulator, then opts.Nodes. ctx bounds only the start; the world
// lives until Stop. On error everything started so far is stopped.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.NodeReadyTimeout <= 0 {
		opts.NodeReadyTimeout = 90 * time.Second
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	c := &Cluster{opts: opts, dir: opts.Dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()

	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "localcluster-"); err != nil {
			return nil, fmt.Errorf("localcluster: create work dir: %w", err)
		}
		c.ownDir = true
	} else if err = os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("localcluster: create work dir: %w", err)
	}
	if c.dir, err = filepath.Abs(c.dir); err != nil {
		return nil, fmt.Errorf("localcluster: work dir: %w", err)
	}

	// The sentinel goes first, so that nothing started later can outlive a
	// crash of this process.
	if c.reaper, err = startReaper(); err != nil {
		return nil, err
	}

	// Build before starting anything: a compile error should cost seconds,
	// not a control plane start.
	if c.binary = opts.ControllerBinary; c.binary == "" && !opts.InProcessOnly {
		if c.binary, err = BuildController(ctx); err != nil {
			return nil, err
		}
	}

	if c.env, err = testenv.New(); err != nil {
		return nil, fmt.Errorf("localcluster: %w", err)
	}
	if opts.NoCRD {
		c.env.CRDDirectoryPaths, c.env.ErrorIfCRDPathMissing = nil, false
	}
	if opts.ServeOn != "" {
		if err := c.serveOn(opts.ServeOn); err != nil {
			return nil, err
		}
	}
	cfg, err := c.env.Start()
	// envtest may leave etcd running when the apiserver fails to start:
	// register whatever it started either way, so the sentinel finds it.
	c.adoptControlPlane()
	c.envUp = true
	if err != nil {
		return nil, fmt.Errorf("localcluster: start etcd and kube-apiserver: %w", err)
	}
	c.restConfig = rest.CopyConfig(cfg)
	// The defaults (5 QPS) would make a 30-node fleet take seconds to create.
	c.restConfig.QPS, c.restConfig.Burst = 200, 400

	if err := c.writeAdminKubeconfig(); err != nil {
		return nil, err
	}
	if c.Client, err = client.New(c.restConfig, client.Options{Scheme: testenv.Scheme()}); err != nil {
		return nil, fmt.Errorf("localcluster: client: %w", err)
	}
	if c.Clientset, err = kubernetes.NewForConfig(c.restConfig); err != nil {
		return nil, fmt.Errorf("localcluster: clientset: %w", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace}}
	if err := c.Client.Create(ctx, ns); err != nil {
		return nil, fmt.Errorf("localcluster: create namespace %s: %w", opts.Namespace, err)
	}

	if opts.NoFleet {
		if len(opts.Nodes) > 0 {
			return nil, errors.New("localcluster: Nodes need the fleet simulator (NoFleet is set)")
		}
		return c, nil
	}
	c.world, err = kwokworld.Start(ctx, kwokworld.Options{
		RESTConfig:        c.restConfig,
		Dir:               filepath.Join(c.dir, "kwok"),
		LogPath:           filepath.Join(c.dir, "kwok.log"),
		HeartbeatInterval: opts.KWOKHeartbeat,

		LogLevel:                 opts.KWOKLogLevel,
		NodePlayStageParallelism: opts.KWOKNodeParallelism,
	})
	if err != nil {
		// kwokworld.Start stops its own process when it fails.
		return nil, fmt.Errorf("localcluster: %w", err)
	}
	c.reaper.adoptChildren("--kubeconfig=" + c.world.KubeconfigPath())

	if err := c.startSimulator(ctx); err != nil {
		return nil, err
	}
	if len(opts.Nodes) > 0 {
		if err := c.CreateNodes(ctx, opts.Nodes); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// serveOn configures the apiserver to serve on ip with certificates of
// its own (see Options.ServeOn).
func (c *Cluster) serveOn(ip string) error {
	certDir := filepath.Join(c.dir, "apiserver")
	caPEM, err := writeServingCerts(certDir, ip)
	if err != nil {
		return fmt.Errorf("localcluster: serving certificates: %w", err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return fmt.Errorf("localcluster: no free port on %s: %w", ip, err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	_ = l.Close()
	api := &envtest.APIServer{CertDir: certDir}
	// SecureServing is embedded in envtest.APIServer: these are its fields.
	api.Address, api.Port, api.CA = ip, port, caPEM
	api.Configure().Disable("disable-admission-plugins")
	c.env.ControlPlane.APIServer = api
	c.caPEM = caPEM
	return nil
}

// CAPEM is the apiserver's serving CA when Options.ServeOn is set, for the
// components the caller runs (kubelet, kube-controller-manager's
// --root-ca-file); nil otherwise.
func (c *Cluster) CAPEM() []byte { return c.caPEM }

// ServiceAccountKeyFile is the private key that signs ServiceAccount
// tokens (kube-controller-manager's --service-account-private-key-file).
func (c *Cluster) ServiceAccountKeyFile() string {
	return filepath.Join(c.env.ControlPlane.APIServer.CertDir, "sa-signer.key")
}

// UserKubeconfig writes a kubeconfig for a user of its own, authenticated
// by a client certificate, and returns its path: what kubelet, kube-proxy,
// the scheduler and the controller manager run with.
func (c *Cluster) UserKubeconfig(name string, groups ...string) (string, error) {
	return c.writeUserKubeconfig(name, filepath.Join(c.dir, "kubeconfig-"+strings.NewReplacer(":", "-", "/", "-").Replace(name)), groups...)
}

// adoptControlPlane hands etcd and kube-apiserver to the sentinel, found by
// the folders envtest made for them.
func (c *Cluster) adoptControlPlane() {
	var markers []string
	if cp := c.env.ControlPlane; cp.Etcd != nil && cp.Etcd.DataDir != "" {
		markers = append(markers, "--data-dir="+cp.Etcd.DataDir)
	}
	if cp := c.env.ControlPlane; cp.APIServer != nil && cp.APIServer.CertDir != "" {
		markers = append(markers, "--cert-dir="+cp.APIServer.CertDir)
	}
	c.reaper.adoptChildren(markers...)
}

func (c *Cluster) writeAdminKubeconfig() error {
	// A user of its own rather than envtest's internal config: this file is
	// what people and kubectl use, and system:masters lets them do anything.
	var err error
	c.kubeconfig, err = c.writeUserKubeconfig("admin", filepath.Join(c.dir, "kubeconfig"), "system:masters")
	return err
}

// writeUserKubeconfig adds a user authenticated by a client certificate
// and writes its kubeconfig to path.
func (c *Cluster) writeUserKubeconfig(name, path string, groups ...string) (string, error) {
	u, err := c.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return "", fmt.Errorf("localcluster: add user %s: %w", name, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("localcluster: kubeconfig of %s: %w", name, err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("localcluster: write kubeconfig of %s: %w", name, err)
	}
	return path, nil
}

func (c *Cluster) startSimulator(ctx context.Context) error {
	sim, err := fleetsim.NewSimulator(c.restConfig, fleetsim.Options{
		UpgradeDuration: c.opts.UpgradeDuration,
		Namespace:       c.opts.Namespace,
		Logger:          c.opts.Logger,
	})
	if err != nil {
		return fmt.Errorf("localcluster: %w", err)
	}
	simCtx, cancel := context.WithCancel(context.Background())
	c.sim, c.simCancel, c.simDone = sim, cancel, make(chan struct{})
	go func() {
		defer close(c.simDone)
		c.simErr = sim.Run(simCtx)
	}()
	select {
	case <-sim.Synced():
		return nil
	case <-c.simDone:
		return fmt.Errorf("localcluster: simulator stopped before it synced: %w", c.simErr)
	case <-ctx.Done():
		return fmt.Errorf("localcluster: waiting for the simulator: %w", ctx.Err())
	}
}

// CreateNodes creates simulated nodes and waits until the online ones are
// Ready (KWOK marks them within a second or two).
func (c *Cluster) CreateNodes(ctx context.Context, specs []fleetsim.NodeSpec) error {
	if err := fleetsim.CreateNodes(ctx, c.Client, specs, 8); err != nil {
		return fmt.Errorf("localcluster: %w", err)
	}
	var online []string
	for _, s := range specs {
		if !s.Offline {
			online = append(online, s.Name)
		}
	}
	return c.WaitNodesReady(ctx, online...)
}

// WaitNodesReady waits until every named node reports Ready=True.
func (c *Cluster) WaitNodesReady(ctx context.Context, names ...string) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.NodeReadyTimeout)
	defer cancel()
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		list := &corev1.NodeList{}
		if err := c.Client.List(ctx, list); err == nil {
			for i := range list.Items {
				if nodeReady(&list.Items[i]) {
					delete(want, list.Items[i].Name)
				}
			}
		}
		if len(want) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			missing := make([]string, 0, len(want))
			for n := range want {
				missing = append(missing, n)
			}
			return fmt.Errorf("localcluster: %d nodes not Ready (e.g. %v): %w", len(missing), missing[:min(len(missing), 5)], ctx.Err())
		case <-tick.C:
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// AdoptProcessGroup hands a process group the caller started to the
// cluster's sentinel, which kills it if this process dies without Stop.
// Stop itself leaves the group alone until its own end, so callers stop
// their processes first.
func (c *Cluster) AdoptProcessGroup(pgid int) { c.reaper.add(pgid) }

// AdoptCgroup hands a cgroup directory (with the cgroups below it) to the
// sentinel, which removes it, after killing the adopted groups, if this
// process dies without Stop. Stop does not remove it: its owner does.
func (c *Cluster) AdoptCgroup(dir string) error { return c.reaper.addCgroup(dir) }

// KubeconfigPath is the admin kubeconfig file, for kubectl and the controller.
func (c *Cluster) KubeconfigPath() string { return c.kubeconfig }

// RESTConfig is an admin rest.Config for the apiserver (a copy).
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Namespace holds the upgrade pods and the leader-election Lease.
func (c *Cluster) Namespace() string { return c.opts.Namespace }

// Dir is the work folder: kubeconfig, kwok.log, controller logs.
func (c *Cluster) Dir() string { return c.dir }

// Simulator is the running fleet simulator, for its Stats.
func (c *Cluster) Simulator() *fleetsim.Simulator { return c.sim }

// ControllerBinary is the nodeupgrade-controller executable in use.
func (c *Cluster) ControllerBinary() string { return c.binary }

// Stop tears the world down in reverse order: controllers, simulator, KWOK,
// apiserver and etcd. It waits for every process and is safe to call twice.
// A folder Start made is removed; a given Options.Dir is kept.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		if err := c.StopController(); err != nil {
			errs = append(errs, err)
		}
		c.mu.Lock()
		inProcess := c.inProcess
		c.mu.Unlock()
		for _, p := range inProcess {
			if err := p.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
		if c.simCancel != nil {
			c.simCancel()
			<-c.simDone
		}
		if c.world != nil {
			if err := c.world.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("localcluster: stop KWOK: %w", err))
			}
		}
		if c.env != nil && c.envUp {
			if err := c.env.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("localcluster: stop etcd and kube-apiserver: %w", err))
			}
		}
		if c.reaper != nil {
			// Everything was stopped in order: anything still in a group we
			// started is a straggler and goes now.
			c.reaper.killAll()
			if err := c.reaper.close(); err != nil {
				errs = append(errs, err)
			}
		}
		if c.ownDir && c.dir != "" {
			if err := os.RemoveAll(c.dir); err != nil {
				errs = append(errs, fmt.Errorf("localcluster: remove %s: %w", c.dir, err))
			}
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}
