package rollout

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// CanaryConfig is spec.canary, parsed: exactly one of Count, Percent and
// Selector says which nodes form the first wave.
type CanaryConfig struct {
	Count, Percent int
	Selector       bool
	// Soak, when not 0, resumes the job that long after a wave in which
	// every node succeeded.
	Soak time.Duration
}

func canaryConfig(c *v1alpha1.Canary) *CanaryConfig {
	if c == nil {
		return nil
	}
	cfg := &CanaryConfig{Selector: c.Selector != nil, Soak: time.Duration(min(max(c.SoakSeconds, 0), v1alpha1.MaxTimeoutSeconds)) * time.Second}
	switch {
	case c.Count != nil:
		cfg.Count = max(int(*c.Count), 1)
	case c.Percent != nil:
		cfg.Percent = min(max(int(*c.Percent), 1), 100)
	case !cfg.Selector:
		cfg.Count = 1 // the CRD refuses this; an older object gets the smallest wave
	}
	return cfg
}

// canarySelector is spec.canary.selector, read only while the job has not
// started (the wave is chosen once); nil otherwise.
func canarySelector(job *v1alpha1.NodeUpgradeJob) (labels.Selector, error) {
	if job.Spec.Canary == nil || job.Spec.Canary.Selector == nil || Initialized(job.Status) {
		return nil, nil
	}
	s, err := metav1.LabelSelectorAsSelector(job.Spec.Canary.Selector)
	if err != nil {
		return nil, fmt.Errorf("spec.canary.selector: %w", err)
	}
	return s, nil
}

// markCanary chooses the canary wave when the job starts, among the nodes
// that need the upgrade: those spec.canary.selector matches, or the first
// count (or percent, rounded up) of them in the job's order. The wave is
// recorded in each node's entry (canary), and the Canary condition says
// it runs.
func (p *planner) markCanary() {
	c := p.in.Config.Canary
	if c == nil {
		return
	}
	var pending []int
	for i := range p.status.NodeStatus {
		if p.status.NodeStatus[i].State == v1alpha1.StateNone {
			pending = append(pending, i)
		}
	}
	size := 0
	switch {
	case c.Selector:
		for _, i := range pending {
			if p.in.Nodes[p.status.NodeStatus[i].NodeName].Canary {
				p.status.NodeStatus[i].Canary = true
				size++
			}
		}
	case c.Percent > 0:
		size = min((len(pending)*c.Percent+99)/100, len(pending))
	default:
		size = min(c.Count, len(pending))
	}
	if !c.Selector {
		for _, i := range pending[:size] {
			p.status.NodeStatus[i].Canary = true
		}
	}
	p.setCondition(v1alpha1.ConditionCanary, metav1.ConditionUnknown, v1alpha1.CanaryInProgress,
		fmt.Sprintf("canary wave of %d of the %d nodes to upgrade runs first", size, len(pending)))
	p.normalEvent(ReasonCanaryStarted, "", "Canary wave: %d of %d nodes are upgraded first; the job suspends itself after them", size, len(pending))
}

// canaryHolds reports whether the canary wave decides what starts: while
// it runs (only its nodes start) and while the job is paused after it. In
// that time failureTolerate stops nothing: a failed canary node pauses
// the job, it does not fail it.
func (p *planner) canaryHolds() bool {
	if p.in.Config.Canary == nil {
		return false
	}
	cond := meta.FindStatusCondition(p.status.Conditions, v1alpha1.ConditionCanary)
	return cond != nil && cond.Reason != v1alpha1.CanaryResumed
}

// canaryRuns reports whether the wave still runs, or has just ended and the
// job is being suspended: only its nodes start.
func (p *planner) canaryRuns() bool {
	cond := meta.FindStatusCondition(p.status.Conditions, v1alpha1.ConditionCanary)
	return p.in.Config.Canary != nil && cond != nil && (cond.Reason == v1alpha1.CanaryInProgress || cond.Reason == v1alpha1.CanaryPausing)
}

// followCanary moves the canary wave on. When the last canary node is
// final and nodes are left, the wave's result is recorded with reason
// Pausing and the plan asks the controller to set spec.suspend
// (SetSuspend), after it writes the status. The next plan that sees the job
// suspended says Passed or Failed, with a CanaryPaused event; one that sees
// it not suspended yet asks again. Recording first means a job whose canary
// is Passed or Failed and that is not suspended was resumed by someone: the
// condition says Resumed and the rest of the job starts. With a soak, the
// controller itself resumes a wave that passed.
func (p *planner) followCanary() {
	c := p.in.Config.Canary
	cond := meta.FindStatusCondition(p.status.Conditions, v1alpha1.ConditionCanary)
	if c == nil || cond == nil {
		return
	}
	switch cond.Reason {
	case v1alpha1.CanaryInProgress:
		p.endCanary()
	case v1alpha1.CanaryPausing:
		p.paused(c, *cond)
	case v1alpha1.CanaryPassed, v1alpha1.CanaryFailed:
		if !p.in.Config.Suspended {
			wave, _, _ := strings.Cut(cond.Message, "; ")
			p.setCondition(v1alpha1.ConditionCanary, cond.Status, v1alpha1.CanaryResumed, wave+"; the job was resumed")
			p.normalEvent(ReasonCanaryResumed, "", "Job resumed after its canary wave")
			return
		}
		if cond.Reason == v1alpha1.CanaryPassed && c.Soak > 0 {
			at := cond.LastTransitionTime.Add(c.Soak)
			if p.now.Before(at) {
				p.wakeAt(at)
				return
			}
			resume := false
			p.plan.SetSuspend = &resume
		}
	}
}

// endCanary records the wave's result once every canary node is final,
// and has the job suspended when nodes are left.
func (p *planner) endCanary() {
	wave, succeeded, failed, rest := 0, 0, 0, false
	for i := range p.status.NodeStatus {
		e := &p.status.NodeStatus[i]
		switch {
		case e.Canary && !NodeFinal(e.State):
			return // the wave runs
		case e.Canary:
			wave++
			switch e.State {
			case v1alpha1.StateSuccessful:
				succeeded++
			case v1alpha1.StateFailed:
				failed++
			}
		case e.State == v1alpha1.StateNone:
			rest = true
		}
	}
	status := metav1.ConditionTrue
	if failed > 0 || wave == 0 {
		status = metav1.ConditionFalse
	}
	msg := fmt.Sprintf("canary wave of %d nodes: %d succeeded, %d failed", wave, succeeded, failed)
	if wave == 0 {
		msg = "the canary wave has no node: spec.canary.selector matches none of the nodes to upgrade"
	}
	if !rest {
		p.setCondition(v1alpha1.ConditionCanary, status, v1alpha1.CanaryResumed, msg+"; no node is left after it")
		return
	}
	p.setCondition(v1alpha1.ConditionCanary, status, v1alpha1.CanaryPausing, msg+"; suspending the job")
	p.paused(p.in.Config.Canary, *meta.FindStatusCondition(p.status.Conditions, v1alpha1.ConditionCanary))
}

// paused finishes the pause once spec.suspend is set (Passed or Failed,
// and a CanaryPaused event), or asks for it again.
func (p *planner) paused(c *CanaryConfig, cond metav1.Condition) {
	if !p.in.Config.Suspended {
		suspend := true
		p.plan.SetSuspend = &suspend
		return
	}
	msg, _, _ := strings.Cut(cond.Message, "; ")
	reason := v1alpha1.CanaryPassed
	if cond.Status != metav1.ConditionTrue {
		reason = v1alpha1.CanaryFailed
	}
	if reason == v1alpha1.CanaryPassed && c.Soak > 0 {
		at := cond.LastTransitionTime.Add(c.Soak)
		msg += fmt.Sprintf("; the job resumes by itself after %s, at %s", c.Soak, at.UTC().Format(time.RFC3339))
		p.wakeAt(at)
	} else {
		msg += "; set spec.suspend to false (kubectl nodeupgrade resume) to upgrade the rest"
	}
	p.setCondition(v1alpha1.ConditionCanary, cond.Status, reason, msg)
	p.addEvent(reason == v1alpha1.CanaryFailed, ReasonCanaryPaused, "", "Job suspended after its canary wave: %s", msg)
}

// canaryFailures counts the failed canary nodes. failureTolerate leaves
// them out: they paused the job, and whoever resumed it judged them.
func canaryFailures(entries []v1alpha1.TaskStatus) int {
	n := 0
	for i := range entries {
		if entries[i].Canary && entries[i].State == v1alpha1.StateFailed {
			n++
		}
	}
	return n
}

// judged is counts as failureTolerate judges them: without the canary's
// failures.
func judged(c v1alpha1.NodeCounts, entries []v1alpha1.TaskStatus) v1alpha1.NodeCounts {
	c.Failed -= int32(canaryFailures(entries))
	return c
}
