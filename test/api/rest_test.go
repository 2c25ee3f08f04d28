package api_test

import (
	"encoding/json"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

const collectionPath = "/apis/operations.kubeedge.io/v1alpha1/nodeupgradejobs"

func itemPath(name string) string { return collectionPath + "/" + name }

// decodeJob reads a NodeUpgradeJob from a raw response body.
func decodeJob(body []byte) *v1alpha1.NodeUpgradeJob {
	GinkgoHelper()
	job := &v1alpha1.NodeUpgradeJob{}
	Expect(json.Unmarshal(body, job)).To(Succeed())
	return job
}

func jobJSON(name, label string) []byte {
	body, err := json.Marshal(map[string]any{
		"apiVersion": "operations.kubeedge.io/v1alpha1",
		"kind":       "NodeUpgradeJob",
		"metadata":   map[string]any{"name": name, "labels": map[string]string{"suite": label}},
		"spec":       map[string]any{"version": "v1.21.0", "nodeNames": []string{"edge-1", "edge-2"}},
	})
	Expect(err).NotTo(HaveOccurred())
	return body
}

// Every operation of the seed's "Operations" section, on its exact REST path.
var _ = Describe("REST operations on the seed's paths", Ordered, func() {
	const name = "rest-ops"
	const label = "rest"

	It("create: POST the collection", func() {
		var status int
		body, err := restCli.Post().AbsPath(collectionPath).Body(jobJSON(name, label)).
			SetHeader("Content-Type", "application/json").Do(ctx).StatusCode(&status).Raw()
		Expect(err).NotTo(HaveOccurred())
		Expect(status).To(Equal(201))
		Expect(decodeJob(body).Spec.NodeNames).To(Equal([]string{"edge-1", "edge-2"}))
	})

	It("get: GET the item, which is cluster-scoped", func() {
		body, err := restCli.Get().AbsPath(itemPath(name)).Param("pretty", "true").Do(ctx).Raw()
		Expect(err).NotTo(HaveOccurred())
		job := decodeJob(body)
		Expect(job.Name).To(Equal(name))
		Expect(job.Namespace).To(BeEmpty())
	})

	It("list: GET the collection with a label selector", func() {
		Expect(restCli.Post().AbsPath(collectionPath).Body(jobJSON(name+"-b", label)).
			SetHeader("Content-Type", "application/json").Do(ctx).Error()).To(Succeed())
		body, err := restCli.Get().AbsPath(collectionPath).Param("labelSelector", "suite="+label).Do(ctx).Raw()
		Expect(err).NotTo(HaveOccurred())
		list := &v1alpha1.NodeUpgradeJobList{}
		Expect(json.Unmarshal(body, list)).To(Succeed())
		Expect(list.Kind).To(Equal("NodeUpgradeJobList"))
		Expect(list.Items).To(HaveLen(2))
	})

	It("update status: PUT the status subresource, which ignores spec changes", func() {
		body, err := restCli.Get().AbsPath(itemPath(name)).Do(ctx).Raw()
		Expect(err).NotTo(HaveOccurred())
		job := decodeJob(body)
		job.Status.State = v1alpha1.StateUpgrading
		job.Status.NodeStatus = []v1alpha1.TaskStatus{{NodeName: "edge-1", State: v1alpha1.StateChecking, Event: v1alpha1.EventCheck}}
		job.Spec.Version = "v9.9.9" // must be ignored by the status subresource
		out, err := json.Marshal(job)
		Expect(err).NotTo(HaveOccurred())
		body, err = restCli.Put().AbsPath(itemPath(name), "status").Body(out).
			SetHeader("Content-Type", "application/json").Do(ctx).Raw()
		Expect(err).NotTo(HaveOccurred())
		got := decodeJob(body)
		Expect(got.Status.State).To(Equal(v1alpha1.StateUpgrading))
		Expect(got.Spec.Version).To(Equal("v1.21.0"))
	})

	It("get status: GET the status subresource", func() {
		body, err := restCli.Get().AbsPath(itemPath(name), "status").Do(ctx).Raw()
		Expect(err).NotTo(HaveOccurred())
		Expect(decodeJob(body).Status.NodeStatus).To(ConsistOf(HaveField("NodeName", "edge-1")))
	})

	It("patch status: PATCH the status subresource", func() {
		patch := []byte(`{"status":{"reason":"patched","action":"Success"}}`)
		body, err := restCli.Patch(types.MergePatchType).AbsPath(itemPath(name), "status").Body(patch).Do(ctx).Raw()
		Expect(err).NotTo(HaveOccurred())
		got := decodeJob(body)
		Expect(got.Status.Reason).To(Equal("patched"))
		Expect(got.Status.State).To(Equal(v1alpha1.StateUpgrading))
	})

	It("update: PUT the item (metadata; the spec itself is immutable)", func() {
		body, err := restCli.Get().AbsPath(itemPath(name)).Do(ctx).Raw()
		Expect(err).NotTo(HaveOccurred())
		job := decodeJob(body)
		job.Annotations = map[string]string{"owner": "ops"}
		out, err := json.Marshal(job)
		Expect(err).NotTo(HaveOccurred())
		body, err = restCli.Put().AbsPath(itemPath(name)).Body(out).SetHeader("Content-Type", "application/json").Do(ctx).Raw()
		Expect(err).NotTo(HaveOccurred())
		Expect(decodeJob(body).Annotations).To(HaveKeyWithValue("owner", "ops"))
	})

	It("patch: PATCH the item", func() {
		body, err := restCli.Patch(types.MergePatchType).AbsPath(itemPath(name)).
			Body([]byte(`{"metadata":{"labels":{"patched":"yes"}}}`)).Do(ctx).Raw()
		Expect(err).NotTo(HaveOccurred())
		Expect(decodeJob(body).Labels).To(HaveKeyWithValue("patched", "yes"))
	})

	It("watch: GET the collection with watch=true streams changes", func() {
		w, err := restCli.Get().AbsPath(collectionPath).Param("watch", "true").
			Param("labelSelector", "suite="+label).Param("timeoutSeconds", "30").Watch(ctx)
		Expect(err).NotTo(HaveOccurred())
		defer w.Stop()
		Expect(restCli.Patch(types.MergePatchType).AbsPath(itemPath(name), "status").
			Body([]byte(`{"status":{"reason":"watched"}}`)).Do(ctx).Error()).To(Succeed())
		// A watch without a resourceVersion first replays what exists (ADDED),
		// then streams changes: wait for the MODIFIED event of the patch.
		Eventually(func() string {
			select {
			case e := <-w.ResultChan():
				if job, ok := e.Object.(*v1alpha1.NodeUpgradeJob); ok {
					return fmt.Sprintf("%s/%s", e.Type, job.Status.Reason)
				}
			default:
			}
			return ""
		}, 10*time.Second, 10*time.Millisecond).Should(Equal("MODIFIED/watched"))
	})

	It("delete: DELETE the item", func() {
		Expect(restCli.Delete().AbsPath(itemPath(name)).Do(ctx).Error()).To(Succeed())
		err := restCli.Get().AbsPath(itemPath(name)).Do(ctx).Error()
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
	})

	It("deletecollection: DELETE the collection with a label selector", func() {
		for i := range 3 {
			Expect(restCli.Post().AbsPath(collectionPath).Body(jobJSON(fmt.Sprintf("bulk-%d", i), "bulk")).
				SetHeader("Content-Type", "application/json").Do(ctx).Error()).To(Succeed())
		}
		Expect(restCli.Delete().AbsPath(collectionPath).Param("labelSelector", "suite=bulk").Do(ctx).Error()).To(Succeed())
		list := &v1alpha1.NodeUpgradeJobList{}
		Expect(k8s.List(ctx, list)).To(Succeed())
		for _, j := range list.Items {
			Expect(j.Labels).NotTo(HaveKeyWithValue("suite", "bulk"))
		}
		// The other job is left alone.
		Expect(restCli.Get().AbsPath(itemPath(name + "-b")).Do(ctx).Error()).To(Succeed())
	})

	It("refuses a namespaced path: the resource is cluster-scoped", func() {
		err := restCli.Get().AbsPath("/apis/operations.kubeedge.io/v1alpha1/namespaces/default/nodeupgradejobs").Do(ctx).Error()
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
	})
})
