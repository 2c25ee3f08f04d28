package rollout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

func staging(concurrency, stageConcurrency int) Config {
	c := cfg(concurrency, "1")
	c.PreStage = &StageConfig{Concurrency: stageConcurrency}
	return c
}

func staged(p Plan) []string {
	var out []string
	for _, s := range p.Stage {
		out = append(out, s.Node)
	}
	return out
}

func stages(p Plan) map[string]string {
	out := map[string]string{}
	for _, e := range p.Status.NodeStatus {
		out[e.NodeName] = e.Stage
	}
	return out
}

// Staging starts with the job at its own concurrency, and a node is
// dispatched only once staged.
func TestPreStageGatesDispatch(t *testing.T) {
	g := NewWithT(t)
	c := staging(1, 2)
	nodes := fleet(3)
	p := start(c, names(3), nodes)
	g.Expect(staged(p)).To(Equal([]string{"node-00", "node-01"}), "two stage at once, the job's concurrency is 1")
	g.Expect(dispatched(p)).To(BeEmpty(), "nothing is upgraded before it is staged")
	g.Expect(stages(p)).To(Equal(map[string]string{"node-00": v1alpha1.StageStaging, "node-01": v1alpha1.StageStaging, "node-02": ""}))
	g.Expect(entry(p, "node-00").Reason).To(Equal(stagingReason))

	// node-01 staged first: it is dispatched, node-02 starts staging.
	sp := map[string]PodView{"node-00": {Phase: PodPending}, "node-01": {Phase: PodSucceeded}}
	p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, StagePods: sp, Now: t0.Add(5 * time.Second)})
	g.Expect(dispatched(p)).To(Equal([]string{"node-01"}))
	g.Expect(staged(p)).To(Equal([]string{"node-02"}))
	g.Expect(p.StageDelete).To(Equal([]string{"node-01"}), "a staged node's stage pod goes")
	g.Expect(eventReasons(p)).To(ContainElement(ReasonNodeStaged))
	g.Expect(entry(p, "node-01").Stage).To(Equal(v1alpha1.StageStaged))

	// node-00 staged while node-01 holds the only slot: it waits its turn.
	sp = map[string]PodView{"node-00": {Phase: PodSucceeded}, "node-02": {Phase: PodPending, Reason: "pulling"}}
	pods := map[string]PodView{"node-01": {Phase: PodUpgrading, Tracked: true}}
	p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, Pods: pods, StagePods: sp, Now: t0.Add(10 * time.Second)})
	g.Expect(dispatched(p)).To(BeEmpty())
	g.Expect(entry(p, "node-00").Stage).To(Equal(v1alpha1.StageStaged))
	g.Expect(entry(p, "node-02").Reason).To(Equal(stagingReason + ": pulling"))
}

// A refused pull fails the node at once, with the registry's words; a
// NotReady node stages once it is Ready; a lost stage pod is asked again.
func TestPreStageFailuresAndWaits(t *testing.T) {
	g := NewWithT(t)
	c := staging(2, 5)
	nodes := fleet(3)
	nodes["node-02"] = NodeView{Exists: true, Edge: true, Ready: false, Version: "v1.20.0"}
	p := start(c, names(3), nodes)
	g.Expect(staged(p)).To(Equal([]string{"node-00", "node-01"}), "not the NotReady node")

	sp := map[string]PodView{"node-00": {Phase: PodPending, Pull: PullRefused, Reason: "pulling image x: not found"}}
	p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, StagePods: sp, Now: t0.Add(5 * time.Second)})
	e := entry(p, "node-00")
	g.Expect(e.State).To(Equal(v1alpha1.StateFailed))
	g.Expect(e.Stage).To(Equal(v1alpha1.StageFailed))
	g.Expect(e.Reason).To(Equal("staging failed, nothing on the node changed: pulling image x: not found"))
	g.Expect(eventReasons(p)).To(ContainElements(ReasonNodeStageFailed, ReasonNodeFailed))
	g.Expect(p.StageDelete).To(ContainElement("node-00"))
	g.Expect(staged(p)).To(Equal([]string{"node-01"}), "node-01's pod is not seen yet: asked for again")

	nodes["node-02"] = edgeNode("v1.20.0")
	p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, StagePods: map[string]PodView{"node-01": {Phase: PodPending}},
		Now: t0.Add(10 * time.Second)})
	g.Expect(staged(p)).To(Equal([]string{"node-02"}), "Ready now: it stages")
}

// A job that finishes deletes whatever stage pods are left; a job without
// preStage has no stage at all.
func TestPreStageEndsWithTheJob(t *testing.T) {
	g := NewWithT(t)
	p := start(cfg(1, "1"), names(1), fleet(1))
	g.Expect(p.Stage).To(BeEmpty())
	g.Expect(entry(p, "node-00").Stage).To(BeEmpty())
	g.Expect(dispatched(p)).To(Equal([]string{"node-00"}))

	c := staging(1, 1)
	nodes := fleet(1)
	p = start(c, names(1), nodes)
	p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, StagePods: map[string]PodView{"node-00": {Phase: PodSucceeded}}, Now: t0.Add(time.Second)})
	g.Expect(dispatched(p)).To(Equal([]string{"node-00"}))
	nodes["node-00"] = edgeNode(c.TargetVersion)
	p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, Pods: map[string]PodView{"node-00": {Phase: PodSucceeded, Tracked: true}},
		StagePods: map[string]PodView{"node-00": {Phase: PodSucceeded}}, Now: t0.Add(20 * time.Second)})
	g.Expect(p.Finished).To(BeTrue())
	g.Expect(p.StageDelete).To(Equal([]string{"node-00"}))
	p = Decide(Input{Config: c, Status: p.Status, Nodes: nodes, StagePods: map[string]PodView{"node-00": {Phase: PodSucceeded}}, Now: t0.Add(30 * time.Second)})
	g.Expect(p.StageDelete).To(Equal([]string{"node-00"}), "a finished job still deletes a stage pod it finds")
}
