package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Files keadm keeps on the host (keadm's constants.KubeEdgePath). They were
// read from keadm v1.21/v1.22's source and seen on a real node.
const (
	// KeadmLockPath is keadm's mutual-exclusion file. keadm creates it at
	// the start of backup, upgrade and rollback and removes it in a defer,
	// so a keadm killed by a signal leaves it behind, and every later
	// backup, upgrade or rollback then refuses with "the mutually exclusive
	// command is being executed".
	KeadmLockPath = "/etc/kubeedge/idempotency_record"
	// KeadmReportPath is where keadm writes the verdict of its last
	// backup, upgrade or rollback.
	KeadmReportPath = "/etc/kubeedge/upgrade_report.json"
)

// keadmReport is keadm's upgrade_report.json.
type keadmReport struct {
	Event        string `json:"event"`
	Success      bool   `json:"success"`
	FromVersion  string `json:"fromVersion"`
	ToVersion    string `json:"toVersion"`
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// host gives the runner's view of the node's files and processes. Everything
// goes through root, the host's / as mounted in the container (or a fake
// root in tests); nothing here runs a command.
type host struct {
	root string
}

func (h host) path(hostPath string) string {
	return filepath.Join(h.root, hostPath)
}

// initName is the command name of the host's PID 1.
func (h host) initName() (string, error) {
	data, err := os.ReadFile(h.path("/proc/1/comm"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// requireSystemd refuses hosts whose PID 1 is not systemd. Without systemd
// keadm restarts edgecore as its own child (`edgecore > log &`), which puts
// edgecore in the upgrade container's cgroup, where the container runtime
// kills it when the pod ends; and keadm's `pkill edgecore` does not wait, so
// its copy of the new binary fails with "text file busy" (both seen on a
// real node). Nodes joined by `keadm join` run edgecore as a systemd unit.
func (h host) requireSystemd() error {
	name, err := h.initName()
	if err != nil {
		return fmt.Errorf("cannot tell the node's init system (read /proc/1/comm: %w)", err)
	}
	if name != "systemd" {
		return fmt.Errorf("the node's PID 1 is %q, not systemd: keadm can only restart edgecore safely as a systemd unit "+
			"(without systemd the restarted edgecore would run inside the upgrade pod and die with it); "+
			"run edgecore as a systemd service, as keadm join sets it up", name)
	}
	return nil
}

// process is one host process, identified by PID and start time so that a
// reused PID is not taken for the same process.
type process struct {
	PID       int
	StartTime uint64
}

func (p process) String() string { return fmt.Sprintf("%d@%d", p.PID, p.StartTime) }

// processes lists the host processes whose command name is comm.
func (h host) processes(comm string) []process {
	entries, err := os.ReadDir(h.path("/proc"))
	if err != nil {
		return nil
	}
	var out []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join(h.path("/proc"), e.Name())
		name, err := os.ReadFile(filepath.Join(dir, "comm"))
		if err != nil || strings.TrimSpace(string(name)) != comm {
			continue
		}
		state, start := readStat(filepath.Join(dir, "stat"))
		if state == 'Z' || state == 'X' {
			// A zombie (a keadm just killed, not yet reaped) runs nothing
			// and holds nothing.
			continue
		}
		out = append(out, process{PID: pid, StartTime: start})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// readStat reads the state (field 3) and the start time (field 22) of
// /proc/PID/stat; 0 for what is unreadable.
func readStat(statPath string) (state byte, start uint64) {
	data, err := os.ReadFile(statPath)
	if err != nil {
		return 0, 0
	}
	// The command name (field 2) may hold spaces; it ends at the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) == 0 {
		return 0, 0
	}
	state = fields[0][0]
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return state, 0
	}
	start, _ = strconv.ParseUint(fields[19], 10, 64)
	return state, start
}

// edgecoreState is what tells whether keadm touched edgecore: the binary on
// disk and the processes running it.
type edgecoreState struct {
	Binary    string // size, mtime and inode of the binary; "" when absent
	Processes string // the running edgecore processes
}

func (h host) edgecore(binaryPath string) edgecoreState {
	st := edgecoreState{}
	if fi, err := os.Stat(h.path(binaryPath)); err == nil {
		st.Binary = fmt.Sprintf("size=%d mtime=%d", fi.Size(), fi.ModTime().UnixNano())
		if ino, ok := inode(fi); ok {
			st.Binary += fmt.Sprintf(" ino=%d", ino)
		}
	}
	var procs []string
	for _, p := range h.processes("edgecore") {
		procs = append(procs, p.String())
	}
	st.Processes = strings.Join(procs, ",")
	return st
}

// keadmRunning lists running keadm processes on the host.
func (h host) keadmRunning() []process { return h.processes("keadm") }

// clearStaleKeadmLock removes keadm's lock file when no keadm runs on the
// node, so that a keadm killed earlier (a power cut, a kill) does not block
// every later backup, upgrade and rollback. It returns what it did, for the
// log, and an error when the lock is held by a keadm that is still running.
//
// It runs under the node lock, so no other runner of this project clears or
// takes keadm's lock meanwhile. Against anyone else (a person, KubeEdge's
// own edge task manager) there is no window in which a live keadm loses its
// lock: keadm takes its lock only when the file does not exist (it checks,
// then creates; idempotency.Occupy in keadm's source), so while the stale
// file is there a keadm started after the process scan refuses and owns
// nothing, and a keadm started before the scan is seen by it. The one way a
// live keadm could own a file named like the one seen is for a third party
// to remove the stale file and a keadm to create a new one between the scan
// and the removal: the file is compared (same inode, same change time)
// right before it is removed, and a new one is left alone.
func (h host) clearStaleKeadmLock() (string, error) {
	lock := h.path(KeadmLockPath)
	seen, err := os.Lstat(lock)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("keadm's lock %s: %w", KeadmLockPath, err)
	}
	if running := h.keadmRunning(); len(running) > 0 {
		return "", fmt.Errorf("keadm is already running on this node (pid %d) and holds %s", running[0].PID, KeadmLockPath)
	}
	if beforeLockRemoval != nil {
		beforeLockRemoval()
	}
	now, err := os.Lstat(lock)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil || !os.SameFile(seen, now) || changeTime(seen) != changeTime(now) {
		return "", fmt.Errorf("keadm's lock %s was replaced while this runner looked at it (a keadm started meanwhile holds it); left alone", KeadmLockPath)
	}
	if err := os.Remove(lock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("remove keadm's stale lock %s: %w", KeadmLockPath, err)
	}
	return fmt.Sprintf("removed keadm's stale lock %s (no keadm was running)", KeadmLockPath), nil
}

// beforeLockRemoval, when set (by tests only), runs between the process scan
// and the removal of keadm's stale lock: the window a race would use.
var beforeLockRemoval func()

// sync flushes the host's file systems: keadm copies edgecore without
// syncing, and the unit must find on disk after a power cut what it saw
// before.
func (h host) sync() { syncFileSystems() }

// clearKeadmReport removes keadm's last verdict, so that what is read after
// a keadm run is that run's.
func (h host) clearKeadmReport() error {
	if err := os.Remove(h.path(KeadmReportPath)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// keadmReport reads keadm's verdict; nil when there is none or it is not
// JSON.
func (h host) keadmReport() *keadmReport {
	data, err := os.ReadFile(h.path(KeadmReportPath))
	if err != nil {
		return nil
	}
	var r keadmReport
	if err := json.Unmarshal(data, &r); err != nil || r.Event == "" {
		return nil
	}
	return &r
}
