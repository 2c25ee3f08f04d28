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
		if v := node.Status.NodeInfo.KubeletVersion; !strings.HasSuffix(v, "kubeedge-v1.21.0") {
			t.Errorf("node %s kubeletVersion %q", n.Name(), v)
		}
		st, err := n.Edgecore(ctx)
		if err != nil || st.ActiveState != "active" {
			t.Errorf("node %s edgecore: %+v %v", n.Name(), st, err)
		}
	}

	privileged := true
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
					ImagePullPolicy: corev1.PullNever,
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
}
