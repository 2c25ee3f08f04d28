//go:build kubeedge

package kubeedgeworld

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld/imagebuild"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// TestNodeBoot boots one machine without KubeEdge (edgecore is a stand-in
// that exits): systemd as PID 1, the prep unit, containerd with the pause
// image imported, and a clean stop with nothing left behind.
func TestNodeBoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tarball := filepath.Join(testenv.RepoRoot(), "bin", "kubeedge-rootfs-"+RootfsVersion+".tar")
	if _, err := os.Stat(tarball); err != nil {
		t.Skipf("no rootfs tarball (hack/kubeedge-deps.sh rootfs): %v", err)
	}
	dir := t.TempDir()
	bb, err := imagebuild.Busybox(nil)
	if err != nil {
		t.Fatal(err)
	}
	pause := filepath.Join(dir, "pause.tar")
	if err := imagebuild.Write(pause, imagebuild.Image{Ref: PauseImage, Entries: bb, Entrypoint: []string{"/bin/sleep", "3600"}}); err != nil {
		t.Fatal(err)
	}
	w := &World{start: time.Now(), dir: dir, opts: Options{Logf: t.Logf}}
	if err := w.makeBridge(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = exec.Command("ip", "link", "del", w.bridge).Run() }()
	// A machine name of its own: its cgroups are in the host's hierarchies,
	// which another run's machine may share.
	n := &Node{name: "boot-1", machine: fmt.Sprintf("kewboot%d", os.Getpid()), dir: filepath.Join(dir, "n"), ip: strings.TrimSuffix(w.gateway, ".1") + ".10"}
	n.rootfs = filepath.Join(n.dir, "rootfs")
	n.logPath = filepath.Join(n.dir, "console.log")
	start := time.Now()
	if err := prepareRootfs(tarball, n, w.gateway, edgeRole("/bin/false", []byte("{}")), []string{pause}); err != nil {
		t.Fatal(err)
	}
	t.Logf("rootfs in %s", time.Since(start))
	if err := n.boot(w.bridge); err != nil {
		t.Fatal(err)
	}
	own := n.Cgroups()
	defer func() {
		if err := n.stop(30 * time.Second); err != nil {
			t.Error(err)
		}
		if err := unmountUnder(dir); err != nil {
			t.Error(err)
		}
		// The machine's cgroups are in the host's shared hierarchies.
		hs, err := hostHierarchies()
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			d := filepath.Join(h.dir, machineCgroupPrefix+n.machine)
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("cgroup %s still there after stop (%v)", d, err)
			}
		}
	}()
	leader, err := n.findLeader(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The machine runs in its own cgroup in every hierarchy, nspawn's
	// cgroup namespace is rooted there.
	cgs, err := ProcessCgroups(leader)
	if err != nil {
		t.Fatal(err)
	}
	for h, p := range cgs {
		if root, ok := own[h]; !ok || (p != root && !strings.HasPrefix(p, root+"/")) {
			t.Errorf("machine's PID 1 in cgroup %q of hierarchy %q, want under %q", p, h, own[h])
		}
	}
	t.Logf("machine's cgroups: %v", cgs)
	if err := n.waitSystemd(ctx, 2*time.Minute); err != nil {
		t.Log(testenv.TailFile(n.logPath, 4000))
		t.Fatal(err)
	}
	t.Logf("systemd up after %s", time.Since(start))
	for _, argv := range [][]string{
		{"systemctl", "is-active", "containerd", "kubeedgeworld-prep", "kubeedgeworld-import-images"},
		{"ctr", "-n", "k8s.io", "images", "ls", "-q"},
		{"ip", "-br", "addr"},
		{"busybox", "ping", "-c", "1", "-W", "2", w.gateway},
		{"ls", "-l", "/dev/kmsg"},
		{"systemctl", "--failed", "--no-legend"},
	} {
		res := n.Exec(ctx, argv...)
		t.Logf("%v: %s", argv, res)
	}
	if res := n.Exec(ctx, "ctr", "-n", "k8s.io", "run", "--rm", "--privileged", "--net-host", PauseImage, "smoke", "/bin/sh", "-c", "echo hi"); res.Err != nil || !strings.Contains(res.Stdout, "hi") {
		t.Errorf("ctr run: %s", res)
	}
}
