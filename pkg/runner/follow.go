package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The pod's backup and upgrade containers launch the job's unit and follow
// it; what they report is what the unit records. A container that is
// stopped (the pod deleted, the new edgecore stopping the pod it does not
// know yet) keeps following for FollowAfterStop, so that the outcome still
// reaches its termination message, and asks the unit not to start anything
// new (a cancel the unit honours only before the upgrade begins).

// FollowAfterStop is how long a stopped container keeps following the job's
// unit before it reports that it stopped (ExitDetached). It covers the
// settle check (up to 2 x DefaultEdgecoreSettle): measured on a real node,
// the new edgecore stops the upgrade container 0.5-1 s after keadm started
// it, and the first terminated state is the one the API server keeps.
const FollowAfterStop = 2*DefaultEdgecoreSettle + 15*time.Second

// FollowGrace is how long past the job's budget a container follows a unit
// that still runs: a rollback that began at the end of the budget (the
// settle check, then keadm rollback). The pod's activeDeadlineSeconds must
// leave it this much past the budget.
const FollowGrace = 2*DefaultEdgecoreSettle + RollbackTimeout + 30*time.Second

// followPoll is how often a follower looks for the step's record.
const followPoll = 250 * time.Millisecond

// unitCheckEvery is how often a follower asks systemd about the unit.
const unitCheckEvery = 5 * time.Second

// launchWait is how long the upgrade container leaves the backup container
// to record why it did not start the unit, before it says so itself.
const launchWait = 2 * unitCheckEvery

// maxUnitRestarts bounds how often a follower starts the unit again after
// finding it stopped without a record; systemd itself restarts it after a
// crash.
const maxUnitRestarts = 3

// launchAndFollow is the backup container: once the step before it
// succeeded, it starts the job's unit on the host (unless an earlier run
// did) and reports the unit's backup.
func (r *stepRunner) launchAndFollow(ctx context.Context, rep Report) (Report, int) {
	if r.o.After != "" {
		prev, err := r.waitFor(ctx, r.o.After)
		if err != nil {
			rep.Reason = "nothing was run: " + err.Error()
			if ctx.Err() != nil {
				_ = r.job.requestCancel("the upgrade pod was stopped")
			}
			return r.notLaunched(rep, ExitDeadline)
		}
		if prev.ExitCode != ExitOK {
			rep.Reason = fmt.Sprintf("not run: step %s failed (exit %d)", r.o.After, prev.ExitCode)
			return r.notLaunched(rep, ExitNotRun)
		}
	}
	if err := r.launch(ctx); err != nil {
		var refusal launchRefusal
		if errors.As(err, &refusal) {
			rep.Reason = refusal.reason
			return r.notLaunched(rep, refusal.code)
		}
		rep.Reason = "nothing was run: could not start the job's unit on the host: " + err.Error()
		return r.notLaunched(rep, ExitUnsupported)
	}
	return r.follow(ctx, StepBackup, rep)
}

// launchRefusal is a reason not to start the unit at all.
type launchRefusal struct {
	code   int
	reason string
}

func (l launchRefusal) Error() string { return l.reason }

// launch starts the job's unit, once: under the job's lock, and only when no
// earlier run of this container did.
func (r *stepRunner) launch(ctx context.Context) error {
	ctx, cancel := r.budgetCtx(ctx)
	defer cancel()
	unlock, err := r.job.lock(ctx)
	if err != nil {
		return launchRefusal{ExitDeadline, "nothing was run: " + err.Error()}
	}
	defer unlock()
	if _, ok := r.job.recorded(StepBackup); ok || r.systemd.installed() {
		fmt.Fprintf(r.log, "the job's unit %s was started by an earlier run of this container; following it\n", UnitName(r.o.JobUID))
		return nil
	}
	if ctx.Err() != nil {
		_ = r.job.requestCancel("the upgrade pod was stopped")
		return launchRefusal{ExitDeadline, "nothing was run: the container was stopped before it started the upgrade"}
	}
	// Backup comes first of the steps that touch the node, so these
	// refusals come before anything changes.
	if err := r.host.requireSystemd(); err != nil {
		return launchRefusal{ExitUnsupported, "node not supported, nothing was done: " + err.Error()}
	}
	if left, why := r.budget.left(r.host); left < MinUpgradeBudget {
		if why == "" {
			why = fmt.Sprintf("only %s of the job's budget of %s is left on this node, less than the %s an upgrade needs",
				left.Round(time.Second), r.budget.Budget, MinUpgradeBudget)
		}
		return launchRefusal{ExitDeadline, "nothing was run: " + why}
	}
	if err := copyExecutable(r.host.path(HostRunnerPath(r.o.JobUID))); err != nil {
		return fmt.Errorf("copy the runner to the host: %w", err)
	}
	plan, err := json.Marshal(planOf(r.o))
	if err != nil {
		return err
	}
	if err := writeFileDurable(r.job.path(PlanFile), plan); err != nil {
		return fmt.Errorf("write the job's plan: %w", err)
	}
	fmt.Fprintf(r.log, "starting the job's unit %s on the host: it backs up, upgrades and checks edgecore, "+
		"and finishes or rolls back whatever happens to this pod\n", UnitName(r.o.JobUID))
	if err := r.systemd.install(context.WithoutCancel(ctx)); err != nil {
		// Nothing ran: take the unit away again, so no boot starts it.
		_ = (systemd{o: r.o, log: r.log}).remove(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// follow waits for the unit to record step and reports the record. It
// starts the unit again when systemd shows it stopped with no record (a
// crash beyond systemd's own restarts, a person's systemctl stop).
func (r *stepRunner) follow(ctx context.Context, step Step, rep Report) (Report, int) {
	left, _ := r.budget.left(r.host)
	limit := time.Now().Add(left + FollowGrace)
	var stoppedAt, lastCheck time.Time
	seenUnit, restarts := false, 0
	for {
		if rec, ok := r.job.recorded(step); ok {
			return rec.Report, rec.ExitCode
		}
		now := time.Now()
		if ctx.Err() != nil && stoppedAt.IsZero() {
			stoppedAt = now
			fmt.Fprintf(r.log, "asked to stop; following the job's unit for up to %s more\n", FollowAfterStop)
			if err := r.job.requestCancel("the upgrade pod was stopped"); err != nil {
				fmt.Fprintf(r.log, "ask the unit not to start anything new: %v\n", err)
			}
		}
		switch {
		case !stoppedAt.IsZero() && now.Sub(stoppedAt) >= FollowAfterStop:
			return r.detached(step, rep, "the container was stopped")
		case now.After(limit):
			return r.detached(step, rep, fmt.Sprintf("the job's budget of %s and %s more have passed", r.budget.Budget, FollowGrace))
		}
		if now.Sub(lastCheck) >= unitCheckEvery {
			lastCheck = now
			if rep, code, done := r.checkUnit(ctx, step, rep, &seenUnit, &restarts); done {
				return rep, code
			}
		}
		time.Sleep(followPoll)
	}
}

// checkUnit looks at the unit while a follower waits: it reports done with
// a verdict when the unit is gone or keeps stopping without a record.
func (r *stepRunner) checkUnit(ctx context.Context, step Step, rep Report, seenUnit *bool, restarts *int) (Report, int, bool) {
	if !r.systemd.installed() {
		if _, ok := r.job.recorded(step); ok {
			return rep, 0, false // recorded meanwhile; the loop reports it
		}
		if *seenUnit {
			rep.NeedsAttention = true
			verdict, code := rep.failed(ExitNeedsAttention, fmt.Sprintf("the job's unit %s was removed from the node without recording step %s", UnitName(r.o.JobUID), step))
			return verdict, code, true
		}
		_, backupDone := r.job.recorded(StepBackup)
		if left, why := r.budget.left(r.host); left <= 0 && !backupDone && time.Since(r.started) > launchWait {
			// Not started by the backup container within the budget, and
			// that container said nothing (it died): say it here.
			if step == StepUpgrade {
				rep.Result, rep.Reason = ResultFailed, "nothing was run: the upgrade was never started on the node: "+why
				if err := r.job.recordIfAbsent(StepUpgrade, rep, ExitDeadline); err != nil {
					fmt.Fprintf(r.log, "record step %s: %v\n", step, err)
				}
				rec, _ := r.job.recorded(StepUpgrade)
				return rec.Report, rec.ExitCode, true
			}
		}
		return rep, 0, false
	}
	*seenUnit = true
	st, err := r.systemd.state(context.WithoutCancel(ctx))
	if err != nil {
		fmt.Fprintf(r.log, "ask systemd about the job's unit: %v\n", err)
		return rep, 0, false
	}
	if st.running() {
		return rep, 0, false
	}
	if _, ok := r.job.recorded(step); ok {
		return rep, 0, false
	}
	if *restarts >= maxUnitRestarts {
		rep.NeedsAttention = true
		verdict, code := rep.failed(ExitNeedsAttention, fmt.Sprintf("the job's unit %s keeps stopping without recording step %s (%s, started again %d times); "+
			"it runs again at the node's next boot", UnitName(r.o.JobUID), step, st, *restarts))
		return verdict, code, true
	}
	*restarts++
	fmt.Fprintf(r.log, "the job's unit is %s without a record of step %s; starting it again\n", st, step)
	if err := r.systemd.start(context.WithoutCancel(ctx)); err != nil {
		fmt.Fprintf(r.log, "start the job's unit again: %v\n", err)
	}
	return rep, 0, false
}

// detached is the report of a follower that stops before the unit recorded
// step: the unit goes on by itself.
func (r *stepRunner) detached(step Step, rep Report, why string) (Report, int) {
	rep.Step, rep.Detached = step, true
	return rep.failed(ExitDetached, fmt.Sprintf("stopped following the upgrade on the node before step %s ended (%s); "+
		"the job's unit %s goes on there and ends with edgecore on one version", step, why, UnitName(r.o.JobUID)))
}
