package controller

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/validate/content"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/imageref"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
)

// DefaultEdgeNodeLabel marks KubeEdge edge nodes.
const DefaultEdgeNodeLabel = "node-role.kubernetes.io/edge"

// Options configure the reconciler; cmd/nodeupgrade-controller sets them
// from flags (pkg/manager), each named below. DefaultOptions is the one
// place their defaults live, and Validate the one place they are checked:
// NewReconciler takes nothing else.
type Options struct {
	// Namespace holds the upgrade pods (--namespace).
	Namespace string
	// EdgeNodeLabel is the label key every edge node carries (--edge-node-label).
	EdgeNodeLabel string
	// RunnerImage is the project image that holds nodeupgrade-runner
	// (--runner-image). No default here: pkg/manager defaults it to the
	// controller's own image.
	RunnerImage string
	// AllowedImageRepositories lists the install-image repositories (or
	// prefixes ending in "/") a job may name (--allowed-image-repositories).
	// Validate normalises them as job images are.
	AllowedImageRepositories []string
	// AllowAnyImageRepository lets jobs name any install image
	// (--allow-any-image-repository). Whoever may create a job then picks
	// the code that runs as root on its nodes, so it must be asked for: an
	// empty allow-list without it is refused.
	AllowAnyImageRepository bool
	// RequireImageDigest refuses jobs that do not pin their install image
	// by digest in spec.imageDigestGatter (--require-image-digest).
	RequireImageDigest bool
	// HonorHoldUpgrade holds an approved node waiting for its confirmation
	// while a pod on it carries KubeEdge's edge.kubeedge.io/hold-upgrade=true
	// (--honor-hold-upgrade). It needs list on pods in every namespace,
	// granted by config/rbac/hold_upgrade, not by the default role.
	HonorHoldUpgrade bool
	// ImagePullSecrets name Secrets in Namespace that every upgrade pod
	// lists as imagePullSecrets (--image-pull-secrets).
	ImagePullSecrets []string
	// Thresholds are the check items' usage limits, in percent
	// (--check-cpu-threshold, --check-mem-threshold, --check-disk-threshold).
	Thresholds upgradepod.Thresholds
	// NodeJobRecords is how many jobs' records each node keeps in
	// /var/lib/nodeupgrade/jobs (about 2 KB each); a job's unit removes
	// older ones when it ends (--node-job-records).
	NodeJobRecords int
	// PodWorkers bounds the pod creates and deletes issued at once (--pod-workers).
	PodWorkers int
	// MaxConcurrentReconciles is how many jobs are reconciled in parallel
	// (--max-concurrent-reconciles).
	MaxConcurrentReconciles int
	// StatusWriteInterval is the least time between two status writes of one
	// job (--status-write-interval); 0 writes at once. At fleet scale every
	// write rewrites an object of a megabyte or more, so changes that arrive
	// closer together are written as one.
	StatusWriteInterval time.Duration
	// OrphanSweepInterval is how often tracked pods of jobs that no longer
	// exist are released, after the sweep at start (--orphan-sweep-interval).
	OrphanSweepInterval time.Duration
}

// DefaultOrphanSweepInterval is how often tracked pods of vanished jobs are
// looked for, after the sweep at start.
const DefaultOrphanSweepInterval = 5 * time.Minute

// DefaultOptions are the options every flag defaults to. RunnerImage and the
// allow-list have no default: the first is the binary's own image (see
// pkg/manager), the second the operator's choice.
func DefaultOptions() Options {
	return Options{
		Namespace:               v1alpha1.DefaultNamespace,
		EdgeNodeLabel:           DefaultEdgeNodeLabel,
		Thresholds:              upgradepod.Thresholds{CPU: runner.DefaultThreshold, Mem: runner.DefaultThreshold, Disk: runner.DefaultThreshold},
		NodeJobRecords:          runner.DefaultKeepJobRecords,
		PodWorkers:              16,
		MaxConcurrentReconciles: 4,
		StatusWriteInterval:     time.Second,
		OrphanSweepInterval:     DefaultOrphanSweepInterval,
	}
}

// Validate returns o with the allow-list normalised, or every problem in
// it, each naming its flag. Nothing is defaulted here: a zero that would
// make the controller hang (PodWorkers 0 blocks the first pod create) or
// fail every check (a 0 % threshold) is an error, not a guess.
func (o Options) Validate() (Options, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if msgs := content.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		bad("--namespace %q: %s", o.Namespace, strings.Join(msgs, "; "))
	}
	if msgs := content.IsLabelKey(o.EdgeNodeLabel); len(msgs) > 0 {
		bad("--edge-node-label %q: %s", o.EdgeNodeLabel, strings.Join(msgs, "; "))
	}
	if o.RunnerImage == "" {
		bad("--runner-image is empty: it names the image holding nodeupgrade-runner")
	} else if _, err := imageref.Repository(o.RunnerImage); err != nil {
		bad("--runner-image: %w", err)
	}
	switch {
	case o.AllowAnyImageRepository && len(o.AllowedImageRepositories) > 0:
		bad("--allowed-image-repositories and --allow-any-image-repository are both set: pass one")
	case !o.AllowAnyImageRepository && len(o.AllowedImageRepositories) == 0:
		bad("--allowed-image-repositories is empty: list the install-image repositories jobs may use " +
			"(e.g. docker.io/kubeedge/installation-package), or pass --allow-any-image-repository to let every job name any image on purpose")
	default:
		// The same normalisation as job images, so "kubeedge/" matches
		// docker.io/kubeedge/...; an entry that does not parse stops the
		// start rather than refusing every job for no visible reason.
		allowed, err := imageref.NormalizeAllowList(o.AllowedImageRepositories)
		if err != nil {
			bad("--allowed-image-repositories: %w", err)
		}
		o.AllowedImageRepositories = allowed
	}
	for _, t := range []struct {
		flag  string
		value int
	}{{"--check-cpu-threshold", o.Thresholds.CPU}, {"--check-mem-threshold", o.Thresholds.Mem}, {"--check-disk-threshold", o.Thresholds.Disk}} {
		if t.value < 1 || t.value > 100 {
			bad("%s must be within 1..100, got %d", t.flag, t.value)
		}
	}
	if o.NodeJobRecords < 1 || o.NodeJobRecords > 1000 {
		bad("--node-job-records must be within 1..1000, got %d", o.NodeJobRecords)
	}
	if o.PodWorkers < 1 {
		bad("--pod-workers must be at least 1, got %d", o.PodWorkers)
	}
	if o.MaxConcurrentReconciles < 1 {
		bad("--max-concurrent-reconciles must be at least 1, got %d", o.MaxConcurrentReconciles)
	}
	if o.StatusWriteInterval < 0 {
		bad("--status-write-interval must not be negative, got %s", o.StatusWriteInterval)
	}
	if o.OrphanSweepInterval <= 0 {
		bad("--orphan-sweep-interval must be positive, got %s", o.OrphanSweepInterval)
	}
	return o, errors.Join(errs...)
}
