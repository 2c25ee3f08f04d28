package jobinput

import (
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

var policy = Policy{EdgeNodeLabel: "node-role.kubernetes.io/edge",
	AllowedImageRepositories: []string{"docker.io/kubeedge/installation-package", "registry.example.com/kubeedge/"}}

func TestRefuse(t *testing.T) {
	for _, tc := range []struct {
		name      string
		spec      v1alpha1.NodeUpgradeJobSpec
		wantImage string
		want      string // substring of the refusal; "" means accepted
	}{
		{"default image", v1alpha1.NodeUpgradeJobSpec{Version: "v1.22.0"}, "docker.io/kubeedge/installation-package:v1.22.0", ""},
		{"tag replaced", v1alpha1.NodeUpgradeJobSpec{Image: "kubeedge/installation-package:v1.0.0", Version: "v1.22.0"}, "docker.io/kubeedge/installation-package:v1.22.0", ""},
		{"allowed prefix", v1alpha1.NodeUpgradeJobSpec{Image: "registry.example.com/kubeedge/installation-package", Version: "v1.22.0"}, "registry.example.com/kubeedge/installation-package:v1.22.0", ""},
		{"not allowed", v1alpha1.NodeUpgradeJobSpec{Image: "evil.example/kubeedge/installation-package", Version: "v1.22.0"}, "", `image repository "evil.example/kubeedge/installation-package" is not allowed`},
		{"bad image", v1alpha1.NodeUpgradeJobSpec{Image: "kubeedge/pkg;rm -rf /", Version: "v1.22.0"}, "", "spec.image: "},
		{"bad version", v1alpha1.NodeUpgradeJobSpec{Version: "1.22.0"}, "", "spec.version: "},
		// keadm before v1.21 cannot be driven: refused before any pod.
		{"old target", v1alpha1.NodeUpgradeJobSpec{Version: "v1.20.0"}, "", "spec.version v1.20.0 is not supported: the installation package's keadm must be a v1 release from v1.21.0 on"},
		{"old rc", v1alpha1.NodeUpgradeJobSpec{Version: "v1.19.9-rc.1"}, "", "from v1.21.0 on"},
		{"v2", v1alpha1.NodeUpgradeJobSpec{Version: "v2.0.0"}, "", "must be a v1 release"},
		{"v1.21.0", v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0"}, "docker.io/kubeedge/installation-package:v1.21.0", ""},
		{"v1.99.0", v1alpha1.NodeUpgradeJobSpec{Version: "v1.99.0"}, "docker.io/kubeedge/installation-package:v1.99.0", ""},
		// v1alpha2's schema, KubeEdge's, takes any check item and any ratio.
		{"every check item", v1alpha1.NodeUpgradeJobSpec{Version: "v1.23.1", CheckItems: []string{"cpu", "mem", "disk"}}, "docker.io/kubeedge/installation-package:v1.23.1", ""},
		{"gpu", v1alpha1.NodeUpgradeJobSpec{Version: "v1.23.1", CheckItems: []string{"cpu", "gpu"}}, "", `spec.checkItems[1]: "gpu" is not a check item; want [cpu mem disk]`},
		{"bad ratio", v1alpha1.NodeUpgradeJobSpec{Version: "v1.23.1", FailureTolerate: "10%"}, "", "spec.failureTolerate"},
		// One order: the ratio before the version, the version before the image.
		{"first refusal wins", v1alpha1.NodeUpgradeJobSpec{Version: "v1.20.0", FailureTolerate: "2", Image: "evil.example/x", CheckItems: []string{"gpu"}}, "", "spec.failureTolerate"},
		{"version before image", v1alpha1.NodeUpgradeJobSpec{Version: "v1.20.0", Image: "evil.example/x", CheckItems: []string{"gpu"}}, "", "spec.version v1.20.0"},
		{"image before checks", v1alpha1.NodeUpgradeJobSpec{Version: "v1.23.1", Image: "evil.example/x", CheckItems: []string{"gpu"}}, "", "is not allowed"},
		// The API server cannot know zone names: the controller refuses them.
		{"unknown window zone", v1alpha1.NodeUpgradeJobSpec{Version: "v1.23.1", MaintenanceWindows: []v1alpha1.MaintenanceWindow{
			{StartTime: "22:00", EndTime: "04:00", TimeZone: "Europe/Berlin"}, {StartTime: "22:00", EndTime: "04:00", TimeZone: "Europe/Atlantis"}}},
			"", `spec.maintenanceWindows[1].timeZone: unknown time zone "Europe/Atlantis"`},
		{"known window zone", v1alpha1.NodeUpgradeJobSpec{Version: "v1.23.1", MaintenanceWindows: []v1alpha1.MaintenanceWindow{
			{Days: []string{"sunday"}, StartTime: "22:00", EndTime: "04:00", TimeZone: "America/Argentina/Buenos_Aires"}}},
			"docker.io/kubeedge/installation-package:v1.23.1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			image, refusal := Refuse(&v1alpha1.NodeUpgradeJob{Spec: tc.spec}, policy)
			if tc.want == "" {
				g.Expect(refusal).To(BeEmpty())
				g.Expect(image).To(Equal(tc.wantImage))
				return
			}
			g.Expect(refusal).To(ContainSubstring(tc.want))
			g.Expect(image).To(BeEmpty(), "a refused job gets no image to create pods with")
		})
	}
}

// TestBuild: the refusal reaches the planner's config, the selection is
// made from the nodes, and a spec refusal comes before a selection error.
func TestBuild(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	nodes := []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "edge-1", Labels: map[string]string{"node-role.kubernetes.io/edge": ""}}}}
	job := &v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{Name: "j", Generation: 3}, Spec: v1alpha1.NodeUpgradeJobSpec{
		Version: "v1.23.1", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"node-role.kubernetes.io/edge": ""}}, Concurrency: 4}}
	in, image := Build(job, nodes, policy, now)
	g.Expect(in.Config.Refusal).To(BeEmpty())
	g.Expect(image).To(Equal("docker.io/kubeedge/installation-package:v1.23.1"))
	g.Expect(in.Selection).To(Equal([]string{"edge-1"}))
	g.Expect(in.SelectionSource).To(Equal("spec.labelSelector"))
	g.Expect(in.Nodes).To(HaveKey("edge-1"))
	g.Expect(in.Config.Concurrency).To(Equal(4))
	g.Expect(in.Config.EdgeNodeLabel).To(Equal(policy.EdgeNodeLabel))
	g.Expect(in.Generation).To(Equal(int64(3)))
	g.Expect(in.Now).To(Equal(now))
	g.Expect(in.ObjectBytes).To(BeNumerically(">", 0))

	noSelection := job.DeepCopy()
	noSelection.Spec.LabelSelector = nil
	in, _ = Build(noSelection, nodes, policy, now)
	g.Expect(in.Config.Refusal).To(Equal("neither spec.nodeNames nor spec.labelSelector is set"))
	noSelection.Spec.CheckItems = []string{"gpu"}
	in, image = Build(noSelection, nodes, policy, now)
	g.Expect(in.Config.Refusal).To(HavePrefix("spec.checkItems[0]"), "the spec's refusal comes before the selection's")
	g.Expect(image).To(BeEmpty())

	badRatio := job.DeepCopy()
	badRatio.Spec.FailureTolerate = "1/2"
	in, _ = Build(badRatio, nodes, policy, now)
	g.Expect(in.Config.Refusal).To(ContainSubstring("spec.failureTolerate"))
	g.Expect(in.Config.Tolerance).NotTo(BeNil(), "a refused job still has a usable config")
}

// spec.imageDigestGatter: digests of both versions' shapes are honoured,
// a malformed one, a registryAPI token or a registryAPI on a registry the
// controller does not trust refuses the job naming the field, and --require-image-digest refuses a job without.
func TestRefuseDigests(t *testing.T) {
	good := "sha256:" + strings.Repeat("0a", 32)
	required := policy
	required.RequireImageDigest = true
	mirror := policy
	mirror.AllowedImageRepositories = append(slices.Clone(policy.AllowedImageRepositories), "mirror.example.com:5000/kubeedge/")
	for _, tc := range []struct {
		name   string
		gatter *v1alpha1.ImageDigestGatter
		policy Policy
		want   string // substring of the refusal; "" means accepted
	}{
		{"none", nil, policy, ""},
		{"v1alpha1's value", &v1alpha1.ImageDigestGatter{Value: good}, policy, ""},
		{"v1alpha2's per architecture", &v1alpha1.ImageDigestGatter{AMD64: good, ARM64: good}, policy, ""},
		{"malformed", &v1alpha1.ImageDigestGatter{AMD64: good, ARM64: "sha256:XYZ"}, policy, `spec.imageDigestGatter.arm64: "sha256:XYZ" is not a digest`},
		{"registryAPI on the image's registry", &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: "docker.io"}}, policy, ""},
		{"registryAPI on Docker Hub's index name", &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: "index.docker.io"}}, policy, ""},
		{"registryAPI on an allowed mirror", &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: "https://mirror.example.com:5000/"}}, mirror, ""},
		{"registryAPI elsewhere", &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: "metadata.internal:80"}}, policy,
			`spec.imageDigestGatter.registryAPI.host: "metadata.internal:80" is neither the install image's registry "docker.io" nor one of --allowed-image-repositories`},
		{"registryAPI host with a path", &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: "mirror.example.com:5000/x"}}, mirror,
			"spec.imageDigestGatter.registryAPI.host: \"mirror.example.com:5000/x\" is not a registry host"},
		{"registryAPI host no host", &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: "mirror"}}, mirror,
			"spec.imageDigestGatter.registryAPI.host: \"mirror\" is not a registry host"},
		{"registryAPI host, bad characters", &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: "r.example.com;id"}}, mirror,
			"is not a registry host"},
		{"registryAPI anywhere, any repository allowed", &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: "metadata.internal:80"}}, Policy{}, ""},
		{"a token in the job", &v1alpha1.ImageDigestGatter{AMD64: good, RegistryAPI: &v1alpha1.RegistryAPI{Host: "docker.io", Token: "t0ken"}}, policy,
			"spec.imageDigestGatter.registryAPI.token: a registry token in the job is readable"},
		{"required, registryAPI", &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: "docker.io"}}, required, ""},
		{"required, none", nil, required, "requires the install image pinned by digest (--require-image-digest)"},
		{"required, empty", &v1alpha1.ImageDigestGatter{}, required, "--require-image-digest"},
		{"required, given", &v1alpha1.ImageDigestGatter{Value: good}, required, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			job := &v1alpha1.NodeUpgradeJob{Spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.23.1", ImageDigestGatter: tc.gatter}}
			_, refusal := Refuse(job, tc.policy)
			if tc.want == "" {
				g.Expect(refusal).To(BeEmpty())
				return
			}
			g.Expect(refusal).To(ContainSubstring(tc.want))
			g.Expect(refusal).NotTo(ContainSubstring("t0ken"), "the token is never repeated")
		})
	}
}

// A job that reads its digests from a registry is held until the
// controller has recorded them, then pulls by them.
func TestBuildRegistryDigests(t *testing.T) {
	g := NewWithT(t)
	job := &v1alpha1.NodeUpgradeJob{Spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.23.1", NodeNames: []string{"a"},
		ImageDigestGatter: &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: "docker.io"}}}}
	in, _ := Build(job, nil, policy, time.Now())
	g.Expect(in.Config.Refusal).To(BeEmpty())
	g.Expect(in.Config.DigestsUnresolved).To(Equal("waiting for the install image's digests from docker.io"))
	lookup, err := DigestLookup(job, policy)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(lookup).To(Equal("docker.io/kubeedge/installation-package:v1.23.1"))

	amd := "sha256:" + strings.Repeat("a", 64)
	job.Status.ResolvedImageDigests = &v1alpha1.ResolvedImageDigests{Image: lookup, Tag: amd, AMD64: amd}
	in, _ = Build(job, nil, policy, time.Now())
	g.Expect(in.Config.DigestsUnresolved).To(BeEmpty())
	d, ok := in.Config.DigestFor("amd64")
	g.Expect(ok).To(BeTrue())
	g.Expect(d).To(Equal(amd))
}
