package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nodeupgrade/nodeupgrade/pkg/imageref"
)

// Main runs nodeupgrade-runner with args (without the program name) and
// returns the process exit code. Step subcommands always write a Report to
// the termination message path, also when the arguments are bad.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if len(args) == 0 {
		// Not how the pod calls the runner; a person at a shell gets usage
		// and no file written to /dev.
		fmt.Fprintln(stderr, "usage: nodeupgrade-runner check|backup|upgrade [flags]")
		return ExitBadArgs
	}
	step, o, err := ParseArgs(args, stderr)
	var rep Report
	var code int
	if err != nil {
		fmt.Fprintf(stderr, "nodeupgrade-runner: %v\n", err)
		rep = Report{Step: step, Result: ResultFailed, Reason: "bad arguments: " + err.Error(), ToVersion: o.ToVersion, FromVersion: o.FromVersion}
		if rep.Step == "" {
			// Report requires a step; an unknown subcommand most likely
			// meant to be the first one.
			rep.Step = StepCheck
		}
		code = ExitBadArgs
	} else {
		rep, code = Run(ctx, step, o, stdout, time.Now)
	}
	data := rep.Marshal()
	fmt.Fprintf(stdout, "report: %s\n", data)
	if err := os.WriteFile(o.TerminationMessagePath, data, 0o644); err != nil {
		// The exit code still tells the controller what happened.
		fmt.Fprintf(stderr, "nodeupgrade-runner: write termination message: %v\n", err)
	}
	return code
}

// Run runs one step with validated options, logging to log, and returns its
// report and exit code. now is the clock the deadline is checked against.
//
// A step runs at most once per job and node: its outcome is recorded on the
// host (see jobState) and a repeated run reports the record.
func Run(ctx context.Context, step Step, o Options, log io.Writer, now func() time.Time) (Report, int) {
	stateDir := o.StateDir
	if stateDir == "" {
		stateDir = filepath.Join(o.HostRoot, JobDir(o.JobUID))
	}
	r := &stepRunner{o: o, log: log, host: host{root: o.HostRoot}, job: jobState{dir: stateDir}}
	base := Report{Step: step, FromVersion: o.FromVersion, ToVersion: o.ToVersion}

	if rec, ok := r.job.recorded(step); ok {
		fmt.Fprintf(log, "step %s already ran for this job on this node; reporting its recorded result\n", step)
		return rec.Report, rec.ExitCode
	}
	if o.After != "" {
		prev, err := r.waitFor(ctx, o.After, o.Deadline)
		if err != nil {
			base.Result = ResultFailed
			base.Reason = fmt.Sprintf("nothing was run: %v", err)
			return r.recordSkip(step, base, ExitDeadline)
		}
		if prev.ExitCode != ExitOK {
			base.Result = ResultFailed
			base.Reason = fmt.Sprintf("not run: step %s failed (exit %d)", o.After, prev.ExitCode)
			return r.recordSkip(step, base, ExitNotRun)
		}
	}
	// Refuse to start anything once the deadline has passed: the controller
	// has given up on this node by then, and a late upgrade would race with
	// whatever it decided.
	if t := now(); !t.Before(o.Deadline) {
		base.Result = ResultFailed
		base.Reason = fmt.Sprintf("deadline %s passed before step %s started (now %s); nothing was run",
			o.Deadline.UTC().Format(time.RFC3339), step, t.UTC().Format(time.RFC3339))
		return base, ExitDeadline
	}
	ctx, cancel := context.WithDeadline(ctx, o.Deadline)
	defer cancel()

	unlock, err := r.job.lock(ctx)
	if err != nil {
		base.Result = ResultFailed
		base.Reason = "nothing was run: " + err.Error()
		return base, ExitDeadline
	}
	defer unlock()
	unlockNode, err := r.job.lockNode(ctx, r.log)
	if err != nil {
		base.Result = ResultFailed
		base.Reason = "nothing was run: " + err.Error()
		return base, ExitDeadline
	}
	defer unlockNode()
	// The run that held the lock may have finished the step meanwhile.
	if rec, ok := r.job.recorded(step); ok {
		fmt.Fprintf(log, "step %s was finished by another run of this container; reporting its result\n", step)
		return rec.Report, rec.ExitCode
	}

	rep, code := r.runStep(ctx, step, base)
	if err := r.job.record(step, rep, code); err != nil {
		// The report still reaches the controller through the termination
		// message; only a repeated run would lack it.
		fmt.Fprintf(log, "record the result of step %s on the host: %v\n", step, err)
	}
	if step == StepUpgrade || code != ExitOK {
		// The pod's work on this node is over.
		if err := r.job.removeKeadm(); err != nil {
			fmt.Fprintf(log, "remove this job's keadm: %v\n", err)
		}
	}
	return rep, code
}

// recordSkip records a step that did not run, so the step waiting for it
// ends too instead of holding the pod on the node until the deadline.
func (r *stepRunner) recordSkip(step Step, rep Report, code int) (Report, int) {
	if err := r.job.record(step, rep, code); err != nil {
		fmt.Fprintf(r.log, "record that step %s did not run: %v\n", step, err)
	}
	return rep, code
}

// handoffPoll is how often a step waiting for the one before it looks for
// that step's record.
const handoffPoll = 250 * time.Millisecond

// waitFor waits until step's record exists, or the deadline or ctx ends.
func (r *stepRunner) waitFor(ctx context.Context, step Step, deadline time.Time) (stepRecord, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for {
		if rec, ok := r.job.recorded(step); ok {
			return rec, nil
		}
		select {
		case <-ctx.Done():
			return stepRecord{}, fmt.Errorf("step %s had not finished by the deadline %s (%w)", step, deadline.UTC().Format(time.RFC3339), ctx.Err())
		case <-time.After(handoffPoll):
		}
	}
}

func (r *stepRunner) runStep(ctx context.Context, step Step, base Report) (Report, int) {
	if step == StepCheck {
		return r.check(ctx, base)
	}
	// Backup always runs, and runs first of the steps that touch the node,
	// so these refusals come before anything changes.
	if err := r.host.requireSystemd(); err != nil {
		base.Result = ResultFailed
		base.Reason = "node not supported, nothing was done: " + err.Error()
		return base, ExitUnsupported
	}
	if err := r.requireSupportedKeadm(ctx); err != nil {
		base.Result = ResultFailed
		base.Reason = "nothing was done: " + err.Error()
		return base, ExitUnsupported
	}
	switch step {
	case StepBackup:
		return r.backup(ctx, base)
	case StepUpgrade:
		return r.upgrade(ctx, base)
	}
	base.Result = ResultFailed
	base.Reason = fmt.Sprintf("unknown step %q", step)
	return base, ExitBadArgs
}

type stepRunner struct {
	o    Options
	log  io.Writer
	host host
	job  jobState
}

// MinKeadmMinor is the oldest keadm v1 minor release this runner drives.
// keadm v1.19 and v1.20 have no `backup` command and no --force, use --image
// as given (v1.21+ append ":" + toVersion) and report success from a failed
// rollback, so they need a different command line that has not been
// verified against a real node.
const MinKeadmMinor = 21

var keadmVersionRE = regexp.MustCompile(`v(\d+)\.(\d+)\.(\d+)`)

// requireSupportedKeadm asks the job's keadm for its version and refuses
// those whose command line differs from the one this runner speaks.
func (r *stepRunner) requireSupportedKeadm(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, DefaultVersionQueryTimeout)
	defer cancel()
	res := r.keadm(qctx, "version", "-o", "short")
	if res.err != nil {
		return fmt.Errorf("cannot ask keadm for its version: %w", res.err)
	}
	m := keadmVersionRE.FindStringSubmatch(res.tail)
	if m == nil {
		return fmt.Errorf("keadm printed no version (%q)", firstLine(res.tail))
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major != 1 || minor < MinKeadmMinor {
		return fmt.Errorf("keadm %s in the install image is not supported: this runner drives keadm v1.%d or newer "+
			"(older keadm has no backup command and a different --image contract)", m[0], MinKeadmMinor)
	}
	if m[0] != r.o.ToVersion {
		fmt.Fprintf(r.log, "note: the install image's keadm is %s, the target is %s\n", m[0], r.o.ToVersion)
	}
	return nil
}

func (r *stepRunner) check(ctx context.Context, rep Report) (Report, int) {
	summary, err := runChecks(ctx, r.o)
	if err != nil {
		rep.Result = ResultFailed
		rep.Reason = "check failed: " + err.Error()
		if summary != "" {
			rep.Reason += " (passed: " + summary + ")"
		}
		return rep, ExitCheckFailed
	}
	rep.Result = ResultSucceeded
	rep.Reason = summary
	return rep, ExitOK
}

func (r *stepRunner) keadm(ctx context.Context, args ...string) cmdResult {
	return run(ctx, r.log, "keadm "+strings.Join(args, " "), r.o.hostArgv(r.o.Keadm, args...))
}

// keadmMutating runs a keadm command that takes keadm's lock (backup,
// upgrade, rollback): it first clears a lock left by a keadm that no longer
// runs, clears keadm's previous verdict, and afterwards clears the lock
// again if keadm was killed before it could. It returns keadm's own verdict
// when keadm wrote one.
func (r *stepRunner) keadmMutating(ctx context.Context, args ...string) (cmdResult, *keadmReport) {
	r.clearStaleLock()
	if err := r.host.clearKeadmReport(); err != nil {
		fmt.Fprintf(r.log, "clear keadm's previous report: %v\n", err)
	}
	res := r.keadm(ctx, args...)
	if res.err != nil {
		// A keadm killed by the deadline or a stop request may still be in
		// the process table for a moment; wait for it, or its lock stays
		// (seen on a real node after the pod was deleted mid-upgrade).
		for start := time.Now(); len(r.host.keadmRunning()) > 0 && time.Since(start) < keadmExitWait; {
			time.Sleep(100 * time.Millisecond)
		}
		r.clearStaleLock()
	}
	return res, r.host.keadmReport()
}

// keadmExitWait bounds the wait for a killed keadm to leave the process
// table.
const keadmExitWait = 5 * time.Second

func (r *stepRunner) clearStaleLock() {
	did, err := r.host.clearStaleKeadmLock()
	if err != nil {
		fmt.Fprintf(r.log, "keadm lock: %v\n", err)
	} else if did != "" {
		fmt.Fprintln(r.log, did)
	}
}

// keadmFailure says why a keadm command failed, in keadm's own words when
// its report has them: its output tail is mostly usage text.
func keadmFailure(summary string, res cmdResult, kr *keadmReport, what string) string {
	if kr != nil && !kr.Success && kr.ErrorMessage != "" {
		return fmt.Sprintf("%s: %s", summary, kr.ErrorMessage)
	}
	msg := summary
	if res.err != nil {
		msg += ": " + res.err.Error()
	}
	return withTail(msg, what, res.tail)
}

func (r *stepRunner) backup(ctx context.Context, rep Report) (Report, int) {
	res, kr := r.keadmMutating(ctx, "backup", "edge")
	if res.err != nil || (kr != nil && !kr.Success) {
		rep.Result = ResultFailed
		rep.Reason = keadmFailure("backup failed", res, kr, "keadm backup edge")
		return rep, ExitBackupFailed
	}
	rep.Result = ResultSucceeded
	rep.Reason = "backup done"
	return rep, ExitOK
}

func (r *stepRunner) upgrade(ctx context.Context, rep Report) (Report, int) {
	repo, err := imageref.Repository(r.o.Image)
	if err != nil {
		// validate() normalised the image already; unreachable.
		rep.Result = ResultFailed
		rep.Reason = "bad image: " + err.Error()
		return rep, ExitBadArgs
	}
	if r.job.wasStarted(StepUpgrade) {
		return r.resumeInterrupted(ctx, rep)
	}
	before := r.host.edgecore(r.o.Edgecore)
	if err := r.job.markStarted(StepUpgrade); err != nil {
		fmt.Fprintf(r.log, "mark the upgrade as started: %v\n", err)
	}
	// keadm pulls repo + ":" + toVersion itself: it must get the
	// repository without a tag (seen on a real node: a tagged --image
	// fails with "invalid reference format").
	upgradeArgs := []string{"upgrade", "edge", "--toVersion", r.o.ToVersion, "--image", repo, "--force"}
	res, kr := r.keadmMutating(ctx, upgradeArgs...)
	for attempt := 2; attempt <= keadmCopyAttempts && keadmLostCopyRace(res, kr) && r.host.edgecore(r.o.Edgecore) == before; attempt++ {
		fmt.Fprintf(r.log, "keadm upgrade failed while copying edgecore out of the image, before it touched edgecore (%s); attempt %d of %d\n",
			firstLine(reportOrErr(res, kr)), attempt, keadmCopyAttempts)
		select {
		case <-ctx.Done():
		case <-time.After(keadmCopyRetryDelay):
		}
		if ctx.Err() != nil {
			break
		}
		res, kr = r.keadmMutating(ctx, upgradeArgs...)
	}
	upErr := res.err
	if upErr != nil && keadmUpgraded(kr, r.o.ToVersion) {
		// keadm was killed (a stop request, the deadline) after it wrote
		// its success verdict, which keadmMutating cleared before the run:
		// the upgrade is done and only keadm's exit was cut short. Rolling
		// back would undo a good upgrade; the new edgecore is checked as
		// after any upgrade. (A race of a few milliseconds, seen in tests
		// under load.)
		fmt.Fprintf(r.log, "keadm was stopped (%v) after it reported the upgrade to %s done; checking the new edgecore\n", upErr, r.o.ToVersion)
		upErr = nil
	}
	if upErr == nil && kr != nil && !kr.Success {
		upErr = fmt.Errorf("keadm reported failure: %s", kr.ErrorMessage)
	}
	if upErr == nil {
		// keadm does not check that the new edgecore runs.
		upErr = r.waitEdgecoreStable(ctx)
	}
	if upErr == nil {
		rep.Result = ResultSucceeded
		rep.Reason = fmt.Sprintf("upgraded edgecore from %s to %s", orUnknown(rep.FromVersion), r.o.ToVersion)
		return rep, ExitOK
	}
	upReason := keadmFailure(fmt.Sprintf("upgrade to %s failed", r.o.ToVersion), cmdResult{err: upErr, tail: res.tail}, kr, "keadm upgrade edge")
	if after := r.host.edgecore(r.o.Edgecore); after == before && before.Processes != "" {
		// keadm stops edgecore only after it has pulled the image and
		// copied the new binary out; a failure before that (a failed pull,
		// say) leaves the node as it was, and a rollback would only restart
		// a healthy edgecore.
		rep.Result = ResultFailed
		rep.Reason = "edgecore was not touched (same binary, same process), so no rollback was needed; " + upReason
		return rep, ExitUpgradeFailedUntouched
	}
	return r.rollback(ctx, rep, upReason)
}

// keadmCopyAttempts bounds how often the upgrade step runs keadm upgrade
// when keadm lost the race described at keadmLostCopyRace.
const keadmCopyAttempts = 3

// keadmCopyRetryDelay is the pause before such a retry: one kubelet
// housekeeping period (2 s) so the next copy container starts in a fresh
// window.
const keadmCopyRetryDelay = 2 * time.Second

// keadmLostCopyRace reports whether keadm upgrade failed while copying the
// new edgecore out of the installation-package image. keadm does that copy
// in a CRI pod sandbox of its own, which the running edgecore's kubelet
// sees as an orphaned pod and stops in its housekeeping (every 2 s). Seen on
// a real v1.21.0 node in 2 of 3 upgrades: StopPodSandbox 35 ms after
// StartContainer, and keadm failing with "failed to copy edgecore from
// /usr/local/bin/edgecore in the image ...: cannot start an already running
// container". The failure happens before keadm stops edgecore, so running
// keadm again is safe; the caller checks that edgecore is untouched.
func keadmLostCopyRace(res cmdResult, kr *keadmReport) bool {
	if res.err == nil && (kr == nil || kr.Success) {
		return false
	}
	return strings.Contains(reportOrErr(res, kr), "failed to copy edgecore from")
}

// reportOrErr is keadm's own error message when its report has one, and
// its output tail otherwise.
func reportOrErr(res cmdResult, kr *keadmReport) string {
	if kr != nil && kr.ErrorMessage != "" {
		return kr.ErrorMessage
	}
	return res.tail
}

// resumeInterrupted handles an upgrade step that an earlier run of this
// container started and did not finish (the container was killed, or the
// kubelet started it again while edgecore restarted): keadm's own report
// says whether that upgrade completed; otherwise the node is rolled back.
func (r *stepRunner) resumeInterrupted(ctx context.Context, rep Report) (Report, int) {
	r.clearStaleLock()
	kr := r.host.keadmReport()
	if keadmUpgraded(kr, r.o.ToVersion) {
		if err := r.waitEdgecoreStable(ctx); err == nil {
			rep.Result = ResultSucceeded
			rep.Reason = fmt.Sprintf("upgraded edgecore from %s to %s (by an earlier run of this container, which was interrupted after keadm finished)",
				orUnknown(rep.FromVersion), r.o.ToVersion)
			return rep, ExitOK
		}
	}
	why := "an earlier run of the upgrade step was interrupted before it reported"
	if kr != nil && !kr.Success && kr.ErrorMessage != "" {
		why += "; keadm said: " + kr.ErrorMessage
	}
	return r.rollback(ctx, rep, why)
}

// keadmUpgraded reports whether keadm's verdict is a finished upgrade to
// version.
func keadmUpgraded(kr *keadmReport, version string) bool {
	return kr != nil && kr.Event == "Upgrade" && kr.Success && kr.ToVersion == version
}

// rollback runs keadm rollback edge after a failed upgrade.
func (r *stepRunner) rollback(ctx context.Context, rep Report, upReason string) (Report, int) {
	// The rollback gets its own time budget, not what is left before the
	// deadline, and is not cancelled by SIGTERM: a half-upgraded node is the
	// worst outcome. The pod's activeDeadlineSeconds and grace period leave
	// room for it.
	rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.RollbackTimeout)
	defer cancel()
	rb, kr := r.keadmMutating(rbCtx, "rollback", "edge")

	rep.Step = StepRollback
	rep.Result = ResultFailed
	if rb.err != nil || (kr != nil && !kr.Success) {
		rep.NeedsAttention = true
		rep.Reason = keadmFailure("rollback failed too, the node needs attention", rb, kr, "keadm rollback edge") + "\n" + upReason
		return rep, ExitNeedsAttention
	}
	rep.RolledBack = true
	rep.Reason = fmt.Sprintf("rollback succeeded, the node is back on %s; ", orUnknown(rep.FromVersion)) + upReason
	return rep, ExitRolledBack
}

// waitEdgecoreStable waits until one edgecore process has run on the host
// without interruption for EdgecoreSettle: keadm starts the new edgecore
// and exits, so an edgecore that crashes at start (and is restarted by
// systemd, getting a new PID each time) is only seen this way.
//
// It runs only after keadm reported a finished upgrade, and a stop request
// (SIGTERM, the step's deadline) does not cut it short: rolling back a
// working upgrade, or exiting without a verdict, would both be worse than
// finishing a check bounded by 2*EdgecoreSettle, well inside the pod's grace
// period. Seen on a real node: the new v1.22 edgecore's kubelet, not yet
// knowing the upgrade pod from its local store, stopped the upgrade
// container 0.7 s after it started, and the runner (then honouring SIGTERM)
// rolled a good upgrade back.
func (r *stepRunner) waitEdgecoreStable(parent context.Context) error {
	if r.o.EdgecoreSettle <= 0 {
		return nil
	}
	// As long again for the new edgecore to appear.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 2*r.o.EdgecoreSettle)
	defer cancel()
	var since time.Time
	var last string
	stopLogged := false
	tick := time.NewTicker(settlePoll)
	defer tick.Stop()
	for {
		if parent.Err() != nil && !stopLogged {
			stopLogged = true
			fmt.Fprintf(r.log, "asked to stop (%v) after keadm upgraded edgecore; finishing the %s check of the new edgecore first\n",
				context.Cause(parent), r.o.EdgecoreSettle)
		}
		cur := r.host.edgecore(r.o.Edgecore).Processes
		switch {
		case cur == "" || strings.Contains(cur, ","):
			since, last = time.Time{}, ""
		case cur != last:
			since, last = time.Now(), cur
		case time.Since(since) >= r.o.EdgecoreSettle:
			fmt.Fprintf(r.log, "edgecore (%s) has run for %s since the upgrade\n", cur, r.o.EdgecoreSettle)
			return nil
		}
		select {
		case <-ctx.Done():
			if last == "" {
				return fmt.Errorf("edgecore is not running after the upgrade (checked for %s)", 2*r.o.EdgecoreSettle)
			}
			return fmt.Errorf("edgecore did not keep running for %s after the upgrade (it restarted or stopped)", r.o.EdgecoreSettle)
		case <-tick.C:
		}
	}
}

// settlePoll is how often waitEdgecoreStable looks at the host's processes.
const settlePoll = 500 * time.Millisecond

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func withTail(summary, what, tail string) string {
	if tail == "" {
		return summary
	}
	return fmt.Sprintf("%s\n--- last lines of %s ---\n%s", summary, what, tail)
}

func orUnknown(v string) string {
	if v == "" {
		return "its previous version"
	}
	return v
}
