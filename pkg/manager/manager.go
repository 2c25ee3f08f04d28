package manager

import (
	"flag"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/controller"
	"github.com/nodeupgrade/nodeupgrade/pkg/imageref"
)

// Config is everything the flags set.
type Config struct {
	Controller              controller.Options
	MetricsAddr             string
	ProbeAddr               string
	LeaderElect             bool
	LeaderElectionID        string
	LeaseDuration           time.Duration
	RenewDeadline           time.Duration
	RetryPeriod             time.Duration
	MaxConcurrentReconciles int
	QPS                     float64
	Burst                   int
	pprofAddr               string
}

// Leader election (client-go's LeaseLock) gets, creates and updates its
// Lease; it never lists, watches, patches or deletes one.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=nodeupgrade-system,resources=leases,verbs=get;create;update

// BindFlags registers the controller's flags on fs and returns the config
// they fill.
func BindFlags(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.StringVar(&c.Controller.Namespace, "namespace", v1alpha1.DefaultNamespace, "Namespace of the upgrade pods and the leader-election Lease.")
	fs.StringVar(&c.Controller.EdgeNodeLabel, "edge-node-label", controller.DefaultEdgeNodeLabel, "Label key that marks edge nodes; only nodes with it are upgraded.")
	fs.StringVar(&c.Controller.RunnerImage, "runner-image", "ghcr.io/nodeupgrade/nodeupgrade:latest", "Image holding nodeupgrade-runner, run in every upgrade pod.")
	fs.Func("allowed-image-repositories", "Comma-separated install-image repositories (or prefixes ending in /) jobs may use, e.g. docker.io/kubeedge/installation-package. Empty allows any: see the README's security notes.", func(v string) error {
		c.Controller.AllowedImageRepositories = nil
		for _, repo := range strings.Split(v, ",") {
			if repo = strings.TrimSpace(repo); repo != "" {
				c.Controller.AllowedImageRepositories = append(c.Controller.AllowedImageRepositories, repo)
			}
		}
		return nil
	})
	fs.Func("image-pull-secrets", "Comma-separated names of kubernetes.io/dockerconfigjson Secrets in --namespace that the upgrade pods name as imagePullSecrets, for registries that need credentials to pull the runner image or the installation package. The controller does not read them: the nodes' kubelets (edgecore) do.", func(v string) error {
		c.Controller.ImagePullSecrets = nil
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
					return fmt.Errorf("secret name %q: %s", name, strings.Join(errs, "; "))
				}
				c.Controller.ImagePullSecrets = append(c.Controller.ImagePullSecrets, name)
			}
		}
		return nil
	})
	fs.IntVar(&c.Controller.Thresholds.CPU, "check-cpu-threshold", 80, "Usage percent at or above which the cpu check fails.")
	fs.IntVar(&c.Controller.Thresholds.Mem, "check-mem-threshold", 80, "Usage percent at or above which the mem check fails.")
	fs.IntVar(&c.Controller.Thresholds.Disk, "check-disk-threshold", 80, "Usage percent at or above which the disk check fails.")
	fs.IntVar(&c.Controller.PodWorkers, "pod-workers", 16, "Upgrade pod creates and deletes issued in parallel.")
	fs.DurationVar(&c.Controller.StatusWriteInterval, "status-write-interval", time.Second, "Least time between two status writes of one job; changes in between are written together. 0 writes at once.")
	fs.DurationVar(&c.Controller.OrphanSweepInterval, "orphan-sweep-interval", controller.DefaultOrphanSweepInterval, "How often the leader releases and deletes tracked upgrade pods whose job no longer exists, after the sweep at start.")
	fs.StringVar(&c.MetricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	fs.StringVar(&c.ProbeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	fs.BoolVar(&c.LeaderElect, "leader-elect", false, "Elect a leader through a Lease, so only one replica acts.")
	fs.StringVar(&c.LeaderElectionID, "leader-election-id", "nodeupgrade-controller", "Name of the leader-election Lease.")
	fs.DurationVar(&c.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a non-leader waits before taking over an unrenewed lease.")
	fs.DurationVar(&c.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew before it gives up leading.")
	fs.DurationVar(&c.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "How often leader-election clients retry.")
	fs.IntVar(&c.MaxConcurrentReconciles, "max-concurrent-reconciles", 4, "Jobs reconciled in parallel.")
	// Each upgraded node costs the controller three requests (create, release,
	// delete); 200/s lets a 500-wide window turn over without client-side
	// throttling, and API Priority and Fairness still protects the server.
	fs.Float64Var(&c.QPS, "kube-api-qps", 200, "Client-side rate limit towards the API server, requests per second.")
	fs.IntVar(&c.Burst, "kube-api-burst", 400, "Client-side burst towards the API server.")
	fs.StringVar(&c.pprofAddr, "pprof-bind-address", "", "Address of the pprof endpoint; empty disables it.")
	return c
}

// Scheme knows the core types and NodeUpgradeJob.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntimeMust(clientgoscheme.AddToScheme(s))
	utilruntimeMust(v1alpha1.AddToScheme(s))
	return s
}

func utilruntimeMust(err error) {
	if err != nil {
		panic(err)
	}
}

// New builds the manager and registers the reconciler on it.
func New(restCfg *rest.Config, c *Config) (ctrl.Manager, error) {
	restCfg = rest.CopyConfig(restCfg)
	restCfg.QPS, restCfg.Burst = float32(c.QPS), c.Burst
	if c.Controller.Namespace == "" {
		return nil, fmt.Errorf("--namespace must not be empty")
	}
	// The same normalisation as job images, so "kubeedge/" matches
	// docker.io/kubeedge/...; an entry that does not parse stops the start
	// rather than refusing every job for no visible reason.
	allowed, err := imageref.NormalizeAllowList(c.Controller.AllowedImageRepositories)
	if err != nil {
		return nil, fmt.Errorf("--allowed-image-repositories: %w", err)
	}
	c.Controller.AllowedImageRepositories = allowed
	for _, t := range []int{c.Controller.Thresholds.CPU, c.Controller.Thresholds.Mem, c.Controller.Thresholds.Disk} {
		if t < 1 || t > 100 {
			return nil, fmt.Errorf("check thresholds must be within 1..100, got %d", t)
		}
	}
	hasJobLabel, err := labels.NewRequirement(v1alpha1.LabelJob, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                  Scheme(),
		Metrics:                 metricsserver.Options{BindAddress: c.MetricsAddr},
		HealthProbeBindAddress:  c.ProbeAddr,
		PprofBindAddress:        c.pprofAddr,
		LeaderElection:          c.LeaderElect,
		LeaderElectionID:        c.LeaderElectionID,
		LeaderElectionNamespace: c.Controller.Namespace,
		LeaseDuration:           &c.LeaseDuration,
		RenewDeadline:           &c.RenewDeadline,
		RetryPeriod:             &c.RetryPeriod,
		// Stepping down must end the process: a replica that lost the lease
		// while acting could otherwise act on a stale view next to the new leader.
		LeaderElectionReleaseOnCancel: true,
		Cache: cache.Options{
			ByObject: map[client.Object]cache.ByObject{
				// Only this controller's pods, only in its namespace.
				&corev1.Pod{}: {
					Namespaces: map[string]cache.Config{c.Controller.Namespace: {}},
					Label:      labels.NewSelector().Add(*hasJobLabel),
				},
				// Nodes are most of the cache at fleet scale: keep what the
				// planner reads and drop the rest.
				&corev1.Node{}: {Transform: trimNode},
				// Who writes a job (managedFields' manager, version and
				// subresource) tells KubeEdge's controllers apart; the field
				// sets themselves are dropped.
				&v1alpha1.NodeUpgradeJob{}: {Transform: trimJobManagedFields},
			},
			DefaultTransform: cache.TransformStripManagedFields(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	r := &controller.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("nodeupgrade-controller"),
		Clock:     clock.RealClock{},
		Options:   c.Controller,
		Metrics:   controller.NewMetrics(),
	}
	if err := r.SetupWithManager(mgr, c.MaxConcurrentReconciles); err != nil {
		return nil, fmt.Errorf("setting up the NodeUpgradeJob controller: %w", err)
	}
	return mgr, nil
}

// trimJobManagedFields keeps each managedFields entry of a job but its field set.
func trimJobManagedFields(obj any) (any, error) {
	if job, ok := obj.(*v1alpha1.NodeUpgradeJob); ok {
		for i := range job.ManagedFields {
			job.ManagedFields[i].FieldsV1 = nil
		}
	}
	return obj, nil
}

// trimNode keeps a node's name, labels, readiness and reported version.
func trimNode(obj any) (any, error) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	trimmed := &corev1.Node{}
	trimmed.ObjectMeta = node.ObjectMeta
	trimmed.ManagedFields = nil
	trimmed.Annotations = nil
	trimmed.Status.NodeInfo.KubeletVersion = node.Status.NodeInfo.KubeletVersion
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			trimmed.Status.Conditions = []corev1.NodeCondition{{Type: cond.Type, Status: cond.Status}}
		}
	}
	return trimmed, nil
}
