package upgradepod

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/imageref"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var buildTime = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func baseParams() Params {
	return Params{
		JobName:      "upgrade-to-1-21",
		JobUID:       "0b6e9f3c-7d2a-4c51-9e8b-1f2a3b4c5d6e",
		NodeName:     "edge-node-1",
		Namespace:    "kubeedge",
		RunnerImage:  "ghcr.io/nodeupgrade/nodeupgrade-runner:v0.1.0",
		InstallImage: "docker.io/kubeedge/installation-package:v1.21.0",
		Version:      "v1.21.0",
		FromVersion:  "v1.20.0",
		CheckItems:   []string{"cpu", "mem", "disk"},
		Thresholds:   Thresholds{CPU: 80, Mem: 85, Disk: 90},
		Deadline:     buildTime.Add(300 * time.Second),
		OwnerRef: &metav1.OwnerReference{
			APIVersion: "operations.kubeedge.io/v1alpha1", Kind: "NodeUpgradeJob",
			Name: "upgrade-to-1-21", UID: "0b6e9f3c-7d2a-4c51-9e8b-1f2a3b4c5d6e",
			Controller: new(true), BlockOwnerDeletion: new(true),
		},
	}
}

func TestBuildGolden(t *testing.T) {
	long := baseParams()
	long.JobName = strings.Repeat("j", 100)
	long.NodeName = strings.Repeat("n", 63) + "." + strings.Repeat("edge", 40)
	long.CheckItems = nil
	long.OwnerRef = nil
	long.Deadline = buildTime.Add(1500 * time.Millisecond)

	tests := []struct {
		name   string
		params Params
	}{
		{"pod-full", baseParams()},
		{"pod-no-check-long-names", long},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := yaml.Marshal(Build(tt.params, buildTime))
			g.Expect(err).NotTo(HaveOccurred())
			path := filepath.Join("testdata", tt.name+".yaml")
			if *update {
				g.Expect(os.WriteFile(path, got, 0o644)).To(Succeed())
			}
			want, err := os.ReadFile(path)
			g.Expect(err).NotTo(HaveOccurred(), "run go test ./pkg/upgradepod -update to create it")
			g.Expect(string(got)).To(Equal(string(want)), "rendered pod differs from %s; rerun with -update if intended", path)
		})
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name   string
		modify func(p *Params)
		check  func(g Gomega, pod *corev1.Pod)
	}{
		{"copy-keadm first, then the steps, each after the one before", nil, func(g Gomega, pod *corev1.Pod) {
			g.Expect(containerNames(pod.Spec.InitContainers)).To(Equal([]string{runner.ContainerCopyKeadm}))
			g.Expect(containerNames(pod.Spec.Containers)).To(Equal([]string{runner.ContainerCheck, runner.ContainerBackup, runner.ContainerUpgrade}))
			var after []runner.Step
			for _, c := range pod.Spec.Containers {
				_, o, err := runner.ParseArgs(c.Args, os.Stderr)
				g.Expect(err).NotTo(HaveOccurred(), c.Name)
				after = append(after, o.After)
			}
			g.Expect(after).To(Equal([]runner.Step{"", runner.StepCheck, runner.StepBackup}))
		}},
		{"no check container without items", func(p *Params) { p.CheckItems = nil }, func(g Gomega, pod *corev1.Pod) {
			g.Expect(containerNames(pod.Spec.InitContainers)).To(Equal([]string{runner.ContainerCopyKeadm}))
			g.Expect(containerNames(pod.Spec.Containers)).To(Equal([]string{runner.ContainerBackup, runner.ContainerUpgrade}))
			_, o, err := runner.ParseArgs(pod.Spec.Containers[0].Args, os.Stderr)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(o.After).To(BeEmpty())
		}},
		{"runner args parse back", nil, func(g Gomega, pod *corev1.Pod) {
			for _, c := range pod.Spec.Containers {
				step, o, err := runner.ParseArgs(c.Args, os.Stderr)
				g.Expect(err).NotTo(HaveOccurred(), c.Name)
				g.Expect(string(step)).To(Equal(c.Name))
				g.Expect(o.ToVersion).To(Equal("v1.21.0"))
				g.Expect(o.Image).To(Equal("docker.io/kubeedge/installation-package:v1.21.0"))
				g.Expect(o.Budget).To(Equal(300*time.Second), "the time left before the controller's deadline, counted on the node")
				g.Expect(o.IssuedAt.Equal(buildTime)).To(BeTrue())
				g.Expect(o.JobName).To(Equal("upgrade-to-1-21"))
				g.Expect(o.UseNsenter).To(BeTrue())
				g.Expect(o.HostRoot).To(Equal("/host"))
				if step == runner.StepCheck {
					g.Expect(o.CheckItems).To(Equal([]string{"cpu", "mem", "disk"}))
					g.Expect([]int{o.CPUThreshold, o.MemThreshold, o.DiskThreshold}).To(Equal([]int{80, 85, 90}))
				}
			}
		}},
		{"copy-keadm writes where the unit runs keadm, and nowhere else", nil, func(g Gomega, pod *corev1.Pod) {
			c := pod.Spec.InitContainers[0]
			g.Expect(c.Image).To(Equal("docker.io/kubeedge/installation-package:v1.21.0"))
			g.Expect(c.Command).To(Equal([]string{"cp", "/usr/local/bin/keadm", "/nodeupgrade-bin/keadm"}))
			g.Expect(c.VolumeMounts).To(HaveLen(1))
			vol := volume(pod, c.VolumeMounts[0].Name)
			g.Expect(c.VolumeMounts[0].MountPath + "/keadm").To(Equal("/nodeupgrade-bin/keadm"))
			uid := string(pod.OwnerReferences[0].UID)
			g.Expect(vol.HostPath.Path + "/keadm").To(Equal(runner.KeadmPath(uid)))
			// Not the job's records: the unit trusts them, and this
			// container runs the install image's code.
			g.Expect(vol.HostPath.Path).To(Equal(runner.JobBinDir(uid)))
			g.Expect(vol.HostPath.Path).NotTo(Equal(runner.JobDir(uid)))
			for _, c := range pod.Spec.Containers {
				g.Expect(c.Args).To(ContainElement("--keadm=" + runner.KeadmPath(uid)))
			}
		}},
		{"metadata", nil, func(g Gomega, pod *corev1.Pod) {
			g.Expect(pod.Namespace).To(Equal("kubeedge"))
			g.Expect(pod.Labels).To(Equal(map[string]string{v1alpha1.LabelJob: "upgrade-to-1-21", v1alpha1.LabelNode: "edge-node-1"}))
			g.Expect(pod.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationNode, "edge-node-1"))
			g.Expect(pod.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationDeadline, "2030-01-02T03:09:05Z"))
			g.Expect(pod.Finalizers).To(Equal([]string{v1alpha1.FinalizerPodTracking}))
			g.Expect(pod.OwnerReferences).To(HaveLen(1))
		}},
		{"zero thresholds mean the default", func(p *Params) { p.Thresholds = Thresholds{Mem: 50} }, func(g Gomega, pod *corev1.Pod) {
			_, o, err := runner.ParseArgs(pod.Spec.Containers[0].Args, os.Stderr)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect([]int{o.CPUThreshold, o.MemThreshold, o.DiskThreshold}).To(Equal([]int{80, 50, 80}))
		}},
		{"no owner", func(p *Params) { p.OwnerRef = nil }, func(g Gomega, pod *corev1.Pod) {
			g.Expect(pod.OwnerReferences).To(BeEmpty())
		}},
		{"long names get valid labels and annotations keep them whole", func(p *Params) {
			p.JobName = strings.Repeat("j", 200)
			p.NodeName = strings.Repeat("n", 250)
		}, func(g Gomega, pod *corev1.Pod) {
			for k, v := range pod.Labels {
				g.Expect(validation.IsValidLabelValue(v)).To(BeEmpty(), k)
			}
			g.Expect(pod.Annotations[v1alpha1.AnnotationNode]).To(Equal(strings.Repeat("n", 250)))
			g.Expect(pod.Spec.NodeName).To(Equal(strings.Repeat("n", 250)))
			g.Expect(validation.IsDNS1123Subdomain(pod.Name)).To(BeEmpty())
		}},
		{"budget and active deadline round up and add grace", func(p *Params) { p.Deadline = buildTime.Add(10*time.Second + time.Millisecond) }, func(g Gomega, pod *corev1.Pod) {
			g.Expect(*pod.Spec.ActiveDeadlineSeconds).To(Equal(int64(11) + int64(DeadlineGrace/time.Second)))
			_, o, err := runner.ParseArgs(pod.Spec.Containers[0].Args, os.Stderr)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(o.Budget).To(Equal(11 * time.Second))
		}},
		{"past deadline still a valid budget", func(p *Params) { p.Deadline = buildTime.Add(-time.Hour) }, func(g Gomega, pod *corev1.Pod) {
			g.Expect(*pod.Spec.ActiveDeadlineSeconds).To(Equal(int64(1) + int64(DeadlineGrace/time.Second)))
			_, o, err := runner.ParseArgs(pod.Spec.Containers[1].Args, os.Stderr)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(o.Budget).To(Equal(time.Second), "the runner refuses to start anything with it")
		}},
		{"no pull secrets by default", nil, func(g Gomega, pod *corev1.Pod) {
			g.Expect(pod.Spec.ImagePullSecrets).To(BeEmpty())
		}},
		{"the controller's pull secrets, in order", func(p *Params) { p.PullSecrets = []string{"registry-a", "registry-b"} }, func(g Gomega, pod *corev1.Pod) {
			g.Expect(pod.Spec.ImagePullSecrets).To(Equal([]corev1.LocalObjectReference{{Name: "registry-a"}, {Name: "registry-b"}}))
		}},
		{"host access", nil, func(g Gomega, pod *corev1.Pod) {
			s := pod.Spec
			g.Expect(s.HostPID && s.HostNetwork).To(BeTrue())
			g.Expect(s.RestartPolicy).To(Equal(corev1.RestartPolicyNever))
			g.Expect(*s.AutomountServiceAccountToken).To(BeFalse())
			g.Expect(*s.EnableServiceLinks).To(BeFalse())
			g.Expect(s.PriorityClassName).To(BeEmpty())
			g.Expect(s.Tolerations).To(Equal([]corev1.Toleration{{Operator: corev1.TolerationOpExists}}))
			for _, c := range s.Containers {
				// Only the steps that enter the host's namespaces are
				// privileged and see the host's /.
				g.Expect(*c.SecurityContext.Privileged).To(Equal(c.Name != runner.ContainerCheck), c.Name)
				if c.Name != runner.ContainerCheck {
					g.Expect(c.VolumeMounts[0].MountPath).To(Equal("/host"))
					g.Expect(volume(pod, c.VolumeMounts[0].Name).HostPath.Path).To(Equal("/"))
				}
				g.Expect(c.TerminationMessagePolicy).To(Equal(corev1.TerminationMessageFallbackToLogsOnError))
			}
			check := s.Containers[0]
			g.Expect(check.Name).To(Equal(runner.ContainerCheck))
			sc := check.SecurityContext
			g.Expect(*sc.AllowPrivilegeEscalation).To(BeFalse())
			g.Expect(sc.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
			g.Expect(*sc.RunAsNonRoot).To(BeTrue())
			g.Expect(*sc.RunAsUser).To(Equal(int64(CheckUser)))
			g.Expect(*sc.ReadOnlyRootFilesystem).To(BeTrue())
			// The host's /proc and jobs directory, read-only; the handoff
			// directory, an emptyDir, the only thing it writes. Not the
			// host's /.
			g.Expect(check.VolumeMounts).To(HaveLen(3))
			for i, want := range []struct{ at, host string }{{"/host/proc", "/proc"}, {"/host" + runner.JobsDir, runner.JobsDir}} {
				m := check.VolumeMounts[i]
				g.Expect(m.MountPath).To(Equal(want.at))
				g.Expect(volume(pod, m.Name).HostPath.Path).To(Equal(want.host))
				g.Expect(m.ReadOnly).To(BeTrue())
			}
			g.Expect(check.VolumeMounts[2].MountPath).To(Equal("/handoff"))
			g.Expect(volume(pod, check.VolumeMounts[2].Name).EmptyDir).NotTo(BeNil())
			_, o, err := runner.ParseArgs(check.Args, os.Stderr)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(o.HandoffDir).To(Equal("/handoff"))
			// The backup container reads the handoff; nothing of the host's
			// jobs directory is mounted apart from the host's /.
			backup := s.Containers[1]
			g.Expect(backup.VolumeMounts).To(ContainElement(check.VolumeMounts[2]))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := baseParams()
			if tt.modify != nil {
				tt.modify(&p)
			}
			tt.check(NewWithT(t), Build(p, buildTime))
		})
	}
}

// The pod's grace period covers what its containers do after a stop: follow
// the job's unit for runner.FollowAfterStop and write the report. Nothing
// that cannot be cancelled runs in the pod (keadm, the settle check and a
// rollback run in the unit on the host), so nothing more is owed.
func TestGracePeriodCoversWhatThePodDoesAfterAStop(t *testing.T) {
	g := NewWithT(t)
	pod := Build(baseParams(), buildTime)
	grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	// Writing the report and exiting: the runner's own exit waits.
	const reportMargin = 5 * time.Second
	g.Expect(grace).To(BeNumerically(">=", runner.FollowAfterStop+reportMargin))
	// The follower covers the settle check the new edgecore's first act
	// (stopping the pod) interrupts.
	g.Expect(runner.FollowAfterStop).To(BeNumerically(">=", 2*runner.DefaultEdgecoreSettle))
	// A pod killed at its active deadline has followed a rollback begun at
	// the end of the budget.
	_, o, err := runner.ParseArgs(pod.Spec.Containers[2].Args, os.Stderr)
	g.Expect(err).NotTo(HaveOccurred())
	active := time.Duration(*pod.Spec.ActiveDeadlineSeconds) * time.Second
	g.Expect(active).To(BeNumerically(">=", o.Budget+runner.FollowGrace+reportMargin))
	g.Expect(runner.FollowGrace).To(BeNumerically(">=", 2*runner.DefaultEdgecoreSettle+runner.RollbackTimeout))
}

// The pod builder's inputs come from imageref in the controller; a pod built
// from them passes the runner's own validation.
func TestBuildWithNormalisedImage(t *testing.T) {
	g := NewWithT(t)
	img, err := imageref.Normalize("myreg:5000/kubeedge/installation-package:old", "v1.21.0")
	g.Expect(err).NotTo(HaveOccurred())
	p := baseParams()
	p.InstallImage = img
	pod := Build(p, buildTime)
	_, o, err := runner.ParseArgs(pod.Spec.Containers[0].Args, os.Stderr)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(o.Image).To(Equal(img))
	g.Expect(pod.Spec.InitContainers[0].Image).To(Equal(img))
}

func containerNames(cs []corev1.Container) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

func volume(pod *corev1.Pod, name string) corev1.Volume {
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	return corev1.Volume{}
}

func TestPodName(t *testing.T) {
	const prefix = "nodeupgrade-"
	tests := []struct {
		name    string
		node    string
		want    string // exact, or "" to only check validity
		wantLen int
	}{
		{"short", "edge-1", prefix + "edge-1", 0},
		{"dotted", "edge-1.example.com", prefix + "edge-1.example.com", 0},
		{"fits exactly", strings.Repeat("a", 253-len(prefix)), prefix + strings.Repeat("a", 253-len(prefix)), 253},
		{"one too long", strings.Repeat("a", 254-len(prefix)), "", 253},
		{"max node name", strings.Repeat("a", 253), "", 253},
		{"cut lands on a dot", strings.Repeat("a", 223) + "." + strings.Repeat("b", 29), prefix + strings.Repeat("a", 223) + "-" + shortHash(strings.Repeat("a", 223)+"."+strings.Repeat("b", 29), 16), 0},
		{"invalid node name hashed", "Edge_1", prefix + shortHash("Edge_1", 16), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got := PodName(tt.node)
			g.Expect(validation.IsDNS1123Subdomain(got)).To(BeEmpty(), got)
			g.Expect(PodName(tt.node)).To(Equal(got), "deterministic")
			g.Expect(got).To(HavePrefix(prefix))
			if tt.want != "" {
				g.Expect(got).To(Equal(tt.want))
			}
			if tt.wantLen != 0 {
				g.Expect(got).To(HaveLen(tt.wantLen))
			}
			g.Expect(PodName(tt.node+"x")).NotTo(Equal(got), "different nodes, different pods")
			g.Expect(LegacyPodName("uid-1", tt.node)).NotTo(Equal(got), "never a legacy name")
		})
	}
	// Two long names sharing their first 220 bytes still get different pods.
	a := PodName(strings.Repeat("a", 240) + "1")
	b := PodName(strings.Repeat("a", 240) + "2")
	NewWithT(t).Expect(a).NotTo(Equal(b))
}

// TestLegacyPodName pins the per-job names of earlier controllers, which a
// controller upgraded mid-rollout must still recognise.
func TestLegacyPodName(t *testing.T) {
	uidHash := "nodeupgrade-" + shortHash("uid-1", 8) + "-"
	tests := []struct {
		name      string
		uid, node string
		want      string // exact, or "" to only check validity
		wantLen   int
	}{
		{"short", "uid-1", "edge-1", uidHash + "edge-1", 0},
		{"dotted", "uid-1", "edge-1.example.com", uidHash + "edge-1.example.com", 0},
		{"fits exactly", "uid-1", strings.Repeat("a", 253-len(uidHash)), uidHash + strings.Repeat("a", 253-len(uidHash)), 253},
		{"one too long", "uid-1", strings.Repeat("a", 254-len(uidHash)), "", 253},
		{"max node name", "uid-1", strings.Repeat("a", 253), "", 253},
		{"cut lands on a dot", "uid-1", strings.Repeat("a", 214) + "." + strings.Repeat("b", 38), "", 0},
		{"invalid node name hashed", "uid-1", "Edge_1", uidHash + shortHash("Edge_1", 16), 0},
		{"empty uid", "", "edge-1", "nodeupgrade-" + shortHash("", 8) + "-edge-1", 0},
		// The value an earlier controller computed for this job and node.
		{"as before", "0b1e7a7e-0000-4000-8000-000000000001", "edge-node-1", "nodeupgrade-" + shortHash("0b1e7a7e-0000-4000-8000-000000000001", 8) + "-edge-node-1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got := LegacyPodName(tt.uid, tt.node)
			g.Expect(validation.IsDNS1123Subdomain(got)).To(BeEmpty(), got)
			if tt.want != "" {
				g.Expect(got).To(Equal(tt.want))
			}
			if tt.wantLen != 0 {
				g.Expect(got).To(HaveLen(tt.wantLen))
			}
			g.Expect(LegacyPodName(tt.uid+"x", tt.node)).NotTo(Equal(got), "different jobs, different pods")
		})
	}
}

func TestOwns(t *testing.T) {
	const uid, node = "job-uid", "edge-1"
	pod := func(name, ownerUID string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{v1alpha1.AnnotationNode: node}}}
		if ownerUID != "" {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "NodeUpgradeJob",
				Name: "job", UID: types.UID(ownerUID), Controller: new(true)}}
		}
		return p
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"named after the node, owned by the job", pod(PodName(node), uid), true},
		{"named after the node, owned by another job", pod(PodName(node), "other-uid"), false},
		{"a re-created job's name, the old job's pod", pod(PodName(node), "old-uid"), false},
		{"named after the node, no owner", pod(PodName(node), ""), false},
		{"legacy name of the job, no owner", pod(LegacyPodName(uid, node), ""), true},
		{"legacy name of the job, owned by it", pod(LegacyPodName(uid, node), uid), true},
		{"legacy name of another job", pod(LegacyPodName("other-uid", node), "other-uid"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(Owns(uid, tt.pod)).To(Equal(tt.want))
		})
	}
	// A non-controller owner reference names no job.
	p := pod(PodName(node), uid)
	p.OwnerReferences[0].Controller = nil
	NewWithT(t).Expect(Owns(uid, p)).To(BeFalse())
	NewWithT(t).Expect(Owns("", pod(PodName(node), ""))).To(BeFalse(), "no job owns everything")
}

func TestLabelValues(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // "" = only check validity and shape
	}{
		{"short", "edge-1", "edge-1"},
		{"63", strings.Repeat("a", 63), strings.Repeat("a", 63)},
		{"64", strings.Repeat("a", 64), ""},
		{"dotted long", strings.Repeat("a.", 40) + "b", ""},
		{"253", strings.Repeat("n", 253), ""},
		{"empty", "", ""},
		{"invalid chars", "a b/c", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			for _, f := range []func(string) string{NodeLabelValue, JobLabelValue} {
				got := f(tt.in)
				g.Expect(validation.IsValidLabelValue(got)).To(BeEmpty(), got)
				g.Expect(f(tt.in)).To(Equal(got), "stable")
				if tt.want != "" {
					g.Expect(got).To(Equal(tt.want))
				} else if tt.in != "" {
					g.Expect(got).To(HaveSuffix(shortHash(tt.in, 16)))
				}
			}
		})
	}
	NewWithT(t).Expect(NodeLabelValue(strings.Repeat("a", 70) + "1")).NotTo(Equal(NodeLabelValue(strings.Repeat("a", 70) + "2")))
}
