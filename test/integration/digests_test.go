package integration_test

import (
	"os"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/controller"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
	"github.com/nodeupgrade/nodeupgrade/test/testregistry"
)

// spec.imageDigestGatter.registryAPI on the real API server: the controller
// reads the install image's digests from a registry (TLS with a private CA,
// basic auth from its own credentials file), records them in the job's
// status before any node starts, and the nodes pull by them; a registry
// that cannot answer holds the job, saying why, with no pod made; a spec
// digest the registry contradicts fails its nodes naming both digests.
var _ = Describe("Digests read from the registry", func() {
	It("pins every node to what the registry served, and holds the job while the registry cannot answer", func() {
		reg := testregistry.Start()
		defer reg.Close()
		const repo = "kubeedge/installation-package"
		tagDigest, images, err := reg.Push(repo, framework.Target, "linux/amd64", "linux/arm64/v8")
		Expect(err).NotTo(HaveOccurred())
		dir, err := os.MkdirTemp("", "registryapi-")
		Expect(err).NotTo(HaveOccurred())
		defer os.RemoveAll(dir)
		creds, err := reg.WriteCredentialsFile(dir, testregistry.Password)
		Expect(err).NotTo(HaveOccurred())
		ca, err := reg.WriteCAFile(dir)
		Expect(err).NotTo(HaveOccurred())
		ctl := startController("--registry-credentials-file="+creds, "--registry-ca-file="+ca,
			"--allowed-image-repositories="+reg.Host+"/"+repo)
		defer stopController(ctl)

		specs := framework.Fleet("regapi", 2)
		createFleet(specs)
		names := framework.NodeNames(specs)
		image := reg.Host + "/" + repo
		Expect(k8s.Create(suiteCtx, framework.NewJob("regapi", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = names
			s.Concurrency = 1
			s.Image = image
			s.ImageDigestGatter = &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: reg.Host}}
		}))).To(Succeed())
		pinned := image + "@" + images["linux/amd64"]
		Eventually(func() string {
			pods := &corev1.PodList{}
			if err := k8s.List(suiteCtx, pods, client.InNamespace(podNamespace), client.MatchingLabels{v1alpha1.LabelJob: "regapi"}); err != nil || len(pods.Items) == 0 {
				return ""
			}
			for _, c := range pods.Items[0].Spec.InitContainers {
				if c.Name == runner.ContainerCopyKeadm {
					return c.Image
				}
			}
			return "no copy-keadm"
		}, 30*time.Second, 100*time.Millisecond).Should(Equal(pinned), "the node pulls the install image by the registry's amd64 digest")
		job := waitFinished("regapi", 60*time.Second)
		Expect(job.Status.State).To(Equal(v1alpha1.StateSuccessful), job.Status.Reason)
		r := job.Status.ResolvedImageDigests
		Expect(r).NotTo(BeNil())
		Expect(r.Image).To(Equal(image + ":" + framework.Target))
		Expect(r.Tag).To(Equal(tagDigest))
		Expect(r.AMD64).To(Equal(images["linux/amd64"]))
		Expect(r.ARM64).To(Equal(images["linux/arm64/v8"]))
		Expect(jobEvents(job)).To(ContainElement(controller.ReasonDigestsRead))

		// A tag the registry does not have: the job holds, says why, makes
		// no pod and fails no node.
		specs = framework.Fleet("regapi-missing", 1)
		createFleet(specs)
		Expect(k8s.Create(suiteCtx, framework.NewJob("regapi-missing", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = framework.NodeNames(specs)
			s.Version = "v1.99.0"
			s.Image = image
			s.ImageDigestGatter = &v1alpha1.ImageDigestGatter{RegistryAPI: &v1alpha1.RegistryAPI{Host: reg.Host}}
		}))).To(Succeed())
		Eventually(func() string { return getJob("regapi-missing").Status.Reason }, 30*time.Second, 200*time.Millisecond).
			Should(And(ContainSubstring("waiting for the install image's digests"), ContainSubstring("v1.99.0")))
		Consistently(func() int { return len(remainingPods("regapi-missing")) }, 3*time.Second, 200*time.Millisecond).Should(BeZero())
		job = getJob("regapi-missing")
		Expect(job.Status.State).To(Equal(v1alpha1.StateUpgrading))
		Expect(job.Status.Counts.Pending).To(Equal(int32(1)))
		Expect(job.Status.ResolvedImageDigests).To(BeNil())
		Expect(jobEvents(job)).To(ContainElement(controller.ReasonDigestsNotRead))

		// The spec pins amd64 to a digest the registry does not serve: the
		// node fails before its pod exists, both digests named.
		specs = framework.Fleet("regapi-mismatch", 1)
		createFleet(specs)
		other := "sha256:" + strings.Repeat("e", 64)
		Expect(k8s.Create(suiteCtx, framework.NewJob("regapi-mismatch", func(s *v1alpha1.NodeUpgradeJobSpec) {
			s.NodeNames = framework.NodeNames(specs)
			s.Image = image
			s.FailureTolerate = "1"
			s.ImageDigestGatter = &v1alpha1.ImageDigestGatter{AMD64: other, RegistryAPI: &v1alpha1.RegistryAPI{Host: reg.Host}}
		}))).To(Succeed())
		job = waitFinished("regapi-mismatch", 30*time.Second)
		e := nodeEntry(job, specs[0].Name)
		Expect(e.State).To(Equal(v1alpha1.StateFailed))
		Expect(e.Reason).To(And(ContainSubstring(other), ContainSubstring(images["linux/amd64"])))
		Expect(remainingPods("regapi-mismatch")).To(BeEmpty())
	})
})
