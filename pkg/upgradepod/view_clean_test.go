package upgradepod

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// A node writes its pod's termination and waiting messages: whatever
// escape sequences they hold reach the planner's reason written out, never
// raw (issue 29: they would go on into status, Events and terminals).
func TestViewCleansTheNodesText(t *testing.T) {
	const attack = "\x1b]0;owned\x07\x1b[2Jdone\rFailed\u202e"
	const cleaned = `\x1b]0;owned\x07\x1b[2Jdone\rFailed\u202e`
	report := `{"step":"upgrade","result":"failed","reason":"` + `\u001b]0;owned\u0007\u001b[2Jdone\rFailed\u202e` + `"}`
	for _, tc := range []struct {
		name   string
		status corev1.PodStatus
	}{
		{"a report's reason", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: steps(exited(0, ""), exited(0, ""), exited(runner.ExitRolledBack, report))}},
		{"a raw termination message", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: steps(exited(0, ""), exited(0, ""), exited(runner.ExitRolledBack, attack))}},
		{"a waiting message", corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
			cs(runner.ContainerCopyKeadm, waiting("ErrImagePull", attack))}}},
		{"a pod status message", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: attack}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := View(testPod(true, tc.status)).Reason
			g.Expect(got).To(ContainSubstring(cleaned))
			g.Expect(got).NotTo(ContainSubstring("\x1b"))
		})
	}
}
