package controller

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func gatePod(name string, phase corev1.PodPhase, ready corev1.ConditionStatus) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name}, Status: corev1.PodStatus{Phase: phase}}
	if ready != "" {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}
	}
	return p
}

// A health gate's pods pass only Running and Ready; the reason names at
// most three, in name order.
func TestNotRunningAndReady(t *testing.T) {
	g := NewWithT(t)
	g.Expect(notRunningAndReady(nil)).To(BeEmpty(), "no pod: passes")
	g.Expect(notRunningAndReady([]corev1.Pod{gatePod("a", corev1.PodRunning, corev1.ConditionTrue)})).To(BeEmpty())
	g.Expect(notRunningAndReady([]corev1.Pod{
		gatePod("e", corev1.PodRunning, corev1.ConditionTrue),
		gatePod("d", corev1.PodRunning, corev1.ConditionFalse),
		gatePod("c", corev1.PodPending, ""),
		gatePod("b", corev1.PodRunning, ""),
		gatePod("a", corev1.PodFailed, ""),
	})).To(Equal("apps/a is Failed, apps/b is Running, not Ready, apps/c is Pending and 1 more"))
}
