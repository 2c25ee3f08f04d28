package framework

import (
	"fmt"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/observer"
)

// Invariants checks the promises every finished job keeps, whatever
// happened during it, against what an independent observer saw: no node
// got a second upgrade pod, no instant had more than concurrency pods
// active, the status never un-finished a node, every node ended final (skipped counts as final), and
// the counts add up to the entries. It returns one line per broken promise.
func Invariants(job *v1alpha1.NodeUpgradeJob, rep observer.Report, concurrency int) []string {
	var problems []string
	if len(rep.TwiceDispatched) > 0 {
		problems = append(problems, fmt.Sprintf("nodes with more than one upgrade pod: %v", rep.TwiceDispatched))
	}
	if rep.MaxActive > concurrency {
		problems = append(problems, fmt.Sprintf("%d upgrade pods were active at once, concurrency is %d: %v", rep.MaxActive, concurrency, rep.PeakPods))
	}
	for _, v := range rep.Violations {
		problems = append(problems, "status: "+v)
	}
	if !Final(job.Status.State) {
		problems = append(problems, fmt.Sprintf("job %s is %q, not final", job.Name, job.Status.State))
	}
	c := job.Status.Counts
	var succ, fail, na, skip int32
	for _, e := range job.Status.NodeStatus {
		switch e.State {
		case v1alpha1.StateSuccessful:
			succ++
		case v1alpha1.StateFailed:
			fail++
		case v1alpha1.StateNotAttempted:
			na++
		case v1alpha1.StateSkipped:
			skip++
		default:
			problems = append(problems, fmt.Sprintf("node %s ended in non-final state %q", e.NodeName, e.State))
		}
	}
	if int(c.Selected) != len(job.Status.NodeStatus) || c.Succeeded+c.Failed+c.NotAttempted+c.Skipped != c.Selected ||
		c.Pending != 0 || c.InFlight != 0 || succ != c.Succeeded || fail != c.Failed || na != c.NotAttempted || skip != c.Skipped {
		problems = append(problems, fmt.Sprintf("counts do not add up: %+v, entries %d (successful %d, failed %d, not attempted %d, skipped %d)",
			c, len(job.Status.NodeStatus), succ, fail, na, skip))
	}
	return problems
}
