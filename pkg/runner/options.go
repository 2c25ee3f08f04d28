package runner

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nodeupgrade/nodeupgrade/pkg/imageref"
)

// Defaults of the runner's flags. The paths the pod and the runner agree on
// are in contract.go.
const (
	// DefaultEdgecorePath is where keadm installs edgecore on the host.
	DefaultEdgecorePath = "/usr/local/bin/edgecore"
	// DefaultThreshold is the default usage limit of each check item, in percent.
	DefaultThreshold = 80
	// DefaultCPUSampleInterval separates the two reads of /proc/stat.
	DefaultCPUSampleInterval = time.Second
	// RollbackTimeout bounds one keadm rollback. A rollback may run past the
	// job's budget: the budget forbids starting an upgrade, and leaving a
	// node half-upgraded because the clock ran out would be worse. Real
	// keadm rolled back in about 1 s.
	RollbackTimeout = 2 * time.Minute
	// DefaultVersionQueryTimeout bounds `keadm version`.
	DefaultVersionQueryTimeout = 15 * time.Second
	// DefaultEdgecoreSettle is how long the new edgecore must run without
	// a restart before an upgrade counts as done (the commit). systemd
	// restarts a crashing edgecore after RestartSec (10 s in KubeEdge's
	// unit), so the window must be longer than that to see a crash loop,
	// and long enough to see an edgecore that fails once it has started
	// its modules and met the cloud (a few seconds to twenty on the real
	// nodes here).
	DefaultEdgecoreSettle = 30 * time.Second
	// MinUpgradeBudget is the least time the job must have left on the
	// node for its unit to start keadm upgrade: keadm (seconds, the image
	// being pulled already by copy-keadm), the settle check (up to 2 x
	// DefaultEdgecoreSettle) and room to spare. With less, nothing is
	// touched and the node reports why.
	MinUpgradeBudget = time.Minute
	// DefaultKeepJobRecords is how many finished jobs' directories a node
	// keeps (about 2 KB each); older ones are removed when a new job runs.
	DefaultKeepJobRecords = 20
)

// Check items, as in v1alpha1.
const (
	CheckCPU  = "cpu"
	CheckMem  = "mem"
	CheckDisk = "disk"
)

// Options are the runner's flags. Args renders them and ParseArgs reads them
// back, so the pod builder and the runner cannot drift apart.
type Options struct {
	HostRoot string
	// JobUID keys the job's directory on the host (JobDir), where each
	// step's recorded result lives, and names its systemd unit.
	JobUID string
	// JobName is the NodeUpgradeJob's name, for the unit's description
	// and the logs.
	JobName string
	// HandoffDir is a directory the pod's containers share (an emptyDir):
	// the unprivileged check, which cannot write the host, leaves its
	// outcome there for the backup container.
	HandoffDir string
	// After is the step whose recorded success this step waits for: the
	// steps run as containers started together, and hand over through
	// their records on the host ("" = start at once).
	After Step
	// Keadm and Edgecore are host paths; without nsenter they are resolved
	// under HostRoot.
	Keadm       string
	Edgecore    string
	UseNsenter  bool
	Nsenter     string
	ToVersion   string
	FromVersion string
	Image       string
	// ImageDigest pins the install image (spec.imageDigestGatter): the pod
	// pulled <repo>@ImageDigest for copy-keadm, and the unit names that
	// verified image <repo>:<to-version> before keadm runs, so keadm, which
	// asks the container runtime for that tag first, copies edgecore out of
	// it rather than out of whatever the tag points to now.
	ImageDigest string
	// Budget is the job's time on the node, counted on the node's own
	// monotonic clock from the moment its first step started (see
	// budget.go); no step starts after it, and no upgrade starts with less
	// than MinUpgradeBudget of it left. A duration, not an instant: edge
	// nodes' clocks are often wrong.
	Budget time.Duration
	// RequireConfirmation: the job waits on the node for its confirmation
	// (the confirm step) after its check; backup and upgrade start their
	// budget only once it is recorded, so the wait spends none of it.
	RequireConfirmation bool
	// PodInfoDir is where the confirm container sees the pod's annotations
	// (a downwardAPI volume).
	PodInfoDir string
	// IssuedAt is the controller's clock when it made the pod; only logged,
	// beside the node's clock, to show their skew.
	IssuedAt time.Time

	CheckItems        []string
	CPUThreshold      int
	MemThreshold      int
	DiskThreshold     int
	CPUSampleInterval time.Duration

	EdgecoreSettle time.Duration
	// KeepJobRecords is how many job directories the node keeps.
	KeepJobRecords         int
	TerminationMessagePath string
}

// DefaultOptions returns the defaults used in the upgrade pod.
func DefaultOptions() Options {
	return Options{
		HostRoot:               DefaultHostRoot,
		Edgecore:               DefaultEdgecorePath,
		UseNsenter:             true,
		Nsenter:                "nsenter",
		CPUThreshold:           DefaultThreshold,
		MemThreshold:           DefaultThreshold,
		DiskThreshold:          DefaultThreshold,
		CPUSampleInterval:      DefaultCPUSampleInterval,
		EdgecoreSettle:         DefaultEdgecoreSettle,
		KeepJobRecords:         DefaultKeepJobRecords,
		TerminationMessagePath: DefaultTerminationMessagePath,
	}
}

// Args returns the argv (without the program name) that runs step with o.
// Every flag is written as --name=value so no value can be taken for a flag.
func (o Options) Args(step Step) []string {
	args := []string{
		string(step),
		"--host-root=" + o.HostRoot,
		"--job-uid=" + o.JobUID,
		"--job-name=" + o.JobName,
		"--after=" + string(o.After),
		"--handoff-dir=" + o.HandoffDir,
		"--keadm=" + o.Keadm,
		"--edgecore=" + o.Edgecore,
		"--use-nsenter=" + strconv.FormatBool(o.UseNsenter),
		"--nsenter=" + o.Nsenter,
		"--to-version=" + o.ToVersion,
		"--from-version=" + o.FromVersion,
		"--image=" + o.Image,
		"--budget=" + o.Budget.String(),
		"--issued-at=" + o.IssuedAt.UTC().Format(time.RFC3339),
		"--termination-message-path=" + o.TerminationMessagePath,
	}
	if o.RequireConfirmation {
		args = append(args, "--require-confirmation=true")
	}
	if o.ImageDigest != "" {
		args = append(args, "--image-digest="+o.ImageDigest)
	}
	switch step {
	case StepConfirm:
		args = append(args, "--pod-info-dir="+o.PodInfoDir)
	case StepCheck:
		args = append(args,
			"--check-items="+strings.Join(o.CheckItems, ","),
			"--cpu-threshold="+strconv.Itoa(o.CPUThreshold),
			"--mem-threshold="+strconv.Itoa(o.MemThreshold),
			"--disk-threshold="+strconv.Itoa(o.DiskThreshold),
			"--cpu-sample-interval="+o.CPUSampleInterval.String(),
		)
	case StepBackup:
		// The backup container writes the unit's plan: these are the
		// unit's settings.
		args = append(args,
			"--edgecore-settle="+o.EdgecoreSettle.String(),
			"--keep-job-records="+strconv.Itoa(o.KeepJobRecords),
		)
	}
	return args
}

var errMissingSubcommand = errors.New("missing subcommand: check, confirm, backup, upgrade or host")

// safeFromVersion bounds --from-version, which only ends up in reports: node
// versions are not always plain semver (e.g. v1.30.7-kubeedge-v1.21.0).
var safeFromVersion = regexp.MustCompile(`^[A-Za-z0-9_.+-]{0,128}$`)

// jobNameRE bounds --job-name, which goes into the unit's description: a
// Kubernetes object name.
var jobNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)

// ParseArgs parses argv (without the program name) for a step subcommand.
// The returned step is set whenever the subcommand was recognised, even on
// error, so a bad-arguments report can name it.
func ParseArgs(args []string, output io.Writer) (Step, Options, error) {
	o := DefaultOptions()
	if len(args) == 0 {
		return "", o, errMissingSubcommand
	}
	// Flags are parsed even after a bad subcommand, so that the report of
	// the error still goes to the requested termination message path.
	step, flags, stepErr := Step(args[0]), args[1:], error(nil)
	switch {
	case strings.HasPrefix(args[0], "-"):
		step, flags, stepErr = "", args, errMissingSubcommand
	case step != StepCheck && step != StepConfirm && step != StepBackup && step != StepUpgrade && step != StepRollback:
		step, stepErr = "", fmt.Errorf("unknown subcommand %q: want check, confirm, backup, upgrade, rollback or %s", args[0], SubcommandHost)
	}

	fs := flag.NewFlagSet("nodeupgrade-runner "+string(step), flag.ContinueOnError)
	fs.SetOutput(output)
	var issuedAt, checkItems string
	fs.StringVar(&o.HostRoot, "host-root", o.HostRoot, "where the host's / is mounted")
	fs.StringVar(&o.JobUID, "job-uid", "", "UID of the NodeUpgradeJob; keys its directory on the host and names its unit")
	fs.StringVar(&o.JobName, "job-name", "", "name of the NodeUpgradeJob, for the unit's description and logs")
	fs.StringVar((*string)(&o.After), "after", "", "step (check, confirm or backup) whose recorded success this step waits for")
	fs.BoolVar(&o.RequireConfirmation, "require-confirmation", false, "wait for the job's confirmation (the confirm step) before the budget starts")
	fs.StringVar(&o.PodInfoDir, "pod-info-dir", "", "directory holding the pod's annotations (downwardAPI), for the confirm step")
	fs.StringVar(&o.HandoffDir, "handoff-dir", "", "directory shared by the pod's containers, where the check leaves its outcome")
	fs.StringVar(&o.Keadm, "keadm", "", "host path of keadm (default: the job's copy, "+KeadmPath("UID")+")")
	fs.StringVar(&o.Edgecore, "edgecore", o.Edgecore, "host path of edgecore, watched to tell whether keadm touched it")
	fs.BoolVar(&o.UseNsenter, "use-nsenter", o.UseNsenter, "run host commands in the host's namespaces through nsenter")
	fs.StringVar(&o.Nsenter, "nsenter", o.Nsenter, "nsenter binary in the runner image")
	fs.StringVar(&o.ToVersion, "to-version", "", "target edgecore version")
	fs.StringVar(&o.FromVersion, "from-version", "", "version the node reported, for reports")
	fs.StringVar(&o.Image, "image", "", "normalised install image <repo>:<to-version>")
	fs.StringVar(&o.ImageDigest, "image-digest", "", "digest the install image is pinned to (sha256:...), pulled by digest")
	fs.DurationVar(&o.Budget, "budget", 0, "the job's time on the node, counted on the node's monotonic clock from its first step's start")
	fs.StringVar(&issuedAt, "issued-at", "", "RFC 3339 instant the controller made the pod (logged beside the node's clock)")
	fs.StringVar(&checkItems, "check-items", "", "comma-separated check items: cpu, mem, disk")
	fs.IntVar(&o.CPUThreshold, "cpu-threshold", o.CPUThreshold, "cpu usage limit, percent")
	fs.IntVar(&o.MemThreshold, "mem-threshold", o.MemThreshold, "memory usage limit, percent")
	fs.IntVar(&o.DiskThreshold, "disk-threshold", o.DiskThreshold, "disk usage limit of the host's /, percent")
	fs.DurationVar(&o.CPUSampleInterval, "cpu-sample-interval", o.CPUSampleInterval, "interval between the two /proc/stat reads; 0 means the average since boot")
	fs.DurationVar(&o.EdgecoreSettle, "edgecore-settle", o.EdgecoreSettle, "how long the new edgecore must run without restarting; 0 skips the wait")
	fs.IntVar(&o.KeepJobRecords, "keep-job-records", o.KeepJobRecords, "how many job directories the node keeps")
	fs.StringVar(&o.TerminationMessagePath, "termination-message-path", o.TerminationMessagePath, "where the JSON report is written")
	if err := fs.Parse(flags); err != nil {
		return step, o, fmt.Errorf("parse flags: %w", err)
	}
	if stepErr != nil {
		return step, o, stepErr
	}
	if fs.NArg() > 0 {
		return step, o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if checkItems != "" {
		o.CheckItems = strings.Split(checkItems, ",")
	}
	if o.Keadm == "" && jobUIDRE.MatchString(o.JobUID) {
		o.Keadm = KeadmPath(o.JobUID)
	}
	if issuedAt != "" {
		t, err := time.Parse(time.RFC3339, issuedAt)
		if err != nil {
			return step, o, fmt.Errorf("--issued-at: %w", err)
		}
		o.IssuedAt = t
	}
	return step, o, o.validate(step)
}

// maxBudget bounds --budget: the CRD's timeoutSeconds is at most a day.
const maxBudget = 48 * time.Hour

// jobUIDRE bounds --job-uid, which becomes a directory name on the host:
// Kubernetes UIDs are lower-case hex and dashes.
var jobUIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// validateImage checks --image, normalised for --to-version, and
// --image-digest.
func (o Options) validateImage(step Step) error {
	if o.Image != "" || step == StepBackup {
		norm, err := imageref.Normalize(o.Image, o.ToVersion)
		if err != nil {
			return fmt.Errorf("--image: %w", err)
		}
		if norm != o.Image {
			return fmt.Errorf("--image %q is not the normalised image for %s (%q)", o.Image, o.ToVersion, norm)
		}
	}
	if o.ImageDigest != "" {
		if err := imageref.ValidateDigest(o.ImageDigest); err != nil {
			return fmt.Errorf("--image-digest: %w", err)
		}
	}
	return nil
}

// validateOrder checks which step a step waits for (--after), and what the
// confirm step needs.
func (o Options) validateOrder(step Step) error {
	switch {
	case o.After == "":
	case o.After != StepCheck && o.After != StepConfirm && o.After != StepBackup:
		return fmt.Errorf("--after %q: want %s, %s or %s", o.After, StepCheck, StepConfirm, StepBackup)
	case o.After == step || step == StepCheck || (step == StepConfirm && o.After != StepCheck):
		return fmt.Errorf("--after %s: step %s cannot wait for it", o.After, step)
	}
	if step != StepConfirm {
		return nil
	}
	switch {
	case o.JobName == "":
		return errors.New("--job-name is required for the confirm step: a confirmation on the node names the job")
	case o.HandoffDir == "":
		return errors.New("--handoff-dir is required for the confirm step, which cannot write the job's records")
	case !filepath.IsAbs(o.PodInfoDir) || filepath.Clean(o.PodInfoDir) != o.PodInfoDir:
		return fmt.Errorf("--pod-info-dir %q must be a clean absolute path", o.PodInfoDir)
	}
	return nil
}

// validate re-checks everything that reaches a command line, although the
// controller validated it already: the runner is the last line of defence
// before a privileged process on the node.
func (o Options) validate(step Step) error {
	if err := imageref.ValidateVersion(o.ToVersion); err != nil {
		return fmt.Errorf("--to-version: %w", err)
	}
	if !jobUIDRE.MatchString(o.JobUID) {
		return fmt.Errorf("--job-uid %q must be a Kubernetes UID (lower-case letters, digits and dashes)", o.JobUID)
	}
	if o.JobName != "" && !jobNameRE.MatchString(o.JobName) {
		return fmt.Errorf("--job-name %q is not a Kubernetes object name", o.JobName)
	}
	if o.Budget <= 0 || o.Budget > maxBudget {
		return fmt.Errorf("--budget %s must be positive and at most %s", o.Budget, maxBudget)
	}
	if !safeFromVersion.MatchString(o.FromVersion) {
		return fmt.Errorf("--from-version %q has unexpected characters or is too long", o.FromVersion)
	}
	if err := o.validateImage(step); err != nil {
		return err
	}
	for _, f := range []struct{ name, path string }{
		{"--host-root", o.HostRoot}, {"--keadm", o.Keadm}, {"--edgecore", o.Edgecore},
		{"--termination-message-path", o.TerminationMessagePath},
	} {
		if !filepath.IsAbs(f.path) || filepath.Clean(f.path) != f.path {
			return fmt.Errorf("%s %q must be a clean absolute path", f.name, f.path)
		}
	}
	if err := o.validateOrder(step); err != nil {
		return err
	}
	if o.HandoffDir != "" && (!filepath.IsAbs(o.HandoffDir) || filepath.Clean(o.HandoffDir) != o.HandoffDir) {
		return fmt.Errorf("--handoff-dir %q must be a clean absolute path", o.HandoffDir)
	}
	if step == StepCheck && o.HandoffDir == "" {
		return errors.New("--handoff-dir is required for the check, which cannot write the host")
	}
	if o.UseNsenter && o.Nsenter == "" {
		return errors.New("--nsenter must not be empty")
	}
	if step == StepCheck {
		for _, item := range o.CheckItems {
			switch item {
			case CheckCPU, CheckMem, CheckDisk:
			default:
				return fmt.Errorf("unknown check item %q: want %s, %s or %s", item, CheckCPU, CheckMem, CheckDisk)
			}
		}
		for _, f := range []struct {
			name  string
			value int
		}{{"--cpu-threshold", o.CPUThreshold}, {"--mem-threshold", o.MemThreshold}, {"--disk-threshold", o.DiskThreshold}} {
			if f.value < 0 || f.value > 100 {
				return fmt.Errorf("%s %d is not a percentage in [0, 100]", f.name, f.value)
			}
		}
		if o.CPUSampleInterval < 0 || o.CPUSampleInterval > time.Minute {
			return fmt.Errorf("--cpu-sample-interval %s must be in [0, 1m]", o.CPUSampleInterval)
		}
	}
	if o.EdgecoreSettle < 0 || o.EdgecoreSettle > 10*time.Minute {
		return fmt.Errorf("--edgecore-settle %s must be in [0, 10m]", o.EdgecoreSettle)
	}
	if o.KeepJobRecords < 1 || o.KeepJobRecords > 1000 {
		return fmt.Errorf("--keep-job-records %d must be in [1, 1000]", o.KeepJobRecords)
	}
	return nil
}
