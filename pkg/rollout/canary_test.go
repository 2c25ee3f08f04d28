package rollout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

func canaryNodes(p Plan) []string {
	out := []string{}
	for _, e := range p.Status.NodeStatus {
		if e.Canary {
			out = append(out, e.NodeName)
		}
	}
	return out
}

// TestCanaryWave: which nodes form the wave, among those that need the
// upgrade (a node already at the target is not one), and that only they
// start.
func TestCanaryWave(t *testing.T) {
	nodes := fleet(10)
	done := nodes["node-00"]
	done.Version = "v1.21.0"
	nodes["node-00"] = done
	for _, n := range []string{"node-05", "node-07"} {
		v := nodes[n]
		v.Canary = true // spec.canary.selector matches it
		nodes[n] = v
	}
	cases := []struct {
		name   string
		canary CanaryConfig
		want   []string
	}{
		{"count", CanaryConfig{Count: 2}, []string{"node-01", "node-02"}},
		{"percent rounds up", CanaryConfig{Percent: 20}, []string{"node-01", "node-02"}}, // 20% of 9 = 1.8
		{"percent at least one", CanaryConfig{Percent: 1}, []string{"node-01"}},
		{"count above the nodes to upgrade takes them all", CanaryConfig{Count: 20}, names(10)[1:]},
		{"selector", CanaryConfig{Selector: true}, []string{"node-05", "node-07"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			conf := cfg(10, "0")
			conf.Canary = &c.canary
			p := start(conf, names(10), nodes)
			g.Expect(canaryNodes(p)).To(Equal(c.want))
			g.Expect(dispatched(p)).To(Equal(c.want), "only the wave starts")
			cond := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionCanary)
			g.Expect(cond).NotTo(BeNil())
			g.Expect(cond.Reason).To(Equal(v1alpha1.CanaryInProgress))
		})
	}
}

// TestCanaryWithoutNodesPauses: a selector that matches no node to
// upgrade pauses the job before anything starts, rather than run it all
// without a canary.
func TestCanaryWithoutNodesPauses(t *testing.T) {
	g := NewWithT(t)
	conf := cfg(2, "0")
	conf.Canary = &CanaryConfig{Selector: true}
	p := start(conf, names(3), fleet(3))
	g.Expect(p.Dispatch).To(BeEmpty())
	g.Expect(p.SetSuspend).NotTo(BeNil())
	g.Expect(*p.SetSuspend).To(BeTrue())
	conf.Suspended = true
	p = start(conf, names(3), fleet(3))
	cond := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionCanary)
	g.Expect(cond.Reason).To(Equal(v1alpha1.CanaryFailed))
	g.Expect(cond.Message).To(ContainSubstring("matches none"))
}

// TestOptOutLabelSkips: a node labelled out of upgrades is skipped with
// that reason, at the start or later, while it waits for its turn.
func TestOptOutLabelSkips(t *testing.T) {
	g := NewWithT(t)
	nodes := fleet(3)
	out := nodes["node-01"]
	out.OptedOut = true
	nodes["node-01"] = out
	p := start(cfg(1, "0"), names(3), nodes)
	g.Expect(entry(p, "node-01").State).To(Equal(v1alpha1.StateSkipped))
	g.Expect(entry(p, "node-01").Reason).To(ContainSubstring(v1alpha1.LabelOptOut))

	later := nodes["node-02"]
	later.OptedOut = true
	nodes["node-02"] = later
	p = Decide(Input{Config: cfg(1, "0"), Status: p.Status, Nodes: nodes, Now: t0})
	g.Expect(entry(p, "node-02").State).To(Equal(v1alpha1.StateSkipped))
}

// TestCanaryEndedByAnExpiredDeferral: a canary node NotReady for its whole
// timeout fails, which ends the wave in the same plan that asks for
// spec.suspend. The result is in that plan's status (Pausing), so the plan
// made once the job is suspended, in which no deferral expires, still
// pauses the job rather than wait for ever. (Found by the simulation: the
// first design wrote nothing before spec.suspend was set.)
func TestCanaryEndedByAnExpiredDeferral(t *testing.T) {
	g := NewWithT(t)
	c := cfg(2, "0")
	c.Canary = &CanaryConfig{Count: 1}
	nodes := fleet(3)
	down := nodes["node-00"]
	down.Ready = false
	nodes["node-00"] = down
	p := start(c, names(3), nodes)
	g.Expect(entry(p, "node-00").Reason).To(ContainSubstring("NotReady"))
	p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, Now: t0.Add(c.Timeout)})
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateFailed))
	g.Expect(p.SetSuspend).NotTo(BeNil())
	g.Expect(meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionCanary).Reason).To(Equal(v1alpha1.CanaryPausing))
	g.Expect(p.Dispatch).To(BeEmpty(), "nothing else starts while the job is being suspended")

	c.Suspended = true
	p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, Now: t0.Add(c.Timeout + time.Second)})
	cond := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionCanary)
	g.Expect(cond.Reason).To(Equal(v1alpha1.CanaryFailed))
	g.Expect(p.SetSuspend).To(BeNil())
	g.Expect(p.Status.State).To(Equal(v1alpha1.StateSuspended))
}

// TestCanaryPausingIsNotAResume: a plan that finds the wave's result
// recorded (Pausing) but spec.suspend not yet set asks for it again; it
// starts nothing and does not take the job for resumed.
func TestCanaryPausingIsNotAResume(t *testing.T) {
	g := NewWithT(t)
	c := cfg(2, "0")
	c.Canary = &CanaryConfig{Count: 1}
	p := start(c, names(3), fleet(3))
	nodes := fleet(3)
	nodes["node-00"] = edgeNode("v1.21.0")
	done := Decide(Input{Config: c, Status: p.Status, Nodes: nodes, Pods: map[string]PodView{"node-00": {Phase: PodSucceeded}}, Now: t0.Add(time.Minute)})
	g.Expect(done.SetSuspend).NotTo(BeNil())
	again := Decide(Input{Config: c, Status: done.Status, Nodes: nodes, Now: t0.Add(2 * time.Minute)})
	g.Expect(again.SetSuspend).NotTo(BeNil())
	g.Expect(*again.SetSuspend).To(BeTrue())
	g.Expect(again.Dispatch).To(BeEmpty())
	g.Expect(meta.FindStatusCondition(again.Status.Conditions, v1alpha1.ConditionCanary).Reason).To(Equal(v1alpha1.CanaryPausing))
}
