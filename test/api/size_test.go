package api_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// longReport is a failed runner's report of about 4 KB, with characters
// JSON escapes.
var longReport = "keadm upgrade edge failed: " + strings.Repeat("x<y> \"quoted\" ", 300)

// etcdRequestLimit is etcd's default --max-request-bytes, which envtest's
// etcd runs with, as a real cluster's does.
const etcdRequestLimit = 1536 * 1024

// The planner bounds the status it writes by an estimate of etcd's limit
// (pkg/rollout/size.go). These specs write the planner's worst cases through
// the real API server and etcd: what the planner plans must be accepted, or
// the job would be stuck behind a status write that can never succeed.
var _ = Describe("Status size at fleet scale", func() {
	DescribeTable("the planner's status is accepted by the API server and etcd",
		func(nodes, nameLen int, failReason string, wantRefused bool) {
			job := newJob(func(j *v1alpha1.NodeUpgradeJob) {
				j.Spec.NodeNames = nil
				j.Spec.LabelSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"node-role.kubernetes.io/edge": ""}}
				j.Spec.Concurrency = int32(nodes)
				j.Spec.FailureTolerate = "1"
			})
			Expect(k8s.Create(ctx, job)).To(Succeed())
			cfg, err := rollout.ConfigFromSpec(&job.Spec)
			Expect(err).NotTo(HaveOccurred())
			spec, err := json.Marshal(job)
			Expect(err).NotTo(HaveOccurred())

			selection, views := bigFleet(nodes, nameLen)
			now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
			in := rollout.Input{Config: cfg, Generation: job.Generation, Selection: selection,
				SelectionSource: "spec.labelSelector", Nodes: views, Now: now, ObjectBytes: len(spec)}
			plan := rollout.Decide(in)
			writeStatus(job, plan.Status)
			if wantRefused {
				// Too large up front: the refusal is what was written, and
				// it says why and what to do.
				Expect(plan.Finished).To(BeTrue())
				Expect(plan.Status.Reason).To(And(ContainSubstring(fmt.Sprintf("the status of %d nodes needs at least", nodes)), ContainSubstring("split the nodes over several jobs")))
				return
			}
			Expect(plan.Finished).To(BeFalse(), plan.Status.Reason)

			pods := make(map[string]rollout.PodView, len(plan.Dispatch))
			for _, d := range plan.Dispatch {
				if failReason == "" {
					pods[d.Node] = rollout.PodView{Phase: rollout.PodSucceeded}
					v := views[d.Node]
					v.Version, v.Reported = "v1.21.0", "v1.30.7-kubeedge-v1.21.0"
					views[d.Node] = v
				} else {
					pods[d.Node] = rollout.PodView{Phase: rollout.PodFailed, FailedEvent: v1alpha1.EventRollback, Reason: failReason}
				}
			}
			in.Status, in.Selection, in.Pods, in.Now = plan.Status, nil, pods, now.Add(time.Minute)
			plan = rollout.Decide(in)
			Expect(plan.Finished).To(BeTrue(), plan.Status.Reason)
			writeStatus(job, plan.Status)
		},
		Entry("10,000 nodes, fleet-sized names, all upgraded", 10000, 15, "", false),
		Entry("5,000 nodes all failing with a 4 KB report", 5000, 15, longReport, false),
		Entry("10,500 nodes all failing with a 4 KB report", 10500, 15, longReport, false),
		Entry("11,000 nodes: refused up front", 11000, 15, "", true),
		Entry("4,000 nodes with 200-character names, all failing", 4000, 200, longReport, false),
		Entry("13,500 nodes (the CRD's maxItems): refused up front", 13500, 15, "", true),
		Entry("5,000 nodes with 253-character names: refused up front", 5000, 253, "", true),
	)
})

// writeStatus writes st as job's status and reads the stored object back:
// the write must succeed and the stored object, managed fields included,
// must stay under etcd's limit.
func writeStatus(job *v1alpha1.NodeUpgradeJob, st v1alpha1.NodeUpgradeJobStatus) {
	GinkgoHelper()
	job.Status = st
	Expect(k8s.Status().Update(ctx, job)).To(Succeed(), "the API server refused a status the planner wrote")
	raw, err := restCli.Get().AbsPath("/apis/operations.kubeedge.io/v1alpha1/nodeupgradejobs", job.Name).DoRaw(ctx)
	Expect(err).NotTo(HaveOccurred())
	GinkgoWriter.Printf("%s: %d nodes in status, stored object %d bytes\n", job.Name, len(st.NodeStatus), len(raw))
	Expect(len(raw)).To(BeNumerically("<", etcdRequestLimit))
}

// bigFleet is n edge nodes at v1.20.0 whose names are nameLen characters
// long, give or take one (valid DNS subdomains).
func bigFleet(n, nameLen int) ([]string, map[string]rollout.NodeView) {
	selection := make([]string, 0, n)
	views := make(map[string]rollout.NodeView, n)
	for i := range n {
		name := fmt.Sprintf("edge-%05d", i)
		for len(name)+2 <= nameLen { // labels of at most 62 characters, joined by dots
			name += "." + strings.Repeat("a", min(62, nameLen-len(name)-1))
		}
		selection = append(selection, name)
		views[name] = rollout.NodeView{Exists: true, Edge: true, Ready: true, Version: "v1.20.0", Reported: "v1.30.7-kubeedge-v1.20.0"}
	}
	return selection, views
}
