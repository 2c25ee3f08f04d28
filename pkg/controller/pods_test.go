package controller

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

func podIn(name string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.PodStatus{Phase: phase}}
}

func TestCleanupTasksPutCancellationsFirst(t *testing.T) {
	g := NewWithT(t)
	pods := jobPods{
		"done-a":  podIn("done-a", corev1.PodSucceeded),
		"failed":  podIn("failed", corev1.PodFailed),
		"hung":    podIn("hung", corev1.PodRunning),
		"done-b":  podIn("done-b", corev1.PodSucceeded),
		"deleted": podIn("deleted", corev1.PodRunning),
	}
	plan := rollout.Plan{
		Release: []string{"done-a", "failed", "hung", "done-b", "gone"},
		Delete:  []string{"done-a", "hung", "done-b", "deleted"},
	}
	tasks := cleanupTasks(pods, plan)
	var got []string
	for _, task := range tasks {
		got = append(got, task.pod.Name)
	}
	g.Expect(got).To(Equal([]string{"hung", "deleted", "done-a", "failed", "done-b"}), "cancellations first, the rest in plan order; a pod not observed is skipped")
	g.Expect([3]bool{tasks[0].release, tasks[0].delete, tasks[0].cancel}).To(Equal([3]bool{true, true, true}))
	g.Expect([2]bool{tasks[1].release, tasks[1].delete}).To(Equal([2]bool{false, true}))
	g.Expect([2]bool{tasks[3].release, tasks[3].delete}).To(Equal([2]bool{true, false}), "a failed node's pod is kept for its logs")
}
