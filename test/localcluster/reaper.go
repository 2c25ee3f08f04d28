package localcluster

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// reaperScript runs in a sentinel shell whose stdin is a pipe from this
// process. Each line names a process group to kill when the pipe closes, or
// ("cgroup DIR") a cgroup directory to remove once they are killed;
// "reset" forgets them. A process that dies in any way closes the pipe, so
// the sentinel outlives a panic or SIGKILL and takes the groups with it.
// A cgroup can only go once its last process has left, so the sentinel
// tries for up to 10 s, deepest first.
// It ignores the signals a terminal sends, because Ctrl-C must reach the
// caller, which stops the world in order, not the sentinel.
const reaperScript = `trap '' INT TERM HUP QUIT
groups=""
cgroups=""
while read -r line; do
  case "$line" in
    reset) groups=""; cgroups="" ;;
    "cgroup "*) cgroups="$cgroups ${line#cgroup }" ;;
    *) groups="$groups $line" ;;
  esac
done
for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
for d in $cgroups; do
  i=0
  while [ -d "$d" ] && [ $i -lt 100 ]; do
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    [ -d "$d" ] && sleep 0.1
    i=$((i+1))
  done
done
exit 0`

// reaper is the caller's side of the sentinel.
type reaper struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	groups map[int]bool
	closed bool
}

func startReaper() (*reaper, error) {
	cmd := exec.Command("/bin/sh", "-c", reaperScript)
	// Its own group: a terminal's Ctrl-C goes to the foreground group only.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("localcluster: sentinel pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("localcluster: start sentinel: %w", err)
	}
	return &reaper{cmd: cmd, stdin: stdin, groups: map[int]bool{}}, nil
}

// add registers a process group to kill if this process dies.
func (r *reaper) add(pgid int) {
	if r == nil || pgid <= 1 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.groups[pgid] {
		return
	}
	r.groups[pgid] = true
	_, _ = fmt.Fprintf(r.stdin, "%d\n", pgid)
}

// addCgroup registers a cgroup directory to remove if this process dies.
// The line protocol splits on whitespace, so a path with any is refused.
func (r *reaper) addCgroup(dir string) error {
	if r == nil {
		return nil
	}
	if dir == "" || strings.ContainsAny(dir, " \t\n") {
		return fmt.Errorf("localcluster: sentinel cannot hold cgroup %q", dir)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	_, err := fmt.Fprintf(r.stdin, "cgroup %s\n", dir)
	return err
}

// adoptChildren registers the direct children of this process that lead a
// process group of their own and whose command line holds one of markers
// (a data dir, a cert dir, a kubeconfig path: something unique to this
// Cluster). That is how envtest's etcd and kube-apiserver and KWOK are
// found: their packages start them with Setpgid but do not expose their
// pids. The markers keep a Cluster from adopting another Cluster's
// processes in the same test binary, which its Stop would then kill.
func (r *reaper) adoptChildren(markers ...string) {
	if r == nil {
		return
	}
	for _, p := range childProcesses(os.Getpid()) {
		if p.PGID != p.PID || p.PID == r.cmd.Process.Pid {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "cmdline"))
		if err != nil {
			continue
		}
		for _, m := range markers {
			if m != "" && bytes.Contains(cmdline, []byte(m)) {
				r.add(p.PGID)
				break
			}
		}
	}
}

// killAll kills every registered group now. Called at the end of an orderly
// Stop, when each group should be empty already.
func (r *reaper) killAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for g := range r.groups {
		_ = syscall.Kill(-g, syscall.SIGKILL)
	}
}

// close tells the sentinel that everything is stopped and lets it exit.
func (r *reaper) close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	_, _ = io.WriteString(r.stdin, "reset\n")
	err := r.stdin.Close()
	r.mu.Unlock()
	if werr := r.cmd.Wait(); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("localcluster: sentinel: %w", err)
	}
	return nil
}

// Process is what /proc/<pid>/stat says about a process. Tests use it to
// prove that nothing a run started survives it.
type Process struct {
	PID, PPID, PGID int
	// Comm is the executable's name, at most 15 bytes.
	Comm string
	// StartTicks is the start time since boot, in clock ticks: with PID it
	// tells a process from a later one that reuses its pid.
	StartTicks uint64
	zombie     bool
}

// Alive reports whether p is still running (and is not a zombie), as the
// same process and not a later one with its pid.
func (p Process) Alive() bool {
	now, ok := readStat(p.PID)
	return ok && now.StartTicks == p.StartTicks && !now.zombie
}

func (p Process) String() string { return fmt.Sprintf("%s[%d]", p.Comm, p.PID) }

// childProcesses lists the direct children of parent from /proc. On a
// system without /proc it returns nothing; the sentinel is then blind to
// envtest's processes, but Stop still stops them.
func childProcesses(parent int) []Process {
	var out []Process
	for _, p := range Processes() {
		if p.PPID == parent {
			out = append(out, p)
		}
	}
	return out
}

// Descendants lists the living processes below pid: children, their
// children and so on. A process whose parent died is reparented and no
// longer shows up, which is why callers poll this while a run is going.
func Descendants(pid int) []Process {
	all := Processes()
	children := map[int][]Process{}
	for _, p := range all {
		children[p.PPID] = append(children[p.PPID], p)
	}
	var out []Process
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			if c.zombie {
				continue
			}
			out = append(out, c)
			queue = append(queue, c.PID)
		}
	}
	return out
}

// Processes reads every process's /proc/<pid>/stat.
func Processes() []Process {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readStat(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

func readStat(pid int) (Process, bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return Process{}, false
	}
	// comm is in parentheses and may hold spaces or parentheses: the fields
	// after it start after the last ')'.
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return Process{}, false
	}
	fields := bytes.Fields(data[end+1:])
	// state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	// cmajflt utime stime cutime cstime priority nice num_threads
	// itrealvalue starttime
	if len(fields) < 20 {
		return Process{}, false
	}
	zombie := string(fields[0]) == "Z" || string(fields[0]) == "X"
	ppid, _ := strconv.Atoi(string(fields[1]))
	pgid, _ := strconv.Atoi(string(fields[2]))
	start, _ := strconv.ParseUint(string(fields[19]), 10, 64)
	return Process{PID: pid, PPID: ppid, PGID: pgid, Comm: string(data[open+1 : end]), StartTicks: start, zombie: zombie}, true
}
