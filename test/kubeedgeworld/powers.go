package kubeedgeworld

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The world's powers over a node, for the faults of the edge: a power cut
// and the boot after it, the node's link to the cloud, and a container's
// processes killed.

// PowerCut stops the machine at once, with no clean shutdown, as a power
// failure does: its PID 1 is killed with SIGKILL, and the kernel kills
// every process of the machine's PID namespace with it (edgecore,
// containerd, every container, the job's unit, keadm) in the same instant.
// Nothing on the machine runs a stop action.
//
// Unlike a real power cut, what the machine wrote but did not sync is not
// lost: the machine's files live in the host's page cache. The node side
// syncs what it needs after a power cut anyway (pkg/runner).
func (w *World) PowerCut(n *Node) error {
	pid := n.LeaderPID()
	if pid == 0 {
		return fmt.Errorf("node %s is not running", n.name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("power cut of %s: kill PID 1 (%d): %w", n.name, pid, err)
	}
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("power cut of %s: systemd-nspawn still runs 30 s after its machine's PID 1 was killed", n.name)
	}
	waitGone(pid, 10*time.Second)
	n.mu.Lock()
	n.leader = 0
	n.mu.Unlock()
	// What the machine mounted lived in its mount namespace, gone with it;
	// its cgroups stay for the next boot.
	if left := n.cgroupProcs(); len(left) > 0 {
		return fmt.Errorf("power cut of %s: processes %v still in the machine's cgroups", n.name, left)
	}
	w.logf("node %s: power cut (PID 1 %d killed)", n.name, pid)
	return nil
}

// PowerOn boots a machine whose power was cut, from the same root file
// system, and waits for its systemd: edgecore, containerd and every enabled
// unit start as at any boot.
func (w *World) PowerOn(ctx context.Context, n *Node) error {
	if n.LeaderPID() != 0 {
		return fmt.Errorf("node %s is running", n.name)
	}
	pid, err := w.startMachine(ctx, n)
	if err != nil {
		return err
	}
	if err := n.waitSystemd(ctx, 3*time.Minute); err != nil {
		return err
	}
	w.logf("node %s: booted again after the power cut (PID 1 is host pid %d)", n.name, pid)
	return nil
}

// cgroupProcs lists the processes still in the machine's cgroups.
func (n *Node) cgroupProcs() []int {
	n.mu.Lock()
	cg := n.cgroups
	n.mu.Unlock()
	if cg == nil {
		return nil
	}
	seen := map[int]bool{}
	var out []int
	for _, f := range cg.procsFiles() {
		_ = filepath.WalkDir(filepath.Dir(f), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, l := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(l); err == nil && !seen[pid] {
					seen[pid] = true
					out = append(out, pid)
				}
			}
			return nil
		})
	}
	return out
}

// Processes lists the host pids of the machine's processes whose command
// name is comm (e.g. "edgecore", "keadm"): read from the host's /proc, so a
// test sees an instant on the node within milliseconds.
func (n *Node) Processes(comm string) []int {
	var out []int
	for _, pid := range n.cgroupProcs() {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(data)) == comm {
			out = append(out, pid)
		}
	}
	return out
}

// hostLink is the host side of the machine's veth on the world's bridge:
// systemd-nspawn names it vb-<machine>.
func (n *Node) hostLink() string {
	name := "vb-" + n.machine
	if len(name) > 15 {
		name = name[:15]
	}
	return name
}

// SetLink takes the node's link to the cloud down or up (the host side of
// its veth): while it is down the node reaches neither cloudcore nor the
// API server, and goes on alone, as an edge node does.
func (w *World) SetLink(n *Node, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if out, err := exec.Command("ip", "link", "set", "dev", n.hostLink(), state).CombinedOutput(); err != nil {
		return fmt.Errorf("link of %s %s: %w: %s", n.name, state, err, out)
	}
	w.logf("node %s: link %s", n.name, state)
	return nil
}

// KillContainer kills every process of one container of a pod with
// SIGKILL, as a container runtime does when the container dies (an OOM, a
// crash): the processes in the container's cgroup, which kubelet's cgroupfs
// layout names pod<UID>/<container ID>. An empty containerID kills the
// whole pod, sandbox included, as a force-deletion does. It returns how many
// it killed.
func KillContainer(podUID, containerID string) (int, error) {
	marker := "/pod" + podUID + "/" + containerID
	var pids []int
	for _, pid := range PodPIDs(podUID) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err == nil && strings.Contains(string(data), marker) {
			pids = append(pids, pid)
		}
	}
	var errs []error
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	for _, pid := range pids {
		waitGone(pid, 10*time.Second)
	}
	return len(pids), errors.Join(errs...)
}
