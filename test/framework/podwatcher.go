// Package framework holds what the suites under test/ share, so that no
// two suites write the same helper: the builders (Fleet, NewJob), the
// waits (WaitFinished, the pod watcher) and the invariant checks every
// finished job must pass (Invariants). The world they run in is
// test/localcluster's.
package framework

import (
	"context"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
	"github.com/nodeupgrade/nodeupgrade/test/observer"
)

// PodWatcher is the independent observer (test/observer: watches of its own,
// sharing no code with the controller or with kubectl) of one job's upgrade
// pods. It proves how often each node got a pod, which no status field can.
type PodWatcher struct{ o *observer.Observer }

// WatchPods starts observing a job of the cluster that does not exist yet,
// so its first pod is seen. The watcher stops, and fails the spec if its
// watches failed, at the spec's cleanup; Stop may be called earlier too.
func WatchPods(ctx context.Context, cl *localcluster.Cluster, job string) *PodWatcher {
	ginkgo.GinkgoHelper()
	o, err := observer.Start(ctx, cl.RESTConfig(), cl.Namespace(), job)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	w := &PodWatcher{o: o}
	ginkgo.DeferCleanup(w.Stop)
	return w
}

// Stop ends the watches and fails the spec if any of them failed.
func (w *PodWatcher) Stop() {
	ginkgo.GinkgoHelper()
	gomega.Expect(w.o.Stop()).To(gomega.Succeed(), "the observer's watches must not have failed")
}

// Creations returns how many pods each node got.
func (w *PodWatcher) Creations() map[string]int { return w.o.PodsByNode() }

// Peak is the most pods that were running an upgrade at one instant.
func (w *PodWatcher) Peak() int { return w.o.Report().MaxActive }

// Report is everything the watcher saw so far, for Invariants.
func (w *PodWatcher) Report() observer.Report { return w.o.Report() }

// ExpectOnePodEach fails the spec unless exactly these nodes got a pod,
// one each.
func (w *PodWatcher) ExpectOnePodEach(nodes []string) {
	ginkgo.GinkgoHelper()
	want := make(map[string]int, len(nodes))
	for _, n := range nodes {
		want[n] = 1
	}
	gomega.Expect(w.Creations()).To(gomega.Equal(want), "one upgrade pod for each node, and none for any other")
}
