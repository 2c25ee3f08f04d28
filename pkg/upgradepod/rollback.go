package upgradepod

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// BuildRollback renders a health gate's rollback pod for p's node: the
// node's upgrade committed, but it failed the job's health gate
// (spec.healthGate). copy-keadm puts keadm back in the job's binaries
// directory (the unit removed it when it committed), and one container,
// rollback, asks the job's unit on the host to roll back from the
// upgrade's backup and follows it (see pkg/runner/gaterollback.go). The
// pod has the node's upgrade pod name, so the controller deletes the
// node's upgrade pod first; the annotation tells the two apart.
func BuildRollback(p Params, now time.Time) *corev1.Pod {
	p.RequireConfirmation = false
	pod := Build(p, now)
	pod.Annotations[v1alpha1.AnnotationPodAction] = v1alpha1.PodActionRollback
	opts := runnerOptions(p, now)
	c := container(runner.ContainerRollback, p.RunnerImage, RunnerCommand)
	c.Args = opts.Args(runner.StepRollback)
	c.VolumeMounts, c.SecurityContext = stepMounts(runner.StepRollback), privileged()
	pod.Spec.Containers = []corev1.Container{c}
	return pod
}

// IsRollback reports whether pod is a health gate's rollback pod.
func IsRollback(pod *corev1.Pod) bool {
	return pod != nil && pod.Annotations[v1alpha1.AnnotationPodAction] == v1alpha1.PodActionRollback
}
