package controller

import (
	"time"

	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// Status writes of one job are coalesced: at least
// Options.StatusWriteInterval apart, so that the changes of many nodes land
// in one write of the job's (at fleet scale, megabyte) status.

// untilNextWrite says how long a status write must wait to keep
// StatusWriteInterval. The first write and a job's final write never wait.
func (r *Reconciler) untilNextWrite(job string, plan rollout.Plan) time.Duration {
	if r.opts.StatusWriteInterval <= 0 || plan.Finished {
		return 0
	}
	last, ok := r.lastWrite.Load(job)
	if !ok {
		return 0
	}
	return last.(time.Time).Add(r.opts.StatusWriteInterval).Sub(r.clock.Now())
}
