package kubeedgeworld

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// Node is one real edge node: a Debian machine booted by systemd-nspawn
// with systemd as PID 1, its own network namespace, containerd service and
// edgecore service.
type Node struct {
	name    string // the Kubernetes Node name (edgecore's hostnameOverride)
	arch    string // "" for the build machine's, ArchARM64 (arm64.go)
	machine string // nspawn machine name, unique on the host
	dir     string
	rootfs  string
	ip      string
	logPath string

	cmd     *exec.Cmd
	cgroups *machineCgroups // the machine's own, on the host (cgroup.go)
	logFile *os.File
	exited  chan struct{}
	waitErr error

	mu     sync.Mutex
	leader int
}

// Name is the Kubernetes Node name.
func (n *Node) Name() string { return n.name }

// Arch is the node's architecture: "" for the build machine's, or
// ArchARM64.
func (n *Node) Arch() string { return n.arch }

// Rootfs is the machine's root folder on the host: its /etc/kubeedge,
// /var/lib/kubeedge and /usr/local/bin are under it.
func (n *Node) Rootfs() string { return n.rootfs }

// HostPath maps a path inside the machine to the host (Rootfs + p).
func (n *Node) HostPath(p string) string { return filepath.Join(n.rootfs, p) }

// IP is the machine's address on the world's bridge (edgecore's nodeIP).
func (n *Node) IP() string { return n.ip }

// LogPath is the file holding the machine's console (systemd's boot output).
func (n *Node) LogPath() string { return n.logPath }

// LeaderPID is the host pid of the machine's PID 1 (systemd).
func (n *Node) LeaderPID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leader
}

// ExecResult is one command's output inside a node.
type ExecResult struct {
	Stdout, Stderr string
	ExitCode       int
	Err            error
}

func (r ExecResult) String() string {
	return fmt.Sprintf("exit %d, stdout:\n%s\nstderr:\n%s", r.ExitCode, r.Stdout, r.Stderr)
}

// nodeEnv is the environment commands get inside a node.
var nodeEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C.UTF-8",
	"SYSTEMD_PAGER=cat",
	"SYSTEMD_COLORS=0",
}

// Exec runs argv (no shell) inside the machine, in all of its namespaces
// (nsenter -t <PID 1> -a), as root.
func (n *Node) Exec(ctx context.Context, argv ...string) ExecResult {
	pid := n.LeaderPID()
	if pid == 0 {
		return ExecResult{ExitCode: -1, Err: fmt.Errorf("node %s is not running", n.name)}
	}
	args := append([]string{"-t", strconv.Itoa(pid), "-a", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = nodeEnv
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	res := ExecResult{Stdout: out.String(), Stderr: errOut.String()}
	if err != nil {
		res.ExitCode = -1
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			res.ExitCode = exit.ExitCode()
		}
		res.Err = fmt.Errorf("node %s: %s: %w: %s", n.name, strings.Join(argv, " "), err, strings.TrimSpace(errOut.String()))
	}
	return res
}

// SystemctlShow returns `systemctl show UNIT -p P...` as a map.
func (n *Node) SystemctlShow(ctx context.Context, unit string, props ...string) (map[string]string, error) {
	argv := []string{"systemctl", "show", unit}
	for _, p := range props {
		argv = append(argv, "-p", p)
	}
	res := n.Exec(ctx, argv...)
	if res.Err != nil {
		return nil, res.Err
	}
	m := map[string]string{}
	for _, line := range strings.Split(res.Stdout, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

// EdgecoreState is what systemd knows about the edgecore service.
type EdgecoreState struct {
	ActiveState string
	MainPID     int
	NRestarts   int
	// StartedAt is ExecMainStartTimestamp, as systemd prints it.
	StartedAt string
}

// Edgecore reads the edgecore unit's state from the node's systemd.
func (n *Node) Edgecore(ctx context.Context) (EdgecoreState, error) {
	m, err := n.SystemctlShow(ctx, "edgecore", "ActiveState", "MainPID", "NRestarts", "ExecMainStartTimestamp")
	if err != nil {
		return EdgecoreState{}, err
	}
	pid, _ := strconv.Atoi(m["MainPID"])
	restarts, _ := strconv.Atoi(m["NRestarts"])
	return EdgecoreState{ActiveState: m["ActiveState"], MainPID: pid, NRestarts: restarts, StartedAt: m["ExecMainStartTimestamp"]}, nil
}

// EdgecoreStarts lists, from the node's journal, each time systemd started
// edgecore (the "Started edgecore.service" lines), as unix microseconds.
// Every start after the first is a restart: by keadm (stop+start), by
// Restart=always after a crash, or by anything else.
func (n *Node) EdgecoreStarts(ctx context.Context) ([]time.Time, error) {
	res := n.Exec(ctx, "journalctl", "--no-pager", "-o", "short-unix", "-u", "edgecore.service")
	if res.Err != nil {
		return nil, res.Err
	}
	var out []time.Time
	for _, line := range strings.Split(res.Stdout, "\n") {
		if !strings.Contains(line, "Started edgecore.service") {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		sec, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out = append(out, time.UnixMicro(int64(sec*1e6)))
	}
	return out, nil
}

// Journal returns journalctl output for a unit (all units when empty).
func (n *Node) Journal(ctx context.Context, unit string) string {
	argv := []string{"journalctl", "--no-pager", "-o", "short-precise"}
	if unit != "" {
		argv = append(argv, "-u", unit)
	}
	res := n.Exec(ctx, argv...)
	return res.Stdout + res.Stderr
}

// ReadFile reads a file inside the machine through its rootfs.
func (n *Node) ReadFile(p string) ([]byte, error) { return os.ReadFile(n.HostPath(p)) }

// boot starts systemd-nspawn on the prepared rootfs, in a cgroup of the
// machine's own (cgroup.go): the one made before, or a new one.
func (n *Node) boot(bridge string) (err error) {
	if n.cgroups == nil {
		if n.cgroups, err = createMachineCgroups(n.machine); err != nil {
			return err
		}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.cgroups.remove(time.Second))
			n.cgroups = nil
		}
	}()
	if n.logFile, err = os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return err
	}
	procs := n.cgroups.procsFiles()
	args := append([]string{"-c", joinCgroupsScript, "kubeedgeworld-join-cgroups", strconv.Itoa(len(procs))}, procs...)
	n.cmd = exec.Command("/bin/sh", append(args, "systemd-nspawn",
		"--quiet",
		"-D", n.rootfs,
		"-M", n.machine,
		"--hostname="+n.name,
		"-b",
		"--register=no",
		"--keep-unit",
		"--capability=all",
		"--network-bridge="+bridge,
		"--console=passive",
		"--resolv-conf=off",
		"--timezone=off",
		"--link-journal=no",
	)...)
	// nspawn's own requirements on this host: no host systemd or D-Bus, and
	// runc needs the session keyring that nspawn's seccomp filter denies.
	n.cmd.Env = append(os.Environ(), "SYSTEMD_SECCOMP=0", "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=0")
	n.cmd.Stdin = nil
	n.cmd.Stdout, n.cmd.Stderr = n.logFile, n.logFile
	// Own group. If this process dies, nspawn gets SIGTERM, which it turns
	// into a poweroff of the machine; the sentinel kills the rest.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := n.cmd.Start(); err != nil {
		_ = n.logFile.Close()
		return fmt.Errorf("start systemd-nspawn for %s: %w", n.name, err)
	}
	n.exited = make(chan struct{})
	go func() {
		n.waitErr = n.cmd.Wait()
		_ = n.logFile.Close()
		close(n.exited)
	}()
	return nil
}

// findLeader waits for the machine's PID 1: the child of our nspawn whose
// pid in its own namespace is 1. (/proc/PID/root cannot identify it: it
// reads "/" from outside the machine.)
func (n *Node) findLeader(ctx context.Context, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	parent := strconv.Itoa(n.cmd.Process.Pid)
	for {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			status, err := os.ReadFile("/proc/" + e.Name() + "/status")
			if err != nil {
				continue
			}
			var nspid []string
			ppid := ""
			for _, line := range strings.Split(string(status), "\n") {
				if strings.HasPrefix(line, "NSpid:") {
					nspid = strings.Fields(strings.TrimPrefix(line, "NSpid:"))
				}
				if strings.HasPrefix(line, "PPid:") {
					ppid = strings.TrimSpace(strings.TrimPrefix(line, "PPid:"))
				}
			}
			if len(nspid) == 2 && nspid[1] == "1" && ppid == parent {
				n.mu.Lock()
				n.leader = pid
				n.mu.Unlock()
				return pid, nil
			}
		}
		select {
		case <-n.exited:
			return 0, fmt.Errorf("systemd-nspawn for %s exited (%w); console:\n%s", n.name, n.waitErr, testenv.TailFile(n.logPath, 4096))
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no PID 1 for machine %s after %s", n.name, timeout)
		}
	}
}

// waitSystemd waits until the machine's systemd reports running or degraded.
func (n *Node) waitSystemd(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last ExecResult
	for {
		last = n.Exec(ctx, "systemctl", "is-system-running")
		state := strings.TrimSpace(last.Stdout)
		if state == "running" || state == "degraded" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: systemd not up (%s): %w", n.name, last.String(), ctx.Err())
		case <-n.exited:
			return fmt.Errorf("node %s: nspawn exited: %w", n.name, n.waitErr)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// stop powers the machine off (SIGRTMIN+3 to its systemd, as nspawn does on
// SIGTERM), then kills what is left: PID 1 of a pid namespace takes every
// process in it along. Then it removes the machine's cgroups from the host.
func (n *Node) stop(grace time.Duration) error {
	if n.cmd == nil || n.cmd.Process == nil {
		return n.removeCgroups()
	}
	select {
	case <-n.exited:
	default:
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.exited:
		case <-time.After(grace):
			if pid := n.LeaderPID(); pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
			<-n.exited
		}
	}
	// A leader left behind (nspawn killed first) still goes.
	// Its pid is only reused after it is gone, so this kill is safe.
	if pid := n.LeaderPID(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, 10*time.Second)
	}
	n.mu.Lock()
	n.leader = 0
	n.mu.Unlock()
	return n.removeCgroups()
}

// removeCgroups removes the machine's cgroups from the host, once nothing
// runs in them.
func (n *Node) removeCgroups() error {
	if err := n.cgroups.remove(10 * time.Second); err != nil {
		return fmt.Errorf("node %s: %w", n.name, err)
	}
	n.mu.Lock()
	n.cgroups = nil
	n.mu.Unlock()
	return nil
}

func waitGone(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
