package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
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

// truncationMark replaces the part of a too-long reason that was cut.
const truncationMark = "\n[... truncated ...]\n"

// headKeep is how much of a reason's start survives truncation: the summary
// line comes first, the most recent output last, and both matter.
const headKeep = 512

// Marshal encodes r as JSON of at most MaxTerminationMessageBytes, cutting
// the middle of Reason (keeping its summary head and its output tail) when
// needed.
func (r Report) Marshal() []byte {
	data := encode(r)
	if len(data) <= MaxTerminationMessageBytes {
		return data
	}
	reason := r.Reason
	head := runeStart(reason, min(headKeep, len(reason)))
	// JSON escaping makes the encoded size of a cut hard to predict (a
	// control character takes six bytes), so binary-search the longest tail
	// that fits.
	withTail := func(n int) []byte {
		cut := r
		cut.Reason = reason[:head] + truncationMark + reason[runeStart(reason, len(reason)-n):]
		return encode(cut)
	}
	lo, hi := 0, len(reason)-head // lo always fits, or nothing does
	best := withTail(0)
	if len(best) > MaxTerminationMessageBytes {
		// Only reachable with absurdly long versions; keep the flags.
		cut := r
		cut.Reason = strings.TrimSpace(truncationMark)
		return encode(cut)
	}
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if d := withTail(mid); len(d) <= MaxTerminationMessageBytes {
			lo, best = mid, d
		} else {
			hi = mid - 1
		}
	}
	return best
}

func encode(r Report) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Output holds <, > and & often; escaping them would waste the budget.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		// Report has only strings and bools: Encode cannot fail.
		panic(err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// runeStart moves i back to the start of the rune containing it, so cutting
// at i never splits a UTF-8 sequence.
func runeStart(s string, i int) int {
	if i >= len(s) {
		return len(s)
	}
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}
