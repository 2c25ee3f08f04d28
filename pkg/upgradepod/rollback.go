package upgradepod

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// BuildRollback renders a health gate's rollback pod for p's node: the
// node's upgrade committed, but it failed the job's health gate
// (spec.healthGate). copy-keadm puts keadm back in the job's binaries
// directory (the unit removed it when it committed), and one container,
// rollback, asks the job's unit on the host to roll back from the
// upgrade's backup and follows it (see pkg/runner/gaterollback.go).
//
// It has a name of its own (RollbackPodName): the node's upgrade pod stays
// while the rollback runs, holding the node's upgrade pod name, and so the
// node, against other jobs, as it did through the soak. Measured on real
// edgecore: a rollback pod that took the upgrade pod's name right after
// that pod's deletion never had its status reported, because the restarted
// edgecore kept patching the deleted pod's status (its UID) onto the new
// pod of the same name, which the API server refused ("metadata.uid: field
// is immutable"). Like a stage pod, it carries neither the node label nor
// the tracking finalizer; the controller deletes it once the node is final.
func BuildRollback(p Params, now time.Time) *corev1.Pod {
	p.RequireConfirmation = false
	pod := Build(p, now)
	pod.Name = RollbackPodName(p.NodeName)
	delete(pod.Labels, v1alpha1.LabelNode)
	pod.Finalizers = nil
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

// RollbackPodName is the name of a node's health-gate rollback pod:
// "nodeupgrade-rollback-<node>". One job at a time holds a node (its
// upgrade pod), so one name per node is enough.
func RollbackPodName(nodeName string) string {
	prefix := podNamePrefix + "rollback-"
	return prefix + nameFor(nodeName, validation.DNS1123SubdomainMaxLength-len(prefix))
}
