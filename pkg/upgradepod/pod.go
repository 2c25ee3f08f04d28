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

	// DeadlineGrace is added to the job's budget to get the pod's
	// activeDeadlineSeconds: the kubelet then kills a pod that outlives its
	// budget, but not before its containers have followed the job's unit
	// through a rollback that began at the end of the budget
	// (runner.FollowGrace) and reported. Killing the pod never stops the
	// unit: it only ends the following.
	DeadlineGrace = runner.FollowGrace + 30*time.Second
	// TerminationGracePeriod lets a stopped backup or upgrade container
	// follow the job's unit for runner.FollowAfterStop and write its
	// report. Nothing in the pod needs more: the work that cannot be
	// cancelled (keadm, the settle check, a rollback) runs in the unit on
	// the host, which the pod's end does not touch.
	TerminationGracePeriod = runner.FollowAfterStop + 15*time.Second
)

// Volume names and the paths they are mounted at.
const (
	volumeHostRoot = "host-root"
	volumeBinDir   = "job-bin-dir"
	volumeHandoff  = "handoff"
	volumeHostProc = "host-proc"
	volumeJobsDir  = "jobs-dir"

	// binMountPath is where copy-keadm sees the job's binaries directory
	// on the host: only that directory, not the job's records.
	binMountPath = "/nodeupgrade-bin"
	// handoffMountPath is the pod's handoff directory (runner.HandoffDir).
	handoffMountPath = "/handoff"
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
	// KeepJobRecords is how many jobs' records the node keeps; zero means
	// runner.DefaultKeepJobRecords.
	KeepJobRecords int
	// Deadline is when the controller gives up on the node, on its own
	// clock. The runner gets the time left until then as a budget, counted
	// on the node's monotonic clock (see pkg/runner/budget.go).
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
	opts.JobName = p.JobName
	opts.Keadm = runner.KeadmPath(p.JobUID)
	opts.ToVersion = p.Version
	opts.FromVersion = p.FromVersion
	opts.Image = p.InstallImage
	opts.Budget = budget(p.Deadline, now)
	opts.IssuedAt = now
	opts.CheckItems = p.CheckItems
	opts.CPUThreshold = orDefault(p.Thresholds.CPU)
	opts.MemThreshold = orDefault(p.Thresholds.Mem)
	opts.DiskThreshold = orDefault(p.Thresholds.Disk)
	if p.KeepJobRecords > 0 {
		opts.KeepJobRecords = p.KeepJobRecords
	}

	opts.HandoffDir = handoffMountPath
	handoffMount := corev1.VolumeMount{Name: volumeHandoff, MountPath: handoffMountPath}
	hostRootMount := corev1.VolumeMount{
		Name:      volumeHostRoot,
		MountPath: runner.DefaultHostRoot,
		// Writable: the backup container copies the runner and writes the
		// job's plan and unit file on the host, and both containers read
		// the unit's records (see pkg/runner). They are privileged and
		// enter the host's namespaces (systemctl) anyway, so a read-only
		// mount would protect nothing there; the check's is read-only.
	}
	// Each step runs in the container named after it (runner.ContainerCheck
	// and the others are the step names).
	runnerContainer := func(step runner.Step, after runner.Step) corev1.Container {
		stepOpts := opts
		stepOpts.After = after
		mounts, security := []corev1.VolumeMount{hostRootMount}, privileged()
		switch step {
		case runner.StepCheck:
			// The check only reads the host's /proc/stat and /proc/meminfo
			// and the usage of the file system holding the jobs directory
			// (statfs): it gets exactly those two host directories,
			// read-only, runs as a user that is not root, with no
			// capability, and hands its outcome to the backup container in
			// the pod's handoff directory. It cannot write anything on the
			// host, nor read the host's other files (/etc/kubeedge/certs,
			// edgecore's configuration), nor reach containerd's socket: the
			// host's / is not mounted, so its writable submounts (/run/lock,
			// /dev/shm) are out of reach with no need for a recursively
			// read-only mount, which containerd before 2.0 cannot make and
			// the kubelet of KubeEdge v1.21 (Kubernetes 1.30, feature gate
			// off) refuses. (hostPID is the pod's, for the steps that enter
			// PID 1's namespaces.)
			mounts = []corev1.VolumeMount{
				readOnly(volumeHostProc, path.Join(runner.DefaultHostRoot, "proc")),
				readOnly(volumeJobsDir, path.Join(runner.DefaultHostRoot, runner.JobsDir)),
				handoffMount,
			}
			security = unprivilegedUser()
		case runner.StepBackup:
			mounts = append(mounts, handoffMount)
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
		// job's binaries directory on the host, is created by the kubelet
		// (DirectoryOrCreate), so no mkdir is needed, two jobs never
		// overwrite each other's keadm, and this container, which runs the
		// install image's code, can write nothing else on the host: not
		// the job's records, which the unit trusts.
		Command:                  []string{"cp", InstallImageKeadm, binMountPath + "/keadm"},
		ImagePullPolicy:          corev1.PullIfNotPresent,
		VolumeMounts:             []corev1.VolumeMount{{Name: volumeBinDir, MountPath: binMountPath}},
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
			Name:      PodName(p.NodeName),
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
				{Name: volumeBinDir, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
					Path: runner.JobBinDir(p.JobUID), Type: new(corev1.HostPathDirectoryOrCreate),
				}}},
				{Name: volumeHostProc, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
					Path: "/proc", Type: new(corev1.HostPathDirectory),
				}}},
				{Name: volumeJobsDir, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
					Path: runner.JobsDir, Type: new(corev1.HostPathDirectoryOrCreate),
				}}},
				// A few KB: the check's outcome.
				{Name: volumeHandoff, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
					SizeLimit: new(resource.MustParse("1Mi")),
				}}},
			},
			AutomountServiceAccountToken:  new(false),
			EnableServiceLinks:            new(false),
			ActiveDeadlineSeconds:         new(int64((opts.Budget + DeadlineGrace) / time.Second)),
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

// budget is the time left before deadline, in whole seconds rounded up,
// and at least one second: the runner counts it on the node from its first
// step's start. The kubelet counts activeDeadlineSeconds from the pod's
// start too, so the pod outlives the budget by DeadlineGrace.
func budget(deadline, now time.Time) time.Duration {
	left := max(deadline.Sub(now), time.Second)
	return time.Duration(math.Ceil(left.Seconds())) * time.Second
}

func resources() corev1.ResourceRequirements {
	// The containers check, copy a file or follow the job's unit; keadm
	// runs in the unit's cgroup on the host, not here. The backup container
	// reads its own executable (about 30 MB) to copy it to the host.
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

// unprivileged is the security context of copy-keadm, which only copies a
// file: root, to write the root-owned job directory, with no capabilities
// and no way to gain any.
func unprivileged() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		Privileged: new(false), AllowPrivilegeEscalation: new(false), RunAsUser: new(int64(0)),
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// readOnly mounts a volume read-only.
func readOnly(volume, at string) corev1.VolumeMount {
	return corev1.VolumeMount{Name: volume, MountPath: at, ReadOnly: true}
}

// CheckUser is the user the check runs as: the runner image's own
// unprivileged user (the Dockerfile's USER).
const CheckUser = 65532

// unprivilegedUser is the check's security context: not root, no
// capability, no way to gain any, nothing writable but the handoff
// directory.
func unprivilegedUser() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		Privileged: new(false), AllowPrivilegeEscalation: new(false),
		RunAsUser: new(int64(CheckUser)), RunAsGroup: new(int64(CheckUser)), RunAsNonRoot: new(true),
		ReadOnlyRootFilesystem: new(true),
		Capabilities:           &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:         &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
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
