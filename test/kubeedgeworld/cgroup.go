package kubeedgeworld

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
)

// Each machine runs in a cgroup of its own in every hierarchy of the host,
// made before nspawn starts and removed after the machine is gone.
//
// Why: nspawn (legacy hierarchy, --keep-unit) gives the machine a cgroup
// namespace rooted where nspawn runs. Started where the test runs (the root
// of every v1 hierarchy here), every machine on the host had the same root:
//   - the prep unit's remount of each v1 controller showed the host's whole
//     hierarchy, so each kubelet (edgecore's or a kubelet node's) used the
//     one /kubepods and removed the pod cgroups of the others' pods (a pod
//     on edge-2 failed with "runc create failed: ... cgroup.procs: no such
//     device");
//   - in name=systemd, nspawn puts the machine in <its cgroup>/payload, so
//     every machine's systemd managed the same /payload tree, and any
//     machine's shutdown (cg_trim of its root) removed the empty cgroups of
//     all the others: measured, a directory made in one machine's
//     name=systemd vanished when an unrelated machine (TestNodeBoot's)
//     powered off. That is why a cgroupRoot made there did not stay.
// With a cgroup of its own as its namespace root, a machine sees only its
// own subtree, and kubelet's /kubepods, containerd's pod cgroups and
// systemd's units are all under it on the host.

// machineCgroupPrefix names the machines' cgroups on the host.
const machineCgroupPrefix = "kubeedgeworld-"

// machineCgroups is one machine's cgroup directories on the host, one per
// hierarchy.
type machineCgroups struct {
	dirs []string
	// paths: hierarchy (as /proc/PID/cgroup names it) => the cgroup's
	// path in it, as /proc/PID/cgroup shows it on the host.
	paths map[string]string
}

// hostHierarchy is one cgroup hierarchy this process is in: where it is
// mounted and this process's cgroup there, as a directory.
type hostHierarchy struct {
	controllers string // as /proc/self/cgroup names them: "cpu", "name=systemd", "" (v2)
	path        string // this process's cgroup, as /proc/self/cgroup shows it
	dir         string // and its directory: mountpoint + path below the mount's root
}

// hostHierarchies lists this process's cgroup in every mounted hierarchy,
// from /proc/self/cgroup and /proc/self/mountinfo.
func hostHierarchies() ([]hostHierarchy, error) {
	self, err := ProcessCgroups(os.Getpid())
	if err != nil {
		return nil, err
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	type mount struct {
		root, point string
		opts        map[string]bool // super options: "rw", "cpu", "name=systemd", ...
	}
	var v1 []mount
	var v2 *mount
	for _, line := range strings.Split(string(mountinfo), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		m := mount{root: f[3], point: f[4], opts: map[string]bool{}}
		for _, o := range strings.Split(g[2], ",") {
			m.opts[o] = true
		}
		switch g[0] {
		case "cgroup2":
			if v2 == nil {
				v2 = &m
			}
		case "cgroup":
			v1 = append(v1, m)
		}
	}
	// The v1 mount of a hierarchy is the first one whose options name all
	// of its controllers.
	findV1 := func(ctrls string) (mount, bool) {
		for _, m := range v1 {
			all := true
			for _, c := range strings.Split(ctrls, ",") {
				all = all && m.opts[c]
			}
			if all {
				return m, true
			}
		}
		return mount{}, false
	}
	var out []hostHierarchy
	for _, ctrls := range slices.Sorted(maps.Keys(self)) {
		path := self[ctrls]
		var m mount
		if ctrls == "" {
			if v2 == nil {
				continue
			}
			m = *v2
		} else {
			var ok bool
			if m, ok = findV1(ctrls); !ok {
				continue // not mounted here: nothing can use it
			}
		}
		rel, ok := strings.CutPrefix(path, m.root)
		if m.root == "/" {
			rel, ok = path, true
		}
		if !ok {
			return nil, fmt.Errorf("cgroup %s: this process's cgroup %s is outside the mount's root %s", ctrls, path, m.root)
		}
		out = append(out, hostHierarchy{controllers: ctrls, path: path, dir: filepath.Join(m.point, rel)})
	}
	if len(out) == 0 {
		return nil, errors.New("no cgroup hierarchy mounted")
	}
	return out, nil
}

// createMachineCgroups makes the machine's cgroup under this process's own
// in every hierarchy. cpuset gets its parent's cpus and mems: a new v1
// cpuset cgroup has none, and no process could join it.
func createMachineCgroups(machine string) (_ *machineCgroups, err error) {
	hs, err := hostHierarchies()
	if err != nil {
		return nil, err
	}
	mc := &machineCgroups{paths: map[string]string{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, mc.remove(time.Second))
		}
	}()
	for _, h := range hs {
		dir := filepath.Join(h.dir, machineCgroupPrefix+machine)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return mc, fmt.Errorf("cgroup for machine %s: %w", machine, err)
		}
		mc.dirs = append(mc.dirs, dir)
		mc.paths[h.controllers] = filepath.Join(h.path, machineCgroupPrefix+machine)
		if strings.Contains(","+h.controllers+",", ",cpuset,") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(h.dir, f))
				if err != nil {
					return mc, err
				}
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return mc, fmt.Errorf("%s: %w", filepath.Join(dir, f), err)
				}
			}
		}
	}
	return mc, nil
}

// procsFiles are the cgroup.procs files nspawn's process joins before it
// becomes nspawn.
func (mc *machineCgroups) procsFiles() []string {
	out := make([]string, 0, len(mc.dirs))
	for _, d := range mc.dirs {
		out = append(out, filepath.Join(d, "cgroup.procs"))
	}
	return out
}

// remove deletes the machine's cgroups, deepest first (kubelet's and
// systemd's are inside). Called once the machine is gone; its last
// processes can take a moment to leave (rmdir says EBUSY), so it retries
// until timeout.
func (mc *machineCgroups) remove(timeout time.Duration) error {
	if mc == nil {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		var left []error
		for _, root := range mc.dirs {
			if err := rmdirTree(root); err != nil {
				left = append(left, err)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return errors.Join(left...)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rmdirTree removes a cgroup directory and every cgroup below it. A cgroup
// folder holds only the kernel's files, which go with rmdir.
func rmdirTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Children sort after their parent; remove in reverse.
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("remove cgroup %s: %w", dirs[i], err)
		}
	}
	return nil
}

// joinCgroupsScript runs as nspawn's process before it execs nspawn: it
// writes its own pid into each cgroup.procs given ($1 of them), then execs
// the rest of its arguments. os/exec cannot place a child in a v1 cgroup
// before it runs, and nspawn must start there: the cgroup namespace it gives
// the machine is rooted where it runs.
const joinCgroupsScript = `n=$1; shift
while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 1; n=$((n-1)); shift; done
exec "$@"`

// Cgroups is the machine's own cgroup on the host in each hierarchy
// (keyed as /proc/PID/cgroup names them: "cpu", "name=systemd", "" for v2),
// with its path as /proc/PID/cgroup shows it. Everything in the machine
// runs below it. Nil when the machine is not running.
func (n *Node) Cgroups() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cgroups == nil {
		return nil
	}
	return maps.Clone(n.cgroups.paths)
}

// ProcessCgroups reads /proc/PID/cgroup of a host pid: hierarchy => path.
func ProcessCgroups(pid int) (map[string]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 {
			out[parts[1]] = parts[2]
		}
	}
	return out, nil
}

// PodPIDs lists the host pids whose cgroup, in some hierarchy, is the pod's
// (kubelet's cgroupfs layout names it pod<UID>): its sandbox's and its
// containers' processes.
func PodPIDs(uid string) []int {
	marker := "/pod" + uid + "/"
	var out []int
	for _, p := range localcluster.Processes() {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.PID))
		if err == nil && strings.Contains(string(data), marker) {
			out = append(out, p.PID)
		}
	}
	return out
}
