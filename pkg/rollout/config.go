package rollout

import (
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"time"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// Config is a job's spec with every default applied and every value parsed.
type Config struct {
	TargetVersion string
	Concurrency   int
	Timeout       time.Duration
	// Tolerance is failureTolerate as an exact rational, so 1 of 10 at "0.1"
	// is within tolerance and no float rounding moves the boundary.
	Tolerance *big.Rat
	// Refusal, when set, fails the job before any node is touched (for example
	// an image repository the controller does not allow).
	Refusal string
	// EdgeNodeLabel is the label key of edge nodes, named in the reason of
	// a node skipped for lacking it.
	EdgeNodeLabel string
	// Suspended is spec.suspend: start no node, let the ones in flight finish.
	Suspended bool
	// RequireConfirmation (spec.requireConfirmation): each node waits after
	// its checks for its confirmation, holding no slot and with no clock.
	RequireConfirmation bool
	// ImageDigests pins the install image (spec.imageDigestGatter): the
	// digest by node architecture (amd64, arm64), and under "" the one for
	// any architecture (v1alpha1's value). Nil: not pinned. A node whose
	// architecture has no digest fails before its pod is made.
	ImageDigests map[string]string
	// Approved is spec.approvedNodes: the nodes confirmed from the cloud,
	// v1alpha1.ApproveAll for all.
	Approved []string
	// Windows is spec.maintenanceWindows: pending nodes start only inside
	// them (windows.go). Empty: always.
	Windows Schedule
	// Canary is spec.canary; nil without one (canary.go).
	Canary *CanaryConfig
	// Gate is spec.healthGate; nil when the job has none.
	Gate *GateConfig
	// PreStage is spec.preStage; nil when the job does not stage.
	PreStage *StageConfig
	// DigestMismatch says, by architecture ("" for every architecture the
	// spec does not pin on its own), why the spec's digest cannot be run:
	// the registry serves another (see ApplyResolvedDigests).
	DigestMismatch map[string]string
	// DigestsUnresolved, when set, holds every pending node, as a
	// suspension does: the job reads its digests from a registry
	// (spec.imageDigestGatter.registryAPI) and has not read them yet. It
	// says so, with the registry's last error.
	DigestsUnresolved string
}

// DigestFor is the digest a node of architecture arch pulls the install
// image by: its architecture's, else the one for any. ok is false when the
// job pins digests but none fits the node.
func (c Config) DigestFor(arch string) (digest string, ok bool) {
	if c.ImageDigests == nil {
		return "", true
	}
	if d := c.ImageDigests[arch]; d != "" {
		return d, true
	}
	d := c.ImageDigests[""]
	return d, d != ""
}

// IsApproved reports whether spec.approvedNodes confirms node.
func (c Config) IsApproved(node string) bool {
	return slices.Contains(c.Approved, node) || slices.Contains(c.Approved, v1alpha1.ApproveAll)
}

// ConfigFromSpec applies the seed's defaults (0 or unset means the default) and
// parses failureTolerate. The CRD validates all of it; the checks here keep
// the planner safe against objects stored before a validation rule existed.
func ConfigFromSpec(spec *v1alpha1.NodeUpgradeJobSpec) (Config, error) {
	// Clamped before the multiplication: from 9,223,372,037 seconds up the
	// duration would overflow into a negative timeout, and from 2^31 the
	// pod's activeDeadlineSeconds would not fit its int32. The CRD refuses
	// such values; an object stored before that rule is clamped here.
	seconds := min(spec.TimeoutSeconds, v1alpha1.MaxTimeoutSeconds)
	if seconds <= 0 {
		seconds = v1alpha1.DefaultTimeoutSeconds
	}
	cfg := Config{
		TargetVersion: spec.Version,
		Concurrency:   int(spec.Concurrency),
		Timeout:       time.Duration(seconds) * time.Second,
		Suspended:     spec.Suspend,

		RequireConfirmation: spec.RequireConfirmation,
		Approved:            spec.ApprovedNodes,
		ImageDigests:        imageDigests(spec.ImageDigestGatter),
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = int(v1alpha1.DefaultConcurrency)
	}
	tolerate := spec.FailureTolerate
	if tolerate == "" {
		tolerate = v1alpha1.DefaultFailureTolerate
	}
	r, err := ParseFailureTolerate(tolerate)
	if err != nil {
		return Config{}, fmt.Errorf("spec.failureTolerate %q is not a decimal ratio in [0, 1]", spec.FailureTolerate)
	}
	cfg.Tolerance = r
	if cfg.Windows, err = ParseWindows(spec.MaintenanceWindows); err != nil {
		return Config{}, err
	}
	cfg.Canary = canaryConfig(spec.Canary)
	cfg.PreStage = stageConfig(spec.PreStage)
	if cfg.Gate, err = gateConfig(spec.HealthGate); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

const (
	// FailureToleratePattern is the grammar of spec.failureTolerate, the
	// CRD's Pattern marker on it: a decimal in [0, 1]. big.Rat alone would
	// also take "1/2", "1e-1" or ".5", which the CRD refuses; api/v1alpha1's
	// grammar test checks the CRD holds this pattern and that both accept
	// the same inputs.
	FailureToleratePattern = `^(0(\.[0-9]+)?|1(\.0+)?)$`
	// MaxFailureTolerateLength is the CRD's MaxLength on spec.failureTolerate.
	MaxFailureTolerateLength = 20
)

var failureTolerateRE = regexp.MustCompile(FailureToleratePattern)

// ParseFailureTolerate reads a failureTolerate value under the CRD's
// grammar, as an exact rational.
func ParseFailureTolerate(s string) (*big.Rat, error) {
	if len(s) <= MaxFailureTolerateLength && failureTolerateRE.MatchString(s) {
		// Every string of the pattern is a decimal big.Rat reads.
		if r, ok := new(big.Rat).SetString(s); ok {
			return r, nil
		}
	}
	return nil, fmt.Errorf("failureTolerate %q is not a decimal in [0, 1] of at most %d characters", s, MaxFailureTolerateLength)
}

// ToleranceExceeded reports whether failed/selected > tolerance, exactly.
func (c Config) ToleranceExceeded(failed, selected int) bool {
	if selected == 0 || failed == 0 {
		return false
	}
	return big.NewRat(int64(failed), int64(selected)).Cmp(c.Tolerance) > 0
}

// imageDigests reads spec.imageDigestGatter's digests (see
// Config.ImageDigests); nil when it gives none. Their grammar is checked by
// jobinput.Refuse.
func imageDigests(g *v1alpha1.ImageDigestGatter) map[string]string {
	if g == nil || g.Value == "" && g.AMD64 == "" && g.ARM64 == "" {
		return nil
	}
	digests := map[string]string{}
	for arch, d := range map[string]string{"": g.Value, "amd64": g.AMD64, "arm64": g.ARM64} {
		if d != "" {
			digests[arch] = d
		}
	}
	return digests
}
