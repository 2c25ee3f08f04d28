package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"unicode"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// hostile is text a compromised node could write into its pod's messages
// and logs: a window title, a clear screen, a line that overwrites itself,
// an 8-bit CSI and a bidi override.
const hostile = "\x1b]0;owned\x07\x1b[2J\x1b[Hok\rFAILED\u009b31m\u202e"

// hostileShown is how the plugin prints it: written out, inert.
const hostileShown = `\x1b]0;owned\x07\x1b[2J\x1b[Hok\rFAILED\u009b31m\u202e`

// expectInert fails when out holds a rune a terminal would act on (but
// newline) or lacks the hostile text written out.
func expectInert(t *testing.T, what, out string) {
	t.Helper()
	for _, r := range out {
		if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
			t.Errorf("%s prints %U raw:\n%q", what, r, out)
			return
		}
	}
	if !strings.Contains(out, hostileShown) {
		t.Errorf("%s does not show the node's text written out (%s):\n%s", what, hostileShown, out)
	}
}

// Issue 29: text from nodes reaches the operator's terminal written out,
// in every command that prints it.
func TestNodeTextReachesTheTerminalInert(t *testing.T) {
	job := statusFixture()
	job.Status.Reason = "failed: " + hostile
	job.Status.NodeStatus[2].Reason = hostile // failed
	job.Status.NodeStatus[2].Event = hostile
	job.Status.NodeStatus[6].Reason = hostile // waiting
	var out bytes.Buffer
	writeStatus(&out, job, now, estimateBasis{})
	expectInert(t, "status", out.String())

	report := &PlanReport{Job: "j", Refusal: hostile, Warnings: []string{hostile},
		Nodes: []PlanNode{{Name: "edge-a", Action: actionSkip, Reason: hostile}}}
	out.Reset()
	if err := writePlan(&out, report, ""); err != nil {
		t.Fatal(err)
	}
	expectInert(t, "plan", out.String())

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.DefaultNamespace, Name: "p"}}
	pod.Spec.Containers = []corev1.Container{{Name: runner.ContainerUpgrade}}
	open := func(context.Context, string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("keadm: " + hostile + "\nlast line, no newline " + hostile)), nil
	}
	out.Reset()
	if err := writeLogs(context.Background(), &out, pod, open); err != nil {
		t.Fatal(err)
	}
	expectInert(t, "logs", out.String())
	if !strings.HasSuffix(out.String(), "last line, no newline "+hostileShown) {
		t.Errorf("logs lose an unterminated last line:\n%s", out.String())
	}
}
