//go:build kubeedge

package kubeedgeworld_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

// TestWorldSmoke brings the real world up and runs, on every node, a
// hostPID, hostNetwork, privileged pod that enters the host's PID 1 (the
// machine's systemd) with nsenter, as the upgrade pods do.
func TestWorldSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	w := kubeedgeworld.StartT(t, ctx, kubeedgeworld.Options{})
	t.Logf("world up in %s", time.Since(start).Round(time.Second))

	cs := w.Cluster.Clientset
	for _, n := range w.Nodes() {
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := node.Labels[kubeedgeworld.EdgeLabel]; !ok {
			t.Errorf("node %s lacks label %s: %v", n.Name(), kubeedgeworld.EdgeLabel, node.Labels)
		}
		if v := node.Status.NodeInfo.KubeletVersion; !strings.HasSuffix(v, "kubeedge-"+kubeedgeworld.DefaultNodeVersion) {
			t.Errorf("node %s kubeletVersion %q", n.Name(), v)
		}
		st, err := n.Edgecore(ctx)
		if err != nil || st.ActiveState != "active" {
			t.Errorf("node %s edgecore: %+v %v", n.Name(), st, err)
		}
	}

	privileged := true
	// A pod that keeps running on each node, to find its processes on the
	// host: see assertDisjointPodCgroups.
	for _, n := range w.Nodes() {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "cgroups-" + n.Name(), Namespace: "default"},
			Spec: corev1.PodSpec{
				NodeName:      n.Name(),
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name:  "sleep",
					Image: kubeedgeworld.RunnerImage,
					// PID 1 of its pid namespace: without a handler it
					// would ignore the machine's poweroff SIGTERM and hold
					// Stop for its whole grace period.
					Command:         []string{"/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"},
					ImagePullPolicy: corev1.PullIfNotPresent, // from the world's open registry
				}},
			},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range w.Nodes() {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "smoke-" + n.Name(), Namespace: "default"},
			Spec: corev1.PodSpec{
				NodeName:      n.Name(),
				HostPID:       true,
				HostNetwork:   true,
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name:            "smoke",
					Image:           kubeedgeworld.RunnerImage,
					Command:         []string{"/bin/sh", "-c", "nsenter -t 1 -m -u -i -n -p -- cat /etc/hostname > /dev/termination-log"},
					SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
					ImagePullPolicy: corev1.PullIfNotPresent, // from the world's open registry
				}},
			},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range w.Nodes() {
		podStart := time.Now()
		var last *corev1.Pod
		for {
			p, err := cs.CoreV1().Pods("default").Get(ctx, "smoke-"+n.Name(), metav1.GetOptions{})
			if err == nil {
				last = p
				if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
					break
				}
			}
			if time.Since(podStart) > 3*time.Minute {
				t.Fatalf("pod on %s did not finish: %+v", n.Name(), last.Status)
			}
			time.Sleep(time.Second)
		}
		if last.Status.Phase != corev1.PodSucceeded {
			t.Fatalf("pod on %s: %+v", n.Name(), last.Status)
		}
		msg := ""
		if cs := last.Status.ContainerStatuses; len(cs) == 1 && cs[0].State.Terminated != nil {
			msg = strings.TrimSpace(cs[0].State.Terminated.Message)
		}
		if msg != n.Name() {
			t.Errorf("pod on %s saw hostname %q through nsenter, want the machine's", n.Name(), msg)
		}
		t.Logf("pod on %s Succeeded after %s, saw hostname %q", n.Name(), time.Since(podStart).Round(time.Second), msg)
	}
	assertDisjointPodCgroups(ctx, t, w)
}

// assertDisjointPodCgroups checks, from the host, that each node's pods
// live in that node's own cgroup subtree: for every hierarchy, the part of
// a pod process's cgroup path above kubelet's /kubepods is the node's own
// cgroup (or below it), and differs between nodes. With the machines
// sharing the host's hierarchies (issue 9) it was the same for all nodes
// ("" or this process's memory cgroup), and one node's kubelet removed the
// other's pod cgroups.
func assertDisjointPodCgroups(ctx context.Context, t *testing.T, w *kubeedgeworld.World) {
	t.Helper()
	cs := w.Cluster.Clientset
	roots := map[string]map[string]string{} // node => hierarchy => path above /kubepods
	for _, n := range w.Nodes() {
		name := "cgroups-" + n.Name()
		var pids []int
		deadline := time.Now().Add(2 * time.Minute)
		for {
			p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err == nil && p.Status.Phase == corev1.PodRunning {
				if pids = kubeedgeworld.PodPIDs(string(p.UID)); len(pids) > 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("pod %s: not running with processes on the host after 2m: %v", name, err)
			}
			time.Sleep(time.Second)
		}
		own := n.Cgroups()
		roots[n.Name()] = map[string]string{}
		for _, pid := range pids {
			cgs, err := kubeedgeworld.ProcessCgroups(pid)
			if err != nil {
				continue // gone meanwhile
			}
			for h, path := range cgs {
				i := strings.Index(path, "/kubepods/")
				if i < 0 {
					continue // e.g. cgroup v2 here: kubelet does not use it
				}
				root := path[:i]
				if prev, ok := roots[n.Name()][h]; ok && prev != root {
					t.Errorf("node %s: pod processes under %q and %q in %q", n.Name(), prev, root, h)
				}
				roots[n.Name()][h] = root
			}
		}
		if len(roots[n.Name()]) == 0 {
			t.Errorf("node %s: no pod process under /kubepods (pids %v)", n.Name(), pids)
		}
		for h, root := range roots[n.Name()] {
			if want := own[h]; root != want && !strings.HasPrefix(root, want+"/") {
				t.Errorf("node %s: pod's /kubepods under %q in %q, want under the node's own cgroup %q", n.Name(), root, h, want)
			}
		}
		t.Logf("node %s: pod %s's processes %v, kubelet's /kubepods under %v", n.Name(), name, pids, roots[n.Name()])
	}
	nodes := w.Nodes()
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			for h, ra := range roots[a.Name()] {
				rb, ok := roots[b.Name()][h]
				if !ok {
					continue
				}
				if ra == rb || strings.HasPrefix(ra+"/", rb+"/") || strings.HasPrefix(rb+"/", ra+"/") {
					t.Errorf("nodes %s and %s share cgroup subtree %q / %q in %q", a.Name(), b.Name(), ra, rb, h)
				}
			}
		}
	}
}
