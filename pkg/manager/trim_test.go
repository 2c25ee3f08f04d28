package manager

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
)

// The cache keeps upgrade pods trimmed (trimPod): what the planner sees of
// a pod must be the same from the trimmed copy, at every point of its
// life, and the copy must be much smaller.
func TestTrimmedPodReadsAsTheWholeOne(t *testing.T) {
	for _, name := range []string{"pod-full", "pod-confirmation", "pod-no-check-long-names"} {
		raw, err := os.ReadFile(filepath.Join("..", "upgradepod", "testdata", name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{}
		if err := yaml.Unmarshal(raw, pod); err != nil {
			t.Fatal(err)
		}
		for _, status := range podLife(pod) {
			whole := pod.DeepCopy()
			whole.Status = status
			trimmed, err := trimPod(whole.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			got, want := upgradepod.View(trimmed.(*corev1.Pod)), upgradepod.View(whole)
			if got != want {
				t.Errorf("%s, %s: trimmed pod reads %+v, the whole one %+v", name, status.Phase, got, want)
			}
		}
		before, _ := json.Marshal(pod)
		after, _ := trimPod(pod.DeepCopy())
		small, _ := json.Marshal(after)
		t.Logf("%s: %d bytes, trimmed %d", name, len(before), len(small))
		if len(small)*2 > len(before) {
			t.Errorf("%s: trimmed to %d of %d bytes, want less than half", name, len(small), len(before))
		}
	}
}

// podLife is a pod's status as it goes: pending, each container running in
// turn, one failed, all succeeded, and a pull that fails.
func podLife(pod *corev1.Pod) []corev1.PodStatus {
	var out []corev1.PodStatus
	out = append(out, corev1.PodStatus{Phase: corev1.PodPending})
	all := append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...)
	for i := range all {
		st := corev1.PodStatus{Phase: corev1.PodRunning}
		for j, c := range all {
			cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
			switch {
			case j < i:
				cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0}
			case j == i:
				cs.State.Running = &corev1.ContainerStateRunning{}
			default:
				cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
			}
			if j < len(pod.Spec.InitContainers) {
				st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			} else {
				st.ContainerStatuses = append(st.ContainerStatuses, cs)
			}
		}
		out = append(out, st)
		failed := *st.DeepCopy()
		failed.Phase = corev1.PodFailed
		for k := range failed.ContainerStatuses {
			if failed.ContainerStatuses[k].State.Running != nil {
				failed.ContainerStatuses[k].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, Message: `{"step":"upgrade","error":"keadm failed"}`}}
			}
		}
		out = append(out, failed)
	}
	pull := corev1.PodStatus{Phase: corev1.PodPending}
	for _, c := range pod.Spec.InitContainers {
		pull.InitContainerStatuses = append(pull.InitContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image " + c.Image}}})
	}
	out = append(out, pull)
	return out
}
