package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// This file is the contract between the upgrade pod, which pkg/upgradepod
// builds and reads for the controller, and nodeupgrade-runner, which runs in
// its containers: the container names, the steps, the exit codes, the report
// each container leaves as its termination message, and the records it
// keeps on the host. Both sides import these names; nothing else is shared.

// Container names of the upgrade pod, in the order they run. copy-keadm is
// the one init container; each step has a regular container named after it,
// so a container's status names the step it followed. The step containers
// start together and hand over through the step records on the host
// (--after), as init containers would cost a minute each on real edgecore,
// whose kubelet starts the next init container only at its periodic pod sync.
//
// The check runs in its container. Backup and upgrade, which change the
// node, run on the host in the job's systemd unit (UnitName), not in the
// pod: the pod is run by edgecore, the very thing keadm replaces, and a
// container's death (a kill, an eviction, a force-deleted pod) kills every
// process in its cgroup, keadm included. The backup container launches the
// unit; the backup and upgrade containers follow it and report its records.
const (
	// ContainerCopyKeadm copies keadm from the install image into the job's
	// binaries directory on the host (KeadmPath), where the unit runs it.
	ContainerCopyKeadm = "copy-keadm"
	ContainerCheck     = string(StepCheck)
	// ContainerConfirm waits, after the check and before anything on the
	// node changes, for the job's confirmation (jobs with
	// spec.requireConfirmation only; see confirm.go).
	ContainerConfirm = string(StepConfirm)
	ContainerBackup  = string(StepBackup)
	ContainerUpgrade = string(StepUpgrade)
	// ContainerRollback is the only step of a health gate's rollback pod
	// (see gaterollback.go): it asks the job's unit to roll the committed
	// upgrade back, and follows it.
	ContainerRollback = string(StepRollback)
)

// Step names a runner step. Each of check, backup and upgrade is a
// subcommand and a container of the upgrade pod; rollback is reported by the
// upgrade container when the upgrade failed and a rollback was attempted.
type Step string

// Steps.
const (
	StepCheck Step = "check"
	// StepConfirm waits for a confirmation given from the cloud or on the
	// node; it changes nothing on the node.
	StepConfirm  Step = "confirm"
	StepBackup   Step = "backup"
	StepUpgrade  Step = "upgrade"
	StepRollback Step = "rollback"
)

// SubcommandHost is the runner's subcommand that the job's systemd unit
// runs on the host: backup, upgrade, settle check, then commit or rollback,
// resumed from the records whenever the unit starts again (after a crash or
// a reboot).
const SubcommandHost = "host"

// SubcommandStage is the stage pod's runner container (spec.preStage): it
// only proves the runner image is on the node, and exits 0.
const SubcommandStage = "stage"

// Result is the outcome of a step.
type Result string

// Results. A step reported as Step=rollback always has Result=failed, since
// the node did not reach the target version; RolledBack and NeedsAttention
// say whether the rollback itself worked. A step that did not run is
// failed too, with the reason and exit code (ExitNotRun, ExitDeadline) that
// say so: "skipped" is a node's state in the job (the planner's), never a
// step's result.
const (
	ResultSucceeded Result = "succeeded"
	ResultFailed    Result = "failed"
)

// Report is the JSON a runner container writes as its termination message.
type Report struct {
	Step        Step   `json:"step"`
	Result      Result `json:"result"`
	Reason      string `json:"reason,omitempty"`
	FromVersion string `json:"fromVersion,omitempty"`
	ToVersion   string `json:"toVersion,omitempty"`
	// RolledBack: the upgrade failed and the rollback succeeded.
	RolledBack bool `json:"rolledBack,omitempty"`
	// NeedsAttention: the upgrade failed and so did the rollback, or the
	// job's unit on the node could not be followed to an outcome.
	NeedsAttention bool `json:"needsAttention,omitempty"`
	// Detached: the container stopped following the job's unit before it
	// recorded the step (ExitDetached); the report says nothing of how the
	// step ends.
	Detached bool `json:"detached,omitempty"`
	// BackupVersion names keadm's backup the backup step made (the
	// directory under /etc/kubeedge/backup), which a rollback restores.
	BackupVersion string `json:"backupVersion,omitempty"`
}

// Exit codes of nodeupgrade-runner. Each failing Report is written with the
// matching code, so the controller can rely on either.
const (
	ExitOK             = 0 // step succeeded
	ExitCheckFailed    = 1 // a check item was over its threshold, or could not be read
	ExitBackupFailed   = 2 // keadm backup edge failed
	ExitRolledBack     = 3 // upgrade failed, rollback succeeded
	ExitNeedsAttention = 4 // upgrade failed, rollback failed too
	ExitDeadline       = 5 // the step's time budget had run out before it started; nothing ran
	ExitBadArgs        = 6 // invalid flags or subcommand; nothing ran
	// ExitUnsupported: the node (no systemd as PID 1) or the install
	// image's keadm (older than v1.21) is not supported; nothing was done.
	ExitUnsupported = 7
	// ExitUpgradeFailedUntouched: keadm upgrade failed before it touched
	// edgecore (e.g. the image could not be pulled), so nothing was rolled
	// back: the node runs its old edgecore as before.
	ExitUpgradeFailedUntouched = 8
	// ExitNotRun: the step this one waits for (--after) failed, so this
	// one did nothing; the earlier step's report says why.
	ExitNotRun = 9
	// ExitDetached: the container stopped following the job's unit on the
	// host (it was asked to stop, or followed for as long as it may) before
	// the unit recorded the step's outcome. The unit goes on by itself and
	// the node ends on one version; its records say which.
	ExitDetached = 10
	// ExitStoppedWaiting: the container was stopped while the job waited
	// for its confirmation on this node. Nothing on the node changed and
	// nothing is recorded: the job's next pod on the node waits again.
	ExitStoppedWaiting = 11
)

// ExitMeaning says in words what a runner exit code means, for a failed
// container that left no readable Report ("" for a code the runner does not
// use).
func ExitMeaning(code int) string {
	switch code {
	case ExitCheckFailed:
		return "check failed"
	case ExitBackupFailed:
		return "backup failed"
	case ExitRolledBack:
		return "upgrade failed, rolled back"
	case ExitNeedsAttention:
		return "upgrade and rollback failed, the node needs attention"
	case ExitDeadline:
		return "the time budget ran out before the step started, nothing was run"
	case ExitBadArgs:
		return "bad arguments"
	case ExitUnsupported:
		return "the node or its keadm is not supported, nothing was done"
	case ExitUpgradeFailedUntouched:
		return "upgrade failed before edgecore was touched, nothing to roll back"
	case ExitNotRun:
		return "not run: the step before it failed"
	case ExitDetached:
		return "stopped following the upgrade on the node before it ended; it goes on there"
	case ExitStoppedWaiting:
		return "stopped while waiting for the job's confirmation, nothing on the node changed"
	}
	return ""
}

// MaxTerminationMessageBytes is the kubelet's limit on one container's
// termination message; anything longer is cut by the kubelet, which would
// break the JSON.
const MaxTerminationMessageBytes = 4096

// ParseReport parses a termination message written by the runner.
func ParseReport(msg string) (Report, error) {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return Report{}, errors.New("empty termination message")
	}
	var r Report
	if err := json.Unmarshal([]byte(msg), &r); err != nil {
		return Report{}, fmt.Errorf("termination message is not a runner report: %w", err)
	}
	switch r.Step {
	case StepCheck, StepConfirm, StepBackup, StepUpgrade, StepRollback:
	default:
		return Report{}, fmt.Errorf("runner report has unknown step %q", r.Step)
	}
	switch r.Result {
	case ResultSucceeded, ResultFailed:
	default:
		return Report{}, fmt.Errorf("runner report has unknown result %q", r.Result)
	}
	return r, nil
}

// DefaultTerminationMessagePath is where each runner container writes its
// Report: the kubelet's default, read back into the container's status.
const DefaultTerminationMessagePath = "/dev/termination-log"

// Host paths. The upgrade pod mounts the host's / at DefaultHostRoot. keadm
// is copied by copy-keadm from the install image, and the runner copies
// itself, into the job's binaries directory on the host, which this project
// owns, so that the job's unit runs them in the host's namespaces next to
// the edgecore they replace.
const (
	DefaultHostRoot = "/host"
	// HostDir is the project's directory on the host.
	HostDir = "/var/lib/nodeupgrade"
	// JobsDir holds every job's directory and the node lock.
	JobsDir = HostDir + "/jobs"
	// ApprovalsDir holds confirmations given on the node itself: a file
	// named after a job (touch /var/lib/nodeupgrade/approved/JOB) confirms
	// that job on this node, without the cloud (see confirm.go).
	ApprovalsDir = HostDir + "/approved"
	// SystemdUnitDir is where the job's unit file lives while it runs: a
	// unit enabled there starts again at boot, which is how an upgrade
	// interrupted by a power cut is finished or rolled back with no pod
	// and no link to the cloud.
	SystemdUnitDir = "/etc/systemd/system"
)

// ApprovedAnnotation is the upgrade pod's annotation by which the
// controller confirms a waiting node (value "true"): the confirm container
// reads the pod's annotations through a downwardAPI volume, which the
// node's kubelet rewrites when the pod changes (measured on real edgecore:
// within 3 s). api/v1alpha1.AnnotationApproved is the same name.
const ApprovedAnnotation = "operations.kubeedge.io/approved"

// PodInfoAnnotationsFile is the downwardAPI file, in the confirm
// container's PodInfoDir, holding the pod's annotations.
const PodInfoAnnotationsFile = "annotations"

// JobDir is the host directory of one job's upgrade on a node: each step's
// record, the plan the unit runs, the budget and the step lock. It is keyed
// by the job's UID, so two jobs never share records and a job re-created
// under the same name starts afresh.
func JobDir(jobUID string) string {
	return filepath.Join(JobsDir, jobUID)
}

// JobBinDir holds the job's copies of keadm and of the runner while the
// job runs on the node; it is removed when the job's work there ends. Kept
// apart from the records, so copy-keadm (which runs the install image's
// code) can write only here.
func JobBinDir(jobUID string) string {
	return filepath.Join(JobDir(jobUID), "bin")
}

// KeadmPath is where the upgrade pod puts keadm for a job, as a host path.
func KeadmPath(jobUID string) string {
	return filepath.Join(JobBinDir(jobUID), "keadm")
}

// HostRunnerPath is where the backup container puts a copy of the runner
// for the job's unit, as a host path.
func HostRunnerPath(jobUID string) string {
	return filepath.Join(JobBinDir(jobUID), "nodeupgrade-runner")
}

// UnitName is the systemd unit that runs a job's backup and upgrade on the
// host: one per job and node, so a container started again, a second pod
// or a reboot finds it and never starts a second keadm.
func UnitName(jobUID string) string {
	return "nodeupgrade-" + jobUID + ".service"
}

// UnitPath is the host path of a job's unit file.
func UnitPath(jobUID string) string {
	return filepath.Join(SystemdUnitDir, UnitName(jobUID))
}

// The records a job's runner keeps on the host, in its JobDir. They are why
// a step runs at most once per job and node: real edgecore removes a pod's
// finished containers when keadm restarts it, and its kubelet then runs a
// container again (seen on a real node: the upgrade container ran a second
// time with Attempt 1, in a restartPolicy Never pod). They are also how
// each step waits for the one before it (--after), how the unit knows what
// to do, and how it resumes after a crash or a power cut.
const (
	// JobLockFile is held (flock) by whichever runner of the job changes
	// its records or launches its unit.
	JobLockFile = "lock"
	// NodeLockFile, in JobsDir, is held by whichever job's unit (or check)
	// runs on the node: a deleted job's unit may still roll back after its
	// pod left the API, and the next job's unit waits for it.
	NodeLockFile = "node.lock"
	// PlanFile holds what the unit runs: the validated options of the
	// backup and upgrade, written by the backup container before it starts
	// the unit.
	PlanFile = "plan.json"
	// BudgetFile holds when the job's time on the node began, on the node's
	// own monotonic clock (see budget.go).
	BudgetFile = "budget.json"
	// CancelFile asks the unit not to start anything new: the pod was
	// stopped (deleted, timed out) before the upgrade began.
	CancelFile = "cancel"
)

// StepRecordFile holds step's outcome, its exit code and Report: a repeated
// step reports it instead of redoing the work.
func StepRecordFile(step Step) string { return string(step) + ".json" }

// StepStartedFile marks that step began changing the node: for the upgrade,
// the guard that makes whoever starts the unit next (a follower, or the
// boot) finish it or roll it back.
func StepStartedFile(step Step) string { return string(step) + ".started" }
