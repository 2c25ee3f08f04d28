package upgradepod

import (
	"math"
	"path"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

const (
	// RunnerCommand is where the runner image holds nodeupgrade-runner.
	RunnerCommand = "/usr/local/bin/nodeupgrade-runner"
	// InstallImageKeadm is where kubeedge/installation-package holds keadm.
	InstallImageKeadm = "/usr/local/bin/keadm"

	// RollbackTimeout is what the upgrade container allows keadm rollback.
	RollbackTimeout = 90 * time.Second
	// DeadlineGrace is added to the time left before the deadline to get
	// the pod's activeDeadlineSeconds: the kubelet then kills a pod that
	// outlives its deadline, but not a rollback that started at the deadline
	// and is still within RollbackTimeout.
	DeadlineGrace = RollbackTimeout + 30*time.Second
	// TerminationGracePeriod lets a deleted pod's upgrade container, which
	// kills keadm upgrade on SIGTERM, roll the node back before it is killed.
	TerminationGracePeriod = RollbackTimeout + 15*time.Second
)

// Volume names and the paths they are mounted at.
const (
	volumeHostRoot = "host-root"
	volumeKeadmDir = "keadm-dir"
	volumeJobsDir  = "jobs-dir"

	// keadmMountPath is where copy-keadm sees the host's keadm directory.
	keadmMountPath = "/nodeupgrade-bin"
)

// Thresholds are the usage limits of the check items, in percent. A zero
// value means runner.DefaultThreshold: a 0% limit would fail every check.
type Thresholds struct {
	CPU, Mem, Disk int
}

// Params is everything Build needs from the job and the node.
type Params struct {
	JobName, JobUID, NodeName string
	Namespace                 string
	// RunnerImage is the project image holding nodeupgrade-runner (and nsenter).
	RunnerImage string
	// InstallImage is the normalised <repo>:<version> holding keadm at
	// /usr/local/bin/keadm (see imageref.Normalize).
	InstallImage string
	// PullSecrets name the Secrets (in Namespace) the node's kubelet pulls
	// the pod's images with: the controller's --image-pull-secrets.
	PullSecrets []string
	// Version is the target edgecore version.
	Version string
	// FromVersion is what the node reports now; it only ends up in reports.
	FromVersion string
	CheckItems  []string
	Thresholds  Thresholds
	// Deadline is when no step may start any more.
	Deadline time.Time
	OwnerRef *metav1.OwnerReference // may be nil
}

// Build renders the upgrade pod for p, with activeDeadlineSeconds counted
// from now.
func Build(p Params) *corev1.Pod {
	return BuildAt(p, time.Now())
}

// BuildAt is Build with an explicit clock, for tests and golden files.
func BuildAt(p Params, now time.Time) *corev1.Pod {
	opts := runner.DefaultOptions()
	opts.JobUID = p.JobUID
	opts.Keadm = runner.KeadmPath(p.JobUID)
	opts.ToVersion = p.Version
	opts.FromVersion = p.FromVersion
	opts.Image = p.InstallImage
	opts.Deadline = p.Deadline
	opts.CheckItems = p.CheckItems
	opts.CPUThreshold = orDefault(p.Thresholds.CPU)
	opts.MemThreshold = orDefault(p.Thresholds.Mem)
	opts.DiskThreshold = orDefault(p.Thresholds.Disk)
	opts.RollbackTimeout = RollbackTimeout

	hostRootMount := corev1.VolumeMount{
		Name:      volumeHostRoot,
		MountPath: runner.DefaultHostRoot,
		// Writable: the runner records each step's result in the job's
		// directory on the host and clears keadm's stale lock and report
		// (see pkg/runner). The backup and upgrade containers are
		// privileged and enter the host's namespaces anyway, so a read-only
		// mount would protect nothing there; the check's is read-only.
	}
	// Each step runs in the container named after it (runner.ContainerCheck
	// and the others are the step names).
	runnerContainer := func(step runner.Step, after runner.Step) corev1.Container {
		stepOpts := opts
		stepOpts.After = after
		mounts, security := []corev1.VolumeMount{hostRootMount}, privileged()
		if step == runner.StepCheck {
			// The check only reads the host's /proc/stat, /proc/meminfo and
			// the usage of its root filesystem, and records its result in
			// the jobs directory: it gets the host read-only, that directory
			// writable, and no privilege. (hostPID is the pod's, for the
			// steps that enter PID 1's namespaces.)
			mounts = []corev1.VolumeMount{
				{Name: volumeHostRoot, MountPath: runner.DefaultHostRoot, ReadOnly: true},
				{Name: volumeJobsDir, MountPath: path.Join(runner.DefaultHostRoot, runner.JobsDir)},
			}
			security = unprivileged()
		}
		return corev1.Container{
			Name:    string(step),
			Image:   p.RunnerImage,
			Command: []string{RunnerCommand},
			Args:    stepOpts.Args(step),
			// The runner image is pinned by the controller's configuration;
			// IfNotPresent keeps edge nodes on slow links from re-pulling.
			ImagePullPolicy:          corev1.PullIfNotPresent,
			VolumeMounts:             mounts,
			Resources:                resources(),
			SecurityContext:          security,
			TerminationMessagePath:   runner.DefaultTerminationMessagePath,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		}
	}

	initContainers := []corev1.Container{{
		Name:  runner.ContainerCopyKeadm,
		Image: p.InstallImage,
		// No shell: cp is in the install image. The target directory, the
		// job's own directory on the host, is created by the kubelet
		// (DirectoryOrCreate), so no mkdir is needed, two jobs never
		// overwrite each other's keadm, and this container gets no other
		// host access.
		Command:                  []string{"cp", InstallImageKeadm, keadmMountPath + "/keadm"},
		ImagePullPolicy:          corev1.PullIfNotPresent,
		VolumeMounts:             []corev1.VolumeMount{{Name: volumeKeadmDir, MountPath: keadmMountPath}},
		Resources:                resources(),
		SecurityContext:          unprivileged(),
		TerminationMessagePath:   runner.DefaultTerminationMessagePath,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}}

	// The steps are regular containers, started together; each waits for
	// the recorded success of the one before it (--after). As init
	// containers they cost a minute each on real edgecore, whose kubelet
	// started the next init container only at its periodic pod sync
	// (syncFrequency 1m), measured on a real node.
	var containers []corev1.Container
	backupAfter := runner.Step("")
	if len(p.CheckItems) > 0 {
		containers = append(containers, runnerContainer(runner.StepCheck, ""))
		backupAfter = runner.StepCheck
	}
	containers = append(containers, runnerContainer(runner.StepBackup, backupAfter))

	upgrade := runnerContainer(runner.StepUpgrade, runner.StepBackup)
	// No readiness probe to show RollingBack live. On real KubeEdge the
	// kubelet is edgecore itself, the process an upgrade or rollback
	// restarts, so the signal failed both ways (measured): during a real
	// rollback of an edgecore that would not start, nobody reported pod
	// status; after a good upgrade the new edgecore's kubelet, with no probe
	// worker for the pod yet, reported the container Ready by default, and
	// the job showed RollingBack for 16 s although nothing rolled back. The
	// rollback shows in the node's final status (Failed, event Rollback,
	// keadm's reason) from the runner's report.
	containers = append(containers, upgrade)

	labels := map[string]string{
		v1alpha1.LabelJob:  JobLabelValue(p.JobName),
		v1alpha1.LabelNode: NodeLabelValue(p.NodeName),
	}
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      PodName(p.JobUID, p.NodeName),
			Namespace: p.Namespace,
			Labels:    labels,
			Annotations: map[string]string{
				v1alpha1.AnnotationNode:     p.NodeName,
				v1alpha1.AnnotationDeadline: p.Deadline.UTC().Format(time.RFC3339),
			},
			Finalizers: []string{v1alpha1.FinalizerPodTracking},
		},
		Spec: corev1.PodSpec{
			NodeName:       p.NodeName,
			Tolerations:    []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			RestartPolicy:  corev1.RestartPolicyNever,
			HostPID:        true,
			HostNetwork:    true,
			DNSPolicy:      corev1.DNSDefault,
			InitContainers: initContainers,
			Containers:     containers,
			Volumes: []corev1.Volume{
				{Name: volumeHostRoot, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
					Path: "/", Type: new(corev1.HostPathDirectory),
				}}},
				{Name: volumeKeadmDir, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
					Path: path.Dir(runner.KeadmPath(p.JobUID)), Type: new(corev1.HostPathDirectoryOrCreate),
				}}},
				{Name: volumeJobsDir, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
					Path: runner.JobsDir, Type: new(corev1.HostPathDirectoryOrCreate),
				}}},
			},
			AutomountServiceAccountToken:  new(false),
			EnableServiceLinks:            new(false),
			ActiveDeadlineSeconds:         new(activeDeadlineSeconds(p.Deadline, now)),
			TerminationGracePeriodSeconds: new(int64(TerminationGracePeriod / time.Second)),
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

// activeDeadlineSeconds is the time left before deadline, rounded up, plus
// DeadlineGrace. The kubelet counts it from the pod's start, which is after
// now, so it never fires before the deadline.
func activeDeadlineSeconds(deadline, now time.Time) int64 {
	left := max(deadline.Sub(now), 0)
	return int64(math.Ceil(left.Seconds())) + int64(DeadlineGrace/time.Second)
}

func resources() corev1.ResourceRequirements {
	// keadm runs in this container's cgroup even through nsenter, so the
	// limits must leave room for it copying edgecore (page cache counts).
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("32Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("500m"),
			corev1.ResourceMemory: resource.MustParse("256Mi"),
		},
	}
}

// unprivileged is the security context of the containers that only copy a
// file or read the host: root, to write the root-owned job directory, with
// no capabilities and no way to gain any.
func unprivileged() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		Privileged: new(false), AllowPrivilegeEscalation: new(false), RunAsUser: new(int64(0)),
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// privileged is the runner's security context: nsenter into PID 1's
// namespaces needs the full set of capabilities.
func privileged() *corev1.SecurityContext {
	return &corev1.SecurityContext{Privileged: new(true), RunAsUser: new(int64(0))}
}

func orDefault(threshold int) int {
	if threshold == 0 {
		return runner.DefaultThreshold
	}
	return threshold
}
