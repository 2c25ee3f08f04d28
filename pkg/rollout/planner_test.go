package rollout

import (
	"fmt"
	"math/big"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func cfg(concurrency int, tolerate string) Config {
	r, _ := new(big.Rat).SetString(tolerate)
	return Config{TargetVersion: "v1.21.0", Concurrency: concurrency, Timeout: 300 * time.Second, Tolerance: r,
		EdgeNodeLabel: "node-role.kubernetes.io/edge"}
}

func edgeNode(version string) NodeView {
	return NodeView{Exists: true, Edge: true, Ready: true, Version: version, Reported: "v1.30.7-kubeedge-" + version}
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%02d", i)
	}
	return out
}

func fleet(n int) map[string]NodeView {
	nodes := map[string]NodeView{}
	for _, name := range names(n) {
		nodes[name] = edgeNode("v1.20.0")
	}
	return nodes
}

// start runs the first plan for a fresh job.
func start(c Config, selection []string, nodes map[string]NodeView) Plan {
	return Decide(Input{Config: c, Selection: selection, SelectionSource: "spec.nodeNames", Nodes: nodes, Now: t0})
}

func entry(p Plan, node string) v1alpha1.TaskStatus {
	for _, e := range p.Status.NodeStatus {
		if e.NodeName == node {
			return e
		}
	}
	panic("no entry for " + node)
}

func dispatched(p Plan) []string {
	out := []string{}
	for _, d := range p.Dispatch {
		out = append(out, d.Node)
	}
	return out
}

func TestConfigFromSpec(t *testing.T) {
	cases := []struct {
		name      string
		spec      v1alpha1.NodeUpgradeJobSpec
		timeout   time.Duration
		conc      int
		tol       string
		suspended bool
		wantErr   bool
	}{
		{name: "zero values take the defaults", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0"}, timeout: 300 * time.Second, conc: 1, tol: "1/10"},
		{name: "explicit values", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", TimeoutSeconds: 60, Concurrency: 5, FailureTolerate: "0.25"}, timeout: 60 * time.Second, conc: 5, tol: "1/4"},
		{name: "suspend", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", Suspend: true}, timeout: 300 * time.Second, conc: 1, tol: "1/10", suspended: true},
		{name: "timeout 0 means 300", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", TimeoutSeconds: 0, FailureTolerate: "1.0"}, timeout: 300 * time.Second, conc: 1, tol: "1"},
		{name: "timeout at the bound", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", TimeoutSeconds: 604800}, timeout: 7 * 24 * time.Hour, conc: 1, tol: "1/10"},
		// Stored before the CRD's maximum: clamped, not overflowed into a
		// negative duration (9,223,372,037 s and up) or a pod deadline past int32.
		{name: "timeout past int32 is clamped", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", TimeoutSeconds: 2147483528}, timeout: 7 * 24 * time.Hour, conc: 1, tol: "1/10"},
		{name: "timeout past Duration is clamped", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", TimeoutSeconds: 9223372037}, timeout: 7 * 24 * time.Hour, conc: 1, tol: "1/10"},
		{name: "timeout max int64 is clamped", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", TimeoutSeconds: 1<<63 - 1}, timeout: 7 * 24 * time.Hour, conc: 1, tol: "1/10"},
		{name: "garbage tolerance", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", FailureTolerate: "10%"}, wantErr: true},
		{name: "tolerance above 1", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", FailureTolerate: "1.5"}, wantErr: true},
		{name: "negative tolerance", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", FailureTolerate: "-0.1"}, wantErr: true},
		// big.Rat reads these; the CRD's grammar, and so the planner, does not.
		{name: "fraction tolerance", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", FailureTolerate: "1/2"}, wantErr: true},
		{name: "exponent tolerance", spec: v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", FailureTolerate: "1e-1"}, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ConfigFromSpec(&c.spec)
			if c.wantErr {
				g.Expect(err).To(MatchError(ContainSubstring("spec.failureTolerate")))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.Timeout).To(Equal(c.timeout))
			g.Expect(got.Concurrency).To(Equal(c.conc))
			g.Expect(got.Tolerance.RatString()).To(Equal(c.tol))
			g.Expect(got.Suspended).To(Equal(c.suspended))
		})
	}
}

func TestToleranceBoundaries(t *testing.T) {
	cases := []struct {
		tolerate         string
		failed, selected int
		exceeded         bool
	}{
		{"0.1", 1, 10, false},
		{"0.1", 2, 10, true},
		{"0", 1, 10, true},
		{"0", 0, 10, false},
		{"1", 10, 10, false},
		{"0.3", 3, 10, false},
		{"0.3", 4, 10, true},
		{"0.33", 1, 3, true}, // 1/3 > 0.33 exactly, no rounding
		{"0.1", 0, 0, false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s_%d_of_%d", c.tolerate, c.failed, c.selected), func(t *testing.T) {
			NewWithT(t).Expect(cfg(1, c.tolerate).ToleranceExceeded(c.failed, c.selected)).To(Equal(c.exceeded))
		})
	}
}

func TestInitializeRecordsEveryNode(t *testing.T) {
	g := NewWithT(t)
	nodes := map[string]NodeView{
		"a-current": edgeNode("v1.21.0"),
		"b-newer":   edgeNode("v1.22.0"),
		"c-cloud":   {Exists: true, Edge: false, Ready: true},
		"e-edge":    edgeNode("v1.20.0"),
		"f-edge":    edgeNode("v1.19.0"),
	}
	p := start(cfg(1, "1"), []string{"f-edge", "e-edge", "d-missing", "c-cloud", "b-newer", "a-current"}, nodes)

	g.Expect(p.Status.NodeStatus).To(HaveLen(6))
	g.Expect(nodeNames(p.Status.NodeStatus)).To(Equal([]string{"a-current", "b-newer", "c-cloud", "d-missing", "e-edge", "f-edge"}))
	g.Expect(entry(p, "a-current")).To(And(HaveField("State", v1alpha1.StateSuccessful), HaveField("Action", v1alpha1.ActionSuccess), HaveField("Reason", ContainSubstring("skipped: already at v1.21.0"))))
	g.Expect(entry(p, "b-newer").State).To(Equal(v1alpha1.StateSuccessful))
	g.Expect(entry(p, "c-cloud")).To(And(HaveField("State", v1alpha1.StateSkipped), HaveField("Action", ""),
		HaveField("Reason", "skipped: not an edge node (no label node-role.kubernetes.io/edge)")))
	g.Expect(entry(p, "d-missing")).To(And(HaveField("State", v1alpha1.StateSkipped), HaveField("Reason", "skipped: node not found")))
	g.Expect(dispatched(p)).To(Equal([]string{"e-edge"}), "one slot, first upgradable node by name")
	g.Expect(entry(p, "e-edge").State).To(Equal(v1alpha1.StateInit))
	g.Expect(entry(p, "f-edge").State).To(Equal(v1alpha1.StateNone))
	g.Expect(p.Status.HistoricVersion).To(Equal("v1.19.0,v1.20.0,v1.21.0,v1.22.0"))
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateUpgrading))
	g.Expect(p.Status.Counts).To(Equal(v1alpha1.NodeCounts{Selected: 6, Succeeded: 2, Skipped: 2, InFlight: 1, Pending: 1}))
	g.Expect(p.Status.Progress).To(Equal("4/6"))
	g.Expect(p.Dispatch[0].Deadline).To(Equal(t0.Add(300 * time.Second)))
	g.Expect(p.RequeueAfter).To(Equal(300 * time.Second))
}

// TestNonEdgeAndMissingNodesAreSkipped: the review's case, a selector over
// 30 edge nodes and 4 cloud nodes (plus a typo in nodeNames), used to fail
// the whole job at once on failureTolerate 0.1. Skipped nodes are final,
// no failure, outside the ratio, and get no pod.
func TestNonEdgeAndMissingNodesAreSkipped(t *testing.T) {
	g := NewWithT(t)
	nodes := fleet(30)
	selection := names(30)
	for i := range 4 {
		name := fmt.Sprintf("cloud-%d", i)
		nodes[name] = NodeView{Exists: true, Ready: true, Reported: "v1.30.7"}
		selection = append(selection, name)
	}
	selection = append(selection, "typo-node")
	c := cfg(5, "0.1")
	p := start(c, selection, nodes)
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateUpgrading))
	g.Expect(p.Status.Counts).To(Equal(v1alpha1.NodeCounts{Selected: 35, Skipped: 5, InFlight: 5, Pending: 25}))
	g.Expect(dispatched(p)).To(HaveLen(5))
	g.Expect(dispatched(p)).NotTo(ContainElement(HavePrefix("cloud-")))

	// 3 of the 30 edge nodes failing is within 0.1 of 30 (skipped nodes do
	// not count), and the job completes.
	pods := map[string]PodView{}
	for i := 1; !p.Finished && i < 200; i++ {
		for _, d := range p.Dispatch {
			if _, ok := pods[d.Node]; ok {
				continue
			}
			pods[d.Node] = PodView{Phase: PodSucceeded}
			if d.Node < "node-03" {
				pods[d.Node] = PodView{Phase: PodFailed, FailedEvent: v1alpha1.EventUpgrade, Reason: "boom"}
			} else {
				nodes[d.Node] = edgeNode("v1.21.0")
			}
		}
		p = step(p, c, nodes, pods, t0.Add(time.Duration(i)*time.Second))
	}
	g.Expect(p.Finished).To(BeTrue())
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateSuccessful))
	g.Expect(p.Status.Counts).To(Equal(v1alpha1.NodeCounts{Selected: 35, Succeeded: 27, Failed: 3, Skipped: 5}))
	g.Expect(p.Status.Reason).To(Equal("completed: 27 of 30 nodes upgraded, 3 failed (within failureTolerate 0.1); 5 skipped (not edge nodes or not found)"))
	g.Expect(p.Status.Progress).To(Equal("35/35"))
}

func TestOnlySkippedNodesFails(t *testing.T) {
	g := NewWithT(t)
	nodes := map[string]NodeView{"cloud-a": {Exists: true, Ready: true}}
	p := start(cfg(1, "0.1"), []string{"cloud-a", "missing"}, nodes)
	g.Expect(p.Finished).To(BeTrue())
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateFailed))
	g.Expect(p.Status.Reason).To(ContainSubstring("no edge node to upgrade: all 2 nodes selected by"))
	g.Expect(p.Dispatch).To(BeEmpty())
}

func TestEmptySelectionFails(t *testing.T) {
	g := NewWithT(t)
	p := Decide(Input{Config: cfg(1, "0.1"), SelectionSource: "spec.labelSelector", Now: t0})
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateFailed))
	g.Expect(p.Status.Reason).To(ContainSubstring("no node selected by spec.labelSelector"))
	g.Expect(p.Finished).To(BeTrue())
}

func TestRefusedJobTouchesNoNode(t *testing.T) {
	g := NewWithT(t)
	c := cfg(5, "1")
	c.Refusal = `image repository "evil.example/x" is not allowed`
	p := start(c, names(3), fleet(3))
	g.Expect(p.Dispatch).To(BeEmpty())
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateFailed))
	g.Expect(p.Status.Reason).To(ContainSubstring("not allowed"))
	g.Expect(p.Status.Counts.NotAttempted).To(Equal(int32(3)))
	g.Expect(p.Events).NotTo(ContainElement(HaveField("Reason", ReasonStarted)), "a refused job never started")
	g.Expect(p.Events).To(ContainElement(HaveField("Reason", ReasonJobRefused)))
}

func TestRefusedJobWithNoNodeIsToldSo(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	c.Refusal = "spec.image: not allowed"
	p := start(c, nil, fleet(0))
	g.Expect(p.Status.Reason).To(Equal("refused: spec.image: not allowed"))
	g.Expect(p.Events).To(ContainElement(HaveField("Reason", ReasonJobRefused)))
}

// A refused job judges none of its pending nodes: a node that vanished
// while pending is NotAttempted, like the rest, not Skipped.
func TestRefusalJudgesNoPendingNode(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(3)
	p := start(c, names(3), nodes)
	delete(nodes, "node-02")
	c.Refusal = "spec.image: not allowed"
	p = step(p, c, nodes, map[string]PodView{"node-00": {Phase: PodUpgrading}}, t0.Add(time.Minute))
	g.Expect(entry(p, "node-02")).To(And(HaveField("State", v1alpha1.StateNotAttempted), HaveField("Reason", "not attempted: the job was refused")))
	g.Expect(p.Status.Counts.Skipped).To(BeZero())
}

// step replans with the previous status and new observations.
func step(prev Plan, c Config, nodes map[string]NodeView, pods map[string]PodView, now time.Time) Plan {
	return Decide(Input{Config: c, Status: prev.Status, Nodes: nodes, Pods: pods, Now: now})
}

func TestSlidingWindow(t *testing.T) {
	g := NewWithT(t)
	c := cfg(3, "1")
	nodes := fleet(6)
	p := start(c, names(6), nodes)
	g.Expect(dispatched(p)).To(Equal([]string{"node-00", "node-01", "node-02"}))

	// Nothing changed: the same three hold the slots, no new dispatch, and
	// their missing pods are asked for again (idempotent create).
	pods := map[string]PodView{"node-00": {Phase: PodUpgrading, Tracked: true}, "node-01": {Phase: PodChecking, Tracked: true}, "node-02": {Phase: PodPending, Tracked: true}}
	p = step(p, c, nodes, pods, t0.Add(5*time.Second))
	g.Expect(p.Dispatch).To(BeEmpty())
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateUpgrading))
	g.Expect(entry(p, "node-01").State).To(Equal(v1alpha1.StateChecking))

	// One finishes: its slot is free at once, the next node goes.
	pods["node-01"] = PodView{Phase: PodSucceeded, Tracked: true}
	nodes["node-01"] = edgeNode("v1.21.0")
	p = step(p, c, nodes, pods, t0.Add(10*time.Second))
	g.Expect(entry(p, "node-01").State).To(Equal(v1alpha1.StateSuccessful))
	g.Expect(dispatched(p)).To(Equal([]string{"node-03"}))
	g.Expect(p.Releases()).To(Equal([]string{"node-01"}))
	g.Expect(p.Deletions()).To(Equal([]string{"node-01"}))
	g.Expect(p.Status.Counts.InFlight).To(Equal(int32(3)))
}

func TestVerificationWaitsForVersionAndReady(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(1)
	p := start(c, names(1), nodes)
	pods := map[string]PodView{"node-00": {Phase: PodSucceeded, Tracked: true}}

	p = step(p, c, nodes, pods, t0.Add(30*time.Second))
	g.Expect(entry(p, "node-00")).To(And(HaveField("State", v1alpha1.StateUpgrading), HaveField("Reason", ContainSubstring("reports v1.20.0"))))
	g.Expect(p.Releases()).To(BeEmpty(), "the pod stays tracked until the outcome is known")

	n := edgeNode("v1.21.0")
	n.Ready = false
	nodes["node-00"] = n
	p = step(p, c, nodes, pods, t0.Add(40*time.Second))
	g.Expect(entry(p, "node-00").Reason).To(ContainSubstring("NotReady"))

	p = step(p, c, nodes, pods, t0.Add(300*time.Second))
	g.Expect(entry(p, "node-00")).To(And(HaveField("State", v1alpha1.StateFailed), HaveField("Action", v1alpha1.ActionTimeOut),
		HaveField("Event", v1alpha1.EventTimeOut), HaveField("Reason", ContainSubstring("reports v1.21.0 and is NotReady"))))
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateFailed))
	g.Expect(p.Deletions()).To(BeEmpty(), "a failed node's terminated pod stays for its logs")
	g.Expect(p.Releases()).To(Equal([]string{"node-00"}))
}

func TestLyingNodeFailsVerification(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(1)
	p := start(c, names(1), nodes)
	nodes["node-00"] = NodeView{Exists: true, Edge: true, Ready: true, Reported: "v1.30.7-kubeedge-banana"}
	p = step(p, c, nodes, map[string]PodView{"node-00": {Phase: PodSucceeded}}, t0.Add(301*time.Second))
	g.Expect(entry(p, "node-00").Reason).To(ContainSubstring(`reports no edgecore version ("v1.30.7-kubeedge-banana")`))
}

// The reason names the step the pod hung in as observed at the deadline,
// even when no plan recorded that step before.
func TestTimeoutNamesTheStepSeenAtTheDeadline(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(1)
	p := start(c, names(1), nodes)
	p = step(p, c, nodes, map[string]PodView{"node-00": {Phase: PodChecking, Tracked: true}}, t0.Add(time.Minute))
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateChecking))
	p = step(p, c, nodes, map[string]PodView{"node-00": {Phase: PodBackingUp, Tracked: true}}, t0.Add(300*time.Second))
	g.Expect(entry(p, "node-00").Reason).To(Equal("did not finish within 5m0s (last seen: BackingUp)"))
}

func TestTimeout(t *testing.T) {
	g := NewWithT(t)
	c := cfg(2, "1")
	nodes := fleet(3)
	p := start(c, names(3), nodes)
	pods := map[string]PodView{"node-00": {Phase: PodUpgrading, Tracked: true}, "node-01": {Phase: PodUpgrading, Tracked: true}}

	p = step(p, c, nodes, pods, t0.Add(299*time.Second))
	g.Expect(p.Status.Counts.Failed).To(BeZero())
	g.Expect(p.RequeueAfter).To(Equal(time.Second))

	p = step(p, c, nodes, pods, t0.Add(300*time.Second))
	for _, n := range []string{"node-00", "node-01"} {
		g.Expect(entry(p, n)).To(And(HaveField("State", v1alpha1.StateFailed), HaveField("Action", v1alpha1.ActionTimeOut),
			HaveField("Event", v1alpha1.EventTimeOut), HaveField("Reason", ContainSubstring("did not finish within 5m0s (last seen: Upgrading)"))))
	}
	g.Expect(p.Deletions()).To(ConsistOf("node-00", "node-01"), "timed-out pods are cancelled")
	g.Expect(p.Releases()).To(ConsistOf("node-00", "node-01"))
	g.Expect(p.Dispatch).To(BeEmpty(), "a timed-out pod keeps its slot until its deletion is under way")

	pods["node-00"] = PodView{Phase: PodUpgrading, Deleting: true}
	p = step(p, c, nodes, pods, t0.Add(301*time.Second))
	g.Expect(dispatched(p)).To(Equal([]string{"node-02"}), "a slot frees as soon as the pod is being deleted")
}

func TestToleranceStopsDispatch(t *testing.T) {
	cases := []struct {
		tolerate     string
		failures     int
		wantStopped  bool
		wantJobState string
	}{
		{"0.1", 1, false, v1alpha1.StateSuccessful},
		{"0.1", 2, true, v1alpha1.StateFailed},
		{"0", 1, true, v1alpha1.StateFailed},
		{"1", 9, false, v1alpha1.StateSuccessful},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s_with_%d_failures", tc.tolerate, tc.failures), func(t *testing.T) {
			g := NewWithT(t)
			c := cfg(1, tc.tolerate)
			nodes := fleet(10)
			p := start(c, names(10), nodes)
			now := t0
			for i := 0; i < 10 && !p.Finished; i++ {
				name := fmt.Sprintf("node-%02d", i)
				if entry(p, name).State != v1alpha1.StateInit {
					break
				}
				now = now.Add(10 * time.Second)
				pod := PodView{Phase: PodSucceeded}
				if i < tc.failures {
					pod = PodView{Phase: PodFailed, FailedEvent: v1alpha1.EventRollback, Reason: "keadm upgrade failed; rolled back to v1.20.0"}
				} else {
					nodes[name] = edgeNode("v1.21.0")
				}
				p = step(p, c, nodes, map[string]PodView{name: pod}, now)
			}
			g.Expect(p.Finished).To(BeTrue())
			g.Expect(p.Status.State).To(Equal(tc.wantJobState))
			g.Expect(p.Status.Counts.Failed).To(Equal(int32(tc.failures)))
			if tc.wantStopped {
				g.Expect(p.Status.Counts.NotAttempted).To(Equal(int32(10 - tc.failures)))
				g.Expect(p.Status.Reason).To(ContainSubstring(fmt.Sprintf("%d of 10 nodes failed, more than failureTolerate %s", tc.failures, tc.tolerate)))
				g.Expect(entry(p, "node-09")).To(And(HaveField("State", v1alpha1.StateNotAttempted), HaveField("Action", "")))
			} else {
				g.Expect(p.Status.Counts.NotAttempted).To(BeZero())
				g.Expect(p.Status.Counts.Succeeded).To(Equal(int32(10 - tc.failures)))
			}
		})
	}
}

func TestInFlightFinishAfterStop(t *testing.T) {
	g := NewWithT(t)
	c := cfg(3, "0")
	nodes := fleet(5)
	p := start(c, names(5), nodes)
	pods := map[string]PodView{"node-00": {Phase: PodFailed, FailedEvent: v1alpha1.EventCheck, Reason: "cpu usage 95% >= 80%"}, "node-01": {Phase: PodUpgrading}, "node-02": {Phase: PodUpgrading}}
	p = step(p, c, nodes, pods, t0.Add(time.Minute))
	g.Expect(p.Dispatch).To(BeEmpty())
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateUpgrading), "in-flight nodes finish first")
	g.Expect(p.Status.Reason).To(ContainSubstring("stopping"))
	g.Expect(entry(p, "node-00")).To(And(HaveField("Event", v1alpha1.EventCheck), HaveField("Reason", ContainSubstring("cpu usage"))))
	g.Expect(p.Events).To(ContainElement(HaveField("Reason", ReasonToleranceExceeded)))

	nodes["node-01"], nodes["node-02"] = edgeNode("v1.21.0"), edgeNode("v1.21.0")
	pods["node-01"], pods["node-02"] = PodView{Phase: PodSucceeded}, PodView{Phase: PodSucceeded}
	p2 := step(p, c, nodes, pods, t0.Add(2*time.Minute))
	g.Expect(p2.Status.State).To(Equal(v1alpha1.StateFailed))
	g.Expect(p2.Status.Counts).To(Equal(v1alpha1.NodeCounts{Selected: 5, Succeeded: 2, Failed: 1, NotAttempted: 2}))
	g.Expect(p2.Events).NotTo(ContainElement(HaveField("Reason", ReasonToleranceExceeded)), "told once")
}

func TestNotReadyNodeIsDeferredWithoutASlot(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(3)
	offline := nodes["node-00"]
	offline.Ready = false
	nodes["node-00"] = offline
	p := start(c, names(3), nodes)
	g.Expect(dispatched(p)).To(Equal([]string{"node-01"}), "the NotReady node does not hold the slot")
	g.Expect(entry(p, "node-00")).To(And(HaveField("State", v1alpha1.StateNone), HaveField("Reason", "deferred: node is NotReady"), HaveField("Time", t0.Format(time.RFC3339))))

	// It comes back while the slot is busy: no longer deferred, waits its turn.
	nodes["node-00"] = edgeNode("v1.20.0")
	p2 := step(p, c, nodes, map[string]PodView{"node-01": {Phase: PodUpgrading}}, t0.Add(time.Minute))
	g.Expect(entry(p2, "node-00")).To(And(HaveField("State", v1alpha1.StateNone), HaveField("Reason", ""), HaveField("Time", "")))

	// Staying NotReady for the timeout fails it.
	nodes["node-00"] = offline
	p3 := step(p, c, nodes, map[string]PodView{"node-01": {Phase: PodUpgrading}}, t0.Add(300*time.Second))
	g.Expect(entry(p3, "node-00")).To(And(HaveField("State", v1alpha1.StateFailed), HaveField("Reason", "node stayed NotReady for 5m0s")))
}

func TestPodDeletedBehindOurBack(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(2)
	p := start(c, names(2), nodes)
	p = step(p, c, nodes, map[string]PodView{"node-00": {Phase: PodChecking, Deleting: true, Tracked: true}}, t0.Add(time.Minute))
	g.Expect(entry(p, "node-00")).To(And(HaveField("Action", v1alpha1.ActionFailure), HaveField("Reason", ContainSubstring("deleted before it finished"))))
	g.Expect(p.Releases()).To(Equal([]string{"node-00"}))
	g.Expect(p.Deletions()).To(BeEmpty(), "already being deleted")
	g.Expect(dispatched(p)).To(Equal([]string{"node-01"}))
}

// The backup and upgrade run in the job's unit on the node, which a pod's
// deletion or its containers' death does not stop: the node itself shows
// how the upgrade ends, and the entry follows it until the deadline.
func TestUpgradeOutlivingItsPodIsJudgedByTheNode(t *testing.T) {
	deleted := PodView{Phase: PodUpgrading, Deleting: true, Tracked: true}
	detached := PodView{Phase: PodDetached, Tracked: true, Reason: "the upgrade pod ended before the node's upgrade unit reported (container upgrade exited 137 (killed))"}
	for name, pod := range map[string]PodView{"pod deleted while upgrading": deleted, "pod's followers killed": detached} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			c := cfg(1, "1")
			nodes := fleet(2)
			p := start(c, names(2), nodes)
			// Recorded as upgrading first, as the controller saw it.
			p = step(p, c, nodes, map[string]PodView{"node-00": {Phase: PodUpgrading, Tracked: true}}, t0.Add(10*time.Second))
			p = step(p, c, nodes, map[string]PodView{"node-00": pod}, t0.Add(time.Minute))
			g.Expect(entry(p, "node-00")).To(And(HaveField("State", v1alpha1.StateUpgrading),
				HaveField("Reason", ContainSubstring("verifying: waiting for the node to report v1.21.0 and Ready"))))
			g.Expect(dispatched(p)).To(BeEmpty(), "the node holds its slot while its unit may run")

			// The node comes back on the target: upgraded.
			upgraded := map[string]NodeView{"node-00": edgeNode("v1.21.0"), "node-01": nodes["node-01"]}
			done := step(p, c, upgraded, map[string]PodView{"node-00": pod}, t0.Add(2*time.Minute))
			g.Expect(entry(done, "node-00")).To(And(HaveField("State", v1alpha1.StateSuccessful), HaveField("Action", v1alpha1.ActionSuccess)))
			g.Expect(dispatched(done)).To(Equal([]string{"node-01"}))

			// Or it never does: timed out at the deadline, saying why (and
			// watched after it, as any timed-out node).
			late := step(p, c, nodes, map[string]PodView{"node-00": pod}, t0.Add(300*time.Second))
			g.Expect(entry(late, "node-00")).To(And(HaveField("Action", v1alpha1.ActionTimeOut),
				HaveField("Reason", ContainSubstring("the node reports v1.20.0, not v1.21.0 and Ready"))))
		})
	}
}

func TestMissingPodIsRecreatedUntilDeadline(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(1)
	p := start(c, names(1), nodes)
	p2 := step(p, c, nodes, nil, t0.Add(time.Minute))
	g.Expect(p2.Dispatch).To(Equal([]Dispatch{{Node: "node-00", FromVersion: "v1.20.0", Deadline: t0.Add(300 * time.Second)}}),
		"same deadline as the first dispatch")
	g.Expect(p2.Status).To(Equal(p.Status), "nothing to write")
	p3 := step(p, c, nodes, nil, t0.Add(300*time.Second))
	g.Expect(entry(p3, "node-00").Reason).To(ContainSubstring("last seen: upgrade pod not created"))
}

func TestFinishedJobOnlyCleansUp(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(1)
	p := start(c, names(1), nodes)
	nodes["node-00"] = edgeNode("v1.21.0")
	p = step(p, c, nodes, map[string]PodView{"node-00": {Phase: PodSucceeded, Tracked: true}}, t0.Add(time.Minute))
	g.Expect(p.Finished).To(BeTrue())
	g.Expect(p.Status.CurrentVersion).To(Equal("v1.21.0"))
	g.Expect(p.Status.HistoricVersion).To(Equal("v1.20.0"))
	g.Expect(p.Status.Action).To(Equal(v1alpha1.ActionSuccess))

	// A later plan with the pod's finalizer still on (the release failed) retries the cleanup and changes nothing else.
	p2 := step(p, c, nodes, map[string]PodView{"node-00": {Phase: PodSucceeded, Tracked: true}}, t0.Add(time.Hour))
	g.Expect(p2.Status).To(Equal(p.Status))
	g.Expect(p2.Releases()).To(Equal([]string{"node-00"}))
	g.Expect(p2.Events).To(BeEmpty())
}

func TestStatusIsStableWithoutChange(t *testing.T) {
	g := NewWithT(t)
	c := cfg(2, "0.5")
	nodes := fleet(4)
	p := start(c, names(4), nodes)
	pods := map[string]PodView{"node-00": {Phase: PodBackingUp}, "node-01": {Phase: PodUpgrading}}
	p = step(p, c, nodes, pods, t0.Add(10*time.Second))
	again := step(p, c, nodes, pods, t0.Add(20*time.Second))
	g.Expect(again.Status).To(Equal(p.Status), "a plan with nothing new must not change status, or every reconcile writes")
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateBackingUp))
	g.Expect(entry(p, "node-01").State).To(Equal(v1alpha1.StateUpgrading))
}

func TestProgressEventsAtDeciles(t *testing.T) {
	g := NewWithT(t)
	c := cfg(5, "1")
	nodes := fleet(10)
	p := start(c, names(10), nodes)
	g.Expect(p.Events).NotTo(ContainElement(HaveField("Reason", ReasonProgress)))
	pods := map[string]PodView{}
	for _, n := range []string{"node-00", "node-01", "node-02"} {
		nodes[n] = edgeNode("v1.21.0")
		pods[n] = PodView{Phase: PodSucceeded}
	}
	p = step(p, c, nodes, pods, t0.Add(time.Minute))
	g.Expect(p.Events).To(ContainElement(And(HaveField("Reason", ReasonProgress), HaveField("Message", "Progress 30%: 3 of 10 nodes finished (3 succeeded, 0 failed)"))))
	p = step(p, c, nodes, pods, t0.Add(2*time.Minute))
	g.Expect(p.Events).NotTo(ContainElement(HaveField("Reason", ReasonProgress)), "once per decile")
}

func TestRefusalMidJobStartsNothingNew(t *testing.T) {
	g := NewWithT(t)
	c := cfg(2, "1")
	nodes := fleet(4)
	p := start(c, names(4), nodes)
	g.Expect(dispatched(p)).To(HaveLen(2))

	// Restarted with an allow-list that no longer admits the job's image.
	c.Refusal = `image repository "docker.io/kubeedge/installation-package" is not allowed`
	p = step(p, c, nodes, map[string]PodView{"node-00": {Phase: PodUpgrading}}, t0.Add(time.Minute))
	g.Expect(p.Dispatch).To(BeEmpty(), "not even the dispatched node whose pod is missing")
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateUpgrading), "a running upgrade finishes")
	g.Expect(entry(p, "node-01")).To(And(HaveField("State", v1alpha1.StateFailed), HaveField("Reason", ContainSubstring("refused"))))
	g.Expect(entry(p, "node-03").State).To(Equal(v1alpha1.StateNotAttempted))
	g.Expect(p.Events).To(ContainElement(HaveField("Reason", ReasonJobRefused)), "the refusal is told when it takes effect, not only at the end")

	nodes["node-00"] = edgeNode("v1.21.0")
	p = step(p, c, nodes, map[string]PodView{"node-00": {Phase: PodSucceeded}}, t0.Add(2*time.Minute))
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateFailed))
	g.Expect(p.Status.Reason).To(HavePrefix("refused: "))
}

func TestDeletedPodKilledByKubeletIsReportedAsDeleted(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(1)
	p := start(c, names(1), nodes)
	p = step(p, c, nodes, map[string]PodView{"node-00": {Phase: PodFailed, Deleting: true, Reason: "container backup exited 143"}}, t0.Add(time.Minute))
	g.Expect(entry(p, "node-00").Reason).To(Equal("upgrade pod was deleted before it finished (container backup exited 143)"))
}

// A node where another job's upgrade pod still runs (an overlapping job, or
// a deleted job's pod still rolling back) waits without a slot, like a
// NotReady node, and fails if it stays busy for the timeout.
func TestNodeBusyWithAnotherJobWaitsWithoutASlot(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(3)
	busy := nodes["node-00"]
	busy.BusyWith = "other-job"
	nodes["node-00"] = busy
	p := start(c, names(3), nodes)
	g.Expect(dispatched(p)).To(Equal([]string{"node-01"}), "the busy node does not hold the slot")
	g.Expect(entry(p, "node-00")).To(And(HaveField("State", v1alpha1.StateNone),
		HaveField("Reason", "waiting: another upgrade is running on this node (job other-job)"), HaveField("Time", t0.Format(time.RFC3339))))
	// Nothing of this job's own changes when the other pod goes: the plan
	// asks to look again soon, not at the wait's end.
	g.Expect(p.RequeueAfter).To(BeNumerically(">", 0))
	g.Expect(p.RequeueAfter).To(BeNumerically("<=", BusyRecheck))

	// The other pod is gone: it waits its turn like any pending node.
	nodes["node-00"] = edgeNode("v1.20.0")
	p2 := step(p, c, nodes, map[string]PodView{"node-01": {Phase: PodUpgrading}}, t0.Add(time.Minute))
	g.Expect(entry(p2, "node-00")).To(And(HaveField("State", v1alpha1.StateNone), HaveField("Reason", ""), HaveField("Time", "")))

	// Busy for the whole timeout: it fails, saying why.
	nodes["node-00"] = busy
	p3 := step(p, c, nodes, map[string]PodView{"node-01": {Phase: PodUpgrading}}, t0.Add(300*time.Second))
	g.Expect(entry(p3, "node-00")).To(And(HaveField("State", v1alpha1.StateFailed), HaveField("Reason", "node stayed busy with job other-job's upgrade pod for 5m0s")))
}

// suspendAt replans the same observations with spec.suspend set to suspended.
func suspendAt(prev Plan, c Config, suspended bool, nodes map[string]NodeView, pods map[string]PodView, now time.Time) Plan {
	c.Suspended = suspended
	return step(prev, c, nodes, pods, now)
}

func eventReasons(p Plan) []string {
	out := []string{}
	for _, e := range p.Events {
		out = append(out, e.Reason)
	}
	return out
}

func condition(p Plan, typ string) *metav1.Condition {
	return meta.FindStatusCondition(p.Status.Conditions, typ)
}

// TestSuspend walks spec.suspend through a rollout: each case starts from
// a 6-node job of concurrency 2 with node-00 and node-01 in flight (pods
// Upgrading) at t0+10s, and checks what one or more plans decide.
func TestSuspend(t *testing.T) {
	c := cfg(2, "0.5")
	running := func() (Plan, map[string]NodeView, map[string]PodView) {
		nodes := fleet(6)
		pods := map[string]PodView{"node-00": {Phase: PodUpgrading, Tracked: true}, "node-01": {Phase: PodUpgrading, Tracked: true}}
		p := start(c, names(6), nodes)
		return step(p, c, nodes, pods, t0.Add(10*time.Second)), nodes, pods
	}
	succeed := func(nodes map[string]NodeView, pods map[string]PodView, node string) {
		nodes[node] = edgeNode("v1.21.0")
		pods[node] = PodView{Phase: PodSucceeded, Tracked: true}
	}
	cases := []struct {
		name string
		run  func(g Gomega)
	}{{
		name: "suspending starts nothing, shows Suspended once, and in-flight nodes keep going",
		run: func(g Gomega) {
			p, nodes, pods := running()
			pods["node-01"] = PodView{Phase: PodBackingUp, Tracked: true}
			s := suspendAt(p, c, true, nodes, pods, t0.Add(20*time.Second))
			g.Expect(s.Dispatch).To(BeEmpty())
			g.Expect(s.Finished).To(BeFalse())
			g.Expect(s.Status.State).To(Equal(v1alpha1.StateSuspended))
			g.Expect(s.Status.Time).To(Equal(t0.Add(20 * time.Second).Format(time.RFC3339)))
			g.Expect(s.Status.Reason).To(Equal("suspended: 0 succeeded, 0 failed, 2 in flight, 4 pending; no node starts until spec.suspend is false"))
			g.Expect(entry(s, "node-01").State).To(Equal(v1alpha1.StateBackingUp), "in-flight progress is followed")
			g.Expect(condition(s, v1alpha1.ConditionSuspended)).To(HaveValue(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", v1alpha1.ConditionSuspended))))
			g.Expect(condition(s, v1alpha1.ConditionProgressing)).To(HaveValue(And(HaveField("Status", metav1.ConditionUnknown), HaveField("Reason", v1alpha1.ConditionSuspended))))
			g.Expect(s.Events).To(ConsistOf(And(HaveField("Reason", ReasonSuspended), HaveField("Warning", false),
				HaveField("Message", "Job suspended: no node starts until spec.suspend is false; 2 in flight finish, 4 pending wait"))))
			g.Expect(s.RequeueAfter).To(Equal(280*time.Second), "the in-flight deadlines still wake the job")

			again := suspendAt(s, c, true, nodes, pods, t0.Add(30*time.Second))
			g.Expect(again.Status).To(Equal(s.Status), "nothing new: nothing to write")
			g.Expect(again.Events).To(BeEmpty(), "told once")
		},
	}, {
		name: "in-flight nodes that finish free no slot while suspended: the job stays Suspended",
		run: func(g Gomega) {
			p, nodes, pods := running()
			p = suspendAt(p, c, true, nodes, pods, t0.Add(20*time.Second))
			succeed(nodes, pods, "node-00")
			pods["node-01"] = PodView{Phase: PodFailed, FailedEvent: v1alpha1.EventRollback, Reason: "keadm upgrade failed", Tracked: true}
			s := suspendAt(p, c, true, nodes, pods, t0.Add(40*time.Second))
			g.Expect(s.Dispatch).To(BeEmpty())
			g.Expect(entry(s, "node-00").State).To(Equal(v1alpha1.StateSuccessful))
			g.Expect(entry(s, "node-01").State).To(Equal(v1alpha1.StateFailed))
			g.Expect(s.Status.Counts).To(Equal(v1alpha1.NodeCounts{Selected: 6, Succeeded: 1, Failed: 1, Pending: 4}))
			g.Expect(s.Status.State).To(Equal(v1alpha1.StateSuspended))
			g.Expect(s.Finished).To(BeFalse(), "nodes remain to be started")
			g.Expect(s.Releases()).To(ConsistOf("node-00", "node-01"), "outcomes recorded: pods are let go as usual")
			g.Expect(s.RequeueAfter).To(BeZero(), "nothing runs: only a resume moves the job")
		},
	}, {
		name: "resuming dispatches into the free slots and shows Upgrading and Resumed",
		run: func(g Gomega) {
			p, nodes, pods := running()
			p = suspendAt(p, c, true, nodes, pods, t0.Add(20*time.Second))
			succeed(nodes, pods, "node-00")
			p = suspendAt(p, c, true, nodes, pods, t0.Add(40*time.Second))
			r := suspendAt(p, c, false, nodes, pods, t0.Add(100*time.Second))
			g.Expect(dispatched(r)).To(Equal([]string{"node-02"}), "one slot free: node-01 still runs")
			g.Expect(r.Dispatch[0].Deadline).To(Equal(t0.Add(400 * time.Second)))
			g.Expect(r.Status.State).To(Equal(v1alpha1.StateUpgrading))
			g.Expect(r.Status.Time).To(Equal(t0.Add(100 * time.Second).Format(time.RFC3339)))
			g.Expect(condition(r, v1alpha1.ConditionSuspended)).To(HaveValue(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", ReasonResumed))))
			g.Expect(condition(r, v1alpha1.ConditionProgressing).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(eventReasons(r)).To(ConsistOf(ReasonResumed, ReasonDispatched))
			g.Expect(r.Events).To(ContainElement(HaveField("Message", "Job resumed: 3 pending, 2 in flight")))
		},
	}, {
		name: "a job never suspended has no Suspended condition",
		run: func(g Gomega) {
			p, _, _ := running()
			g.Expect(condition(p, v1alpha1.ConditionSuspended)).To(BeNil())
		},
	}, {
		name: "a finished job stays final: suspend changes nothing",
		run: func(g Gomega) {
			one := cfg(1, "1")
			nodes := fleet(1)
			p := start(one, names(1), nodes)
			nodes["node-00"] = edgeNode("v1.21.0")
			pods := map[string]PodView{"node-00": {Phase: PodSucceeded}}
			p = step(p, one, nodes, pods, t0.Add(time.Minute))
			g.Expect(p.Finished).To(BeTrue())
			s := suspendAt(p, one, true, nodes, pods, t0.Add(time.Hour))
			g.Expect(s.Status).To(Equal(p.Status))
			g.Expect(s.Events).To(BeEmpty())
			g.Expect(s.Finished).To(BeTrue())
		},
	}, {
		name: "nothing left to start: the last in-flight nodes finish and the job completes while suspended",
		run: func(g Gomega) {
			two := cfg(2, "0")
			nodes := fleet(2)
			p := start(two, names(2), nodes)
			pods := map[string]PodView{"node-00": {Phase: PodUpgrading}, "node-01": {Phase: PodUpgrading}}
			p = suspendAt(p, two, true, nodes, pods, t0.Add(10*time.Second))
			g.Expect(p.Status.State).To(Equal(v1alpha1.StateSuspended), "suspended while its last nodes run")
			succeed(nodes, pods, "node-00")
			succeed(nodes, pods, "node-01")
			s := suspendAt(p, two, true, nodes, pods, t0.Add(time.Minute))
			g.Expect(s.Finished).To(BeTrue())
			g.Expect(s.Status.State).To(Equal(v1alpha1.StateSuccessful))
			g.Expect(condition(s, v1alpha1.ConditionSuspended)).To(HaveValue(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "Finished"))))
			g.Expect(eventReasons(s)).To(ContainElement(ReasonJobCompleted))
		},
	}, {
		name: "failure tolerance applies to in-flight results: the job stops and fails while suspended",
		run: func(g Gomega) {
			strict := cfg(2, "0.2")
			nodes := fleet(6)
			p := start(strict, names(6), nodes)
			failed := PodView{Phase: PodFailed, FailedEvent: v1alpha1.EventRollback, Reason: "boom"}
			pods := map[string]PodView{"node-00": failed, "node-01": failed}
			s := suspendAt(p, strict, true, nodes, pods, t0.Add(time.Minute))
			g.Expect(s.Dispatch).To(BeEmpty())
			g.Expect(s.Status.Counts).To(Equal(v1alpha1.NodeCounts{Selected: 6, Failed: 2, NotAttempted: 4}))
			g.Expect(s.Status.State).To(Equal(v1alpha1.StateFailed))
			g.Expect(s.Finished).To(BeTrue())
			g.Expect(eventReasons(s)).To(ContainElements(ReasonToleranceExceeded, ReasonJobFailed))
		},
	}, {
		name: "an in-flight node still times out at its own deadline while suspended",
		run: func(g Gomega) {
			p, nodes, pods := running()
			p = suspendAt(p, c, true, nodes, pods, t0.Add(20*time.Second))
			s := suspendAt(p, c, true, nodes, pods, t0.Add(300*time.Second))
			g.Expect(entry(s, "node-00")).To(And(HaveField("State", v1alpha1.StateFailed), HaveField("Action", v1alpha1.ActionTimeOut)))
			g.Expect(s.Deletions()).To(ConsistOf("node-00", "node-01"), "cancelled as usual")
			g.Expect(s.Dispatch).To(BeEmpty())
		},
	}, {
		name: "a dispatch recorded before the suspension still gets its pod",
		run: func(g Gomega) {
			p, nodes, pods := running()
			delete(pods, "node-01") // recorded in status, pod not created yet
			s := suspendAt(p, c, true, nodes, pods, t0.Add(20*time.Second))
			g.Expect(s.Dispatch).To(Equal([]Dispatch{{Node: "node-01", FromVersion: "v1.20.0", Deadline: t0.Add(300 * time.Second)}}),
				"not a new start: the node is in flight since t0, under its own deadline")
		},
	}, {
		name: "a job created suspended records its selection and starts nothing",
		run: func(g Gomega) {
			held := c
			held.Suspended = true
			nodes := fleet(3)
			nodes["node-02"] = edgeNode("v1.21.0")
			p := start(held, names(3), nodes)
			g.Expect(p.Dispatch).To(BeEmpty())
			g.Expect(p.Status.NodeStatus).To(HaveLen(3))
			g.Expect(entry(p, "node-02").State).To(Equal(v1alpha1.StateSuccessful), "a node already at the target is settled, not started")
			g.Expect(p.Status.State).To(Equal(v1alpha1.StateSuspended))
			g.Expect(eventReasons(p)).To(ContainElements(ReasonStarted, ReasonNodeSkipped, ReasonSuspended))
			g.Expect(eventReasons(p)).NotTo(ContainElement(ReasonDispatched))
		},
	}, {
		name: "a deferral's clock does not run while suspended: it starts afresh on resume",
		run: func(g Gomega) {
			nodes := fleet(4)
			offline := nodes["node-00"]
			offline.Ready = false
			nodes["node-00"] = offline
			p := start(c, names(4), nodes) // node-00 deferred at t0; node-01, node-02 dispatched
			g.Expect(entry(p, "node-00").Time).To(Equal(t0.Format(time.RFC3339)))
			pods := map[string]PodView{"node-01": {Phase: PodUpgrading}, "node-02": {Phase: PodUpgrading}}
			s := suspendAt(p, c, true, nodes, pods, t0.Add(200*time.Second))
			g.Expect(entry(s, "node-00")).To(And(HaveField("State", v1alpha1.StateNone), HaveField("Time", ""), HaveField("Reason", "")))
			succeed(nodes, pods, "node-01")
			succeed(nodes, pods, "node-02")
			s = suspendAt(s, c, true, nodes, pods, t0.Add(250*time.Second))
			s = suspendAt(s, c, true, nodes, pods, t0.Add(time.Hour))
			g.Expect(entry(s, "node-00").State).To(Equal(v1alpha1.StateNone), "an hour NotReady while suspended does not fail it")
			g.Expect(s.RequeueAfter).To(BeZero(), "no deferral deadline to wake for")

			// Resumed, still NotReady: its turn, the wait starts now with the whole timeout.
			resumedAt := t0.Add(time.Hour + time.Second)
			r := suspendAt(s, c, false, nodes, pods, resumedAt)
			g.Expect(dispatched(r)).To(Equal([]string{"node-03"}), "the deferred node holds no slot")
			g.Expect(entry(r, "node-00")).To(And(HaveField("Time", resumedAt.Format(time.RFC3339)), HaveField("Reason", "deferred: node is NotReady")))
			g.Expect(eventReasons(r)).To(ContainElements(ReasonResumed, ReasonNodeDeferred))
			g.Expect(entry(step(r, c, nodes, pods, resumedAt.Add(299*time.Second)), "node-00").State).To(Equal(v1alpha1.StateNone))
			g.Expect(entry(step(r, c, nodes, pods, resumedAt.Add(300*time.Second)), "node-00")).
				To(And(HaveField("State", v1alpha1.StateFailed), HaveField("Reason", "node stayed NotReady for 5m0s")))
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(NewWithT(t)) })
	}
}

func TestMayStartNodes(t *testing.T) {
	g := NewWithT(t)
	g.Expect(MayStartNodes(v1alpha1.NodeUpgradeJobStatus{}, nil)).To(BeTrue(), "a new job selects and starts nodes")
	running := v1alpha1.NodeUpgradeJobStatus{State: v1alpha1.StateUpgrading, NodeStatus: []v1alpha1.TaskStatus{
		{NodeName: "a", State: v1alpha1.StateUpgrading}, {NodeName: "b", State: v1alpha1.StateSuccessful},
	}}
	pods := map[string]PodView{"a": {Phase: PodUpgrading}}
	g.Expect(MayStartNodes(running, pods)).To(BeFalse(), "every node started or done")
	g.Expect(MayStartNodes(running, nil)).To(BeTrue(), "a's pod is to be created (again), and may be refused as busy")
	running.NodeStatus = append(running.NodeStatus, v1alpha1.TaskStatus{NodeName: "c"})
	g.Expect(MayStartNodes(running, pods)).To(BeTrue(), "c is pending")
	g.Expect(MayStartNodes(v1alpha1.NodeUpgradeJobStatus{State: v1alpha1.StateFailed}, nil)).To(BeFalse(), "a job refused before its first write has no node to start")
}
