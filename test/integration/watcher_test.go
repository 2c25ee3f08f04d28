package integration_test

import "github.com/nodeupgrade/nodeupgrade/test/framework"

// watchPods observes one job's upgrade pods in the suite's control plane.
func watchPods(jobName string) *framework.PodWatcher {
	return framework.WatchPods(suiteCtx, cfg, podNamespace, jobName)
}
