package framework

import (
	"context"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// NodePodWatcher watches the upgrade pods of every job on some nodes, with
// a watch of its own, and records how many existed on one node at one
// instant: one upgrade at a time per node is a promise across jobs, which
// no job's status can show. The watch's events come in the API server's
// order, so "at once" is exact: a pod counts from its creation until its
// deletion, whatever its phase.
type NodePodWatcher struct {
	mu      sync.Mutex
	nodes   map[string]bool
	present map[string]map[types.UID]string // node -> pod UID -> job
	peak    map[string]int
	overlap []string
	order   map[string][]string // node -> jobs, in the order their pods were created
	err     error
	cancel  context.CancelFunc
	done    chan struct{}
}

// WatchNodePods starts watching the upgrade pods in namespace on nodes,
// before the jobs that create them exist. Stop ends it. It needs no Ginkgo:
// the real-KubeEdge tests use it too.
func WatchNodePods(ctx context.Context, cs kubernetes.Interface, namespace string, nodes []string) (*NodePodWatcher, error) {
	w := &NodePodWatcher{nodes: map[string]bool{}, present: map[string]map[types.UID]string{}, peak: map[string]int{},
		order: map[string][]string{}, done: make(chan struct{})}
	for _, n := range nodes {
		w.nodes[n] = true
	}
	list, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelNode})
	if err != nil {
		return nil, fmt.Errorf("list upgrade pods: %w", err)
	}
	for i := range list.Items {
		w.observe(watch.Added, &list.Items[i])
	}
	ctx, w.cancel = context.WithCancel(ctx)
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.LabelSelector = v1alpha1.LabelNode
			return cs.CoreV1().Pods(namespace).Watch(ctx, opts)
		},
	})
	if err != nil {
		w.cancel()
		return nil, fmt.Errorf("watch upgrade pods: %w", err)
	}
	go func() {
		defer close(w.done)
		defer rw.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-rw.ResultChan():
				if !ok {
					return
				}
				if st, isStatus := ev.Object.(*metav1.Status); isStatus {
					w.mu.Lock()
					w.err = fmt.Errorf("pod watch failed: %s", st.Message)
					w.mu.Unlock()
					return
				}
				if pod, isPod := ev.Object.(*corev1.Pod); isPod {
					w.observe(ev.Type, pod)
				}
			}
		}
	}()
	return w, nil
}

func (w *NodePodWatcher) observe(t watch.EventType, pod *corev1.Pod) {
	node := pod.Annotations[v1alpha1.AnnotationNode]
	if !w.nodes[node] || t == watch.Bookmark {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.present[node] == nil {
		w.present[node] = map[types.UID]string{}
	}
	if t == watch.Deleted {
		delete(w.present[node], pod.UID)
		return
	}
	if _, seen := w.present[node][pod.UID]; seen {
		return
	}
	job := pod.Labels[v1alpha1.LabelJob]
	w.present[node][pod.UID] = job
	w.order[node] = append(w.order[node], job)
	if n := len(w.present[node]); n > w.peak[node] {
		w.peak[node] = n
		if n > 1 {
			var jobs []string
			for _, j := range w.present[node] {
				jobs = append(jobs, j)
			}
			slices.Sort(jobs)
			w.overlap = append(w.overlap, fmt.Sprintf("%s: %d upgrade pods at once (jobs %v)", node, n, jobs))
		}
	}
}

// Stop ends the watch, and says whether it failed. It may be called more
// than once.
func (w *NodePodWatcher) Stop() error {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Overlaps lists every instant a node had more than one upgrade pod.
func (w *NodePodWatcher) Overlaps() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.overlap)
}

// Order is the jobs whose pods node got, in the order they were created.
func (w *NodePodWatcher) Order(node string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.order[node])
}
