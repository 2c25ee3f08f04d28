package upgradepod

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// Container names of a stage pod.
const (
	ContainerStageInstall = "stage-install-package"
	ContainerStageRunner  = "stage-runner"
)

// InstallImageShell is the shell of the installation package, which keadm
// itself runs to copy edgecore out of it (/bin/sh -c cp ...).
const InstallImageShell = "/bin/sh"

// StagePodName is the name of a job's stage pod on a node:
// "nodeupgrade-stage-<8 hex of sha256(job UID)>-<node>". Unlike an upgrade
// pod, two jobs may stage one node at once: pulling changes nothing there.
func StagePodName(jobUID, nodeName string) string {
	prefix := podNamePrefix + "stage-" + shortHash(jobUID, 8) + "-"
	return prefix + nameFor(nodeName, validation.DNS1123SubdomainMaxLength-len(prefix))
}

// BuildStage renders the stage pod of p's node (spec.preStage): two
// containers that only make the node pull the install image (by its digest
// when the job pins one, as the upgrade pod's copy-keadm will) and the
// runner image, then exit 0. The upgrade pod pulls both IfNotPresent, so it
// then pulls nothing. Nothing of the host is mounted, nothing is
// privileged, and it uses the host's network only so that a node without
// a pod network stages too. It carries the job's label but not the node
// label, so no other job takes it for an upgrade that holds the node, and
// no tracking finalizer: its end is only a pull's.
func BuildStage(p Params) *corev1.Pod {
	install := container(ContainerStageInstall, installImageRef(p), InstallImageShell, "-c", "exit 0")
	install.SecurityContext = unprivileged()
	run := container(ContainerStageRunner, p.RunnerImage, RunnerCommand, runner.SubcommandStage)
	run.SecurityContext = unprivileged()
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      StagePodName(p.JobUID, p.NodeName),
			Namespace: p.Namespace,
			Labels:    map[string]string{v1alpha1.LabelJob: JobLabelValue(p.JobName)},
			Annotations: map[string]string{
				v1alpha1.AnnotationNode:      p.NodeName,
				v1alpha1.AnnotationPodAction: v1alpha1.PodActionStage,
			},
		},
		Spec: corev1.PodSpec{
			NodeName:                      p.NodeName,
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			RestartPolicy:                 corev1.RestartPolicyNever,
			HostNetwork:                   true,
			DNSPolicy:                     corev1.DNSDefault,
			Containers:                    []corev1.Container{install, run},
			AutomountServiceAccountToken:  new(false),
			EnableServiceLinks:            new(false),
			TerminationGracePeriodSeconds: new(int64(0)),
		},
	}
	if p.OwnerRef != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*p.OwnerRef}
	}
	for _, name := range p.PullSecrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
	}
	return pod
}

// IsStage reports whether pod is a stage pod.
func IsStage(pod *corev1.Pod) bool {
	return pod != nil && pod.Annotations[v1alpha1.AnnotationPodAction] == v1alpha1.PodActionStage
}
