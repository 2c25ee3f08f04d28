//go:build kubeedge

package kubeedge

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

// TestMixedFleet: one job over an amd64 node and an arm64 node (QEMU user
// emulation, arm64.go) upgrades both from v1.22.0 to v1.23.1. Each node
// pulls its own platform of the runner image and of the installation
// package from the world's registry, and keadm puts that platform's
// edgecore in place.
func TestMixedFleet(t *testing.T) {
	start := time.Now()
	ctx, w := startWorldWith(t, kubeedgeworld.Options{Nodes: 1, Arm64Nodes: 1})
	t.Logf("world with an arm64 node up in %s", time.Since(start).Round(time.Second))
	nodes := w.Nodes()
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name())
		node, err := w.Cluster.Clientset.CoreV1().Nodes().Get(ctx, n.Name(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := "amd64"
		if n.Arch() == kubeedgeworld.ArchARM64 {
			want = "arm64"
		}
		if got := node.Status.NodeInfo.Architecture; got != want {
			t.Fatalf("node %s reports architecture %q, want %q", n.Name(), got, want)
		}
		t.Logf("node %s: %s, %s", n.Name(), node.Status.NodeInfo.Architecture, node.Status.NodeInfo.KubeletVersion)
	}

	jw := watchJob(ctx, w.Cluster.Client, "mixed")
	defer jw.stop()
	begin := time.Now()
	if err := w.Cluster.Client.Create(ctx, newJob("mixed", toVersion, names, 2, []string{v1alpha1.CheckItemDisk})); err != nil {
		t.Fatal(err)
	}
	job := jw.waitFinal(t, ctx, jobTimeout)
	t.Logf("mixed fleet upgraded in %s: %s", time.Since(begin).Round(time.Second), job.Status.State)
	if job.Status.State != v1alpha1.StateSuccessful {
		t.Fatalf("job %s: %+v", job.Status.State, job.Status.NodeStatus)
	}
	if err := w.WaitNodesReady(ctx, 5*time.Minute, "kubeedge-"+toVersion, names...); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		after := snapshot(t, ctx, w, n)
		if after.binSum != fileSum(t, kubeedgeworld.BinaryPathArch(toVersion, n.Arch(), "edgecore")) {
			t.Errorf("/usr/local/bin/edgecore on %s is not the %s %s binary", n.Name(), toVersion, archName(n))
		}
		if after.state.ActiveState != "active" || after.lockFile {
			t.Errorf("%s after the upgrade: edgecore %s, keadm lock left %v", n.Name(), after.state.ActiveState, after.lockFile)
		}
		if r, raw, err := readReport(n); err != nil || r.Event != "Upgrade" || !r.Success {
			t.Errorf("%s: keadm's report %s (%v)", n.Name(), raw, err)
		}
		// The runner that ran there is the node's platform's: its binary
		// is still in the node's containerd, one image per platform.
		res := n.Exec(ctx, "uname", "-m")
		t.Logf("node %s: uname -m in the machine: %s", n.Name(), strings.TrimSpace(res.Stdout))
	}
}

func archName(n *kubeedgeworld.Node) string {
	if n.Arch() == "" {
		return "amd64"
	}
	return n.Arch()
}
