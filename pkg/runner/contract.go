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
// the one init container; each step runs in a regular container named after
// it, so a container's status names the step it ran. The steps start
// together and hand over through the step records on the host (--after), as
// init containers would cost a minute each on real edgecore, whose kubelet
// starts the next init container only at its periodic pod sync.
const (
	// ContainerCopyKeadm copies keadm from the install image into the job's
	// directory on the host (KeadmPath), where the steps run it.
	ContainerCopyKeadm = "copy-keadm"
	ContainerCheck     = string(StepCheck)
	ContainerBackup    = string(StepBackup)
	ContainerUpgrade   = string(StepUpgrade)
)

// Step names a runner step. Each of check, backup and upgrade is a
// subcommand and a container of the upgrade pod; rollback is reported by the
// upgrade container when the upgrade failed and a rollback was attempted.
type Step string

// Steps.
const (
	StepCheck    Step = "check"
	StepBackup   Step = "backup"
	StepUpgrade  Step = "upgrade"
	StepRollback Step = "rollback"
)

// Result is the outcome of a step.
type Result string

// Results. A step reported as Step=rollback always has Result=failed, since
// the node did not reach the target version; RolledBack and NeedsAttention
// say whether the rollback itself worked.
const (
	ResultSucceeded Result = "succeeded"
	ResultFailed    Result = "failed"
	// ResultSkipped means the node already ran the target version, so the
	// step did nothing; it counts as a success.
	ResultSkipped Result = "skipped"
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
	// NeedsAttention: the upgrade failed and so did the rollback.
	NeedsAttention bool `json:"needsAttention,omitempty"`
}

// Exit codes of nodeupgrade-runner. Each failing Report is written with the
// matching code, so the controller can rely on either.
const (
	ExitOK             = 0 // step succeeded or was skipped
	ExitCheckFailed    = 1 // a check item was over its threshold, or could not be read
	ExitBackupFailed   = 2 // keadm backup edge failed
	ExitRolledBack     = 3 // upgrade failed, rollback succeeded
	ExitNeedsAttention = 4 // upgrade failed, rollback failed too
	ExitDeadline       = 5 // the deadline had passed before the step started; nothing ran
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
		return "the deadline passed before the step started"
	case ExitBadArgs:
		return "bad arguments"
	case ExitUnsupported:
		return "the node or its keadm is not supported, nothing was done"
	case ExitUpgradeFailedUntouched:
		return "upgrade failed before edgecore was touched, nothing to roll back"
	case ExitNotRun:
		return "not run: the step before it failed"
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
	case StepCheck, StepBackup, StepUpgrade, StepRollback:
	default:
		return Report{}, fmt.Errorf("runner report has unknown step %q", r.Step)
	}
	switch r.Result {
	case ResultSucceeded, ResultFailed, ResultSkipped:
	default:
		return Report{}, fmt.Errorf("runner report has unknown result %q", r.Result)
	}
	return r, nil
}

// DefaultTerminationMessagePath is where each runner container writes its
// Report: the kubelet's default, read back into the container's status.
const DefaultTerminationMessagePath = "/dev/termination-log"

// Host paths. The upgrade pod mounts the host's / at DefaultHostRoot. keadm
// is copied by copy-keadm from the install image into the job's directory
// on the host, which this project owns, so that it runs in the host's
// namespaces (through nsenter) next to the edgecore it replaces.
const (
	DefaultHostRoot = "/host"
	// HostDir is the project's directory on the host.
	HostDir = "/var/lib/nodeupgrade"
	// JobsDir holds every job's directory and the node lock.
	JobsDir = HostDir + "/jobs"
)

// JobDir is the host directory of one job's upgrade on a node: keadm, each
// step's record and the step lock. It is keyed by the job's UID, so two jobs
// never share a keadm binary and a job re-created under the same name
// starts afresh.
func JobDir(jobUID string) string {
	return filepath.Join(JobsDir, jobUID)
}

// KeadmPath is where the upgrade pod puts keadm for a job, as a host path.
func KeadmPath(jobUID string) string {
	return filepath.Join(JobDir(jobUID), "keadm")
}

// The records a job's runner keeps on the host, in its JobDir. They are why
// a step runs at most once per job and node: real edgecore removes a pod's
// finished containers when keadm restarts it, and its kubelet then runs a
// container again (seen on a real node: the upgrade container ran a second
// time with Attempt 1, in a restartPolicy Never pod). They are also how
// each step waits for the one before it (--after).
const (
	// JobLockFile is held (flock) by the one step of the job that runs; a
	// re-run container waits on it.
	JobLockFile = "lock"
	// NodeLockFile, in JobsDir, is held by whichever job's step runs on the
	// node: a deleted job's runner may still roll back after its pod left
	// the API, and the next job's runner waits for it.
	NodeLockFile = "node.lock"
)

// StepRecordFile holds step's outcome, its exit code and Report: a repeated
// step reports it instead of redoing the work.
func StepRecordFile(step Step) string { return string(step) + ".json" }

// StepStartedFile marks that step began changing the node, so a later run
// knows an earlier one was interrupted.
func StepStartedFile(step Step) string { return string(step) + ".started" }
