// Command kubeedgedemo is `make demo-kubeedge`: the real-KubeEdge world
// (real cloudcore, one real edgecore v1.22.0 node booted with systemd, real
// keadm) and the real controller, upgrading that node live to v1.23.1 with a
// narration of what the job's status and the node itself say. The simulated
// fleet (`make demo`) stays the default demo; this one shows that the
// simulation tells the truth. It needs root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

func main() {
	target := flag.String("version", kubeedgeworld.DefaultTargetVersion, "version to upgrade the node to")
	keep := flag.Bool("keep", false, "keep the world running after the summary until Ctrl-C")
	flag.Parse()
	if err := run(*target, *keep); err != nil {
		fmt.Fprintf(os.Stderr, "kubeedgedemo: %v\n", err)
		os.Exit(1)
	}
}

func run(target string, keep bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	say := func(format string, args ...any) {
		el := time.Since(start).Round(time.Second)
		fmt.Printf("[%d:%02d] %s\n", int(el.Minutes()), int(el.Seconds())%60, fmt.Sprintf(format, args...))
	}
	fmt.Println("nodeupgrade demo on real KubeEdge: real cloudcore, a real edgecore node under systemd, real keadm")
	say("starting the world (control plane, KubeEdge CRDs, cloudcore, one nspawn edge node)...")
	w, err := kubeedgeworld.Start(ctx, kubeedgeworld.Options{Nodes: 1, Logf: func(f string, a ...any) { say("  "+f, a...) }})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping the world...")
		if err := w.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kubeedgedemo: stop: %v\n", err)
		}
		say("stopped; nothing is left running")
	}()
	node := w.Nodes()[0]
	fmt.Printf("  kubeconfig: %s\n  try:        export KUBECONFIG=%s; kubectl get nodeupgradejobs\n", w.KubeconfigPath(), w.KubeconfigPath())
	if _, err := w.StartController(ctx); err != nil {
		return err
	}
	k8s := w.Cluster.Client
	say("node %s: %s, edgecore %s", node.Name(), kubeletVersion(ctx, k8s, node.Name()), edgecoreLine(ctx, node))

	job := &v1alpha1.NodeUpgradeJob{
		ObjectMeta: metav1.ObjectMeta{Name: "demo-upgrade"},
		Spec: v1alpha1.NodeUpgradeJobSpec{
			Version: target, Image: kubeedgeworld.InstallPackageRepo, NodeNames: []string{node.Name()},
			CheckItems: []string{v1alpha1.CheckItemMem, v1alpha1.CheckItemDisk}, TimeoutSeconds: 900,
		},
	}
	say("$ create NodeUpgradeJob demo-upgrade: version %s, nodeNames [%s], checkItems [mem, disk]", target, node.Name())
	if err := k8s.Create(ctx, job); err != nil {
		return err
	}
	last := ""
	for {
		cur := &v1alpha1.NodeUpgradeJob{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(job), cur); err != nil {
			return err
		}
		for _, e := range cur.Status.NodeStatus {
			line := fmt.Sprintf("%s %s", e.State, firstLine(e.Reason))
			if line != last {
				say("%s: %s", e.NodeName, strings.TrimSpace(line))
				last = line
			}
		}
		if cur.Status.State == v1alpha1.StateSuccessful || cur.Status.State == v1alpha1.StateFailed {
			say("job %s: %s", cur.Status.State, cur.Status.Reason)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	say("node %s: %s, edgecore %s", node.Name(), kubeletVersion(ctx, k8s, node.Name()), edgecoreLine(ctx, node))
	if res := w.Cluster.Kubectl(ctx, "get", "nodeupgradejobs"); res.Err == nil {
		fmt.Printf("$ kubectl get nodeupgradejobs\n%s", res.Stdout)
	}
	if keep {
		say("the world stays up; Ctrl-C stops it")
		<-ctx.Done()
	}
	return nil
}

func kubeletVersion(ctx context.Context, k8s client.Client, name string) string {
	n := &corev1.Node{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, n); err != nil {
		return "unreadable: " + err.Error()
	}
	ready := "NotReady"
	if kubeedgeworld.NodeReady(n) {
		ready = "Ready"
	}
	return n.Status.NodeInfo.KubeletVersion + " " + ready
}

func edgecoreLine(ctx context.Context, n *kubeedgeworld.Node) string {
	st, err := n.Edgecore(ctx)
	if err != nil {
		return "unknown: " + err.Error()
	}
	starts, _ := n.EdgecoreStarts(ctx)
	return fmt.Sprintf("%s (pid %d, started %d times under systemd)", st.ActiveState, st.MainPID, len(starts))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
