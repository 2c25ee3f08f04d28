package controller

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// The health gate's pods (spec.healthGate.podSelector) are any namespace's
// pods on the node: read around the cache, which holds only the
// controller's namespace, and only at the end of a node's soak. That takes
// list on pods in every namespace, more than the controller needs
// otherwise, so it is not among the markers: config/components/
// health-gate-pods (Helm: healthGatePods.enabled) grants it, as
// config/components/hold-upgrade does for --honor-hold-upgrade.

// maxNamedPods bounds the pods a gate's reason names.
const maxNamedPods = 3

// gatePods answers rollout.Input.GatePods for job: nil when the job's gate
// names no pods.
func (r *Reconciler) gatePods(ctx context.Context, job *v1alpha1.NodeUpgradeJob) func(node string) (string, bool) {
	g := job.Spec.HealthGate
	if g == nil || g.PodSelector == nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(g.PodSelector)
	if err != nil {
		return nil // the job is refused (rollout.ConfigFromSpec)
	}
	return func(node string) (string, bool) {
		list := &corev1.PodList{}
		if err := r.apiReader.List(ctx, list, client.MatchingLabelsSelector{Selector: sel},
			client.MatchingFields{"spec.nodeName": node}); err != nil {
			return err.Error(), false
		}
		return notRunningAndReady(list.Items), true
	}
}

// notRunningAndReady names the pods that are not Running and Ready ("" when
// all are).
func notRunningAndReady(pods []corev1.Pod) string {
	var bad []string
	for i := range pods {
		pod := &pods[i]
		if why := podUnready(pod); why != "" {
			bad = append(bad, fmt.Sprintf("%s/%s %s", pod.Namespace, pod.Name, why))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	sort.Strings(bad)
	more := ""
	if len(bad) > maxNamedPods {
		more = fmt.Sprintf(" and %d more", len(bad)-maxNamedPods)
		bad = bad[:maxNamedPods]
	}
	return strings.Join(bad, ", ") + more
}

func podUnready(pod *corev1.Pod) string {
	if pod.Status.Phase != corev1.PodRunning {
		return "is " + string(pod.Status.Phase)
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			if c.Status == corev1.ConditionTrue {
				return ""
			}
			return "is Running, not Ready"
		}
	}
	return "is Running, not Ready"
}
