package api_test

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// spec.healthGate on the real API server, in both served versions: the
// same schema, so a gate written in one version reads the same in the
// other, and the same refusals, naming the field.
var _ = Describe("Health gate", func() {
	post := func(version, spec string) (string, error) {
		jobCounter++
		name := fmt.Sprintf("gate-%d", jobCounter)
		manifest := fmt.Sprintf("apiVersion: operations.kubeedge.io/%s\nkind: NodeUpgradeJob\nmetadata:\n  name: %s\nspec:\n  version: v1.21.0\n  nodeNames: [edge-1]\n%s",
			version, name, spec)
		body, err := yaml.YAMLToJSON([]byte(manifest))
		Expect(err).NotTo(HaveOccurred())
		return name, restCli.Post().AbsPath("/apis/operations.kubeedge.io/"+version+"/nodeupgradejobs").
			Body(body).SetHeader("Content-Type", "application/json").Do(ctx).Error()
	}

	for _, version := range []string{"v1alpha1", "v1alpha2"} {
		It("keeps a gate written in "+version+" whole, read in v1alpha1", func() {
			name, err := post(version, "  healthGate:\n    soakSeconds: 120\n    podSelector:\n      matchLabels: {app: web}\n")
			Expect(err).NotTo(HaveOccurred())
			job := &v1alpha1.NodeUpgradeJob{}
			Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, job)).To(Succeed())
			Expect(job.Spec.HealthGate).NotTo(BeNil())
			Expect(job.Spec.HealthGate.SoakSeconds).To(Equal(int32(120)))
			Expect(job.Spec.HealthGate.PodSelector.MatchLabels).To(Equal(map[string]string{"app": "web"}))
		})

		DescribeTable("refuses a bad gate in "+version+", naming the field",
			func(spec, field string) {
				_, err := post(version, spec)
				expectRefused(err, field)
			},
			Entry("soakSeconds 0", "  healthGate:\n    soakSeconds: 0\n", "spec.healthGate.soakSeconds"),
			Entry("soakSeconds over a day", "  healthGate:\n    soakSeconds: 86401\n", "spec.healthGate.soakSeconds"),
			Entry("soakSeconds missing", "  healthGate:\n    podSelector: {matchLabels: {app: web}}\n", "spec.healthGate.soakSeconds"),
		)
	}

	It("refuses a change of the gate after creation", func() {
		name, err := post("v1alpha1", "  healthGate:\n    soakSeconds: 60\n")
		Expect(err).NotTo(HaveOccurred())
		patch := []byte(`{"spec":{"healthGate":{"soakSeconds":5}}}`)
		expectRefused(restCli.Patch(types.MergePatchType).AbsPath("/apis/operations.kubeedge.io/v1alpha2/nodeupgradejobs", name).
			Body(patch).Do(ctx).Error(), "spec.healthGate")
	})
})
