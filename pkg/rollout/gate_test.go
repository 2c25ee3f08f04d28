package rollout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

func gated(soak time.Duration, podSelector string) Config {
	c := cfg(1, "1")
	c.Gate = &GateConfig{Soak: soak, PodSelector: podSelector}
	return c
}

// upgradedTo is the node once its pod has upgraded it to the target.
func upgradedTo(c Config) NodeView { return edgeNode(c.TargetVersion) }

// intoGate runs a one-node gated job until its node soaks: dispatched at
// t0, its pod succeeded and the node on the target at t0+20s.
func intoGate(t *testing.T, c Config) (Plan, map[string]NodeView, map[string]PodView, time.Time) {
	t.Helper()
	nodes := fleet(1)
	p := start(c, names(1), nodes)
	pods := map[string]PodView{"node-00": {Phase: PodSucceeded, Tracked: true}}
	nodes["node-00"] = upgradedTo(c)
	at := t0.Add(20 * time.Second)
	p = step(p, c, nodes, pods, at)
	e := entry(p, "node-00")
	if e.State != v1alpha1.StateVerifying {
		t.Fatalf("node state %q, want %s: %s", e.State, v1alpha1.StateVerifying, e.Reason)
	}
	return p, nodes, pods, at
}

// The health gate's decisions, one row per way a soak ends. The clock is
// the plan's input: each row moves it, nothing sleeps.
func TestHealthGate(t *testing.T) {
	const soak = 60 * time.Second
	cases := []struct {
		name     string
		selector string
		// after is how long after the soak began the plan is made, with
		// node and pods as they are then.
		after    time.Duration
		node     func(NodeView) NodeView
		gatePods string
		// unreadable: the pods could not be read.
		unreadable bool
		// want is the node's state; wantEvent its event.
		want, wantEvent string
		wantReason      string
		wantRollback    bool
		wantWake        time.Duration
	}{
		{name: "still soaking", after: 30 * time.Second, want: v1alpha1.StateVerifying, wantEvent: v1alpha1.EventHealthGate,
			wantReason: "soaking until 2026-11-27T10:01:20Z", wantWake: 30 * time.Second},
		{name: "passed at the soak's end", after: soak, want: v1alpha1.StateSuccessful, wantEvent: v1alpha1.EventUpgrade},
		{name: "passed with its pods Running and Ready", selector: "app=web", after: soak, want: v1alpha1.StateSuccessful,
			wantEvent: v1alpha1.EventUpgrade},
		{name: "pods not Ready at the soak's end", selector: "app=web", after: soak, gatePods: "default/web-1 is Pending",
			want: v1alpha1.StateRollingBack, wantEvent: v1alpha1.EventHealthGate, wantRollback: true,
			wantReason: `health gate failed: after its soak of 1m0s, pods "app=web" on the node are not Running and Ready: default/web-1 is Pending`},
		{name: "pods that cannot be read hold the node in its gate", selector: "app=web", after: soak, gatePods: "the API server is away",
			unreadable: true, want: v1alpha1.StateVerifying, wantEvent: v1alpha1.EventHealthGate, wantReason: "could not be read: the API server is away",
			wantWake: BusyRecheck},
		{name: "pods that cannot be read within the timeout after the soak fail the gate", selector: "app=web", after: soak + 300*time.Second,
			gatePods: "pods is forbidden", unreadable: true, want: v1alpha1.StateRollingBack, wantEvent: v1alpha1.EventHealthGate,
			wantRollback: true, wantReason: `could not be read within 5m0s after its soak of 1m0s: pods is forbidden`},
		{name: "pods not looked at before the soak's end", selector: "app=web", after: 59 * time.Second, gatePods: "default/web-1 is Pending",
			want: v1alpha1.StateVerifying, wantEvent: v1alpha1.EventHealthGate, wantWake: time.Second},
		{name: "NotReady during the soak", after: 10 * time.Second, node: func(n NodeView) NodeView { n.Ready = false; return n },
			want: v1alpha1.StateRollingBack, wantEvent: v1alpha1.EventHealthGate, wantRollback: true,
			wantReason: "health gate failed: the node reports v1.21.0 and is NotReady during its soak of 1m0s"},
		{name: "back on the old version during the soak", after: 10 * time.Second,
			node: func(n NodeView) NodeView { n.Version = "v1.20.0"; return n },
			want: v1alpha1.StateRollingBack, wantEvent: v1alpha1.EventHealthGate, wantRollback: true,
			wantReason: "health gate failed: the node reports v1.20.0 during its soak"},
		{name: "gone during the soak", after: 10 * time.Second, node: func(NodeView) NodeView { return NodeView{} },
			want: v1alpha1.StateRollingBack, wantEvent: v1alpha1.EventHealthGate, wantRollback: true,
			wantReason: "health gate failed: the node no longer exists"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := gated(soak, tc.selector)
			p, nodes, pods, began := intoGate(t, c)
			g.Expect(p.Status.Counts.InFlight).To(Equal(int32(1)), "a soaking node holds its slot")
			g.Expect(p.Finished).To(BeFalse())
			g.Expect(p.RequeueAfter).To(Equal(soak), "woken at the soak's end")
			if tc.node != nil {
				nodes["node-00"] = tc.node(nodes["node-00"])
			}
			in := Input{Config: c, Status: p.Status, Nodes: nodes, Pods: pods, Now: began.Add(tc.after)}
			asked := 0
			in.GatePods = func(node string) (string, bool) { asked++; return tc.gatePods, !tc.unreadable }
			p = Decide(in)
			e := entry(p, "node-00")
			g.Expect(e.State).To(Equal(tc.want), e.Reason)
			g.Expect(e.Event).To(Equal(tc.wantEvent))
			g.Expect(e.Reason).To(ContainSubstring(tc.wantReason))
			if tc.selector == "" || tc.after < soak {
				g.Expect(asked).To(BeZero(), "pods are looked at only at the soak's end, when the job names a selector")
			}
			var rollbacks []Dispatch
			for _, d := range p.Dispatch {
				if d.Rollback {
					rollbacks = append(rollbacks, d)
				}
			}
			if tc.wantRollback {
				g.Expect(rollbacks).To(HaveLen(1))
				g.Expect(rollbacks[0].Deadline).To(Equal(began.Add(tc.after).Add(c.Timeout)), "the rollback has the job's timeout")
				g.Expect(eventReasons(p)).To(ContainElement(ReasonNodeGateFailed))
				g.Expect(p.Finished).To(BeFalse(), "the rollback holds the job")
			} else {
				g.Expect(rollbacks).To(BeEmpty())
			}
			if tc.want == v1alpha1.StateSuccessful {
				g.Expect(e.Action).To(Equal(v1alpha1.ActionSuccess))
				g.Expect(p.Finished).To(BeTrue())
				g.Expect(p.Status.State).To(Equal(v1alpha1.StateSuccessful))
			}
			if tc.wantWake > 0 {
				g.Expect(p.RequeueAfter).To(Equal(tc.wantWake))
			}
		})
	}
}

// A node that failed its gate ends Failed once its rollback pod has run and
// the Node is back on an older version; its reason keeps why the gate
// failed. Each way the rollback can end is a row.
func TestHealthGateRollback(t *testing.T) {
	const soak = 60 * time.Second
	cases := []struct {
		name       string
		pod        *PodView // the rollback pod
		node       NodeView
		after      time.Duration
		want       string
		wantAction string
		wantEvent  string
		wantReason string
		wantAgain  bool // the rollback pod is asked for (again)
	}{
		{name: "no rollback pod yet: asked for", node: edgeNode("v1.21.0"), after: 5 * time.Second,
			want: v1alpha1.StateRollingBack, wantAgain: true},
		{name: "rollback pod running", pod: &PodView{Phase: PodUpgrading},
			node: edgeNode("v1.21.0"), after: 5 * time.Second, want: v1alpha1.StateRollingBack},
		{name: "rollback pod detached, node back on the old version", pod: &PodView{Phase: PodDetached},
			node: edgeNode("v1.20.0"), after: 20 * time.Second, want: v1alpha1.StateFailed, wantAction: v1alpha1.ActionFailure,
			wantEvent: v1alpha1.EventRollback, wantReason: "; rollback succeeded, the node is back on v1.20.0"},
		{name: "rollback pod still shows running, node back on the old version (real edgecore)",
			pod:  &PodView{Phase: PodUpgrading},
			node: edgeNode("v1.20.0"), after: 20 * time.Second, want: v1alpha1.StateFailed, wantAction: v1alpha1.ActionFailure,
			wantEvent: v1alpha1.EventRollback, wantReason: "; rollback succeeded, the node is back on v1.20.0"},
		{name: "rollback pod succeeded, node not yet back", pod: &PodView{Phase: PodSucceeded},
			node: edgeNode("v1.21.0"), after: 20 * time.Second, want: v1alpha1.StateRollingBack},
		{name: "rollback failed on the node", pod: &PodView{Phase: PodFailed, Reason: "rollback failed too, the node needs attention"},
			node: edgeNode("v1.21.0"), after: 20 * time.Second, want: v1alpha1.StateFailed, wantAction: v1alpha1.ActionFailure,
			wantEvent: v1alpha1.EventRollback, wantReason: "needs attention"},
		{name: "rollback never confirmed within the timeout", pod: &PodView{Phase: PodDetached},
			node: edgeNode("v1.21.0"), after: 300 * time.Second, want: v1alpha1.StateFailed, wantAction: v1alpha1.ActionFailure,
			wantEvent: v1alpha1.EventRollback, wantReason: "within 5m0s of the rollback the node reports v1.21.0, not an older version and Ready: the node needs attention"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := gated(soak, "")
			p, nodes, pods, began := intoGate(t, c)
			nodes["node-00"] = NodeView{Exists: true, Edge: true, Ready: false, Version: "v1.21.0"}
			failedAt := began.Add(10 * time.Second)
			p = step(p, c, nodes, pods, failedAt) // NotReady: the gate fails
			g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateRollingBack))

			nodes["node-00"] = tc.node
			rollbackPods := map[string]PodView{}
			if tc.pod != nil {
				rollbackPods["node-00"] = *tc.pod
			}
			p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, Pods: pods, RollbackPods: rollbackPods, Now: failedAt.Add(tc.after)})
			e := entry(p, "node-00")
			g.Expect(e.State).To(Equal(tc.want), e.Reason)
			g.Expect(e.Action).To(Equal(tc.wantAction))
			g.Expect(e.Reason).To(HavePrefix(gateFailedPrefix + "the node reports v1.21.0 and is NotReady"))
			g.Expect(e.Reason).To(ContainSubstring(tc.wantReason))
			if tc.wantEvent != "" {
				g.Expect(e.Event).To(Equal(tc.wantEvent))
				g.Expect(p.Finished).To(BeTrue())
				g.Expect(p.Status.Counts.Failed).To(Equal(int32(1)), "a node that failed its gate counts as failed")
				if tc.pod != nil {
					g.Expect(p.RollbackDelete).To(Equal([]string{"node-00"}), "the rollback pod goes once the node is final")
				}
			}
			again := false
			for _, d := range p.Dispatch {
				again = again || d.Rollback
			}
			g.Expect(again).To(Equal(tc.wantAgain))
			if tc.want == v1alpha1.StateFailed && tc.wantEvent == v1alpha1.EventRollback {
				// KubeEdge's action flow shows the rollback.
				g.Expect(e.ActionFlow).To(ContainElement(HaveField("Action", v1alpha1.FlowRollBack)))
			}
		})
	}
}

// Without a gate a node counts as upgraded the moment it reports the target
// and Ready (as before); a gate's spec is parsed and checked.
func TestHealthGateConfig(t *testing.T) {
	g := NewWithT(t)
	nodes := fleet(1)
	c := cfg(1, "1")
	p := start(c, names(1), nodes)
	nodes["node-00"] = upgradedTo(c)
	p = step(p, c, nodes, map[string]PodView{"node-00": {Phase: PodSucceeded, Tracked: true}}, t0.Add(20*time.Second))
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateSuccessful))

	spec := &v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0", HealthGate: &v1alpha1.HealthGate{SoakSeconds: 90,
		PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	got, err := ConfigFromSpec(spec)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(*got.Gate).To(Equal(GateConfig{Soak: 90 * time.Second, PodSelector: "app=web"}))

	spec.HealthGate.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Bogus"}}}
	_, err = ConfigFromSpec(spec)
	g.Expect(err).To(MatchError(ContainSubstring("spec.healthGate.podSelector")))
	spec.HealthGate = &v1alpha1.HealthGate{SoakSeconds: 0}
	_, err = ConfigFromSpec(spec)
	g.Expect(err).To(MatchError(ContainSubstring("spec.healthGate.soakSeconds")))
}
