//go:build kubeedge

package kubeedgeworld

import (
	"context"
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
	n := &Node{name: "boot-1", machine: "kewboot1", dir: filepath.Join(dir, "n"), ip: strings.TrimSuffix(w.gateway, ".1") + ".10"}
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
	defer func() {
		n.stop(30 * time.Second)
		if err := unmountUnder(dir); err != nil {
			t.Error(err)
		}
	}()
	if _, err := n.findLeader(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
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
