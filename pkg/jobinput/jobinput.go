// Package jobinput builds the planner's input for a NodeUpgradeJob: the
// job's parsed spec, the controller's verdict on it (a refusal), its
// selection and what the cluster shows of its nodes. The controller
// (pkg/controller) and `kubectl nodeupgrade plan` both build their input
// here, with the controller's own policy, so a plan shown to a user
// refuses, selects and skips exactly what the controller will.
package jobinput

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/imageref"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// Policy is what the controller's flags say about jobs.
type Policy struct {
	// EdgeNodeLabel is the label key of edge nodes (--edge-node-label).
	EdgeNodeLabel string
	// AllowedImageRepositories lists the install-image repositories, or
	// prefixes ending in "/", a job may name, normalised as
	// imageref.NormalizeAllowList does (--allowed-image-repositories).
	// Empty allows any (--allow-any-image-repository).
	AllowedImageRepositories []string
	// RequireImageDigest refuses jobs that do not pin their install image
	// by digest (--require-image-digest).
	RequireImageDigest bool
}

// CheckItems are the check items the runner runs: KubeEdge's (v1alpha2's
// CheckItemCPU, CheckItemMem, CheckItemDisk). v1alpha1's schema allows only
// these; v1alpha2's, KubeEdge's, allows any string.
var CheckItems = []string{v1alpha1.CheckItemCPU, v1alpha1.CheckItemMem, v1alpha1.CheckItemDisk}

// Build returns the planner's input for job at now, from the cluster's
// nodes, and the install image its pods pull (empty when the job is
// refused). A job the controller will not run gets Config.Refusal, the
// first of Refuse's reasons, else the selection's error. The input has no
// pods: the caller adds what it observes of them.
func Build(job *v1alpha1.NodeUpgradeJob, nodes []corev1.Node, policy Policy, now time.Time) (rollout.Input, string) {
	in := rollout.Input{Generation: job.Generation, Status: job.Status, Now: now}
	cfg, err := rollout.ConfigFromSpec(&job.Spec)
	if err != nil {
		// Only an object stored before validation could get here; refuse it
		// rather than guess.
		cfg, _ = rollout.ConfigFromSpec(&v1alpha1.NodeUpgradeJobSpec{})
		cfg.TargetVersion = job.Spec.Version
	}
	installImage, refusal := Refuse(job, policy)
	cfg.Refusal = refusal
	cfg.EdgeNodeLabel = policy.EdgeNodeLabel
	in.Config = cfg
	if err := rollout.ObserveNodes(&in, job, nodes, policy.EdgeNodeLabel); err != nil && in.Config.Refusal == "" {
		in.Config.Refusal = err.Error()
	}
	in.ObjectBytes = rollout.ObjectBytes(job)
	applyRegistryDigests(&in.Config, job)
	return in, installImage
}

// applyRegistryDigests adds the digests the controller read through
// spec.imageDigestGatter.registryAPI (status.resolvedImageDigests) to the
// config, or holds the job until they are read.
func applyRegistryDigests(cfg *rollout.Config, job *v1alpha1.NodeUpgradeJob) {
	g := job.Spec.ImageDigestGatter
	if cfg.Refusal != "" || g == nil || g.RegistryAPI == nil {
		return
	}
	if r := job.Status.ResolvedImageDigests; r != nil {
		cfg.ApplyResolvedDigests(r)
		return
	}
	cfg.DigestsUnresolved = "waiting for the install image's digests from " + g.RegistryAPI.Host
}

// Refuse says why the controller will not run job's upgrades ("" when it
// will), each reason naming its field, in one order: spec.failureTolerate,
// spec.maintenanceWindows (a zone the API server cannot check),
// spec.version, its support, spec.image and the allow-list,
// spec.imageDigestGatter (and --require-image-digest), spec.checkItems. It returns the
// install image, normalised, when the job passes.
//
// Anyone who may create a NodeUpgradeJob picks code that runs as root on
// every selected node, so a repository outside the list refuses the whole
// job before any pod exists. v1alpha2 jobs skip v1alpha1's schema, so every
// field the controller depends on is checked here again.
func Refuse(job *v1alpha1.NodeUpgradeJob, policy Policy) (installImage, refusal string) {
	if _, err := rollout.ConfigFromSpec(&job.Spec); err != nil {
		return "", err.Error()
	}
	if err := imageref.ValidateVersion(job.Spec.Version); err != nil {
		return "", fmt.Sprintf("spec.version: %v", err)
	}
	if why := TargetRefusal(job.Spec.Version); why != "" {
		return "", why
	}
	image, err := imageref.Normalize(job.Spec.Image, job.Spec.Version)
	if err != nil {
		return "", fmt.Sprintf("spec.image: %v", err)
	}
	repo, err := imageref.Repository(job.Spec.Image)
	if err != nil {
		return "", fmt.Sprintf("spec.image: %v", err)
	}
	if !imageref.RepositoryAllowed(repo, policy.AllowedImageRepositories) {
		return "", fmt.Sprintf("image repository %q is not allowed by this controller (allowed: %v)", repo, policy.AllowedImageRepositories)
	}
	if why := digestRefusal(job, policy); why != "" {
		return "", why
	}
	for i, item := range job.Spec.CheckItems {
		if !slices.Contains(CheckItems, item) {
			return "", fmt.Sprintf("spec.checkItems[%d]: %q is not a check item; want %v", i, item, CheckItems)
		}
	}
	return image, ""
}

// digestRefusal says why a job's spec.imageDigestGatter cannot be honoured
// ("" when it can, or when there is none and none is required). Each digest
// must be sha256 in lower-case hex (v1alpha2's schema checks nothing). A
// registryAPI pins the image too: the controller reads the digests from
// that registry before any node starts (see DigestLookup). Its token is
// refused, whatever else is set: it would sit in the job for every reader
// of jobs to see; the controller's own credentials are used instead.
func digestRefusal(job *v1alpha1.NodeUpgradeJob, policy Policy) string {
	g, required := job.Spec.ImageDigestGatter, policy.RequireImageDigest
	if g != nil && g.RegistryAPI != nil {
		if g.RegistryAPI.Token != "" {
			return "spec.imageDigestGatter.registryAPI.token: a registry token in the job is readable by everyone who may read jobs; " +
				"remove it: the controller reads the registry with its own credentials (--registry-credentials-file)"
		}
		if _, err := DigestLookup(job, policy); err != nil {
			return err.Error()
		}
	}
	pinned := g != nil && g.RegistryAPI != nil
	if g != nil {
		for _, f := range []struct{ field, digest string }{{"value", g.Value}, {"amd64", g.AMD64}, {"arm64", g.ARM64}} {
			field, d := f.field, f.digest
			if d == "" {
				continue
			}
			if err := imageref.ValidateDigest(d); err != nil {
				return fmt.Sprintf("spec.imageDigestGatter.%s: %v", field, err)
			}
			pinned = true
		}
	}
	if required && !pinned {
		return "spec.imageDigestGatter: this controller requires the install image pinned by digest (--require-image-digest): " +
			"set spec.imageDigestGatter.value, amd64 and arm64, or registryAPI"
	}
	return ""
}

// DigestLookup is the reference the controller reads the install image's
// digests from, for a job with spec.imageDigestGatter.registryAPI: the
// install image's path on registryAPI.host, tagged with spec.version, as
// KubeEdge's controller looks it up. The host may be the image's own
// registry or, as the controller only ever speaks to registries it trusts,
// the registry of an entry of --allowed-image-repositories (a mirror of the
// same content); with --allow-any-image-repository, any.
func DigestLookup(job *v1alpha1.NodeUpgradeJob, policy Policy) (string, error) {
	g := job.Spec.ImageDigestGatter
	if g == nil || g.RegistryAPI == nil {
		return "", fmt.Errorf("spec.imageDigestGatter.registryAPI is not set")
	}
	repo, err := imageref.Repository(job.Spec.Image)
	if err != nil {
		return "", fmt.Errorf("spec.image: %w", err)
	}
	imageHost, path, _ := strings.Cut(repo, "/")
	host := strings.TrimSuffix(strings.TrimPrefix(g.RegistryAPI.Host, "https://"), "/")
	lookup, err := imageref.Repository(host + "/" + path)
	parsedAsHost := strings.HasPrefix(lookup, strings.ToLower(host)+"/") ||
		strings.HasPrefix(lookup, imageref.DefaultRegistry+"/") && strings.EqualFold(host, "index.docker.io")
	if err != nil || host == "" || strings.Contains(host, "/") || !parsedAsHost {
		return "", fmt.Errorf("spec.imageDigestGatter.registryAPI.host: %q is not a registry host (HOST or HOST:PORT)", g.RegistryAPI.Host)
	}
	lookupHost, _, _ := strings.Cut(lookup, "/")
	if lookupHost != imageHost && len(policy.AllowedImageRepositories) > 0 && !slices.ContainsFunc(policy.AllowedImageRepositories, func(entry string) bool {
		entryHost, _, _ := strings.Cut(entry, "/")
		return entryHost == lookupHost
	}) {
		return "", fmt.Errorf("spec.imageDigestGatter.registryAPI.host: %q is neither the install image's registry %q nor one of --allowed-image-repositories; "+
			"the controller reads digests only from registries it trusts", g.RegistryAPI.Host, imageHost)
	}
	return lookup + ":" + job.Spec.Version, nil
}
