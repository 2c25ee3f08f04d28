package rollout

import (
	"slices"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// Pre-staging (spec.preStage). From the job's first plan, each pending node
// gets a stage pod that only pulls the installation package and the runner
// image, at most StageConfig.Concurrency nodes at a time, independent of
// the upgrade's concurrency; its entry's stage goes Staging, then Staged
// (or Failed, with the pull's words as the node's reason, and the node
// fails). A node is dispatched only once Staged: its upgrade pod then finds
// both images on the node (they are pulled IfNotPresent) and pulls nothing.
// A stage pod is deleted once its node is Staged or no longer pending; the
// images stay on the node. A NotReady node is staged once it is Ready.

// StageConfig is spec.preStage, parsed.
type StageConfig struct {
	// Concurrency is how many nodes stage at a time.
	Concurrency int
	// WindowsOnly is spec.preStage.windowsOnly: stage a node only inside
	// the job's maintenance windows, read in the node's zone as for its
	// dispatch (planner.nodeWindow). Without windows it changes nothing.
	WindowsOnly bool
}

// DefaultStageConcurrency is spec.preStage.concurrency's default (the CRD's).
const DefaultStageConcurrency = 10

func stageConfig(s *v1alpha1.PreStage) *StageConfig {
	if s == nil {
		return nil
	}
	c := &StageConfig{Concurrency: int(s.Concurrency), WindowsOnly: s.WindowsOnly}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultStageConcurrency
	}
	return c
}

// StageDispatch asks for one node's stage pod.
type StageDispatch struct {
	Node string
	// ImageDigest is the digest the node pulls the install image by, as its
	// upgrade pod will ("" when the job pins none).
	ImageDigest string
}

// Event reasons of pre-staging.
const (
	ReasonNodeStaged      = "NodeStaged"
	ReasonNodeStageFailed = "NodeStageFailed"
)

// stagingReason is the reason of a pending node that waits for its staging.
const stagingReason = "staging: pulling the installation package and the runner image"

// stage follows and starts the stage pods of pending nodes.
func (p *planner) stage() {
	c := p.in.Config.PreStage
	if c == nil {
		return
	}
	// Follow the nodes staging first, so that the slots of those done free
	// up for others in the same plan.
	staging := 0
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		pod, hasPod := p.in.StagePods[e.NodeName]
		switch {
		case e.State != v1alpha1.StateNone || e.Stage == v1alpha1.StageStaged || e.Stage == v1alpha1.StageFailed:
			// Started, skipped, final or staged: its stage pod has nothing
			// more to do.
			if hasPod {
				p.plan.StageDelete = append(p.plan.StageDelete, e.NodeName)
			}
		case e.Stage == v1alpha1.StageStaging:
			p.followStage(e, pod, hasPod)
			if e.Stage == v1alpha1.StageStaging {
				staging++
			}
		}
	}
	if p.in.Config.DigestsUnresolved != "" {
		// The digests are read from the registry before any node starts:
		// a stage pod started now would pull by tag what the node will not
		// be upgraded with.
		return
	}
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		if e.State != v1alpha1.StateNone || e.Stage != "" || staging >= c.Concurrency {
			continue
		}
		node := p.in.Nodes[e.NodeName]
		digest, why := p.in.Config.pinnedDigest(node.Arch)
		if !node.Exists || !node.Ready || why != "" {
			continue // staged once Ready; a node its digests refuse fails in startPending
		}
		if c.WindowsOnly && len(p.in.Config.Windows) > 0 {
			if st, why := p.nodeWindow(node); why != "" || !st.open {
				continue // staged in its window, read in its zone (windows.go)
			}
		}
		staging++
		e.Stage, e.Reason = v1alpha1.StageStaging, stagingReason
		p.plan.Stage = append(p.plan.Stage, StageDispatch{Node: e.NodeName, ImageDigest: digest})
	}
}

// followStage reads a staging node's stage pod.
func (p *planner) followStage(e *v1alpha1.TaskStatus, pod PodView, hasPod bool) {
	switch {
	case !hasPod:
		// Being created, or lost: asking again is idempotent.
		node := p.in.Nodes[e.NodeName]
		digest, _ := p.in.Config.DigestFor(node.Arch)
		p.plan.Stage = append(p.plan.Stage, StageDispatch{Node: e.NodeName, ImageDigest: digest})
	case pod.Phase == PodSucceeded:
		e.Stage, e.Reason = v1alpha1.StageStaged, ""
		p.normalEvent(ReasonNodeStaged, e.NodeName, "Node %s staged: it holds the installation package and the runner image", e.NodeName)
		p.plan.StageDelete = append(p.plan.StageDelete, e.NodeName)
	case pod.Pull == PullRefused || pod.Phase == PodFailed || pod.Deleting:
		why := pod.Reason
		if why == "" {
			why = "the stage pod ended without pulling"
		}
		e.Stage = v1alpha1.StageFailed
		p.warningEvent(ReasonNodeStageFailed, e.NodeName, "Node %s could not stage: %s", e.NodeName, why)
		p.fail(e, failure{at: v1alpha1.EventInit, why: "staging failed, nothing on the node changed: " + why})
		p.plan.StageDelete = append(p.plan.StageDelete, e.NodeName)
	default:
		e.Reason = stagingReason
		if pod.Reason != "" {
			e.Reason += ": " + pod.Reason
		}
	}
}

// notStaged reports whether a pending node of a pre-staging job must wait
// for its staging before it may start.
func (p *planner) notStaged(e *v1alpha1.TaskStatus) bool {
	return p.in.Config.PreStage != nil && e.Stage != v1alpha1.StageStaged
}

// dropStagePods deletes the stage pods of a finished job.
func (p *planner) dropStagePods() {
	for node := range p.in.StagePods {
		p.plan.StageDelete = append(p.plan.StageDelete, node)
	}
	slices.Sort(p.plan.StageDelete)
}
