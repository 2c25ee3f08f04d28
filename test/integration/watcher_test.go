package integration_test

import (
	"context"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// podWatcher is an independent observer of upgrade pods, built on a raw
// watch and none of the controller's code. It counts how often each node's
// pod was created and the most pods that were active at once.
type podWatcher struct {
	mu        sync.Mutex
	created   map[string]int     // node -> pod creations
	active    map[types.UID]bool // pods running an upgrade now
	seen      map[types.UID]bool // pods ever seen
	maxActive int
	cancel    context.CancelFunc
	done      chan struct{}
}

// watchPods starts watching the upgrade pods of one job.
func watchPods(jobName string) *podWatcher {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(suiteCtx)
	w := &podWatcher{created: map[string]int{}, active: map[types.UID]bool{}, seen: map[types.UID]bool{}, cancel: cancel, done: make(chan struct{})}
	opts := metav1.ListOptions{LabelSelector: v1alpha1.LabelJob + "=" + jobName}
	list, err := clientset.CoreV1().Pods(podNamespace).List(ctx, opts)
	Expect(err).NotTo(HaveOccurred())
	Expect(list.Items).To(BeEmpty(), "watch before the job exists")
	opts.ResourceVersion = list.ResourceVersion
	wi, err := clientset.CoreV1().Pods(podNamespace).Watch(ctx, opts)
	Expect(err).NotTo(HaveOccurred())
	go func() {
		defer close(w.done)
		defer wi.Stop()
		for ev := range wi.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			w.observe(ev.Type, pod)
		}
	}()
	return w
}

func (w *podWatcher) observe(t watch.EventType, pod *corev1.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.seen[pod.UID] {
		w.seen[pod.UID] = true
		w.created[pod.Annotations[v1alpha1.AnnotationNode]]++
	}
	running := t != watch.Deleted && pod.DeletionTimestamp == nil &&
		pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
	if running {
		w.active[pod.UID] = true
	} else {
		delete(w.active, pod.UID)
	}
	if len(w.active) > w.maxActive {
		w.maxActive = len(w.active)
	}
}

func (w *podWatcher) stop() {
	w.cancel()
	<-w.done
}

// creations returns how many pods each node got.
func (w *podWatcher) creations() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.created))
	for k, v := range w.created {
		out[k] = v
	}
	return out
}

func (w *podWatcher) peak() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxActive
}
