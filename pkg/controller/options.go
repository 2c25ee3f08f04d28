package controller

import (
	"time"

	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
)

// DefaultEdgeNodeLabel marks KubeEdge edge nodes.
const DefaultEdgeNodeLabel = "node-role.kubernetes.io/edge"

// Options configure the reconciler; cmd/nodeupgrade-controller sets them from flags.
type Options struct {
	// Namespace holds the upgrade pods.
	Namespace string
	// EdgeNodeLabel is the label key every edge node carries.
	EdgeNodeLabel string
	// RunnerImage is the project image that holds nodeupgrade-runner.
	RunnerImage string
	// AllowedImageRepositories lists the install-image repositories (or
	// prefixes ending in "/") a job may name; empty allows any.
	AllowedImageRepositories []string
	// ImagePullSecrets name Secrets in Namespace that every upgrade pod
	// lists as imagePullSecrets (--image-pull-secrets).
	ImagePullSecrets []string
	// Thresholds are the check items' usage limits, in percent.
	Thresholds upgradepod.Thresholds
	// PodWorkers bounds the pod creates and deletes issued at once.
	PodWorkers int
	// StatusWriteInterval is the least time between two status writes of one
	// job. At fleet scale every write rewrites an object of a megabyte or
	// more, so changes that arrive closer together are written as one.
	StatusWriteInterval time.Duration
	// OrphanSweepInterval is how often tracked pods of jobs that no longer
	// exist are released, after the sweep at start.
	OrphanSweepInterval time.Duration
}

func (o *Options) applyDefaults() {
	if o.EdgeNodeLabel == "" {
		o.EdgeNodeLabel = DefaultEdgeNodeLabel
	}
	if o.PodWorkers <= 0 {
		o.PodWorkers = 16
	}
	if o.OrphanSweepInterval <= 0 {
		o.OrphanSweepInterval = DefaultOrphanSweepInterval
	}
}
