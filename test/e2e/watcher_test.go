package e2e_test

import "github.com/nodeupgrade/nodeupgrade/test/framework"

// watchPods observes one job's upgrade pods in the suite's cluster.
func watchPods(jobName string) *framework.PodWatcher {
	return framework.WatchPods(suiteCtx, cluster.RESTConfig(), cluster.Namespace(), jobName)
}
