package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// This file is the tests' fake node: a directory standing for the host's /,
// with a fake /proc (PID 1 systemd, an edgecore process, usage files, a boot
// ID), a fake keadm and a fake systemd. Both fakes are shell scripts written
// by the test and play what real keadm and systemd were seen to do on real
// nodes (docs/kubeedge.md); they are test scaffolding, not product code.

const (
	fromV = "v1.20.0"
	toV   = "v1.21.0"
	image = "docker.io/kubeedge/installation-package:v1.21.0"
)

// fakeKeadm plays keadm v1.21+: it takes the lock file
// /etc/kubeedge/idempotency_record (and leaves it behind when it is killed),
// refuses to run while the lock exists, writes its verdict to
// /etc/kubeedge/upgrade_report.json, backs up to /etc/kubeedge/backup/<the
// running version>/, and on upgrade or rollback stops edgecore, replaces its
// binary and starts it again (a new process in the fake /proc). Flag files
// in the state directory make it fail in the ways real keadm fails, or pause
// at an instant (pause-<point>: it sleeps there until the file is removed)
// so a test can cut the power or kill the unit at that instant.
const fakeKeadm = `#!/bin/sh
dir='%[1]s'
root='%[3]s'
lock="$root/etc/kubeedge/idempotency_record"
report="$root/etc/kubeedge/upgrade_report.json"
echo "keadm $*" >> "$dir/calls.log"
echo $$ > "$dir/keadm.pid"
echo "fake keadm $*"
if [ "$1" = version ]; then cat "$dir/keadm-version"; exit 0; fi
event=Backup
case "$1" in upgrade) event=Upgrade ;; rollback) event=Rollback ;; esac
verdict() { # success errorMessage
  printf '{"event":"%%s","success":%%s,"fromVersion":"%[2]s","toVersion":"%%s","errorMessage":"%%s"}' "$event" "$1" "$to" "$2" > "$report"
}
pause() { # point: wait while the test holds this instant
  if [ -e "$dir/pause-$1" ]; then
    : > "$dir/paused-$1"
    while [ -e "$dir/pause-$1" ]; do sleep 0.05; done
  fi
}
to=""; prev=""
for a in "$@"; do
  if [ "$prev" = "--toVersion" ]; then to="$a"; fi
  prev="$a"
done
if [ -e "$lock" ]; then
  verdict false "the mutually exclusive command is being executed"
  echo "Error: the mutually exclusive command is being executed" >&2; exit 1
fi
: > "$lock"
stop_edgecore() { rm -rf "$root/proc/$(cat "$dir/edgecore.pid")"; }
start_edgecore() {
  pid=$(( $(cat "$dir/edgecore.pid") + 1 )); echo $pid > "$dir/edgecore.pid"
  if [ -e "$dir/crash-edgecore" ] && grep -q "%[4]s" "$root/usr/local/bin/edgecore"; then return; fi
  mkdir -p "$root/proc/$pid"; echo edgecore > "$root/proc/$pid/comm"
  echo "$pid (edgecore) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 $pid 0 0" > "$root/proc/$pid/stat"
}
case "$1" in
backup)
  pause backup
  if [ -e "$dir/fail-backup" ]; then verdict false "backup exploded"; rm -f "$lock"; echo "backup exploded" >&2; exit 7; fi
  running=$(sed 's/edgecore //' "$root/usr/local/bin/edgecore")
  mkdir -p "$root/etc/kubeedge/backup/$running"
  cp "$root/usr/local/bin/edgecore" "$root/etc/kubeedge/backup/$running/edgecore"
  cp "$root/etc/kubeedge/config/edgecore.yaml" "$root/etc/kubeedge/backup/$running/edgecore.yaml" ;;
upgrade)
  pause pull
  if [ -e "$dir/fail-pull" ]; then
    verdict false "failed to pull image docker.io/kubeedge/installation-package:$to"; rm -f "$lock"
    echo "pull exploded" >&2; exit 1
  fi
  if [ -s "$dir/copy-races" ]; then
    n=$(cat "$dir/copy-races"); echo $(( n - 1 )) > "$dir/copy-races"
    if [ "$n" -gt 0 ]; then
      verdict false "failed to get edgecore binary, err: failed to copy edgecore from /usr/local/bin/edgecore in the image docker.io/kubeedge/installation-package:$to to host /etc/kubeedge/upgrade/$to/edgecore, err: start container failed: cannot start an already running container: unknown"
      rm -f "$lock"; echo "copy exploded" >&2; exit 1
    fi
  fi
  stop_edgecore
  pause stopped
  if [ -e "$dir/fail-upgrade" ]; then verdict false "upgrade exploded"; rm -f "$lock"; echo "upgrade exploded" >&2; exit 1; fi
  echo "edgecore $to" > "$root/usr/local/bin/edgecore"
  pause copied
  start_edgecore
  # The new edgecore rewrites its configuration at its first start (its
  # version field); cut off in that instant, the file is left truncated.
  if [ -e "$dir/truncate-config" ]; then head -c 20 "$root/etc/kubeedge/config/edgecore.yaml" > "$dir/cfg" && mv "$dir/cfg" "$root/etc/kubeedge/config/edgecore.yaml"; fi ;;
rollback)
  if [ -e "$dir/fail-rollback" ]; then verdict false "rollback exploded"; rm -f "$lock"; echo "rollback exploded" >&2; exit 1; fi
  version=""; prev=""
  for a in "$@"; do
    if [ "$prev" = "--historical-version" ]; then version="$a"; fi
    prev="$a"
  done
  [ -n "$version" ] || version=$(ls -t "$root/etc/kubeedge/backup" | head -n 1)
  stop_edgecore
  pause rollback
  cp "$root/etc/kubeedge/backup/$version/edgecore" "$root/usr/local/bin/edgecore"
  cp "$root/etc/kubeedge/backup/$version/edgecore.yaml" "$root/etc/kubeedge/config/edgecore.yaml"
  to=$version
  start_edgecore ;;
esac
verdict true ""
rm -f "$lock"
if [ "$event" = Upgrade ]; then pause verdict; fi
exit 0
`

// fakeSystemctl plays systemctl for the job's unit: start runs the unit
// file's ExecStart (under the fake root, with --host-root) in the
// background, once at a time, as systemd does; show says whether its
// process runs; enable and disable keep a list of enabled units (what a
// boot starts); stop kills it.
const fakeSystemctl = `#!/bin/sh
root='%[1]s'
state='%[2]s'
echo "systemctl $*" >> "$state/systemctl.log"
# systemd gives a unit its own PATH, with this systemctl on it.
export PATH="$root/usr/bin:$PATH"
mkdir -p "$state/units" "$state/enabled"
alive() { # pid
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] && ! awk '{ s = $0; sub(/.*\) /, "", s); exit (substr(s, 1, 1) == "Z" ? 0 : 1) }' "/proc/$1/stat"
}
cmd=$1; shift
if [ "$1" = "--no-block" ]; then shift; fi
case "$cmd" in
daemon-reload) ;;
enable) : > "$state/enabled/$1" ;;
disable) rm -f "$state/enabled/$1" ;;
start)
  if [ -e "$state/halted" ]; then echo "fake systemctl: the test has ended" >&2; exit 1; fi
  unit=$1; f="$root/etc/systemd/system/$unit"
  if [ ! -f "$f" ]; then echo "Failed to start $unit: Unit $unit not found." >&2; exit 5; fi
  if alive "$(cat "$state/units/$unit.pid" 2>/dev/null)"; then exit 0; fi
  line=$(sed -n 's/^ExecStart=//p' "$f")
  set -- $line
  bin=$1; shift
  setsid "$root$bin" "$@" --host-root="$root" >> "$state/units/$unit.log" 2>&1 < /dev/null &
  echo $! > "$state/units/$unit.pid"
  echo $! >> "$state/units/$unit.pids" ;;
show)
  unit=$2
  if alive "$(cat "$state/units/$unit.pid" 2>/dev/null)"; then
    printf 'ActiveState=active\nSubState=running\nResult=success\n'
  else
    printf 'ActiveState=inactive\nSubState=dead\nResult=success\n'
  fi ;;
stop)
  pid=$(cat "$state/units/$1.pid" 2>/dev/null)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  exit 0 ;;
*) echo "fake systemctl: $cmd not played" >&2; exit 1 ;;
esac
`

const jobUID = "0b6e9f3c-7d2a-4c51-9e8b-1f2a3b4c5d6e"

// fakeEdgecoreConfig is the part of edgecore.yaml that ties edgecore to
// its cloud and node.
const fakeEdgecoreConfig = `apiVersion: edgecore.config.kubeedge.io/v1alpha2
database:
  dataSource: /var/lib/kubeedge/edgecore.db
modules:
  edgeHub:
    httpServer: https://10.251.1.1:10002
    websocket:
      server: 10.251.1.1:10000
  edged:
    hostnameOverride: edge-1
    nodeIP: 10.251.1.10
`

type fakeHost struct {
	root, state, termDir, handoff string
}

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	base := t.TempDir()
	h := &fakeHost{
		root:    filepath.Join(base, "host"),
		state:   filepath.Join(base, "state"),
		termDir: filepath.Join(base, "termination"),
		handoff: filepath.Join(base, "handoff"),
	}
	for _, d := range []string{h.state, h.termDir, h.handoff, filepath.Join(h.root, "etc/systemd/system")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.writeState(t, "keadm-version", toV)
	h.writeState(t, "edgecore.pid", "100")
	h.write(t, "proc/1/comm", "systemd\n")
	h.write(t, "proc/100/comm", "edgecore\n")
	h.write(t, "proc/100/stat", "100 (edgecore) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0\n")
	h.write(t, "proc/sys/kernel/random/boot_id", "boot-1\n")
	h.write(t, strings.TrimPrefix(runner.EdgecoreConfigPath, "/"), fakeEdgecoreConfig)
	h.write(t, "proc/stat", "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 100 0 100 700 100 0 0 0 0 0\n")
	h.write(t, "proc/meminfo", "MemTotal:       1000 kB\nMemFree:         500 kB\nMemAvailable:    700 kB\n")
	h.installKeadm(t, jobUID)
	h.writeMode(t, "usr/bin/systemctl", fmt.Sprintf(fakeSystemctl, h.root, h.state), 0o755)
	h.writeMode(t, strings.TrimPrefix(runner.DefaultEdgecorePath, "/"), "edgecore "+fromV+"\n", 0o755)
	t.Cleanup(h.killEverything)
	return h
}

// installKeadm puts the fake keadm where copy-keadm puts the job's keadm.
func (h *fakeHost) installKeadm(t *testing.T, uid string) {
	t.Helper()
	h.writeMode(t, strings.TrimPrefix(runner.KeadmPath(uid), "/"), fmt.Sprintf(fakeKeadm, h.state, fromV, h.root, toV), 0o755)
}

func (h *fakeHost) write(t *testing.T, rel, content string) {
	t.Helper()
	h.writeMode(t, rel, content, 0o644)
}

func (h *fakeHost) writeMode(t *testing.T, rel, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(h.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func (h *fakeHost) writeState(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.state, name), []byte(content+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *fakeHost) touch(t *testing.T, name string) { h.writeState(t, name, "") }

func (h *fakeHost) exists(rel string) bool {
	_, err := os.Lstat(filepath.Join(h.root, rel))
	return err == nil
}

// jobFile is a file of the job's directory on the fake node.
func (h *fakeHost) jobFile(name string) string {
	return filepath.Join(h.root, runner.JobDir(jobUID), name)
}

// calls is everything the fake keadm was run with, in order.
func (h *fakeHost) calls(t *testing.T) []string { return h.lines(t, "calls.log") }

// systemctlCalls is everything the fake systemctl was run with.
func (h *fakeHost) systemctlCalls(t *testing.T) []string { return h.lines(t, "systemctl.log") }

func (h *fakeHost) lines(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(h.state, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(data), "\n"), "\n")
}

// unitLog is what the job's unit logged.
func (h *fakeHost) unitLog(uid string) string {
	data, _ := os.ReadFile(filepath.Join(h.state, "units", runner.UnitName(uid)+".log"))
	return string(data)
}

// edgecoreBinary is the version the installed edgecore binary is.
func (h *fakeHost) edgecoreBinary(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(h.root, runner.DefaultEdgecorePath))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(data)), "edgecore ")
}

// edgecoreRunning reports whether an edgecore process is in the fake /proc.
func (h *fakeHost) edgecoreRunning(t *testing.T) bool {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(h.root, "proc"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if data, err := os.ReadFile(filepath.Join(h.root, "proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(data)) == "edgecore" {
			return true
		}
	}
	return false
}

// options are the pod's runner flags for the fake node, as upgradepod
// renders them, but without nsenter and with the fake host root.
func (h *fakeHost) options(step runner.Step) runner.Options {
	o := runner.DefaultOptions()
	o.HostRoot = h.root
	o.JobUID = jobUID
	o.JobName = "fleet"
	o.Keadm = runner.KeadmPath(jobUID)
	o.UseNsenter = false
	o.EdgecoreSettle = time.Second
	o.ToVersion = toV
	o.FromVersion = fromV
	o.Image = image
	o.Budget = time.Hour
	o.IssuedAt = time.Now()
	o.CheckItems = []string{"cpu", "mem", "disk"}
	o.CPUSampleInterval = 0
	o.DiskThreshold = 100
	o.TerminationMessagePath = filepath.Join(h.termDir, string(step))
	o.HandoffDir = h.handoff
	switch step {
	case runner.StepBackup:
		o.After = runner.StepCheck
	case runner.StepUpgrade:
		o.After = runner.StepBackup
	}
	return o
}

// env is the runner's environment: the fake systemctl first on PATH.
func (h *fakeHost) env() []string {
	return append(os.Environ(), "PATH="+filepath.Join(h.root, "usr/bin")+":"+os.Getenv("PATH"))
}

type runResult struct {
	code    int
	report  runner.Report
	output  string
	elapsed time.Duration
}

// runStep runs one step's container to its end.
func (h *fakeHost) runStep(t *testing.T, o runner.Options, step runner.Step) runResult {
	t.Helper()
	c := h.startStep(t, o, step)
	return c.wait(t)
}

// container is a step's runner process, started as the pod starts it.
type container struct {
	cmd   *exec.Cmd
	out   *syncBuffer
	done  chan error
	start time.Time
	term  string
}

func (h *fakeHost) startStep(t *testing.T, o runner.Options, step runner.Step) *container {
	t.Helper()
	cmd := exec.Command(runnerBin, o.Args(step)...)
	cmd.Env = h.env()
	out := &syncBuffer{}
	// One writer for both streams: os/exec then copies them in order, from
	// one pipe.
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &container{cmd: cmd, out: out, done: make(chan error, 1), start: time.Now(), term: o.TerminationMessagePath}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return c
}

// containerTimeout bounds a runner container's run in these tests.
const containerTimeout = 60 * time.Second

func (c *container) wait(t *testing.T) runResult {
	t.Helper()
	timeout := containerTimeout
	var err error
	select {
	case err = <-c.done:
	case <-time.After(timeout):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		t.Fatalf("runner still running after %s:\n%s", timeout, c.out.String())
	}
	res := runResult{output: c.out.String(), elapsed: time.Since(c.start)}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.code = exitErr.ExitCode()
	default:
		t.Fatalf("run runner: %v", err)
	}
	if c.term != "" {
		if data, err := os.ReadFile(c.term); err == nil {
			if rep, err := runner.ParseReport(string(data)); err == nil {
				res.report = rep
			}
		}
	}
	return res
}

// kill ends the container's processes as the container runtime does when
// the container dies: all of them at once.
func (c *container) kill() { _ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL) }

func (c *container) signal(sig syscall.Signal) { _ = c.cmd.Process.Signal(sig) }

// syncBuffer is a buffer a test may read while a process writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// job is one upgrade pod's step containers, started together.
type job struct {
	check, backup, upgrade *container
}

// startJob starts the pod's containers (check only when the options have
// check items), as the kubelet starts them: together.
func (h *fakeHost) startJob(t *testing.T, modify func(o *runner.Options)) *job {
	t.Helper()
	opts := func(step runner.Step) runner.Options {
		o := h.options(step)
		if modify != nil {
			modify(&o)
		}
		if step == runner.StepBackup && len(o.CheckItems) == 0 {
			o.After = ""
		}
		return o
	}
	j := &job{}
	if len(opts(runner.StepCheck).CheckItems) > 0 {
		j.check = h.startStep(t, opts(runner.StepCheck), runner.StepCheck)
	}
	j.backup = h.startStep(t, opts(runner.StepBackup), runner.StepBackup)
	j.upgrade = h.startStep(t, opts(runner.StepUpgrade), runner.StepUpgrade)
	return j
}

// waitUnitGone waits until the job's unit has removed itself and its
// process has ended.
func (h *fakeHost) waitUnitGone(t *testing.T, uid string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if !h.exists(strings.TrimPrefix(runner.UnitPath(uid), "/")) && !h.unitAlive(uid) {
			return
		}
		if time.Now().After(deadline) {
			ps, _ := exec.Command("ps", "-eo", "pid,pgid,stat,args").CombinedOutput()
			t.Fatalf("the job's unit is still there after %s; its log:\n%s\nsystemctl: %v\n%s", timeout, h.unitLog(uid), h.systemctlCalls(t), ps)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *fakeHost) unitAlive(uid string) bool {
	data, err := os.ReadFile(filepath.Join(h.state, "units", runner.UnitName(uid)+".pid"))
	if err != nil {
		return false
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid > 0 && !processGone(pid)
}

// waitPaused waits until the fake keadm holds at the pause point.
func (h *fakeHost) waitPaused(t *testing.T, point string) {
	t.Helper()
	NewWithT(t).Eventually(filepath.Join(h.state, "paused-"+point)).WithTimeout(30*time.Second).WithPolling(20*time.Millisecond).
		Should(BeAnExistingFile(), "keadm never reached %s", point)
}

// resume lets the fake keadm go on from the pause point.
func (h *fakeHost) resume(t *testing.T, point string) {
	t.Helper()
	if err := os.Remove(filepath.Join(h.state, "pause-"+point)); err != nil {
		t.Fatal(err)
	}
}

// powerCut stops the whole fake node at once, with no clean shutdown:
// every process of the job's units and of keadm is killed and edgecore
// vanishes from the fake /proc. What was written stays written (the fake
// node shares the host's page cache, as the real-node world does).
func (h *fakeHost) powerCut(t *testing.T) {
	t.Helper()
	h.killAll()
	entries, _ := os.ReadDir(filepath.Join(h.root, "proc"))
	for _, e := range entries {
		if data, err := os.ReadFile(filepath.Join(h.root, "proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(data)) == "edgecore" {
			_ = os.RemoveAll(filepath.Join(h.root, "proc", e.Name()))
		}
	}
}

// killAll kills every unit process and keadm the fake node ran, and waits
// until they are gone (a kill is delivered, not done, when kill returns):
// the power cut and the OOM kill of the scenarios. The pod's containers
// live on.
func (h *fakeHost) killAll() { h.killUntilGone(h.recordedPIDs) }

// killEverything is the test's end: no unit starts any more (a follower or
// a container run again may call systemctl start), then every process of
// this host dies, the containers, a systemctl or keadm still running and a
// unit started between a read of the PID files and the kill included. A
// survivor writing into the test's folder fails t.TempDir's removal
// ("directory not empty"), as one did in a CI run under heavy load.
func (h *fakeHost) killEverything() {
	_ = os.WriteFile(filepath.Join(h.state, "halted"), nil, 0o644)
	h.killUntilGone(func() []int { return append(h.recordedPIDs(), processesNaming(h.root, h.state)...) })
}

// killUntilGone kills what list returns until a pass finds nothing alive.
func (h *fakeHost) killUntilGone(list func() []int) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var alive []int
		for _, pid := range list() {
			if !processGone(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 {
			return
		}
		for _, pid := range alive {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recordedPIDs are the PIDs the fake systemctl and keadm wrote down.
func (h *fakeHost) recordedPIDs() []int {
	var pids []int
	files, _ := filepath.Glob(filepath.Join(h.state, "units", "*.pids"))
	files = append(files, filepath.Join(h.state, "keadm.pid"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, l := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(l); err == nil && pid > 0 {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// processesNaming lists the processes whose command line contains one of
// dirs (never this test process).
func processesNaming(dirs ...string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, d := range dirs {
			if strings.Contains(string(cmdline), d) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// boot plays the node's next boot: a new boot ID, systemd starts edgecore
// (whatever binary is installed; a broken one does not stay up) and every
// enabled unit.
func (h *fakeHost) boot(t *testing.T) {
	t.Helper()
	h.write(t, "proc/sys/kernel/random/boot_id", fmt.Sprintf("boot-%d\n", time.Now().UnixNano()))
	pidData, err := os.ReadFile(filepath.Join(h.state, "edgecore.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidData)))
	pid++
	h.writeState(t, "edgecore.pid", strconv.Itoa(pid))
	_, crash := os.Stat(filepath.Join(h.state, "crash-edgecore"))
	if crash != nil || h.edgecoreBinary(t) != toV {
		p := strconv.Itoa(pid)
		h.write(t, "proc/"+p+"/comm", "edgecore\n")
		h.write(t, "proc/"+p+"/stat", p+" (edgecore) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 "+p+" 0 0\n")
	}
	enabled, _ := os.ReadDir(filepath.Join(h.state, "enabled"))
	for _, e := range enabled {
		cmd := exec.Command(filepath.Join(h.root, "usr/bin/systemctl"), "start", e.Name())
		cmd.Env = h.env()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("boot: start %s: %v: %s", e.Name(), err, out)
		}
	}
}

// budgetSpent rewrites the job's budget record as if spent had passed
// since its first step started.
func (h *fakeHost) budgetSpent(t *testing.T, uid string, budget, spent time.Duration) {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatal(err)
	}
	start := time.Duration(ts.Nano()) - spent
	bootID, err := os.ReadFile(filepath.Join(h.root, "proc/sys/kernel/random/boot_id"))
	if err != nil {
		t.Fatal(err)
	}
	rec := fmt.Sprintf(`{"bootID":%q,"startBoottime":%d,"budget":%d,"nodeClock":"x"}`, strings.TrimSpace(string(bootID)), start, budget)
	h.write(t, strings.TrimPrefix(runner.JobDir(uid), "/")+"/"+runner.BudgetFile, rec)
}

// processGone is true when pid no longer runs (a zombie awaiting its reaper
// counts as gone: it runs nothing).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(data), ')')
	return i >= 0 && i+2 < len(data) && data[i+2] == 'Z'
}
