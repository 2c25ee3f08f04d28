package api_test

import (
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/controller"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/statusshard"
)

// A job above the controller's --status-shard-threshold keeps its per-node
// records in shards (pkg/statusshard). These specs write a sharded job's
// worst case, every node failed with a long report after a rollback (the
// longest reason and action flow an entry gets), through the real API
// server and etcd, as the controller writes it: each shard a ConfigMap, and
// the job's status with the summary and status.shards. Every object must be
// accepted, and the records read back whole.
var _ = Describe("Sharded status at fleet scale", func() {
	const shardNamespace = "shard-test"
	BeforeEach(func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: shardNamespace}}
		if err := k8s.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			Expect(err).NotTo(HaveOccurred())
		}
	})

	DescribeTable("the worst sharded status is accepted by the API server and etcd",
		func(nodes, nameLen, shardSize int) {
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
			in := rollout.Input{Config: cfg, Generation: job.Generation, Selection: selection, Sharded: true,
				SelectionSource: "spec.labelSelector", Nodes: views, Now: now, ObjectBytes: len(spec)}
			plan := rollout.Decide(in)
			Expect(plan.Finished).To(BeFalse(), "a sharded job of %d nodes is not refused: %s", nodes, plan.Status.Reason)
			Expect(plan.Dispatch).To(HaveLen(nodes))
			pods := make(map[string]rollout.PodView, nodes)
			for _, d := range plan.Dispatch {
				pods[d.Node] = rollout.PodView{Phase: rollout.PodFailed, FailedEvent: v1alpha1.EventRollback, Reason: longReport}
			}
			in.Status, in.Selection, in.Pods, in.Now = plan.Status, nil, pods, now.Add(time.Minute)
			plan = rollout.Decide(in)
			Expect(plan.Finished).To(BeTrue(), plan.Status.Reason)
			Expect(plan.Status.Counts.Failed).To(Equal(int32(nodes)))

			// As the controller writes it: the shards, then the job.
			ref := statusshard.NewRef(job, shardNamespace, nodes, shardSize)
			largest := 0
			for i, part := range statusshard.Split(ref, plan.Status.NodeStatus) {
				ref.Revisions[i] = 1
				cm, err := statusshard.Build(job, ref, i, part, 1)
				Expect(err).NotTo(HaveOccurred())
				Expect(k8s.Create(ctx, cm)).To(Succeed(), "the API server refused shard %d", i)
				largest = max(largest, len(cm.Data[v1alpha1.ShardKeyNodeStatus]))
			}
			job.Status = plan.Status
			job.Status.NodeStatus = statusshard.Summary(plan.Status.NodeStatus)
			job.Status.Shards = ref
			Expect(k8s.Status().Update(ctx, job)).To(Succeed(), "the API server refused the sharded job's status")
			raw, err := restCli.Get().AbsPath("/apis/operations.kubeedge.io/v1alpha1/nodeupgradejobs", job.Name).DoRaw(ctx)
			Expect(err).NotTo(HaveOccurred())
			GinkgoWriter.Printf("%s: %d nodes in %d shards, largest shard %d bytes, stored job %d bytes\n",
				job.Name, nodes, len(ref.Revisions), largest, len(raw))
			Expect(len(raw)).To(BeNumerically("<", 64*1024), "the job's own status stays small at any N")

			stored := &v1alpha1.NodeUpgradeJob{}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(job), stored)).To(Succeed())
			Expect(stored.Status.NodeStatus).To(HaveLen(v1alpha1.MaxSummaryNodes / 2))
			entries, err := statusshard.Read(ctx, k8s, stored)
			Expect(err).NotTo(HaveOccurred())
			Expect(entries).To(HaveLen(nodes))
			Expect(entries).To(Equal(plan.Status.NodeStatus), "every record reads back as written")
		},
		Entry("100,000 nodes, fleet-sized names, the default shard size", 100000, 15, controller.DefaultStatusShardSize),
		Entry("2,000 nodes with 253-character names, the largest shard size", 2000, 253, controller.MaxStatusShardSize),
	)
})
