package rollout

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// etcdRequestLimit is etcd's default --max-request-bytes, which bounds the
// whole stored NodeUpgradeJob.
const etcdRequestLimit = 1536 * 1024

// TestStatusFitsEtcdAtFleetScale builds the status of a finished
// 10,000-node job the way the planner writes it and checks that the object
// stays well under etcd's limit, with room for metadata and the spec.
func TestStatusFitsEtcdAtFleetScale(t *testing.T) {
	g := NewWithT(t)
	const n = 10000
	nodes := map[string]NodeView{}
	var selection []string
	for i := range n {
		name := fmt.Sprintf("edge-node-%05d", i)
		selection = append(selection, name)
		nodes[name] = edgeNode("v1.20.0")
	}
	c := cfg(n, "0.1")
	p := Decide(Input{Config: c, Selection: selection, SelectionSource: "spec.labelSelector", Nodes: nodes, Now: t0})
	pods := map[string]PodView{}
	for i, name := range selection {
		nodes[name] = edgeNode("v1.21.0")
		pods[name] = PodView{Phase: PodSucceeded}
		if i%100 == 0 { // 1% fail with a long reason
			pods[name] = PodView{Phase: PodFailed, FailedEvent: v1alpha1.EventRollback,
				Reason: "keadm upgrade edge failed: exit status 1: failed to pull image kubeedge/installation-package:v1.21.0; rolled back to v1.20.0"}
		}
	}
	p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, Pods: pods, Now: t0.Add(time.Minute)})
	g.Expect(p.Finished).To(BeTrue())

	body, err := json.Marshal(p.Status)
	g.Expect(err).NotTo(HaveOccurred())
	perNode := float64(len(body)) / n
	t.Logf("status of a finished %d-node job: %d bytes, %.0f bytes per node", n, len(body), perNode)
	g.Expect(len(body)).To(BeNumerically("<", etcdRequestLimit*85/100), "leave 15%% for metadata and spec")
}
