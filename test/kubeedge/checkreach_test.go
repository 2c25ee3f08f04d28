//go:build kubeedge

package kubeedge

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

// reachProbe tries, from inside the check container as the upgrade pod
// builds it (its user, capabilities and mounts), what it must not be able to
// do on a real node, and what its checks need. Each line it prints is one
// attempt and its outcome.
const reachProbe = `
try() { if "$@" >/dev/null 2>&1; then echo "CAN $*"; else echo "CANNOT $*"; fi; }
echo "uid $(id -u)"
try touch /host/run/nodeupgrade-probe
try touch /host/run/lock/nodeupgrade-probe
try touch /host/var/lib/nodeupgrade/jobs/nodeupgrade-probe
try touch /host/proc/nodeupgrade-probe
try ls /host/etc/kubeedge
try ls /host/run/containerd
try cat /host/proc/1/environ
try cat /host/proc/meminfo
try cat /host/proc/stat
try touch /handoff/probe
try touch /nodeupgrade-probe
# Exit non-zero: the termination message then falls back to this log
# (FallbackToLogsOnError), which reaches the API without the kubelet's log
# endpoint (edgecore's stream is off in this world).
exit 1
`

// probeCheckReach runs reachProbe on n in a pod whose one container is the
// check container of a real upgrade pod, with the probe as its command, and
// checks what it could reach.
func probeCheckReach(t *testing.T, ctx context.Context, w *kubeedgeworld.World, n *kubeedgeworld.Node) {
	t.Helper()
	built := upgradepod.Build(upgradepod.Params{
		JobName: "reach", JobUID: "00000000-0000-4000-8000-00000000feed", NodeName: n.Name(), Namespace: podNamespace,
		RunnerImage: kubeedgeworld.RunnerImage, InstallImage: kubeedgeworld.InstallPackageRepo + ":" + toVersion,
		Version: toVersion, CheckItems: []string{"cpu"}, Deadline: time.Now().Add(time.Hour),
	}, time.Now())
	check := built.Spec.Containers[0]
	check.Name = "probe"
	check.Command = []string{"/bin/sh", "-c", reachProbe}
	check.Args = nil
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "check-reach-probe", Namespace: podNamespace},
		Spec: corev1.PodSpec{
			NodeName: n.Name(), HostPID: true, HostNetwork: true, RestartPolicy: corev1.RestartPolicyNever,
			Tolerations: built.Spec.Tolerations, Containers: []corev1.Container{check}, Volumes: built.Spec.Volumes,
			AutomountServiceAccountToken: new(false),
		},
	}
	pods := w.Cluster.Clientset.CoreV1().Pods(podNamespace)
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = pods.Delete(context.WithoutCancel(ctx), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	}()
	deadline := time.Now().Add(3 * time.Minute)
	var out string
	for {
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Terminated != nil {
			logs, err := pods.GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
			out = string(logs)
			if err != nil || out == "" {
				// The kubelet's log endpoint may be out of reach here; the
				// termination message falls back to the log.
				out = p.Status.ContainerStatuses[0].State.Terminated.Message
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reach probe did not end on %s: %+v", n.Name(), p.Status)
		}
		time.Sleep(time.Second)
	}
	t.Logf("what the check container reaches on %s:\n%s", n.Name(), out)
	for _, want := range []string{
		"uid 65532",
		"CANNOT touch /host/run/nodeupgrade-probe",
		"CANNOT touch /host/run/lock/nodeupgrade-probe",
		"CANNOT touch /host/var/lib/nodeupgrade/jobs/nodeupgrade-probe",
		"CANNOT touch /host/proc/nodeupgrade-probe",
		"CANNOT ls /host/etc/kubeedge",
		"CANNOT ls /host/run/containerd",
		"CANNOT cat /host/proc/1/environ",
		"CAN cat /host/proc/meminfo",
		"CAN cat /host/proc/stat",
		"CAN touch /handoff/probe",
		"CANNOT touch /nodeupgrade-probe",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("the check container on %s: want %q", n.Name(), want)
		}
	}
}
