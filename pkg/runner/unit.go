package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
)

// The job's unit: backup, upgrade, settle check, commit or rollback run on
// the host as a systemd service of their own, not in the upgrade pod. In the
// pod they died with it: a container's death (a kill, an OOM, an eviction, a
// force-deleted pod, the new edgecore stopping the pod it does not know)
// kills every process in its cgroup, keadm included, and left keadm's lock,
// a stopped or half-replaced edgecore and no kubelet to run anything else.
// The unit is in its own cgroup, so nothing that happens to the pod or to
// edgecore touches it.
//
// It is a unit file enabled in /etc/systemd/system rather than a transient
// unit (systemd-run): enabled, it starts again at every boot until it has
// finished, which is what finishes or rolls back an upgrade cut by a power
// failure, with no pod and no link to the cloud. Started again while it runs,
// it does nothing (systemctl start of an active unit is a no-op), so a
// container started again, a second pod or the boot never starts a second
// keadm; started after it finished, it reports from its records. Its last act
// is to disable and remove itself: after the commit (or the rollback) nothing
// of it stays on the node but the job's small records.

// unitFile renders the job's unit.
func unitFile(o Options) string {
	name := o.JobName
	if name == "" {
		name = "(unnamed)"
	}
	return fmt.Sprintf(`# Written by nodeupgrade-runner for NodeUpgradeJob %[1]s (UID %[2]s).
# It removes itself when the upgrade is committed or rolled back.
[Unit]
Description=nodeupgrade: upgrade edgecore to %[3]s (NodeUpgradeJob %[1]s)
# keadm pulls the installation package through containerd and replaces
# edgecore; at boot, resume once both have been started.
After=containerd.service edgecore.service
# No start rate limit: a follower or the next boot may start it again.
StartLimitIntervalSec=0

[Service]
Type=exec
ExecStart=%[4]s %[5]s --job-uid=%[2]s
# A crash or a kill (OOM) starts it again; it resumes from its records.
Restart=on-failure
RestartSec=5
# Stopped (a shutdown), it lets the keadm command that runs finish, then
# exits; the next start resumes.
KillMode=mixed
TimeoutStopSec=%[6]d

[Install]
WantedBy=multi-user.target
`, name, o.JobUID, o.ToVersion, HostRunnerPath(o.JobUID), SubcommandHost, int(unitStopTimeout/time.Second))
}

// unitStopTimeout is how long systemd waits for a stopped unit (at
// shutdown) before it kills it: the longest keadm command it lets finish.
const unitStopTimeout = RollbackTimeout + 30*time.Second

// systemd runs systemctl on the host for the job's unit.
type systemd struct {
	o   Options
	log io.Writer
}

func (s systemd) systemctl(ctx context.Context, args ...string) cmdResult {
	return s.systemctlTo(ctx, s.log, args...)
}

// systemctlTo runs systemctl logging to log (io.Discard for the frequent
// state queries).
func (s systemd) systemctlTo(ctx context.Context, log io.Writer, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(ctx, systemctlTimeout)
	defer cancel()
	return runCommand(ctx, log, "systemctl "+strings.Join(args, " "), s.o.hostCommand("systemctl", args...))
}

// systemctlTimeout bounds one systemctl call.
const systemctlTimeout = 30 * time.Second

// unitPath is the job's unit file as the runner sees it.
func (s systemd) unitPath() string { return host{root: s.o.HostRoot}.path(UnitPath(s.o.JobUID)) }

// installed reports whether the job's unit file is on the host.
func (s systemd) installed() bool {
	_, err := os.Lstat(s.unitPath())
	return err == nil
}

// install writes, enables and starts the job's unit. Each part is
// idempotent, so an install cut short is finished by the next one.
func (s systemd) install(ctx context.Context) error {
	if err := writeFileDurable(s.unitPath(), []byte(unitFile(s.o))); err != nil {
		return fmt.Errorf("write the unit file: %w", err)
	}
	for _, args := range [][]string{{"daemon-reload"}, {"enable", UnitName(s.o.JobUID)}} {
		if res := s.systemctl(ctx, args...); res.err != nil {
			return withTailErr(res)
		}
	}
	return s.start(ctx)
}

// start starts the job's unit without waiting for it (a no-op while it
// runs).
func (s systemd) start(ctx context.Context) error {
	if res := s.systemctl(ctx, "start", "--no-block", UnitName(s.o.JobUID)); res.err != nil {
		return withTailErr(res)
	}
	return nil
}

// unitState is what systemd says of the job's unit.
type unitState struct {
	ActiveState, SubState, Result string
}

// running reports whether the unit's process runs or is about to.
func (u unitState) running() bool {
	switch u.ActiveState {
	case "active", "activating", "reloading", "deactivating":
		return true
	}
	return false
}

func (u unitState) String() string {
	return fmt.Sprintf("%s/%s (result %s)", u.ActiveState, u.SubState, u.Result)
}

// state asks systemd about the job's unit.
func (s systemd) state(ctx context.Context) (unitState, error) {
	res := s.systemctlTo(ctx, io.Discard, "show", "--property=ActiveState,SubState,Result", UnitName(s.o.JobUID))
	if res.err != nil {
		return unitState{}, withTailErr(res)
	}
	var st unitState
	for _, line := range strings.Split(res.tail, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "ActiveState":
			st.ActiveState = v
		case "SubState":
			st.SubState = v
		case "Result":
			st.Result = v
		}
	}
	if st.ActiveState == "" {
		return st, errors.New("systemctl show printed no ActiveState")
	}
	return st, nil
}

// remove disables the job's unit and deletes its file: the unit's last act.
func (s systemd) remove(ctx context.Context) error {
	var errs []error
	if res := s.systemctl(ctx, "disable", UnitName(s.o.JobUID)); res.err != nil {
		errs = append(errs, withTailErr(res))
	}
	if err := os.Remove(s.unitPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if res := s.systemctl(ctx, "daemon-reload"); res.err != nil {
		errs = append(errs, withTailErr(res))
	}
	return errors.Join(errs...)
}

// withTailErr is a failed command's error with the last line it printed.
func withTailErr(res cmdResult) error {
	tail := strings.TrimRight(res.tail, "\n")
	if tail == "" {
		return res.err
	}
	return fmt.Errorf("%w: %s", res.err, tail[strings.LastIndexByte(tail, '\n')+1:])
}
