package api_test

import (
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

var jobCounter int

func newJob(mutate func(*v1alpha1.NodeUpgradeJob)) *v1alpha1.NodeUpgradeJob {
	jobCounter++
	job := &v1alpha1.NodeUpgradeJob{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("validation-%d", jobCounter)},
		Spec: v1alpha1.NodeUpgradeJobSpec{
			NodeNames: []string{"edge-1"},
			Version:   "v1.21.0",
		},
	}
	if mutate != nil {
		mutate(job)
	}
	return job
}

// createRaw posts a manifest as written by a user, so zero values and odd
// types reach the API server exactly as in a YAML file.
func createRaw(manifest string) error {
	body, err := yaml.YAMLToJSON([]byte(manifest))
	Expect(err).NotTo(HaveOccurred())
	return restCli.Post().AbsPath("/apis/operations.kubeedge.io/v1alpha1/nodeupgradejobs").
		Body(body).SetHeader("Content-Type", "application/json").Do(ctx).Error()
}

func rawJob(spec string) string {
	jobCounter++
	return fmt.Sprintf("apiVersion: operations.kubeedge.io/v1alpha1\nkind: NodeUpgradeJob\nmetadata:\n  name: raw-%d\nspec:\n%s", jobCounter, spec)
}

func expectRefused(err error, field string) {
	GinkgoHelper()
	Expect(err).To(HaveOccurred(), "the API server accepted a job it must refuse")
	Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want an Invalid error, got %v", err)
	Expect(err.Error()).To(ContainSubstring(field), "the error must name the field")
}

var _ = Describe("Validation", func() {
	DescribeTable("accepted specs",
		func(spec string) {
			Expect(createRaw(rawJob(spec))).To(Succeed())
		},
		Entry("nodeNames", "  version: v1.21.0\n  nodeNames: [edge-1, edge-2.example.com]\n"),
		Entry("labelSelector", "  version: v1.21.0\n  labelSelector:\n    matchLabels: {node-role.kubernetes.io/edge: \"\"}\n"),
		Entry("version with suffixes", "  version: v1.21.0-beta.1-rc_2\n  nodeNames: [edge-1]\n"),
		Entry("image with tag", "  version: v1.21.0\n  image: kubeedge/installation-package:v1.0.0\n  nodeNames: [edge-1]\n"),
		Entry("image with registry port and digest", "  version: v1.21.0\n  image: registry.local:5000/kubeedge/installation-package@sha256:"+strings.Repeat("a", 64)+"\n  nodeNames: [edge-1]\n"),
		Entry("single-name image", "  version: v1.21.0\n  image: installer\n  nodeNames: [edge-1]\n"),
		Entry("concurrency 1", "  version: v1.21.0\n  concurrency: 1\n  nodeNames: [edge-1]\n"),
		Entry("timeoutSeconds 0", "  version: v1.21.0\n  timeoutSeconds: 0\n  nodeNames: [edge-1]\n"),
		Entry("timeoutSeconds at the 7-day bound", "  version: v1.21.0\n  timeoutSeconds: 604800\n  nodeNames: [edge-1]\n"),
		Entry("failureTolerate 0", "  version: v1.21.0\n  failureTolerate: \"0\"\n  nodeNames: [edge-1]\n"),
		Entry("failureTolerate 0.1", "  version: v1.21.0\n  failureTolerate: \"0.1\"\n  nodeNames: [edge-1]\n"),
		Entry("failureTolerate 1", "  version: v1.21.0\n  failureTolerate: \"1\"\n  nodeNames: [edge-1]\n"),
		Entry("failureTolerate 1.0", "  version: v1.21.0\n  failureTolerate: \"1.0\"\n  nodeNames: [edge-1]\n"),
		Entry("all check items", "  version: v1.21.0\n  checkItems: [cpu, mem, disk]\n  nodeNames: [edge-1]\n"),
		Entry("maintenance windows across midnight, whole day, node zones", "  version: v1.21.0\n  nodeNames: [edge-1]\n  maintenanceWindows:\n"+
			"  - {days: [saturday, sunday], startTime: \"22:00\", endTime: \"04:00\", timeZone: America/Argentina/Buenos_Aires}\n"+
			"  - {startTime: \"00:00\", endTime: \"24:00\"}\n"),
		Entry("canary count", "  version: v1.21.0\n  nodeNames: [edge-1, edge-2]\n  canary: {count: 1, soakSeconds: 600}\n"),
		Entry("canary percent", "  version: v1.21.0\n  labelSelector: {matchLabels: {a: b}}\n  canary: {percent: 10}\n"),
		Entry("canary selector", "  version: v1.21.0\n  labelSelector: {matchLabels: {a: b}}\n  canary: {selector: {matchLabels: {canary: \"true\"}}}\n"),
	)

	DescribeTable("refused specs name the field",
		func(spec, field string) {
			expectRefused(createRaw(rawJob(spec)), field)
		},
		Entry("neither nodeNames nor labelSelector", "  version: v1.21.0\n", "spec.labelSelector"),
		Entry("both nodeNames and labelSelector", "  version: v1.21.0\n  nodeNames: [edge-1]\n  labelSelector: {matchLabels: {a: b}}\n", "spec.nodeNames"),
		Entry("empty nodeNames", "  version: v1.21.0\n  nodeNames: []\n", "spec.nodeNames"),
		Entry("missing version", "  nodeNames: [edge-1]\n", "spec.version"),
		Entry("version without v", "  version: 1.21.0\n  nodeNames: [edge-1]\n", "spec.version"),
		Entry("version with shell", "  version: v1.21.0;reboot\n  nodeNames: [edge-1]\n", "spec.version"),
		Entry("version two parts", "  version: v1.21\n  nodeNames: [edge-1]\n", "spec.version"),
		Entry("image with uppercase path", "  version: v1.21.0\n  image: KubeEdge/Installer\n  nodeNames: [edge-1]\n", "spec.image"),
		Entry("image with shell", "  version: v1.21.0\n  image: \"kubeedge/x;rm -rf /\"\n  nodeNames: [edge-1]\n", "spec.image"),
		Entry("image with space", "  version: v1.21.0\n  image: \"kubeedge/ x\"\n  nodeNames: [edge-1]\n", "spec.image"),
		Entry("concurrency 0", "  version: v1.21.0\n  concurrency: 0\n  nodeNames: [edge-1]\n", "spec.concurrency"),
		Entry("concurrency negative", "  version: v1.21.0\n  concurrency: -3\n  nodeNames: [edge-1]\n", "spec.concurrency"),
		Entry("timeoutSeconds negative", "  version: v1.21.0\n  timeoutSeconds: -1\n  nodeNames: [edge-1]\n", "spec.timeoutSeconds"),
		Entry("timeoutSeconds one past 7 days", "  version: v1.21.0\n  timeoutSeconds: 604801\n  nodeNames: [edge-1]\n", "spec.timeoutSeconds"),
		Entry("timeoutSeconds past activeDeadlineSeconds' int32", "  version: v1.21.0\n  timeoutSeconds: 2147483528\n  nodeNames: [edge-1]\n", "spec.timeoutSeconds"),
		Entry("timeoutSeconds past a Go duration", "  version: v1.21.0\n  timeoutSeconds: 9223372037\n  nodeNames: [edge-1]\n", "spec.timeoutSeconds"),
		Entry("failureTolerate abc", "  version: v1.21.0\n  failureTolerate: abc\n  nodeNames: [edge-1]\n", "spec.failureTolerate"),
		Entry("failureTolerate 1.5", "  version: v1.21.0\n  failureTolerate: \"1.5\"\n  nodeNames: [edge-1]\n", "spec.failureTolerate"),
		Entry("failureTolerate -0.1", "  version: v1.21.0\n  failureTolerate: \"-0.1\"\n  nodeNames: [edge-1]\n", "spec.failureTolerate"),
		Entry("failureTolerate 10%", "  version: v1.21.0\n  failureTolerate: 10%\n  nodeNames: [edge-1]\n", "spec.failureTolerate"),
		Entry("failureTolerate empty", "  version: v1.21.0\n  failureTolerate: \"\"\n  nodeNames: [edge-1]\n", "spec.failureTolerate"),
		Entry("failureTolerate as a number", "  version: v1.21.0\n  failureTolerate: 0.1\n  nodeNames: [edge-1]\n", "spec.failureTolerate"),
		Entry("unknown check item", "  version: v1.21.0\n  checkItems: [cpu, gpu]\n  nodeNames: [edge-1]\n", "spec.checkItems"),
		Entry("duplicate check item", "  version: v1.21.0\n  checkItems: [cpu, cpu]\n  nodeNames: [edge-1]\n", "spec.checkItems"),
		Entry("invalid node name", "  version: v1.21.0\n  nodeNames: [Edge_1]\n", "spec.nodeNames"),
		Entry("duplicate node name", "  version: v1.21.0\n  nodeNames: [edge-1, edge-1]\n", "spec.nodeNames"),
		Entry("too many node names", "  version: v1.21.0\n  nodeNames: ["+manyNames(5001)+"]\n", "spec.nodeNames"),
		Entry("window end equal to start", window("startTime: \"02:00\", endTime: \"02:00\""), "spec.maintenanceWindows[0].endTime"),
		Entry("window start 24:00", window("startTime: \"24:00\", endTime: \"02:00\""), "spec.maintenanceWindows[0].startTime"),
		Entry("window time without a leading zero", window("startTime: \"2:00\", endTime: \"04:00\""), "spec.maintenanceWindows[0].startTime"),
		Entry("window end minute 60", window("startTime: \"02:00\", endTime: \"04:60\""), "spec.maintenanceWindows[0].endTime"),
		Entry("window without an end", window("startTime: \"02:00\""), "spec.maintenanceWindows[0].endTime"),
		Entry("window day name capitalised", window("days: [Monday], startTime: \"02:00\", endTime: \"04:00\""), "spec.maintenanceWindows[0].days[0]"),
		Entry("window day abbreviated", window("days: [mon], startTime: \"02:00\", endTime: \"04:00\""), "spec.maintenanceWindows[0].days[0]"),
		Entry("window zone with a space", window("startTime: \"02:00\", endTime: \"04:00\", timeZone: \"Europe/ Berlin\""), "spec.maintenanceWindows[0].timeZone"),
		Entry("canary count and percent", "  version: v1.21.0\n  nodeNames: [edge-1, edge-2]\n  canary: {count: 1, percent: 10}\n", "spec.canary"),
		Entry("canary empty", "  version: v1.21.0\n  nodeNames: [edge-1, edge-2]\n  canary: {}\n", "spec.canary"),
		Entry("canary larger than nodeNames", "  version: v1.21.0\n  nodeNames: [edge-1, edge-2]\n  canary: {count: 3}\n", "spec.canary.count"),
		Entry("canary as large as nodeNames", "  version: v1.21.0\n  nodeNames: [edge-1, edge-2]\n  canary: {count: 2}\n", "spec.canary.count"),
		Entry("canary percent 100", "  version: v1.21.0\n  labelSelector: {matchLabels: {a: b}}\n  canary: {percent: 100}\n", "spec.canary.percent"),
		Entry("canary soak past 7 days", "  version: v1.21.0\n  labelSelector: {matchLabels: {a: b}}\n  canary: {percent: 10, soakSeconds: 604801}\n", "spec.canary.soakSeconds"),
	)

	It("keeps windows, canary and their status the same read through either version", func() {
		spec := "  version: v1.21.0\n  nodeNames: [edge-1, edge-2]\n  canary: {count: 1, soakSeconds: 60}\n  maintenanceWindows:\n" +
			"  - {days: [friday], startTime: \"22:00\", endTime: \"02:00\", timeZone: Asia/Tokyo}\n"
		manifest := strings.Replace(rawJob(spec), "operations.kubeedge.io/v1alpha1", "operations.kubeedge.io/v1alpha2", 1)
		body, err := yaml.YAMLToJSON([]byte(manifest))
		Expect(err).NotTo(HaveOccurred())
		Expect(restCli.Post().AbsPath("/apis/operations.kubeedge.io/v1alpha2/nodeupgradejobs").
			Body(body).SetHeader("Content-Type", "application/json").Do(ctx).Error()).To(Succeed())
		name := fmt.Sprintf("raw-%d", jobCounter)
		job := &v1alpha1.NodeUpgradeJob{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, job)).To(Succeed())
		Expect(job.Spec.MaintenanceWindows).To(Equal([]v1alpha1.MaintenanceWindow{{Days: []string{"friday"}, StartTime: "22:00", EndTime: "02:00", TimeZone: "Asia/Tokyo"}}))
		Expect(job.Spec.Canary).NotTo(BeNil())
		Expect(*job.Spec.Canary.Count).To(Equal(int32(1)))
		Expect(job.Spec.Canary.SoakSeconds).To(Equal(int64(60)))
		// The controller writes status through v1alpha1; v1alpha2 reads it whole.
		base := job.DeepCopy()
		job.Status.NextWindow = "2026-11-27T13:00:00Z"
		job.Status.NodeStatus = []v1alpha1.TaskStatus{{NodeName: "edge-1", Canary: true}}
		job.Status.Phase = v1alpha1.JobPhaseInProgress
		Expect(k8s.Status().Patch(ctx, job, client.MergeFrom(base))).To(Succeed())
		raw, err := restCli.Get().AbsPath("/apis/operations.kubeedge.io/v1alpha2/nodeupgradejobs", name).DoRaw(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(raw)).To(And(ContainSubstring(`"nextWindow":"2026-11-27T13:00:00Z"`), ContainSubstring(`"canary":true`),
			ContainSubstring(`"maintenanceWindows":[{"days":["friday"],"endTime":"02:00","startTime":"22:00","timeZone":"Asia/Tokyo"}]`)))
	})

	It("refuses the same windows and canaries through v1alpha2, with the field named", func() {
		for spec, field := range map[string]string{
			window("startTime: \"02:00\", endTime: \"02:00\""):                  "spec.maintenanceWindows[0].endTime",
			window("days: [Funday], startTime: \"02:00\", endTime: \"04:00\""):  "spec.maintenanceWindows[0].days[0]",
			"  version: v1.21.0\n  nodeNames: [edge-1]\n  canary: {count: 1}\n": "spec.canary.count",
		} {
			manifest := strings.Replace(rawJob(spec), "operations.kubeedge.io/v1alpha1", "operations.kubeedge.io/v1alpha2", 1)
			body, err := yaml.YAMLToJSON([]byte(manifest))
			Expect(err).NotTo(HaveOccurred())
			expectRefused(restCli.Post().AbsPath("/apis/operations.kubeedge.io/v1alpha2/nodeupgradejobs").
				Body(body).SetHeader("Content-Type", "application/json").Do(ctx).Error(), field)
		}
	})

	It("accepts the largest allowed nodeNames list", func() {
		Expect(createRaw(rawJob("  version: v1.21.0\n  nodeNames: [" + manyNames(5000) + "]\n"))).To(Succeed())
	})

	// Every spec field but suspend is immutable, and the refusal names the
	// field. Adding or removing an optional field is a change too.
	DescribeTable("refuses a change to any spec field but suspend, naming it",
		func(field string, create, change func(*v1alpha1.NodeUpgradeJob)) {
			job := newJob(create)
			Expect(k8s.Create(ctx, job)).To(Succeed())
			changed := job.DeepCopy()
			change(changed)
			changed.Spec.Suspend = true // a legal change beside it does not let it through
			err := k8s.Update(ctx, changed)
			expectRefused(err, "spec."+field+": Invalid value")
			Expect(err.Error()).To(ContainSubstring("spec." + field + " is immutable: only spec.suspend and spec.approvedNodes may change"))

			patched := job.DeepCopy()
			change(patched)
			expectRefused(k8s.Patch(ctx, patched, client.MergeFrom(job)), "spec."+field+" is immutable")

			// The same change through v1alpha2, the version kubectl edit
			// and kubectl patch write through.
			patch, err := client.MergeFrom(job).Data(patched)
			Expect(err).NotTo(HaveOccurred())
			expectRefused(restCli.Patch(types.MergePatchType).AbsPath("/apis/operations.kubeedge.io/v1alpha2/nodeupgradejobs", job.Name).
				Body(patch).Do(ctx).Error(), "spec."+field+" is immutable")
		},
		Entry("version", "version", nil, func(j *v1alpha1.NodeUpgradeJob) { j.Spec.Version = "v1.22.0" }),
		Entry("image", "image", nil, func(j *v1alpha1.NodeUpgradeJob) { j.Spec.Image = "registry.local/installer" }),
		Entry("nodeNames", "nodeNames", nil, func(j *v1alpha1.NodeUpgradeJob) { j.Spec.NodeNames = []string{"edge-1", "edge-2"} }),
		Entry("nodeNames replaced by labelSelector", "nodeNames", nil, func(j *v1alpha1.NodeUpgradeJob) {
			j.Spec.NodeNames, j.Spec.LabelSelector = nil, &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}
		}),
		Entry("labelSelector", "labelSelector",
			func(j *v1alpha1.NodeUpgradeJob) {
				j.Spec.NodeNames, j.Spec.LabelSelector = nil, &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}
			},
			func(j *v1alpha1.NodeUpgradeJob) { j.Spec.LabelSelector.MatchLabels["a"] = "c" }),
		Entry("timeoutSeconds", "timeoutSeconds", nil, func(j *v1alpha1.NodeUpgradeJob) { j.Spec.TimeoutSeconds = 60 }),
		Entry("concurrency", "concurrency", nil, func(j *v1alpha1.NodeUpgradeJob) { j.Spec.Concurrency = 5 }),
		Entry("failureTolerate", "failureTolerate", nil, func(j *v1alpha1.NodeUpgradeJob) { j.Spec.FailureTolerate = "0.5" }),
		Entry("checkItems added", "checkItems", nil, func(j *v1alpha1.NodeUpgradeJob) { j.Spec.CheckItems = []string{"cpu"} }),
		Entry("checkItems removed", "checkItems",
			func(j *v1alpha1.NodeUpgradeJob) { j.Spec.CheckItems = []string{"cpu"} },
			func(j *v1alpha1.NodeUpgradeJob) { j.Spec.CheckItems = nil }),
		Entry("imageDigestGatter", "imageDigestGatter", nil, func(j *v1alpha1.NodeUpgradeJob) {
			j.Spec.ImageDigestGatter = &v1alpha1.ImageDigestGatter{Value: "sha256:abc"}
		}),
		Entry("requireConfirmation", "requireConfirmation", nil, func(j *v1alpha1.NodeUpgradeJob) { j.Spec.RequireConfirmation = true }),
	)

	It("lets spec.suspend change both ways, by update and by the plugin's merge patch", func() {
		job := newJob(nil)
		Expect(k8s.Create(ctx, job)).To(Succeed())
		Expect(job.Spec.Suspend).To(BeFalse())
		// kubectl and the plugin write through the preferred version,
		// v1alpha2; the controller reads v1alpha1.
		suspend := func(version string, v bool) {
			GinkgoHelper()
			body := fmt.Sprintf(`{"spec":{"suspend":%t}}`, v)
			Expect(restCli.Patch(types.MergePatchType).AbsPath("/apis/operations.kubeedge.io", version, "nodeupgradejobs", job.Name).
				Body([]byte(body)).Do(ctx).Error()).To(Succeed())
			got := &v1alpha1.NodeUpgradeJob{}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(job), got)).To(Succeed())
			Expect(got.Spec.Suspend).To(Equal(v))
		}
		suspend("v1alpha1", true)
		suspend("v1alpha1", false)
		suspend("v1alpha2", true)

		got := &v1alpha1.NodeUpgradeJob{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(job), got)).To(Succeed())
		got.Spec.Suspend = false
		Expect(k8s.Update(ctx, got)).To(Succeed())
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(job), got)).To(Succeed())
		Expect(got.Spec.Suspend).To(BeFalse())
		Expect(got.Generation).To(Equal(int64(5)), "each change is a new generation the controller sees")
	})

	It("allows metadata changes after creation", func() {
		job := newJob(nil)
		Expect(k8s.Create(ctx, job)).To(Succeed())
		job.Labels = map[string]string{"team": "edge"}
		Expect(k8s.Update(ctx, job)).To(Succeed())
	})
})

var _ = Describe("Defaults", func() {
	It("stores the effective defaults", func() {
		job := newJob(nil)
		Expect(k8s.Create(ctx, job)).To(Succeed())
		got := &v1alpha1.NodeUpgradeJob{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(job), got)).To(Succeed())
		Expect(got.Spec.Concurrency).To(Equal(int32(1)))
		Expect(got.Spec.FailureTolerate).To(Equal("0.1"))
		Expect(got.Spec.TimeoutSeconds).To(Equal(int64(300)))
		Expect(got.Spec.Image).To(Equal("kubeedge/installation-package"))
		Expect(got.Spec.CheckItems).To(BeNil())
		stored, err := restCli.Get().AbsPath("/apis/operations.kubeedge.io/v1alpha1/nodeupgradejobs", job.Name).DoRaw(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(stored)).To(ContainSubstring(`"suspend":false`), "suspend is stored explicitly, so kubectl get -o yaml shows it")
	})

	It("keeps values the user set", func() {
		job := newJob(func(j *v1alpha1.NodeUpgradeJob) {
			j.Spec.Concurrency = 7
			j.Spec.FailureTolerate = "0.25"
			j.Spec.TimeoutSeconds = 60
			j.Spec.Image = "registry.local/edge/installer"
		})
		Expect(k8s.Create(ctx, job)).To(Succeed())
		got := &v1alpha1.NodeUpgradeJob{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(job), got)).To(Succeed())
		Expect(got.Spec).To(Equal(job.Spec))
	})

	It("accepts KubeEdge's own sample unchanged", func() {
		sample := `apiVersion: operations.kubeedge.io/v1alpha1
kind: NodeUpgradeJob
metadata:
  name: upgrade-example
  labels:
    description: upgrade-label
spec:
  version: "v1.16.0"
  checkItems: ["cpu", "mem", "disk"]
  failureTolerate: "0.3"
  concurrency: 2
  timeoutSeconds: 180
  labelSelector:
    matchLabels:
      "node-role.kubernetes.io/edge": ""
      node-role.kubernetes.io/agent: ""
`
		Expect(createRaw(sample)).To(Succeed())
		got := &v1alpha1.NodeUpgradeJob{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "upgrade-example"}, got)).To(Succeed())
		Expect(got.Spec.Version).To(Equal("v1.16.0"))
		Expect(got.Spec.CheckItems).To(Equal([]string{"cpu", "mem", "disk"}))
		Expect(got.Spec.FailureTolerate).To(Equal("0.3"))
		Expect(got.Spec.Concurrency).To(Equal(int32(2)))
		Expect(got.Spec.TimeoutSeconds).To(Equal(int64(180)))
		Expect(got.Spec.LabelSelector.MatchLabels).To(HaveLen(2))
		Expect(got.Spec.Image).To(Equal("kubeedge/installation-package"))
	})
})

func manyNames(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("edge-node-%05d", i)
	}
	return strings.Join(names, ", ")
}

// window is a job with one maintenance window of the given fields.
func window(fields string) string {
	return "  version: v1.21.0\n  nodeNames: [edge-1]\n  maintenanceWindows:\n  - {" + fields + "}\n"
}
