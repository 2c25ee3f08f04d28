package integration_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nodeupgrade/nodeupgrade/test/observer"
)

// podWatcher is the independent observer (test/observer: watches of its own,
// none of the controller's code) of one job's upgrade pods.
type podWatcher struct{ o *observer.Observer }

// watchPods starts observing a job that does not exist yet, so its first pod is seen.
func watchPods(jobName string) *podWatcher {
	GinkgoHelper()
	o, err := observer.Start(suiteCtx, cfg, podNamespace, jobName)
	Expect(err).NotTo(HaveOccurred())
	return &podWatcher{o: o}
}

func (w *podWatcher) stop() {
	GinkgoHelper()
	Expect(w.o.Stop()).To(Succeed(), "the observer's watches must not have failed")
}

// creations returns how many pods each node got.
func (w *podWatcher) creations() map[string]int { return w.o.PodsByNode() }

// peak is the most pods that were running an upgrade at one instant.
func (w *podWatcher) peak() int { return w.o.Report().MaxActive }
