package manager

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/controller"
	"github.com/nodeupgrade/nodeupgrade/pkg/registrydigest"
)

// ImageRepository is the project's image, which holds the controller and
// the runner (the Dockerfile; config/manager deploys it).
const ImageRepository = "ghcr.io/nodeupgrade/nodeupgrade"

// VersionVariable is Version's name for the linker: make build, make image
// (test/projectimage) and the Dockerfile set it with
// -ldflags "-X <VersionVariable>=<tag>", the tag config/manager deploys.
const VersionVariable = "github.com/nodeupgrade/nodeupgrade/pkg/manager.Version"

// Version is this build's release tag, set at link time (VersionVariable).
// The runner image defaults to ImageRepository:Version, the controller's
// own image, so upgrade pods run the build that created them. A build
// without it (plain go build, go test) has no default: --runner-image must
// then be given.
var Version string

// DefaultRunnerImage is the controller's own image, ImageRepository:Version;
// "" when this build carries no version.
func DefaultRunnerImage() string {
	if Version == "" {
		return ""
	}
	return ImageRepository + ":" + Version
}

// Config is everything the flags set.
type Config struct {
	Controller       controller.Options
	MetricsAddr      string
	ProbeAddr        string
	LeaderElect      bool
	LeaderElectionID string
	LeaseDuration    time.Duration
	RenewDeadline    time.Duration
	RetryPeriod      time.Duration
	QPS              float64
	Burst            int
	// Clock is the controller's clock; nil is the real one. Not a flag:
	// tests run the controller with a clock that differs from the nodes'.
	Clock     clock.PassiveClock
	pprofAddr string
	// Registry is how the controller reads install images' digests from
	// registries, for jobs with spec.imageDigestGatter.registryAPI.
	Registry registrydigest.Options
}

// Leader election (client-go's LeaseLock) gets, creates and updates its
// Lease; it never lists, watches, patches or deletes one.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=nodeupgrade-system,resources=leases,verbs=get;create;update

// BindFlags registers the controller's flags on fs and returns the config
// they fill. The reconciler's flags start from controller.DefaultOptions.
func BindFlags(fs *flag.FlagSet) *Config {
	c := &Config{Controller: controller.DefaultOptions()}
	o := &c.Controller
	o.RunnerImage = DefaultRunnerImage()
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "Namespace of the upgrade pods and the leader-election Lease.")
	fs.StringVar(&o.EdgeNodeLabel, "edge-node-label", o.EdgeNodeLabel, "Label key that marks edge nodes; only nodes with it are upgraded.")
	fs.StringVar(&o.RunnerImage, "runner-image", o.RunnerImage, "Image holding nodeupgrade-runner, run in every upgrade pod. Defaults to the controller's own image, "+ImageRepository+":<version>; required when the binary was built without a version.")
	fs.Func("allowed-image-repositories", "Comma-separated install-image repositories (or prefixes ending in /) jobs may use, e.g. docker.io/kubeedge/installation-package. Required, unless --allow-any-image-repository is set.", func(v string) error {
		o.AllowedImageRepositories = nil
		for _, repo := range strings.Split(v, ",") {
			if repo = strings.TrimSpace(repo); repo != "" {
				o.AllowedImageRepositories = append(o.AllowedImageRepositories, repo)
			}
		}
		return nil
	})
	fs.BoolVar(&o.RequireImageDigest, "require-image-digest", false, "Refuse jobs that do not pin their install image by digest (spec.imageDigestGatter): every node then pulls the package by digest, whatever its tag points to.")
	fs.BoolVar(&o.HonorHoldUpgrade, "honor-hold-upgrade", false, "Hold a node of a job with spec.requireConfirmation, even once approved, while a pod on it carries KubeEdge's edge.kubeedge.io/hold-upgrade=true. Needs list on pods in all namespaces (config/rbac/hold_upgrade; Helm: holdUpgrade.enabled).")
	fs.BoolVar(&o.AllowAnyImageRepository, "allow-any-image-repository", false, "Let jobs name any install image, instead of --allowed-image-repositories: whoever may create a NodeUpgradeJob then picks the code that runs as root on its nodes.")
	fs.Func("image-pull-secrets", "Comma-separated names of kubernetes.io/dockerconfigjson Secrets in --namespace that the upgrade pods name as imagePullSecrets, for registries that need credentials to pull the runner image or the installation package. The controller does not read them: the nodes' kubelets (edgecore) do.", func(v string) error {
		o.ImagePullSecrets = nil
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
					return fmt.Errorf("secret name %q: %s", name, strings.Join(errs, "; "))
				}
				o.ImagePullSecrets = append(o.ImagePullSecrets, name)
			}
		}
		return nil
	})
	fs.StringVar(&c.Registry.CredentialsFile, "registry-credentials-file", "", "A docker config.json (a kubernetes.io/dockerconfigjson Secret mounted into the controller's pod) with the credentials the controller reads install images' digests with, for jobs with spec.imageDigestGatter.registryAPI; empty reads anonymously. Jobs never carry a token.")
	fs.StringVar(&c.Registry.CAFile, "registry-ca-file", "", "PEM certificates trusted, beside the system's, when reading digests from a registry with a private CA.")
	fs.IntVar(&o.Thresholds.CPU, "check-cpu-threshold", o.Thresholds.CPU, "Usage percent at or above which the cpu check fails.")
	fs.IntVar(&o.Thresholds.Mem, "check-mem-threshold", o.Thresholds.Mem, "Usage percent at or above which the mem check fails.")
	fs.IntVar(&o.Thresholds.Disk, "check-disk-threshold", o.Thresholds.Disk, "Usage percent at or above which the disk check fails.")
	fs.IntVar(&o.NodeJobRecords, "node-job-records", o.NodeJobRecords, "How many jobs' records (about 2 KB each) each node keeps in /var/lib/nodeupgrade/jobs; older ones are removed when a job ends on the node.")
	fs.IntVar(&o.PodWorkers, "pod-workers", o.PodWorkers, "Upgrade pod creates and deletes issued in parallel.")
	fs.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", o.MaxConcurrentReconciles, "Jobs reconciled in parallel.")
	fs.DurationVar(&o.StatusWriteInterval, "status-write-interval", o.StatusWriteInterval, "Least time between two status writes of one job; changes in between are written together. 0 writes at once.")
	fs.DurationVar(&o.OrphanSweepInterval, "orphan-sweep-interval", o.OrphanSweepInterval, "How often the leader releases and deletes tracked upgrade pods whose job no longer exists, after the sweep at start.")
	fs.StringVar(&c.MetricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	fs.StringVar(&c.ProbeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	fs.BoolVar(&c.LeaderElect, "leader-elect", false, "Elect a leader through a Lease, so only one replica acts.")
	fs.StringVar(&c.LeaderElectionID, "leader-election-id", "nodeupgrade-controller", "Name of the leader-election Lease.")
	fs.DurationVar(&c.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a non-leader waits before taking over an unrenewed lease.")
	fs.DurationVar(&c.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew before it gives up leading.")
	fs.DurationVar(&c.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "How often leader-election clients retry.")
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

// New builds the manager and registers the reconciler on it. The options
// are checked first (controller.Options.Validate), so bad flags stop the
// start with every problem named before anything connects. adjust, if
// given, edits the manager's options last: the in-process test harness
// runs several managers in one process, which controller-runtime's
// controller-name check refuses unless told to skip it.
func New(restCfg *rest.Config, c *Config, adjust ...func(*ctrl.Options)) (ctrl.Manager, error) {
	opts, err := c.Controller.Validate()
	if err != nil {
		return nil, fmt.Errorf("invalid flags: %w", err)
	}
	warnPermissive(klog.Background().WithName("setup"), opts)
	restCfg = rest.CopyConfig(restCfg)
	restCfg.QPS, restCfg.Burst = float32(c.QPS), c.Burst
	hasJobLabel, err := labels.NewRequirement(v1alpha1.LabelJob, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	mgrOpts := ctrl.Options{
		Scheme:                  Scheme(),
		Metrics:                 metricsserver.Options{BindAddress: c.MetricsAddr},
		HealthProbeBindAddress:  c.ProbeAddr,
		PprofBindAddress:        c.pprofAddr,
		LeaderElection:          c.LeaderElect,
		LeaderElectionID:        c.LeaderElectionID,
		LeaderElectionNamespace: opts.Namespace,
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
					Namespaces: map[string]cache.Config{opts.Namespace: {}},
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
	}
	for _, f := range adjust {
		f(&mgrOpts)
	}
	mgr, err := ctrl.NewManager(restCfg, mgrOpts)
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	digests, err := registrydigest.New(c.Registry)
	if err != nil {
		return nil, err
	}
	r, err := controller.NewReconciler(controller.Deps{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("nodeupgrade-controller"),
		Clock:     c.Clock,
		Metrics:   controller.NewMetrics(),
		Digests:   digests,
	}, opts)
	if err != nil {
		return nil, err
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the NodeUpgradeJob controller: %w", err)
	}
	return mgr, nil
}

// warnPermissive logs, at start, the settings that weaken what the defaults
// protect: any install image allowed, and a runner image nodes may hold a
// stale copy of (pulled IfNotPresent, so a moving tag is not re-pulled).
func warnPermissive(log logr.Logger, opts controller.Options) {
	if opts.AllowAnyImageRepository {
		log.Info("WARNING: --allow-any-image-repository is set: any NodeUpgradeJob may name any install image, " +
			"so whoever may create one picks the code that runs as root on its nodes; list the repositories in --allowed-image-repositories instead")
	}
	if !pinned(opts.RunnerImage) {
		log.Info("WARNING: --runner-image is not pinned to a version: nodes that pulled it before keep their copy, "+
			"which may not match this controller; name it by its version tag or digest", "runnerImage", opts.RunnerImage)
	}
}

// pinned reports whether image names a digest or a tag other than latest.
func pinned(image string) bool {
	if strings.Contains(image, "@") {
		return true
	}
	slash := strings.LastIndexByte(image, '/')
	colon := strings.LastIndexByte(image, ':')
	return colon > slash && image[colon+1:] != "latest"
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

// trimNode keeps a node's name, labels, readiness (and since when: a
// timed-out node's reason tells it) and reported version.
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
			trimmed.Status.Conditions = []corev1.NodeCondition{{Type: cond.Type, Status: cond.Status, LastTransitionTime: cond.LastTransitionTime}}
		}
	}
	return trimmed, nil
}
