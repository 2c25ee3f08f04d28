package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Main runs nodeupgrade-runner with args (without the program name) and
// returns the process exit code. Step subcommands always write a Report to
// the termination message path, also when the arguments are bad.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == CmdRollingBack {
		return probeRollingBack(args[1:], stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if len(args) == 0 {
		// Not how the pod calls the runner; a person at a shell gets usage
		// and no file written to /dev.
		fmt.Fprintf(stderr, "usage: nodeupgrade-runner check|backup|upgrade|%s [flags]\n", CmdRollingBack)
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
func Run(ctx context.Context, step Step, o Options, log io.Writer, now func() time.Time) (Report, int) {
	r := &stepRunner{o: o, log: log}
	base := Report{Step: step, FromVersion: o.FromVersion, ToVersion: o.ToVersion}

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

	// Idempotency: a node already on the target (a retried pod, or an
	// upgrade finished before the controller noticed) must not be touched.
	if current := r.currentVersion(ctx); current != "" {
		base.FromVersion = current
		if current == o.ToVersion {
			base.Result = ResultSkipped
			base.Reason = fmt.Sprintf("edgecore already at %s, nothing done", current)
			return base, ExitOK
		}
	}

	switch step {
	case StepCheck:
		return r.check(ctx, base)
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
	o   Options
	log io.Writer
}

// edgecoreVersionRE finds the version in `edgecore --version` output, which
// reads like "KubeEdge v1.21.0".
var edgecoreVersionRE = regexp.MustCompile(`KubeEdge\s+(v\d+\.\d+\.\d+(?:-[A-Za-z0-9_.]+)*)`)

// currentVersion asks the host's edgecore for its version; "" when it cannot
// tell, in which case the steps go ahead (keadm itself copes with a node it
// cannot query).
func (r *stepRunner) currentVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, DefaultVersionQueryTimeout)
	defer cancel()
	res := run(ctx, r.log, "edgecore --version", r.o.hostArgv(r.o.Edgecore, "--version"))
	if res.err != nil {
		fmt.Fprintf(r.log, "cannot query edgecore version, proceeding: %v\n", res.err)
		return ""
	}
	m := edgecoreVersionRE.FindStringSubmatch(res.tail)
	if m == nil {
		fmt.Fprintf(r.log, "edgecore printed no version, proceeding\n")
		return ""
	}
	return m[1]
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

func (r *stepRunner) backup(ctx context.Context, rep Report) (Report, int) {
	res := r.keadm(ctx, "backup", "edge")
	if res.err != nil {
		rep.Result = ResultFailed
		rep.Reason = withTail("backup failed: "+res.err.Error(), "keadm backup edge", res.tail)
		return rep, ExitBackupFailed
	}
	rep.Result = ResultSucceeded
	rep.Reason = "backup done"
	return rep, ExitOK
}

func (r *stepRunner) upgrade(ctx context.Context, rep Report) (Report, int) {
	res := r.keadm(ctx, "upgrade", "edge", "--toVersion", r.o.ToVersion, "--image", r.o.Image, "--force")
	upErr := res.err
	if upErr == nil {
		// keadm has been known to exit 0 without replacing edgecore; trust
		// the binary over the exit code when it can be asked.
		if v := r.currentVersion(context.WithoutCancel(ctx)); v != "" && v != r.o.ToVersion {
			upErr = fmt.Errorf("keadm upgrade edge succeeded but edgecore reports %s", v)
		}
	}
	if upErr == nil {
		rep.Result = ResultSucceeded
		rep.Reason = fmt.Sprintf("upgraded edgecore from %s to %s", orUnknown(rep.FromVersion), r.o.ToVersion)
		return rep, ExitOK
	}
	upReason := withTail(fmt.Sprintf("upgrade to %s failed: %v", r.o.ToVersion, upErr), "keadm upgrade edge", res.tail)

	// The rollback gets its own time budget, not what is left before the
	// deadline, and is not cancelled by SIGTERM: a half-upgraded node is the
	// worst outcome. The pod's activeDeadlineSeconds and grace period leave
	// room for it.
	rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.RollbackTimeout)
	defer cancel()
	r.setRollingBack(true)
	rb := r.keadm(rbCtx, "rollback", "edge")
	r.setRollingBack(false)

	rep.Step = StepRollback
	rep.Result = ResultFailed
	if rb.err != nil {
		rep.NeedsAttention = true
		rep.Reason = withTail(fmt.Sprintf("rollback failed too, the node needs attention: %v", rb.err), "keadm rollback edge", rb.tail) +
			"\n" + upReason
		return rep, ExitNeedsAttention
	}
	rep.RolledBack = true
	rep.Reason = fmt.Sprintf("rollback succeeded, the node is back on %s; ", orUnknown(rep.FromVersion)) + upReason
	return rep, ExitRolledBack
}

// setRollingBack creates or removes the readiness marker. Failures are only
// logged: the marker is cosmetic (a live RollingBack state), the report is
// what counts.
func (r *stepRunner) setRollingBack(on bool) {
	if r.o.RollbackMarker == "" {
		return
	}
	var err error
	if on {
		if err = os.MkdirAll(filepath.Dir(r.o.RollbackMarker), 0o755); err == nil {
			err = os.WriteFile(r.o.RollbackMarker, []byte("rolling back\n"), 0o644)
		}
	} else if err = os.Remove(r.o.RollbackMarker); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		fmt.Fprintf(r.log, "rollback marker %s: %v\n", r.o.RollbackMarker, err)
	}
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

// probeRollingBack implements the rolling-back subcommand, the upgrade
// container's readiness probe: exit 0 while the marker exists.
func probeRollingBack(args []string, stderr io.Writer) int {
	marker := DefaultRollbackMarker
	if len(args) == 1 && strings.HasPrefix(args[0], "--rollback-marker=") {
		marker = strings.TrimPrefix(args[0], "--rollback-marker=")
	} else if len(args) != 0 {
		fmt.Fprintf(stderr, "usage: nodeupgrade-runner %s [--rollback-marker=PATH]\n", CmdRollingBack)
		return ExitBadArgs
	}
	if _, err := os.Stat(marker); err != nil {
		return 1
	}
	return ExitOK
}
