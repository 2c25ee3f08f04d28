package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodeupgrade/nodeupgrade/pkg/imageref"
)

// This file is the job's unit on the host (see unit.go): backup, then the
// upgrade behind a guard, the settle check, and the commit or the rollback.
// Each time the unit starts (launched by the backup container, started again
// by a follower or by systemd after a crash, or at boot after a power cut) it
// reads the job's records and carries on from where they say the job is:
//
//	backup record   upgrade guard   upgrade record   the unit
//	-               -               -                backs up (unless cancelled or out of budget)
//	failed          any             -                records the upgrade as not run
//	succeeded       -               -                upgrades (unless cancelled or out of budget)
//	succeeded       set             -                resumes: keadm said the upgrade is done and the
//	                                                 new edgecore settles: committed; otherwise
//	                                                 rolled back (edgecore untouched: left alone)
//	any             any             set              nothing to do
//
// and ends by removing its binaries and itself. The guard (upgrade.started)
// is written, durably, before keadm can touch edgecore; the commit is the
// upgrade record, written only after the new edgecore has run for
// EdgecoreSettle without a restart. This is how A/B update systems such as
// RAUC and Mender keep a device bootable: the new version is trusted only
// once it has proven itself, and anything else at the next start means going
// back.

// hostPlan is PlanFile: what the unit runs. The backup container writes it
// from its validated flags; the unit reads it back and validates it again,
// so nothing from the job reaches the unit file or a command line unchecked.
type hostPlan struct {
	JobName        string        `json:"jobName,omitempty"`
	ToVersion      string        `json:"toVersion"`
	FromVersion    string        `json:"fromVersion,omitempty"`
	Image          string        `json:"image"`
	ImageDigest    string        `json:"imageDigest,omitempty"`
	Keadm          string        `json:"keadm"`
	Edgecore       string        `json:"edgecore"`
	EdgecoreSettle time.Duration `json:"edgecoreSettle"`
	KeepJobRecords int           `json:"keepJobRecords"`
}

func planOf(o Options) hostPlan {
	return hostPlan{
		JobName: o.JobName, ToVersion: o.ToVersion, FromVersion: o.FromVersion, Image: o.Image, ImageDigest: o.ImageDigest,
		Keadm: o.Keadm, Edgecore: o.Edgecore, EdgecoreSettle: o.EdgecoreSettle, KeepJobRecords: o.KeepJobRecords,
	}
}

// readPlan reads the job's plan and turns it into the unit's options.
func readPlan(hostRoot, jobUID string, budget time.Duration) (Options, error) {
	data, err := readNoFollow(filepath.Join(hostRoot, JobDir(jobUID), PlanFile))
	if err != nil {
		return Options{}, fmt.Errorf("read the job's plan: %w", err)
	}
	var p hostPlan
	if err := json.Unmarshal(data, &p); err != nil {
		return Options{}, fmt.Errorf("the job's plan is not valid: %w", err)
	}
	o := DefaultOptions()
	o.HostRoot, o.UseNsenter, o.JobUID = hostRoot, false, jobUID
	o.JobName, o.ToVersion, o.FromVersion, o.Image, o.ImageDigest = p.JobName, p.ToVersion, p.FromVersion, p.Image, p.ImageDigest
	o.Keadm, o.Edgecore, o.EdgecoreSettle, o.KeepJobRecords = p.Keadm, p.Edgecore, p.EdgecoreSettle, p.KeepJobRecords
	o.Budget = budget
	o.TerminationMessagePath = DefaultTerminationMessagePath // not written by the unit
	if err := o.validate(StepBackup); err != nil {
		return Options{}, fmt.Errorf("the job's plan is not valid: %w", err)
	}
	return o, nil
}

// unitRunner runs the job's unit.
type unitRunner struct {
	o    Options
	log  io.Writer
	host host
	job  jobState
	// stop is done when systemd asks the unit to stop (a shutdown): keadm
	// commands are not cut short, but nothing new starts.
	stop context.Context
}

// HostMain is the job's unit: `nodeupgrade-runner host --job-uid=UID`. It
// returns the process's exit code: 0 whenever the records say what happened
// (or the unit was asked to stop and will resume at its next start), so that
// systemd restarts it (Restart=on-failure) only after a crash.
func HostMain(stop context.Context, args []string, log io.Writer) int {
	hostRoot, jobUID, err := parseHostArgs(args)
	if err != nil {
		fmt.Fprintf(log, "nodeupgrade-runner %s: %v\n", SubcommandHost, err)
		return ExitBadArgs
	}
	job := jobState{dir: filepath.Join(hostRoot, JobDir(jobUID))}
	h := host{root: hostRoot}
	budget, err := job.readBudget()
	var o Options
	if err == nil {
		o, err = readPlan(hostRoot, jobUID, budget.Budget)
	}
	if err != nil {
		// The backup container writes both before it starts the unit, so
		// only damage gets here. Starting again would not mend it: say so
		// in the records and go, rather than restart forever.
		abandon(log, hostRoot, jobUID, job, err)
		return ExitOK
	}
	u := &unitRunner{o: o, log: log, host: h, job: job, stop: stop}
	fmt.Fprintf(log, "unit of job %s (%s): upgrade to %s\n", o.JobName, o.JobUID, o.ToVersion)

	// One job's unit at a time on the node; a deleted job's unit may still
	// roll back. Waited for without limit: the budget check below refuses
	// to start an upgrade if the wait took too long.
	unlockNode, err := job.lockNode(stop, log)
	if err != nil {
		fmt.Fprintf(log, "stopped while waiting for the node: %v\n", err)
		return ExitOK
	}
	defer unlockNode()
	unlock, err := job.lock(stop)
	if err != nil {
		fmt.Fprintf(log, "stopped while waiting for the job's lock: %v\n", err)
		return ExitOK
	}
	defer unlock()

	if done := u.carryOn(budget); !done {
		fmt.Fprintln(log, "asked to stop before the job ended on the node; the unit resumes at its next start")
		return ExitOK
	}
	u.finish()
	return ExitOK
}

// abandon ends a unit that cannot read what it is to run: it records the
// job's steps as not run (or, if an upgrade was started, as needing
// attention), and removes its binaries and itself.
func abandon(log io.Writer, hostRoot, jobUID string, job jobState, why error) {
	fmt.Fprintf(log, "the job's records on the node cannot be read (%v); giving up\n", why)
	rep := Report{Step: StepUpgrade, Result: ResultFailed}
	code := ExitNotRun
	rep.Reason = fmt.Sprintf("nothing was run: the job's plan or budget on the node cannot be read (%v)", why)
	if job.wasStarted(StepUpgrade) {
		rep.NeedsAttention, code = true, ExitNeedsAttention
		rep.Reason = fmt.Sprintf("the upgrade was started, but the job's plan or budget on the node cannot be read any more (%v); "+
			"the node needs attention", why)
	}
	backup := rep
	backup.Step, backup.NeedsAttention = StepBackup, false
	for _, r := range []struct {
		step Step
		rep  Report
		code int
	}{{StepBackup, backup, ExitNotRun}, {StepUpgrade, rep, code}} {
		if err := job.recordIfAbsent(r.step, r.rep, r.code); err != nil {
			fmt.Fprintf(log, "record step %s: %v\n", r.step, err)
		}
	}
	o := DefaultOptions()
	o.HostRoot, o.UseNsenter, o.JobUID = hostRoot, false, jobUID
	if did, err := (host{root: hostRoot}).clearStaleKeadmLock(); err != nil {
		fmt.Fprintf(log, "keadm lock: %v\n", err)
	} else if did != "" {
		fmt.Fprintln(log, did)
	}
	if err := job.removeBinaries(); err != nil {
		fmt.Fprintf(log, "remove the job's binaries: %v\n", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*systemctlTimeout)
	defer cancel()
	if err := (systemd{o: o, log: log}).remove(ctx); err != nil {
		fmt.Fprintf(log, "remove the unit: %v\n", err)
	}
}

func parseHostArgs(args []string) (hostRoot, jobUID string, err error) {
	hostRoot = "/"
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		switch {
		case ok && k == "--host-root":
			hostRoot = v
		case ok && k == "--job-uid":
			jobUID = v
		default:
			return "", "", fmt.Errorf("unexpected argument %q", a)
		}
	}
	if !jobUIDRE.MatchString(jobUID) {
		return "", "", fmt.Errorf("--job-uid %q must be a Kubernetes UID", jobUID)
	}
	if !filepath.IsAbs(hostRoot) || filepath.Clean(hostRoot) != hostRoot {
		return "", "", fmt.Errorf("--host-root %q must be a clean absolute path", hostRoot)
	}
	return hostRoot, jobUID, nil
}

// carryOn carries the job on from where its records are. It reports whether
// the job's work on the node ended (false: asked to stop first).
func (u *unitRunner) carryOn(budget budgetRecord) bool {
	base := Report{FromVersion: u.o.FromVersion, ToVersion: u.o.ToVersion}
	if u.job.rollbackRequested() {
		u.gateRollback(base)
		return true
	}
	if _, ok := u.job.recorded(StepUpgrade); ok {
		fmt.Fprintln(u.log, "the upgrade's outcome is recorded already; nothing to do")
		return true
	}
	backup, ok := u.job.recorded(StepBackup)
	if !ok {
		if why := u.mayStart(budget, 0); why != "" {
			u.notRun(StepBackup, base, ExitDeadline, "nothing was run: "+why)
			return true
		}
		if u.stopped() {
			return false
		}
		backup = u.backup(base)
	}
	if backup.ExitCode != ExitOK {
		u.notRun(StepUpgrade, base, ExitNotRun, fmt.Sprintf("not run: step %s failed (exit %d)", StepBackup, backup.ExitCode))
		return true
	}
	var rep Report
	var code int
	if u.job.wasStarted(StepUpgrade) {
		rep, code = u.resume(base)
	} else {
		if why := u.mayStart(budget, MinUpgradeBudget); why != "" {
			u.notRun(StepUpgrade, base, ExitDeadline, "nothing was touched, edgecore runs as before: "+why)
			return true
		}
		if u.stopped() {
			return false
		}
		rep, code = u.upgrade(base)
	}
	if code == exitStopped {
		return false
	}
	u.recordOutcome(StepUpgrade, rep, code)
	return true
}

// exitStopped is the internal verdict of a step cut short by a stop
// request before it reached an outcome: no record, resume later.
const exitStopped = -1

// mayStart says why the unit must not start a step needing at least need
// of the budget ("" when it may): the pod was stopped before it started, or
// the budget is short.
func (u *unitRunner) mayStart(budget budgetRecord, need time.Duration) string {
	if why, ok := u.job.cancelled(); ok {
		return "the upgrade pod was stopped before it started (" + why + ")"
	}
	left, why := budget.left(u.host)
	if left <= 0 {
		return why
	}
	if left < need {
		return fmt.Sprintf("only %s of the job's budget of %s is left on this node, less than the %s an upgrade needs",
			left.Round(time.Second), budget.Budget, need)
	}
	return ""
}

func (u *unitRunner) stopped() bool { return u.stop.Err() != nil }

func (u *unitRunner) notRun(step Step, base Report, code int, reason string) {
	base.Step, base.Result, base.Reason = step, ResultFailed, reason
	fmt.Fprintf(u.log, "step %s: %s\n", step, reason)
	if err := u.job.recordIfAbsent(step, base, code); err != nil {
		fmt.Fprintf(u.log, "record step %s: %v\n", step, err)
	}
	if step == StepBackup {
		u.notRun(StepUpgrade, base, ExitNotRun, fmt.Sprintf("not run: step %s did not run", StepBackup))
	}
}

func (u *unitRunner) recordOutcome(step Step, rep Report, code int) {
	fmt.Fprintf(u.log, "step %s: %s (exit %d): %s\n", step, rep.Result, code, firstLine(rep.Reason))
	if err := u.job.record(step, rep, code); err != nil {
		// Without the record a follower cannot report it, and the next
		// start would repeat the step: say so loudly.
		fmt.Fprintf(u.log, "record the result of step %s on the host: %v\n", step, err)
	}
}

// backup runs keadm backup edge, after the refusals that must come before
// anything changes.
func (u *unitRunner) backup(base Report) stepRecord {
	rep, code := u.backupStep(base)
	u.recordOutcome(StepBackup, rep, code)
	return stepRecord{ExitCode: code, Report: rep}
}

func (u *unitRunner) backupStep(rep Report) (Report, int) {
	rep.Step = StepBackup
	ctx, cancel := context.WithTimeout(context.WithoutCancel(u.stop), keadmBackupTimeout)
	defer cancel()
	if err := u.requireSupportedKeadm(ctx); err != nil {
		return rep.failed(ExitUnsupported, "nothing was done: "+err.Error())
	}
	res, kr := u.keadmMutating(ctx, "backup", "edge")
	if res.err != nil || (kr != nil && !kr.Success) {
		return rep.failed(ExitBackupFailed, keadmFailure("backup failed", res, kr, "keadm backup edge"))
	}
	version := u.host.newestBackup()
	if err := u.host.syncBackup(version); err != nil {
		return rep.failed(ExitBackupFailed, fmt.Sprintf("backup failed: could not make keadm's backup %s durable: %v", version, err))
	}
	rep.Result, rep.Reason, rep.BackupVersion = ResultSucceeded, "backup done", version
	return rep, ExitOK
}

// upgrade runs keadm upgrade edge behind the guard, checks that the new
// edgecore settles, and rolls back when it does not.
func (u *unitRunner) upgrade(rep Report) (Report, int) {
	rep.Step = StepUpgrade
	repo, err := imageref.Repository(u.o.Image)
	if err != nil {
		// validate() normalised the image already; unreachable.
		return rep.failed(ExitBadArgs, "bad image: "+err.Error())
	}
	before := u.host.edgecore(u.o.Edgecore)
	if err := u.nameVerifiedImage(repo); err != nil {
		return rep.failed(ExitUpgradeFailedUntouched, "nothing was touched: "+err.Error())
	}
	if err := u.job.markStarted(StepUpgrade); err != nil {
		// Without the guard, a power cut during the upgrade would not be
		// finished at the next boot: do not start it.
		return rep.failed(ExitUpgradeFailedUntouched, "nothing was touched: could not write the upgrade's guard: "+err.Error())
	}
	if err := u.job.recordEdgecoreBefore(before); err != nil {
		fmt.Fprintf(u.log, "record edgecore's state before the upgrade: %v\n", err)
	}
	// keadm's own commands are never cut short by a stop request: a keadm
	// killed half-way is what leaves a node bricked.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(u.stop), keadmUpgradeTimeout)
	defer cancel()
	// keadm pulls repo + ":" + toVersion itself: it must get the
	// repository without a tag (seen on a real node: a tagged --image
	// fails with "invalid reference format").
	upgradeArgs := []string{"upgrade", "edge", "--toVersion", u.o.ToVersion, "--image", repo, "--force"}
	res, kr := u.keadmMutating(ctx, upgradeArgs...)
	for attempt := 2; attempt <= keadmCopyAttempts && keadmLostCopyRace(res, kr) && u.host.edgecore(u.o.Edgecore) == before && !u.stopped(); attempt++ {
		fmt.Fprintf(u.log, "keadm upgrade failed while copying edgecore out of the image, before it touched edgecore (%s); attempt %d of %d\n",
			firstLine(reportOrErr(res, kr)), attempt, keadmCopyAttempts)
		time.Sleep(keadmCopyRetryDelay)
		res, kr = u.keadmMutating(ctx, upgradeArgs...)
	}
	upErr := res.err
	if upErr != nil && keadmUpgraded(kr, u.o.ToVersion) {
		// keadm wrote its success verdict and only its exit went wrong.
		fmt.Fprintf(u.log, "keadm failed (%v) after it reported the upgrade to %s done; checking the new edgecore\n", upErr, u.o.ToVersion)
		upErr = nil
	}
	if upErr == nil && kr != nil && !kr.Success {
		upErr = fmt.Errorf("keadm reported failure: %s", kr.ErrorMessage)
	}
	settleFailed := false
	if upErr == nil {
		// keadm does not check that the new edgecore runs.
		upErr = u.waitEdgecoreStable()
		settleFailed = upErr != nil
		if u.stopped() && upErr != nil {
			// A shutdown stops edgecore too; judge it at the next start.
			return rep, exitStopped
		}
	}
	if upErr == nil {
		return u.committed(rep, fmt.Sprintf("upgraded edgecore from %s to %s", orUnknown(rep.FromVersion), u.o.ToVersion))
	}
	upReason := keadmFailure(fmt.Sprintf("upgrade to %s failed", u.o.ToVersion), cmdResult{err: upErr, tail: res.tail}, kr, "keadm upgrade edge")
	if settleFailed {
		// Why the new edgecore would not run is in its own log.
		upReason = withTail(upReason, "edgecore's journal", u.edgecoreJournal())
	}
	if after := u.host.edgecore(u.o.Edgecore); after == before && before.Processes != "" {
		// keadm stops edgecore only after it has pulled the image and
		// copied the new binary out; a failure before that (a failed pull,
		// say) leaves the node as it was, and a rollback would only restart
		// a healthy edgecore.
		return rep.failed(ExitUpgradeFailedUntouched, "edgecore was not touched (same binary, same process), so no rollback was needed; "+upReason)
	}
	return u.rollback(rep, upReason)
}

// keadmBackupTimeout bounds the backup step (keadm version, keadm backup
// edge): a backup copies what a rollback restores, so it gets as long.
const keadmBackupTimeout = RollbackTimeout

// keadmUpgradeTimeout bounds one keadm upgrade edge (a pull of the image,
// already pulled by copy-keadm, the copy, a restart of edgecore).
const keadmUpgradeTimeout = 10 * time.Minute

// committed is a settled upgrade: the new version has proven itself.
func (u *unitRunner) committed(rep Report, reason string) (Report, int) {
	rep.Step, rep.Result, rep.Reason = StepUpgrade, ResultSucceeded, reason
	return rep, ExitOK
}

// resume finishes an upgrade that an earlier start of the unit began and did
// not end (the unit was killed, or the machine lost its power): keadm's own
// report says whether that upgrade completed, and the new edgecore must then
// settle; otherwise the node goes back, unless edgecore was never touched.
func (u *unitRunner) resume(rep Report) (Report, int) {
	rep.Step = StepUpgrade
	fmt.Fprintln(u.log, "the upgrade was started by an earlier run of this unit and did not end; resuming")
	if u.job.wasStarted(StepRollback) {
		return u.rollback(rep, "an earlier rollback was interrupted; rolling back again")
	}
	u.clearStaleLock()
	kr := u.host.keadmReport()
	if keadmUpgraded(kr, u.o.ToVersion) {
		err := u.waitEdgecoreStable()
		if err == nil {
			return u.committed(rep, fmt.Sprintf("upgraded edgecore from %s to %s (finished after the unit was interrupted)",
				orUnknown(rep.FromVersion), u.o.ToVersion))
		}
		if u.stopped() {
			return rep, exitStopped
		}
		return u.rollback(rep, withTail(fmt.Sprintf("keadm upgraded to %s before the interruption, but %v", u.o.ToVersion, err),
			"edgecore's journal", u.edgecoreJournal()))
	}
	why := "the upgrade was interrupted before keadm reported it done"
	if kr != nil && !kr.Success && kr.ErrorMessage != "" {
		why += "; keadm said: " + kr.ErrorMessage
	}
	if before, ok := u.job.edgecoreBefore(); ok && before.Binary != "" && u.host.edgecore(u.o.Edgecore).Binary == before.Binary {
		// keadm never replaced the binary (it was cut off while pulling or
		// copying): the node runs what it ran, once edgecore is up.
		if err := u.waitEdgecoreStable(); err == nil {
			return rep.failed(ExitUpgradeFailedUntouched, "edgecore was not touched (same binary), so no rollback was needed; "+why)
		}
		if u.stopped() {
			return rep, exitStopped
		}
	}
	return u.rollback(rep, why)
}

// rollback runs keadm rollback edge after a failed upgrade, from this job's
// backup.
func (u *unitRunner) rollback(rep Report, upReason string) (Report, int) {
	if err := u.job.markStarted(StepRollback); err != nil {
		fmt.Fprintf(u.log, "mark the rollback as started: %v\n", err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(u.stop), RollbackTimeout)
	defer cancel()
	args := []string{"rollback", "edge"}
	if v := u.backupVersion(); v != "" {
		args = append(args, "--historical-version", v)
	}
	rb, kr := u.keadmMutating(ctx, args...)

	rep.Step = StepRollback
	if rb.err != nil || (kr != nil && !kr.Success) {
		rep.NeedsAttention = true
		return rep.failed(ExitNeedsAttention, keadmFailure("rollback failed too, the node needs attention", rb, kr, "keadm rollback edge")+"\n"+upReason)
	}
	rep.RolledBack = true
	return rep.failed(ExitRolledBack, fmt.Sprintf("rollback succeeded, the node is back on %s; ", orUnknown(rep.FromVersion))+upReason)
}

// waitEdgecoreStable waits until one edgecore process has run on the host
// without interruption for EdgecoreSettle: keadm starts the new edgecore
// and exits, so an edgecore that crashes at start (and is restarted by
// systemd, getting a new PID each time) is only seen this way. A stop
// request ends the wait early with an error (the caller resumes later).
func (u *unitRunner) waitEdgecoreStable() error {
	if u.o.EdgecoreSettle <= 0 {
		return nil
	}
	// As long again for the new edgecore to appear.
	ctx, cancel := context.WithTimeout(u.stop, 2*u.o.EdgecoreSettle)
	defer cancel()
	var since time.Time
	var last string
	tick := time.NewTicker(settlePoll)
	defer tick.Stop()
	for {
		cur := u.host.edgecore(u.o.Edgecore).Processes
		switch {
		case cur == "" || strings.Contains(cur, ","):
			since, last = time.Time{}, ""
		case cur != last:
			since, last = time.Now(), cur
		case time.Since(since) >= u.o.EdgecoreSettle:
			fmt.Fprintf(u.log, "edgecore (%s) has run for %s since the upgrade\n", cur, u.o.EdgecoreSettle)
			// A steady edgecore that lost its configuration runs cut off
			// from its cloud: that is no upgrade to keep.
			if damage := u.host.configDamage(u.backupVersion()); damage != "" {
				return errors.New(damage)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if u.stopped() {
				return errors.New("asked to stop during the settle check")
			}
			if last == "" {
				return fmt.Errorf("edgecore is not running after the upgrade (checked for %s)", 2*u.o.EdgecoreSettle)
			}
			return fmt.Errorf("edgecore did not keep running for %s after the upgrade (it restarted or stopped)", u.o.EdgecoreSettle)
		case <-tick.C:
		}
	}
}

// edgecoreJournal is the end of edgecore's log on the host ("" when it
// cannot be read).
func (u *unitRunner) edgecoreJournal() string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(u.stop), systemctlTimeout)
	defer cancel()
	res := runCommand(ctx, io.Discard, "journalctl", u.o.hostCommand("journalctl", "--no-pager", "-o", "cat", "-n", "15", "-u", "edgecore.service"))
	if res.err != nil {
		return ""
	}
	return res.tail
}

// backupVersion names this job's keadm backup ("" when unknown).
func (u *unitRunner) backupVersion() string {
	if rec, ok := u.job.recorded(StepBackup); ok {
		return rec.Report.BackupVersion
	}
	return ""
}

// settlePoll is how often waitEdgecoreStable looks at the host's processes.
const settlePoll = 500 * time.Millisecond

// finish ends the job's work on the node: its binaries go, the unit
// disables and removes itself, and old jobs' leftovers are collected.
func (u *unitRunner) finish() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(u.stop), 2*systemctlTimeout)
	defer cancel()
	// A keadm cut off by a power failure leaves its lock; whether or not
	// keadm ran since, no keadm may find it after this job.
	u.clearStaleLock()
	if err := u.job.removeBinaries(); err != nil {
		fmt.Fprintf(u.log, "remove the job's binaries: %v\n", err)
	}
	if err := (systemd{o: u.o, log: u.log}).remove(ctx); err != nil {
		fmt.Fprintf(u.log, "remove the unit: %v\n", err)
	}
	u.collectOldJobs()
	fmt.Fprintln(u.log, "done; the unit has removed itself")
}

func (u *unitRunner) collectOldJobs() {
	removed, err := collectOldJobs(u.host.path(JobsDir), u.host.path(SystemdUnitDir), u.o.JobUID, u.o.KeepJobRecords)
	if len(removed) > 0 {
		fmt.Fprintf(u.log, "removed what earlier jobs left on the node: %s\n", strings.Join(removed, ", "))
	}
	if err != nil {
		fmt.Fprintf(u.log, "collect earlier jobs' leftovers: %v\n", err)
	}
}

// edgecoreBeforeFile records edgecore's state as the upgrade started, so
// that a resumed upgrade can tell whether keadm replaced the binary.
const edgecoreBeforeFile = "edgecore-before.json"

func (s jobState) recordEdgecoreBefore(st edgecoreState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileDurable(s.path(edgecoreBeforeFile), data)
}

func (s jobState) edgecoreBefore() (edgecoreState, bool) {
	data, err := readNoFollow(s.path(edgecoreBeforeFile))
	if err != nil {
		return edgecoreState{}, false
	}
	var st edgecoreState
	if err := json.Unmarshal(data, &st); err != nil {
		return edgecoreState{}, false
	}
	return st, true
}

// ctrNamespace is the containerd namespace of the kubelet's (and keadm's)
// images.
const ctrNamespace = "k8s.io"

// nameVerifiedImage gives the install image the pod pulled by digest the
// tag keadm asks for, <repo>:<to-version>, replacing whatever that tag
// pointed to on the node: keadm upgrade edge asks the container runtime
// for that tag first and pulls only when it is missing, so it then copies
// edgecore out of the image whose digest the job pinned. The kubelet
// stores an image pulled by digest under <repo>@<digest> alone
// (containerd drops the tag of a digested reference). Nothing to do for a
// job that pins no digest.
func (u *unitRunner) nameVerifiedImage(repo string) error {
	if u.o.ImageDigest == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(u.stop), time.Minute)
	defer cancel()
	pinned, tagged := imageref.Pinned(repo, u.o.ImageDigest), repo+":"+u.o.ToVersion
	res := runCommand(ctx, u.log, "ctr", u.o.hostCommand("ctr", "--namespace", ctrNamespace, "images", "tag", "--force", pinned, tagged))
	if res.err != nil {
		return fmt.Errorf("could not name the image pulled by digest %s %s for keadm (ctr images tag): %w", pinned, tagged, withTailErr(res))
	}
	return nil
}
