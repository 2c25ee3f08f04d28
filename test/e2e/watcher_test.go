package e2e_test

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

// podWatcher is an independent observer of one job's upgrade pods: a raw
// watch from before the job exists, sharing no code with the controller or
// with kubectl. It counts how often each node got a pod, which no status
// field can prove.
type podWatcher struct {
	mu        sync.Mutex
	created   map[string]int     // node -> pods created
	active    map[types.UID]bool // pods running an upgrade now
	seen      map[types.UID]bool // pods ever seen
	maxActive int
	cancel    context.CancelFunc
	done      chan struct{}
}

// watchPods starts watching the upgrade pods of a job that does not exist yet.
func watchPods(jobName string) *podWatcher {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(suiteCtx)
	w := &podWatcher{created: map[string]int{}, active: map[types.UID]bool{}, seen: map[types.UID]bool{}, cancel: cancel, done: make(chan struct{})}
	pods := cluster.Clientset.CoreV1().Pods(cluster.Namespace())
	opts := metav1.ListOptions{LabelSelector: v1alpha1.LabelJob + "=" + jobName}
	list, err := pods.List(ctx, opts)
	Expect(err).NotTo(HaveOccurred())
	Expect(list.Items).To(BeEmpty(), "watch before the job exists")
	// From the list's resourceVersion, so no creation falls between the two.
	opts.ResourceVersion = list.ResourceVersion
	wi, err := pods.Watch(ctx, opts)
	Expect(err).NotTo(HaveOccurred())
	go func() {
		defer close(w.done)
		defer wi.Stop()
		for ev := range wi.ResultChan() {
			if ev.Type == watch.Error {
				// A broken watch would undercount silently: make it loud.
				w.mu.Lock()
				w.created["<watch error>"]++
				w.mu.Unlock()
				continue
			}
			if pod, ok := ev.Object.(*corev1.Pod); ok {
				w.observe(ev.Type, pod)
			}
		}
	}()
	DeferCleanup(w.stop)
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
	w.maxActive = max(w.maxActive, len(w.active))
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
