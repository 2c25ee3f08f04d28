package runner

import (
	"context"
	"fmt"
	"os"
)

// A job with a health gate (spec.healthGate) judges each node after its
// upgrade committed, from the cloud: the Node must stay Ready on the target
// for a soak, and the pods the job selects on it must be Running and Ready.
// A node that fails its gate is rolled back the way any rollback runs: by
// the job's unit on the host, with keadm rollback edge from the backup the
// upgrade made. The controller asks for it with a rollback pod: its copy-keadm
// puts keadm back in the job's binaries directory, and its rollback
// container (requestRollback) records the request in the job's records
// (RollbackRequestFile), starts the unit again and follows it to its
// rollback record. The unit (gateRollback) rolls back once: a unit started
// again finds the record; one cut off by a power failure after it began
// runs keadm rollback again, as an interrupted rollback of an upgrade does.

// RollbackRequestFile, in the job's directory, asks the job's unit to roll
// back an upgrade it committed: the job's health gate failed.
const RollbackRequestFile = "rollback.requested"

// gateRollbackReason is why the unit rolls a committed upgrade back.
const gateRollbackReason = "the job's health gate failed after the upgrade (judged by the controller)"

func (s jobState) rollbackRequested() bool {
	_, err := os.Lstat(s.path(RollbackRequestFile))
	return err == nil
}

// requestRollback is the rollback pod's container: it asks the job's unit to
// roll the node back and reports the unit's rollback record.
func (r *stepRunner) requestRollback(ctx context.Context, rep Report) (Report, int) {
	rep.Step = StepRollback
	up, ok := r.job.recorded(StepUpgrade)
	if !ok || up.ExitCode != ExitOK {
		// Only a committed upgrade has a gate; anything else was rolled
		// back or left alone by the upgrade's own unit.
		return rep.failed(ExitNotRun, "nothing to roll back: this job's upgrade on the node is not recorded as committed")
	}
	if err := writeFileDurable(r.job.path(RollbackRequestFile), []byte(gateRollbackReason+"\n")); err != nil {
		return rep.failed(ExitUnsupported, "nothing was run: could not record the rollback request on the host: "+err.Error())
	}
	if err := copyExecutable(r.host.path(HostRunnerPath(r.o.JobUID))); err != nil {
		return rep.failed(ExitUnsupported, "nothing was run: copy the runner to the host: "+err.Error())
	}
	fmt.Fprintf(r.log, "starting the job's unit %s again on the host: %s; it rolls edgecore back from the upgrade's backup\n",
		UnitName(r.o.JobUID), gateRollbackReason)
	if err := r.systemd.install(context.WithoutCancel(ctx)); err != nil {
		return rep.failed(ExitUnsupported, "nothing was run: could not start the job's unit on the host: "+err.Error())
	}
	return r.follow(ctx, StepRollback, rep)
}

// gateRollback is the unit's part: keadm rollback edge from the job's
// backup, recorded as the rollback step.
func (u *unitRunner) gateRollback(base Report) {
	if _, ok := u.job.recorded(StepRollback); ok {
		fmt.Fprintln(u.log, "the rollback the health gate asked for is recorded already; nothing to do")
		return
	}
	up, ok := u.job.recorded(StepUpgrade)
	if !ok || up.ExitCode != ExitOK {
		u.notRun(StepRollback, base, ExitNotRun, "nothing to roll back: this job's upgrade on the node is not recorded as committed")
		return
	}
	fmt.Fprintf(u.log, "%s; rolling back\n", gateRollbackReason)
	u.clearStaleLock()
	rep, code := u.rollback(base, gateRollbackReason)
	u.recordOutcome(StepRollback, rep, code)
}
