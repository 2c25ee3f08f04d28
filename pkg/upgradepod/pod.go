package upgradepod

import (
	"math"
	"path"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/imageref"
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
	volumePodInfo  = "pod-info"
	volumeApproved = "approvals-dir"

	// binMountPath is where copy-keadm sees the job's binaries directory
	// on the host: only that directory, not the job's records.
	binMountPath = "/nodeupgrade-bin"
	// handoffMountPath is the pod's handoff directory (runner.HandoffDir).
	handoffMountPath = "/handoff"
	// podInfoMountPath is where the confirm container reads the pod's
	// annotations (runner.PodInfoAnnotationsFile), which the kubelet
	// rewrites when they change.
	podInfoMountPath = "/podinfo"
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
	// ImageDigest pins the install image (spec.imageDigestGatter, the
	// digest for the node's architecture): copy-keadm pulls
	// <repo>@ImageDigest, which the container runtime verifies before
	// anything from the image runs, and the unit gives that image the tag
	// keadm asks for (runner.Options.ImageDigest). Empty: not pinned.
	ImageDigest string
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
	// RequireConfirmation adds the confirm step: after its checks the pod
	// waits for the node's confirmation (v1alpha1.AnnotationApproved, or on
	// the node), for as long as it takes, so the pod has no
	// activeDeadlineSeconds and the budget, the whole timeout, starts on
	// the node with the confirmation.
	RequireConfirmation bool
}

// Build renders the upgrade pod for p. now is the controller's clock: the
// node's budget, and the pod's activeDeadlineSeconds, are the time left
// from now until p.Deadline.
func Build(p Params, now time.Time) *corev1.Pod {
	opts := runnerOptions(p, now)
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: podMeta(p),
		Spec: corev1.PodSpec{
			NodeName:                      p.NodeName,
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			RestartPolicy:                 corev1.RestartPolicyNever,
			HostPID:                       true,
			HostNetwork:                   true,
			DNSPolicy:                     corev1.DNSDefault,
			InitContainers:                []corev1.Container{copyKeadmContainer(p)},
			Containers:                    stepContainers(p, opts),
			Volumes:                       volumes(p),
			AutomountServiceAccountToken:  new(false),
			EnableServiceLinks:            new(false),
			ActiveDeadlineSeconds:         new(int64((opts.Budget + DeadlineGrace) / time.Second)),
			TerminationGracePeriodSeconds: new(int64(TerminationGracePeriod / time.Second)),
		},
	}
	if p.RequireConfirmation {
		// The wait has no end the kubelet could know; the controller
		// deletes the pod of a node that ran out of time after its
		// confirmation, or that the job no longer needs.
		pod.Spec.ActiveDeadlineSeconds = nil
	}
	if p.OwnerRef != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*p.OwnerRef}
	}
	for _, name := range p.PullSecrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
	}
	return pod
}

// runnerOptions are the options every step container's runner gets, but
// the step it waits for (After).
func runnerOptions(p Params, now time.Time) runner.Options {
	opts := runner.DefaultOptions()
	opts.JobUID = p.JobUID
	opts.JobName = p.JobName
	opts.Keadm = runner.KeadmPath(p.JobUID)
	opts.ToVersion = p.Version
	opts.FromVersion = p.FromVersion
	opts.Image = p.InstallImage
	opts.ImageDigest = p.ImageDigest
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
	if p.RequireConfirmation {
		opts.RequireConfirmation, opts.PodInfoDir = true, podInfoMountPath
	}
	return opts
}

// podMeta names the pod after its node and labels, annotates and guards it
// (the tracking finalizer) for the controller.
func podMeta(p Params) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      PodName(p.NodeName),
		Namespace: p.Namespace,
		Labels: map[string]string{
			v1alpha1.LabelJob:  JobLabelValue(p.JobName),
			v1alpha1.LabelNode: NodeLabelValue(p.NodeName),
		},
		Annotations: map[string]string{
			v1alpha1.AnnotationNode:     p.NodeName,
			v1alpha1.AnnotationDeadline: p.Deadline.UTC().Format(time.RFC3339),
			// Read back into the node's history (AnnotationLastUpgrade).
			v1alpha1.AnnotationFromVersion: p.FromVersion,
		},
		Finalizers: []string{v1alpha1.FinalizerPodTracking},
	}
}

// container is what every container of the pod has in common: it runs
// command from image, pulled IfNotPresent (the runner image is pinned by
// the controller's configuration, the install image by the job's version,
// and edge nodes on slow links must not pull them again), with the pod's
// resources, and leaves its termination message where the runner writes
// its report.
func container(name, image string, command ...string) corev1.Container {
	return corev1.Container{
		Name:                     name,
		Image:                    image,
		Command:                  command,
		ImagePullPolicy:          corev1.PullIfNotPresent,
		Resources:                resources(),
		TerminationMessagePath:   runner.DefaultTerminationMessagePath,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// copyKeadmContainer copies keadm from the install image into the job's
// binaries directory on the host, where the job's unit runs it.
func copyKeadmContainer(p Params) corev1.Container {
	// No shell: cp is in the install image. The target directory, the
	// job's binaries directory on the host, is created by the kubelet
	// (DirectoryOrCreate), so no mkdir is needed, two jobs never
	// overwrite each other's keadm, and this container, which runs the
	// install image's code, can write nothing else on the host: not
	// the job's records, which the unit trusts.
	c := container(runner.ContainerCopyKeadm, installImageRef(p), "cp", InstallImageKeadm, binMountPath+"/keadm")
	c.VolumeMounts = []corev1.VolumeMount{{Name: volumeBinDir, MountPath: binMountPath}}
	c.SecurityContext = unprivileged()
	return c
}

// installImageRef is the reference copy-keadm pulls: the install image, or
// the image its digest pins, by digest alone.
func installImageRef(p Params) string {
	if p.ImageDigest == "" {
		return p.InstallImage
	}
	repo, err := imageref.Repository(p.InstallImage)
	if err != nil {
		// InstallImage is normalised (imageref.Normalize): unreachable.
		return p.InstallImage
	}
	return imageref.Pinned(repo, p.ImageDigest)
}

// stepContainers are the runner's steps: check (when the job checks
// anything), backup, upgrade.
//
// The steps are regular containers, started together; each waits for
// the recorded success of the one before it (--after). As init
// containers they cost a minute each on real edgecore, whose kubelet
// started the next init container only at its periodic pod sync
// (syncFrequency 1m), measured on a real node.
//
// No readiness probe to show RollingBack live. On real KubeEdge the
// kubelet is edgecore itself, the process an upgrade or rollback
// restarts, so the signal failed both ways (measured): during a real
// rollback of an edgecore that would not start, nobody reported pod
// status; after a good upgrade the new edgecore's kubelet, with no probe
// worker for the pod yet, reported the container Ready by default, and
// the job showed RollingBack for 16 s although nothing rolled back. The
// rollback shows in the node's final status (Failed, event Rollback,
// keadm's reason) from the runner's report.
func stepContainers(p Params, opts runner.Options) []corev1.Container {
	var containers []corev1.Container
	backupAfter := runner.Step("")
	if len(p.CheckItems) > 0 {
		containers = append(containers, stepContainer(p, opts, runner.StepCheck, ""))
		backupAfter = runner.StepCheck
	}
	if p.RequireConfirmation {
		containers = append(containers, stepContainer(p, opts, runner.StepConfirm, backupAfter))
		backupAfter = runner.StepConfirm
	}
	return append(containers,
		stepContainer(p, opts, runner.StepBackup, backupAfter),
		stepContainer(p, opts, runner.StepUpgrade, runner.StepBackup))
}

// stepContainer runs step, once after has succeeded, in the container
// named after it (runner.ContainerCheck and the others are the step names).
func stepContainer(p Params, opts runner.Options, step, after runner.Step) corev1.Container {
	opts.After = after
	c := container(string(step), p.RunnerImage, RunnerCommand)
	c.Args = opts.Args(step)
	c.VolumeMounts, c.SecurityContext = stepMounts(step), privileged()
	switch step {
	case runner.StepCheck:
		c.SecurityContext = unprivilegedUser()
	case runner.StepConfirm:
		// Root only to consume a confirmation file root wrote on the
		// node; no capability, nothing of the host but that directory.
		c.SecurityContext = unprivileged()
		c.SecurityContext.ReadOnlyRootFilesystem = new(true)
	}
	return c
}

// stepMounts are what a step sees of the host and of the pod.
func stepMounts(step runner.Step) []corev1.VolumeMount {
	handoff := corev1.VolumeMount{Name: volumeHandoff, MountPath: handoffMountPath}
	hostRoot := corev1.VolumeMount{
		Name:      volumeHostRoot,
		MountPath: runner.DefaultHostRoot,
		// Writable: the backup container copies the runner and writes the
		// job's plan and unit file on the host, and both containers read
		// the unit's records (see pkg/runner). They are privileged and
		// enter the host's namespaces (systemctl) anyway, so a read-only
		// mount would protect nothing there; the check's is read-only.
	}
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
		return []corev1.VolumeMount{
			readOnly(volumeHostProc, path.Join(runner.DefaultHostRoot, "proc")),
			readOnly(volumeJobsDir, path.Join(runner.DefaultHostRoot, runner.JobsDir)),
			handoff,
		}
	case runner.StepConfirm:
		return []corev1.VolumeMount{
			readOnly(volumePodInfo, podInfoMountPath),
			{Name: volumeApproved, MountPath: path.Join(runner.DefaultHostRoot, runner.ApprovalsDir)},
			handoff,
		}
	case runner.StepBackup:
		return []corev1.VolumeMount{hostRoot, handoff}
	}
	return []corev1.VolumeMount{hostRoot}
}

// volumes are the host directories the containers mount, and the handoff
// directory.
func volumes(p Params) []corev1.Volume {
	vols := []corev1.Volume{
		hostPathVolume(volumeHostRoot, "/", corev1.HostPathDirectory),
		hostPathVolume(volumeBinDir, runner.JobBinDir(p.JobUID), corev1.HostPathDirectoryOrCreate),
		hostPathVolume(volumeHostProc, "/proc", corev1.HostPathDirectory),
		hostPathVolume(volumeJobsDir, runner.JobsDir, corev1.HostPathDirectoryOrCreate),
		// A few KB: the check's outcome.
		{Name: volumeHandoff, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			SizeLimit: new(resource.MustParse("1Mi")),
		}}},
	}
	if !p.RequireConfirmation {
		return vols
	}
	return append(vols,
		hostPathVolume(volumeApproved, runner.ApprovalsDir, corev1.HostPathDirectoryOrCreate),
		corev1.Volume{Name: volumePodInfo, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{
				Path: runner.PodInfoAnnotationsFile, FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"},
			}},
		}}})
}

func hostPathVolume(name, hostPath string, typ corev1.HostPathType) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
		Path: hostPath, Type: &typ,
	}}}
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
