// Package observer watches one NodeUpgradeJob and its upgrade pods with its
// own watches, independent of the controller's code, and records what a
// person looking at the API would have seen: how many pods each node got,
// the most pods active at one instant, when each node's pod finished and
// when the job's status first showed that node final.
//
// The benchmark (test/bench) uses it to measure status freshness; the chaos
// tests (test/chaos) use it to check the controller's promises. The watches
// are RetryWatchers: they resume from the last resourceVersion seen, so an
// apiserver restart loses no event (etcd keeps the history; nothing is
// compacted within a test).
package observer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// Observer records a job's life as seen through two watches.
type Observer struct {
	job string

	mu sync.Mutex
	// podsOf counts distinct pods (by UID) per node: more than one means the
	// node was dispatched twice.
	podsOf map[string]map[types.UID]bool
	// active are pods that exist, have not terminated and are not being
	// deleted: pods that may be upgrading a node right now.
	active     map[types.UID]bool
	activeDesc map[types.UID]string
	maxActive  int
	// peakPods names the pods active when maxActive was first reached, with
	// how each looked, for diagnosing a breach of concurrency.
	peakPods []string
	// podFinal is when a node's pod was first seen Succeeded or Failed.
	podFinal map[string]time.Time
	// nodeFinal is when the job's status first showed the node final.
	nodeFinal map[string]time.Time
	// finalState keeps the first final state seen per node, to catch a
	// status that un-finishes a node.
	finalState map[string]string
	violations []string
	jobFinal   time.Time
	jobState   string
	maxBytes   int
	// statusBytes sums the size of every stored version of the job and its
	// status shards seen: what their writes stored in etcd.
	statusBytes int64
	shardEvents int
	jobEvents   int
	podEvents   int
	relists     int

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   []error
}

// Start watches pods labelled for job in namespace and the job itself. Call
// it before the job is created, so that the first pod is seen.
func Start(ctx context.Context, cfg *rest.Config, namespace, job string) (*Observer, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("observer: clientset: %w", err)
	}
	cl, err := client.NewWithWatch(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return nil, fmt.Errorf("observer: client: %w", err)
	}
	o := &Observer{
		job:        job,
		podsOf:     map[string]map[types.UID]bool{},
		active:     map[types.UID]bool{},
		activeDesc: map[types.UID]string{},
		podFinal:   map[string]time.Time{},
		nodeFinal:  map[string]time.Time{},
		finalState: map[string]string{},
	}
	ctx, o.cancel = context.WithCancel(ctx)

	// Pods: the label the controller puts on every upgrade pod of the job.
	// Job names in tests are short, so the label value is the name itself.
	sel := v1alpha1.LabelJob + "=" + job
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		o.cancel()
		return nil, fmt.Errorf("observer: list pods: %w", err)
	}
	for i := range pods.Items {
		o.observePod(watch.Added, &pods.Items[i], time.Now())
	}
	podWatch := func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
		opts.LabelSelector = sel
		return cs.CoreV1().Pods(namespace).Watch(ctx, opts)
	}

	jobs := &v1alpha1.NodeUpgradeJobList{}
	field := "metadata.name=" + job
	if err := cl.List(ctx, jobs, &client.ListOptions{Raw: &metav1.ListOptions{FieldSelector: field}}); err != nil {
		o.cancel()
		return nil, fmt.Errorf("observer: list jobs: %w", err)
	}
	for i := range jobs.Items {
		o.observeJob(&jobs.Items[i], time.Now())
	}
	jobWatch := func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
		opts.FieldSelector = field
		return cl.Watch(ctx, &v1alpha1.NodeUpgradeJobList{}, &client.ListOptions{Raw: &opts})
	}

	// A sharded job's entries are in ConfigMaps in the namespace, labelled
	// with the job's UID and naming the job in their data.
	shardSel := v1alpha1.LabelShardOf
	shards, err := cs.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{LabelSelector: shardSel})
	if err != nil {
		o.cancel()
		return nil, fmt.Errorf("observer: list status shards: %w", err)
	}
	for i := range shards.Items {
		o.observeShard(&shards.Items[i], time.Now())
	}
	shardWatch := func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
		opts.LabelSelector = shardSel
		return cs.CoreV1().ConfigMaps(namespace).Watch(ctx, opts)
	}
	shardRelist := func(ctx context.Context, now time.Time) (string, error) {
		list, err := cs.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{LabelSelector: shardSel})
		if err != nil {
			return "", err
		}
		for i := range list.Items {
			o.observeShard(&list.Items[i], now)
		}
		return list.ResourceVersion, nil
	}

	o.wg.Add(3)
	go o.follow(ctx, "status shards", shards.ResourceVersion, shardWatch, shardRelist, func(ev watch.Event, now time.Time) {
		if cm, ok := ev.Object.(*corev1.ConfigMap); ok && ev.Type != watch.Deleted && ev.Type != watch.Bookmark {
			o.observeShard(cm, now)
		}
	})
	podRelist := func(ctx context.Context, now time.Time) (string, error) {
		list, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return "", err
		}
		present := map[types.UID]bool{}
		for i := range list.Items {
			present[list.Items[i].UID] = true
			o.observePod(watch.Modified, &list.Items[i], now)
		}
		o.mu.Lock()
		for uid := range o.active {
			if !present[uid] {
				delete(o.active, uid) // deleted while we were not watching
				delete(o.activeDesc, uid)
			}
		}
		o.mu.Unlock()
		return list.ResourceVersion, nil
	}
	jobRelist := func(ctx context.Context, now time.Time) (string, error) {
		list := &v1alpha1.NodeUpgradeJobList{}
		if err := cl.List(ctx, list, &client.ListOptions{Raw: &metav1.ListOptions{FieldSelector: field}}); err != nil {
			return "", err
		}
		for i := range list.Items {
			o.observeJob(&list.Items[i], now)
		}
		return list.ResourceVersion, nil
	}
	go o.follow(ctx, "pods", pods.ResourceVersion, podWatch, podRelist, func(ev watch.Event, now time.Time) {
		if pod, ok := ev.Object.(*corev1.Pod); ok {
			o.observePod(ev.Type, pod, now)
		}
	})
	go o.follow(ctx, "job", jobs.ResourceVersion, jobWatch, jobRelist, func(ev watch.Event, now time.Time) {
		if j, ok := ev.Object.(*v1alpha1.NodeUpgradeJob); ok && ev.Type != watch.Deleted && ev.Type != watch.Bookmark {
			o.observeJob(j, now)
		}
	})
	return o, nil
}

// follow keeps one watch going from rv until ctx ends. A RetryWatcher
// already retries dropped connections, but it gives up on an error status
// from the server, which a restarting apiserver sends (a 404 for the CRD's
// resource before it is registered again, 5xx while it starts); follow then
// starts a new one from the last resourceVersion it saw, so no event is
// lost. Only a 410 Gone (history compacted) would lose events: that is
// reported as an error.
//
// A restarted apiserver answers an old resourceVersion with 410 Gone (its
// watch cache starts empty): follow then calls relist, which reads the
// current state and returns its resourceVersion. What happened between the
// last event and the list is then seen only as its result; Report counts
// relists so a reader knows.
func (o *Observer) follow(ctx context.Context, what, rv string, wf cache.WatchFuncWithContext,
	relist func(context.Context, time.Time) (string, error), handle func(watch.Event, time.Time)) {
	defer o.wg.Done()
	for ctx.Err() == nil {
		rw, err := watchtools.NewRetryWatcherWithContext(ctx, rv, &cache.ListWatch{WatchFuncWithContext: wf})
		if err != nil {
			o.addErr(fmt.Errorf("observer: %s watch: %w", what, err))
			return
		}
		for ev := range rw.ResultChan() {
			now := time.Now()
			if st, ok := ev.Object.(*metav1.Status); ok {
				if st.Code == http.StatusGone {
					// A restarted apiserver's watch cache starts at the
					// current revision: an older resourceVersion is "too
					// old" although etcd still has it. List again.
					rw.Stop()
					newRV, err := relist(ctx, now)
					if err != nil {
						o.addErr(fmt.Errorf("observer: %s relist after 410: %w", what, err))
						return
					}
					o.mu.Lock()
					o.relists++
					o.mu.Unlock()
					rv = newRV
					break
				}
				continue // the RetryWatcher stops after this; start anew below
			}
			if m, err := meta.Accessor(ev.Object); err == nil && m.GetResourceVersion() != "" {
				rv = m.GetResourceVersion()
			}
			handle(ev, now)
		}
		rw.Stop()
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (o *Observer) addErr(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs = append(o.errs, err)
}

func (o *Observer) observePod(t watch.EventType, pod *corev1.Pod, now time.Time) {
	if t == watch.Bookmark {
		return
	}
	node := pod.Annotations[v1alpha1.AnnotationNode]
	if node == "" {
		node = pod.Spec.NodeName
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.podEvents++
	if o.podsOf[node] == nil {
		o.podsOf[node] = map[types.UID]bool{}
	}
	o.podsOf[node][pod.UID] = true
	terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if terminal {
		if _, ok := o.podFinal[node]; !ok {
			o.podFinal[node] = now
		}
	}
	if t != watch.Deleted && pod.DeletionTimestamp == nil && !terminal {
		o.active[pod.UID] = true
		o.activeDesc[pod.UID] = fmt.Sprintf("%s(%s, created %s)", node, pod.Status.Phase, pod.CreationTimestamp.Format("15:04:05"))
	} else {
		delete(o.active, pod.UID)
		delete(o.activeDesc, pod.UID)
	}
	// Events of one watch arrive in etcd's commit order, so this count is
	// exact at every commit, not a sample.
	if len(o.active) > o.maxActive {
		o.maxActive = len(o.active)
		o.peakPods = o.peakPods[:0]
		for uid := range o.active {
			o.peakPods = append(o.peakPods, o.activeDesc[uid])
		}
		sort.Strings(o.peakPods)
	}
}

func nodeFinal(state string) bool {
	return state == v1alpha1.StateSuccessful || state == v1alpha1.StateFailed || state == v1alpha1.StateNotAttempted
}

func (o *Observer) observeJob(job *v1alpha1.NodeUpgradeJob, now time.Time) {
	// The size of what the apiserver stores, near enough: the object as JSON.
	size := 0
	if b, err := json.Marshal(job); err == nil {
		size = len(b)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.jobEvents++
	o.maxBytes = max(o.maxBytes, size)
	o.statusBytes += int64(size)
	o.observeEntries(job.Status.NodeStatus, now)
	if (job.Status.State == v1alpha1.StateSuccessful || job.Status.State == v1alpha1.StateFailed) && o.jobFinal.IsZero() {
		o.jobFinal, o.jobState = now, job.Status.State
	}
}

// observeShard follows one status shard of a sharded job: its entries are
// the job's, as if in its status.
func (o *Observer) observeShard(cm *corev1.ConfigMap, now time.Time) {
	if cm.Data[v1alpha1.ShardKeyJob] != o.job {
		return
	}
	var entries []v1alpha1.TaskStatus
	if err := json.Unmarshal([]byte(cm.Data[v1alpha1.ShardKeyNodeStatus]), &entries); err != nil {
		o.addErr(fmt.Errorf("observer: status shard %s: %w", cm.Name, err))
		return
	}
	size := 0
	if b, err := json.Marshal(cm); err == nil {
		size = len(b)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.shardEvents++
	o.statusBytes += int64(size)
	o.observeEntries(entries, now)
}

// observeEntries records when each node was first seen final; o.mu is held.
func (o *Observer) observeEntries(entries []v1alpha1.TaskStatus, now time.Time) {
	for i := range entries {
		e := &entries[i]
		was, seen := o.finalState[e.NodeName]
		switch {
		case nodeFinal(e.State) && !seen:
			o.finalState[e.NodeName] = e.State
			o.nodeFinal[e.NodeName] = now
		case seen && e.State != was:
			o.violations = append(o.violations, fmt.Sprintf("node %s went from final %q to %q", e.NodeName, was, e.State))
			o.finalState[e.NodeName] = e.State
		}
	}
}

// WaitFinal waits until the job's status reaches Successful or Failed and
// returns when that was first seen.
func (o *Observer) WaitFinal(ctx context.Context) (time.Time, string, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		o.mu.Lock()
		at, state := o.jobFinal, o.jobState
		o.mu.Unlock()
		if !at.IsZero() {
			return at, state, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, "", fmt.Errorf("observer: job %s not final: %w", o.job, ctx.Err())
		case <-tick.C:
		}
	}
}

// Stop ends the watches and returns any error they reported.
func (o *Observer) Stop() error {
	o.cancel()
	o.wg.Wait()
	o.mu.Lock()
	defer o.mu.Unlock()
	return errors.Join(o.errs...)
}

// Report is a summary of what the observer saw.
type Report struct {
	// PodsPerNode is the most pods any one node got; NodesWithPods how many
	// nodes got at least one.
	PodsPerNode   int
	NodesWithPods int
	// TwiceDispatched names nodes that got more than one pod.
	TwiceDispatched []string
	MaxActive       int
	// PeakPods describes the pods active at the first instant of MaxActive.
	PeakPods []string
	// Lags are, per node whose pod finished, the time from the pod's final
	// phase to the job's status showing the node final. Sorted.
	Lags []time.Duration
	// Missing counts nodes whose pod finished but whose status never went
	// final while watched.
	Missing    int
	Violations []string
	MaxBytes   int
	JobEvents  int
	PodEvents  int
	// StatusBytes sums the size of every stored version of the job and its
	// status shards seen (each watch event is one write to etcd);
	// ShardEvents counts the shards' versions.
	StatusBytes int64
	ShardEvents int
	// Relists counts watches restarted from a fresh list after a 410.
	Relists int
}

// Report summarises what was seen so far.
func (o *Observer) Report() Report {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := Report{MaxActive: o.maxActive, PeakPods: append([]string(nil), o.peakPods...), MaxBytes: o.maxBytes, JobEvents: o.jobEvents, PodEvents: o.podEvents, Relists: o.relists,
		StatusBytes: o.statusBytes, ShardEvents: o.shardEvents,
		Violations: append([]string(nil), o.violations...)}
	for node, uids := range o.podsOf {
		r.NodesWithPods++
		r.PodsPerNode = max(r.PodsPerNode, len(uids))
		if len(uids) > 1 {
			r.TwiceDispatched = append(r.TwiceDispatched, node)
		}
	}
	sort.Strings(r.TwiceDispatched)
	for node, pf := range o.podFinal {
		nf, ok := o.nodeFinal[node]
		if !ok {
			r.Missing++
			continue
		}
		r.Lags = append(r.Lags, nf.Sub(pf))
	}
	sort.Slice(r.Lags, func(i, j int) bool { return r.Lags[i] < r.Lags[j] })
	return r
}

// Quantile returns the q-quantile (0..1) of sorted durations; 0 when empty.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)-1) + 0.5)
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// PodsByNode returns how many distinct pods each node got.
func (o *Observer) PodsByNode() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(o.podsOf))
	for node, uids := range o.podsOf {
		out[node] = len(uids)
	}
	return out
}
