package localcluster

// This file lets a benchmark change the simulated upgrade time between jobs
// without building a new world: a 10,000-node world takes minutes to make,
// and the benchmark wants t = c/20 s for each concurrency c.

import (
	"context"
	"time"
)

// RestartSimulator stops the fleet simulator and starts a new one whose
// upgrade pods run for d. Call it between jobs: the simulator keeps its
// state in the API objects, so even a pod in flight carries on, but on the
// new clock only from its recorded start.
func (c *Cluster) RestartSimulator(ctx context.Context, d time.Duration) error {
	if c.simCancel != nil {
		c.simCancel()
		<-c.simDone
	}
	c.opts.UpgradeDuration = d
	return c.startSimulator(ctx)
}
