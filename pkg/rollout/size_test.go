package rollout

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// edgeFleet is n edge nodes at v1.20.0 with fleet-sized names.
func edgeFleet(n int) ([]string, map[string]NodeView) {
	nodes := make(map[string]NodeView, n)
	selection := make([]string, 0, n)
	for i := range n {
		name := fmt.Sprintf("edge-node-%05d", i)
		selection = append(selection, name)
		nodes[name] = edgeNode("v1.20.0")
	}
	return selection, nodes
}

// TestStatusFitsEtcdAtFleetScale builds the status of a finished
// 10,000-node job the way the planner writes it and checks that the object
// stays under the planner's bound (MaxObjectBytes, 90% of etcd's limit, the
// rest a margin for managedFields' field sets), with its metadata and spec,
// and that every node keeps its KubeEdge phase and every failed node the
// start of its reason. 141 bytes a node fill the budget: the actionFlows
// are shed and the failed nodes' reasons cut to 64 bytes (their events
// keep the whole text), as fitStatus orders it.
func TestStatusFitsEtcdAtFleetScale(t *testing.T) {
	g := NewWithT(t)
	const n = 10000
	selection, nodes := edgeFleet(n)
	c := cfg(n, "0.1")
	job := &v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}, Spec: v1alpha1.NodeUpgradeJobSpec{
		Version: "v1.21.0", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"node-role.kubernetes.io/edge": ""}}}}
	objectBytes := ObjectBytes(job)
	p := Decide(Input{Config: c, Selection: selection, SelectionSource: "spec.labelSelector", Nodes: nodes, Now: t0, ObjectBytes: objectBytes})
	pods := map[string]PodView{}
	for i, name := range selection {
		nodes[name] = edgeNode("v1.21.0")
		pods[name] = PodView{Phase: PodSucceeded}
		if i%100 == 0 { // 1% fail with a long reason
			pods[name] = PodView{Phase: PodFailed, FailedEvent: v1alpha1.EventRollback,
				Reason: "keadm upgrade edge failed: exit status 1: failed to pull image kubeedge/installation-package:v1.21.0; rolled back to v1.20.0"}
		}
	}
	p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, Pods: pods, Now: t0.Add(time.Minute), ObjectBytes: objectBytes})
	g.Expect(p.Finished).To(BeTrue())

	body, err := json.Marshal(p.Status)
	g.Expect(err).NotTo(HaveOccurred())
	perNode := float64(len(body)) / n
	t.Logf("status of a finished %d-node job: %d bytes, %.0f bytes per node; metadata and spec %d bytes", n, len(body), perNode, objectBytes)
	g.Expect(len(body) + objectBytes).To(BeNumerically("<=", MaxObjectBytes))
	for i, e := range p.Status.NodeStatus {
		g.Expect(e.Phase).NotTo(BeEmpty(), "node %s lost its phase", e.NodeName)
		if i%100 == 0 {
			g.Expect(e.Reason).To(HavePrefix("keadm upgrade edge failed"), "a failed node keeps the start of its reason")
		}
	}
}

func TestTruncate(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want string
	}{
		{"short", 256, "short"},
		{"abcdef", 6, "abcdef"},
		{"abcdefg", 6, "abc…"},
		{"ab€cd", 6, "ab…"}, // never cuts inside the 3-byte €
		{"abcdefg", 3, ""},
		{"abcdefg", 0, ""},
	}
	for _, c := range cases {
		g := NewWithT(t)
		got := Truncate(c.in, c.max)
		g.Expect(got).To(Equal(c.want), "Truncate(%q, %d)", c.in, c.max)
		g.Expect(len(got)).To(BeNumerically("<=", c.max))
		g.Expect(utf8.ValidString(got)).To(BeTrue())
	}
}

// finishAll runs a job of n nodes to its end with every node's pod failing
// with reason, at failureTolerate tolerate and the given concurrency.
func finishAll(t *testing.T, n, concurrency int, tolerate, reason string) Plan {
	t.Helper()
	selection, nodes := edgeFleet(n)
	c := cfg(concurrency, tolerate)
	p := Decide(Input{Config: c, Selection: selection, SelectionSource: "spec.labelSelector", Nodes: nodes, Now: t0})
	pods := map[string]PodView{}
	for step := 1; !p.Finished && step < 10*n; step++ {
		for _, d := range p.Dispatch {
			pods[d.Node] = PodView{Phase: PodFailed, FailedEvent: v1alpha1.EventRollback, Reason: reason}
		}
		p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, Pods: pods, Now: t0.Add(time.Duration(step) * time.Second)})
	}
	if !p.Finished {
		t.Fatalf("job of %d nodes did not finish", n)
	}
	return p
}

// TestStatusBoundedWithLongReasons: the review's case, a 5,000-node job
// whose nodes all fail with a 4 KB report, used to write about 20 MB. Each
// reason is cut to MaxNodeReasonBytes, reasons shrink further as the
// status fills, and the written status stays inside the budget.
func TestStatusBoundedWithLongReasons(t *testing.T) {
	g := NewWithT(t)
	long := "keadm upgrade edge failed: " + strings.Repeat("x<y> \"quoted\" ", 300)
	p := finishAll(t, 5000, 500, "1", long)
	body, err := json.Marshal(p.Status)
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("status of 5,000 failed nodes with %d-byte reasons: %d bytes", len(long), len(body))
	g.Expect(len(body)).To(BeNumerically("<=", MaxObjectBytes))
	g.Expect(p.Status.Counts.Failed).To(Equal(int32(5000)))
	for _, e := range p.Status.NodeStatus {
		g.Expect(len(e.Reason)).To(BeNumerically("<=", MaxNodeReasonBytes))
		g.Expect(e.Action).To(Equal(v1alpha1.ActionFailure), "the outcome stays whatever the reason's length")
	}

	// A small job keeps each reason at the per-node bound, not shorter.
	p = finishAll(t, 10, 10, "1", long)
	g.Expect(p.Status.NodeStatus[0].Reason).To(HaveLen(MaxNodeReasonBytes))
	g.Expect(p.Status.NodeStatus[0].Reason).To(HaveSuffix("…"))
}

// TestJobTooLargeIsRefusedAtOnce: a selection whose status could never fit
// (20,001 nodes passed the CRD's old maxItems at the first write) fails at
// once with a reason, records no node entry and dispatches nothing.
func TestJobTooLargeIsRefusedAtOnce(t *testing.T) {
	g := NewWithT(t)
	selection, nodes := edgeFleet(20001)
	p := Decide(Input{Config: cfg(10, "0.1"), Selection: selection, SelectionSource: "spec.labelSelector", Nodes: nodes, Now: t0})
	g.Expect(p.Finished).To(BeTrue())
	g.Expect(p.Dispatch).To(BeEmpty())
	g.Expect(p.Status.NodeStatus).To(BeEmpty())
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateFailed))
	g.Expect(p.Status.Reason).To(ContainSubstring("the status of 20001 nodes needs at least"))
	g.Expect(p.Status.Counts).To(Equal(v1alpha1.NodeCounts{Selected: 20001, NotAttempted: 20001}))
	body, err := json.Marshal(p.Status)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(len(body)).To(BeNumerically("<", 8192))

	// The same nodes fit in a job whose spec leaves room: 10,000 of them.
	p = Decide(Input{Config: cfg(10, "0.1"), Selection: selection[:10000], SelectionSource: "spec.labelSelector", Nodes: nodes, Now: t0})
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateUpgrading))
	g.Expect(p.Dispatch).To(HaveLen(10))

	// A spec that fills the object (5,000 long nodeNames) leaves less room.
	p = Decide(Input{Config: cfg(10, "0.1"), Selection: selection[:10000], SelectionSource: "spec.nodeNames", Nodes: nodes, Now: t0, ObjectBytes: 600 * 1024})
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateFailed))
	g.Expect(p.Dispatch).To(BeEmpty())
}

// TestMaxItemsIsWhatFits: a nodeStatus at the CRD's maxItems, of the
// shortest distinct names, is already more than the planner lets a status
// hold, so the API server's maxItems never refuses a status the planner
// writes: the planner refuses such a job first, with a reason.
func TestMaxItemsIsWhatFits(t *testing.T) {
	g := NewWithT(t)
	var shortest []string
	for i := 0; len(shortest) < v1alpha1.MaxNodeStatusItems; i++ {
		shortest = append(shortest, strconv.FormatInt(int64(i), 36))
	}
	g.Expect(tooLarge(shortest, 0)).NotTo(BeEmpty())
	g.Expect(tooLarge(shortest[:v1alpha1.MaxNodeStatusItems*8/10], 0)).To(BeEmpty(), "maxItems is not far above what fits")
}

// TestStatusWriteFailedClearedByNextPlan: the condition the controller sets
// when a write fails goes with the next plan's write.
func TestStatusWriteFailedClearedByNextPlan(t *testing.T) {
	g := NewWithT(t)
	p := Decide(Input{Config: cfg(1, "0.1"), Selection: names(2), SelectionSource: "spec.nodeNames", Nodes: fleet(2), Now: t0})
	st := p.Status
	st.Conditions = append(st.Conditions, metav1.Condition{Type: v1alpha1.ConditionStatusWriteFailed, Status: metav1.ConditionTrue, Reason: "RequestEntityTooLarge"})
	p = Decide(Input{Config: cfg(1, "0.1"), Status: st, Nodes: fleet(2), Now: t0.Add(time.Second)})
	g.Expect(meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionStatusWriteFailed)).To(BeNil())
}
