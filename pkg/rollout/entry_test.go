package rollout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// A clock whose start cannot be read (a hand-edited status) starts again at
// the plan that finds it, and the entry records that start: it neither runs
// out at once nor never.
func TestUnreadableClocksStartAgain(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "1")
	nodes := fleet(2)
	offline := nodes["node-01"]
	offline.Ready = false
	nodes["node-01"] = offline
	now := t0.Add(time.Hour)
	stamp := now.Format(time.RFC3339)
	status := v1alpha1.NodeUpgradeJobStatus{State: v1alpha1.StateUpgrading, NodeStatus: []v1alpha1.TaskStatus{
		{NodeName: "node-00", State: v1alpha1.StateUpgrading, Event: v1alpha1.EventUpgrade, Time: "yesterday"},
		{NodeName: "node-01", Event: v1alpha1.EventInit, Reason: "deferred: node is NotReady", Time: "yesterday"},
	}}
	p := Decide(Input{Config: c, Status: status, Nodes: nodes, Pods: map[string]PodView{"node-00": {Phase: PodUpgrading}}, Now: now})
	g.Expect(entry(p, "node-00")).To(And(HaveField("State", v1alpha1.StateUpgrading), HaveField("Time", stamp)), "in flight, its clock started now")
	g.Expect(entry(p, "node-01")).To(And(HaveField("State", v1alpha1.StateNone), HaveField("Time", stamp)), "deferred, its wait started now")
	g.Expect(p.RequeueAfter).To(Equal(c.Timeout), "both run out a whole timeout from now")
}
