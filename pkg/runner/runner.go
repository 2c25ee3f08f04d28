package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Main runs nodeupgrade-runner with args (without the program name) and
// returns the process exit code. The step subcommands (check, backup,
// upgrade: the upgrade pod's containers) always write a Report to the
// termination message path, also when the arguments are bad; the host
// subcommand is the job's unit on the host and logs only.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if len(args) == 0 {
		// Not how the pod calls the runner; a person at a shell gets usage
		// and no file written to /dev.
		fmt.Fprintf(stderr, "usage: nodeupgrade-runner check|confirm|backup|upgrade|%s [flags]\n", SubcommandHost)
		return ExitBadArgs
	}
	switch args[0] {
	case SubcommandHost:
		return HostMain(ctx, args[1:], stdout)
	case SubcommandStage:
		fmt.Fprintln(stdout, "the runner image is on this node")
		return ExitOK
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
		rep, code = runStep(ctx, step, o, stdout)
	}
	data := rep.Marshal()
	fmt.Fprintf(stdout, "report: %s\n", data)
	if err := os.WriteFile(o.TerminationMessagePath, data, 0o644); err != nil {
		// The exit code still tells the controller what happened.
		fmt.Fprintf(stderr, "nodeupgrade-runner: write termination message: %v\n", err)
	}
	return code
}

// stepRunner runs one of the upgrade pod's steps.
type stepRunner struct {
	o       Options
	log     io.Writer
	host    host
	job     jobState
	systemd systemd
	budget  budgetRecord
	started time.Time // when this container's runner started
}

// runStep runs one of the pod's steps with validated options, logging to log,
// and returns its report and exit code. ctx ends when the container is asked
// to stop.
//
// A step's outcome is recorded on the host and a repeated run reports the
// record: check records its own; backup and upgrade report what the job's
// unit records (see hostjob.go).
func runStep(ctx context.Context, step Step, o Options, log io.Writer) (Report, int) {
	r := &stepRunner{o: o, log: log, host: host{root: o.HostRoot}, systemd: systemd{o: o, log: log}, started: time.Now()}
	r.job = jobState{dir: r.host.path(JobDir(o.JobUID))}
	base := Report{Step: step, FromVersion: o.FromVersion, ToVersion: o.ToVersion}

	if rec, ok := r.job.recorded(step); ok {
		fmt.Fprintf(log, "step %s already ran for this job on this node; reporting its recorded result\n", step)
		r.removeLeftBinaries()
		return rec.Report, rec.ExitCode
	}
	switch {
	case step == StepCheck:
		return r.check(ctx, base)
	case step == StepConfirm:
		return r.confirm(ctx, base)
	case o.RequireConfirmation:
		// The job's budget on the node starts with its confirmation: the
		// wait spends none of it.
		if rep, code, ok := r.waitConfirmed(ctx, base); !ok {
			return rep, code
		}
	}
	if err := os.MkdirAll(r.job.dir, 0o755); err != nil {
		return base.failed(ExitUnsupported, "nothing was run: cannot make the job's directory on the host: "+err.Error())
	}
	budget, err := r.job.startBudget(r.host, o, log)
	if err != nil {
		return base.failed(ExitUnsupported, "nothing was run: cannot start the job's budget on the node: "+err.Error())
	}
	r.budget = budget
	switch step {
	case StepBackup:
		return r.launchAndFollow(ctx, base)
	case StepRollback:
		return r.requestRollback(ctx, base)
	}
	return r.follow(ctx, StepUpgrade, base)
}

// removeLeftBinaries removes the job's binaries when its work on the node is
// over (the upgrade recorded, the unit gone) but they are back: a kubelet
// that runs the pod again after edgecore restarted (seen on real nodes)
// runs copy-keadm again too, after the unit removed them.
func (r *stepRunner) removeLeftBinaries() {
	if _, done := r.job.recorded(StepUpgrade); !done || r.systemd.installed() {
		return
	}
	if _, err := os.Lstat(r.job.binDir()); err != nil {
		return
	}
	if err := r.job.removeBinaries(); err != nil {
		fmt.Fprintf(r.log, "remove the job's binaries, back after its end: %v\n", err)
		return
	}
	fmt.Fprintln(r.log, "removed the job's binaries, which a container run again had put back")
}

// budgetCtx is ctx ended when the job's budget on the node runs out.
func (r *stepRunner) budgetCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	left, _ := r.budget.left(r.host)
	return context.WithTimeout(ctx, left)
}

// check reads the host's usage against the thresholds. It changes nothing
// on the node and runs as an unprivileged user that cannot write the host:
// it hands its outcome to the backup container through the pod's handoff
// directory (HandoffDir), and the backup container records it on the host.
func (r *stepRunner) check(ctx context.Context, rep Report) (Report, int) {
	summary, err := runChecks(ctx, r.o)
	code := ExitOK
	rep.Result, rep.Reason = ResultSucceeded, summary
	if err != nil {
		code = ExitCheckFailed
		rep.Result = ResultFailed
		rep.Reason = "check failed: " + err.Error()
		if summary != "" {
			rep.Reason += " (passed: " + summary + ")"
		}
	}
	if err := r.handoff().record(StepCheck, rep, code); err != nil {
		// The report still reaches the controller through the termination
		// message; the backup container then waits for the check until the
		// budget ends.
		fmt.Fprintf(r.log, "hand the check's outcome to the backup container: %v\n", err)
	}
	return rep, code
}

// handoff is the pod's handoff directory, where the check leaves its
// outcome for the backup container.
func (r *stepRunner) handoff() jobState { return jobState{dir: r.o.HandoffDir} }

// recorded finds step's outcome: recorded on the host, or handed over in
// the pod (then it is recorded on the host now, where a container run again
// after the handoff directory is gone finds it).
func (r *stepRunner) recorded(step Step) (stepRecord, bool) {
	if rec, ok := r.job.recorded(step); ok {
		return rec, true
	}
	if r.o.HandoffDir == "" {
		return stepRecord{}, false
	}
	rec, ok := r.handoff().recorded(step)
	if ok {
		if err := r.job.recordIfAbsent(step, rec.Report, rec.ExitCode); err != nil {
			fmt.Fprintf(r.log, "record step %s on the host: %v\n", step, err)
		}
	}
	return rec, ok
}

// notLaunched records that backup and upgrade will not run, the unit never
// having been started, and removes the job's binaries: the job's work on
// the node is over.
func (r *stepRunner) notLaunched(rep Report, code int) (Report, int) {
	rep.Step, rep.Result = StepBackup, ResultFailed
	if err := r.job.recordIfAbsent(StepBackup, rep, code); err != nil {
		fmt.Fprintf(r.log, "record that step %s did not run: %v\n", StepBackup, err)
	}
	up := rep
	up.Step, up.Reason = StepUpgrade, fmt.Sprintf("not run: step %s did not run", StepBackup)
	if err := r.job.recordIfAbsent(StepUpgrade, up, ExitNotRun); err != nil {
		fmt.Fprintf(r.log, "record that step %s did not run: %v\n", StepUpgrade, err)
	}
	if err := r.job.removeBinaries(); err != nil {
		fmt.Fprintf(r.log, "remove this job's binaries: %v\n", err)
	}
	rec, _ := r.job.recorded(StepBackup)
	return rec.Report, rec.ExitCode
}

// handoffPoll is how often a step waiting for the one before it looks for
// that step's record.
const handoffPoll = 250 * time.Millisecond

// waitFor waits until step's record exists, or the budget or ctx ends.
func (r *stepRunner) waitFor(ctx context.Context, step Step) (stepRecord, error) {
	ctx, cancel := r.budgetCtx(ctx)
	defer cancel()
	for {
		if rec, ok := r.recorded(step); ok {
			return rec, nil
		}
		select {
		case <-ctx.Done():
			why := "the job's budget on this node ran out"
			if _, w := r.budget.left(r.host); w != "" {
				why = w
			}
			if errors.Is(ctx.Err(), context.Canceled) {
				why = "the container was asked to stop"
			}
			return stepRecord{}, fmt.Errorf("step %s had not finished when %s", step, why)
		case <-time.After(handoffPoll):
		}
	}
}

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

// copyExecutable copies the running runner to dst on the host, whole, for
// the job's unit to run there.
func copyExecutable(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(self)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return replaceDurably(dst, data, 0o755)
}
