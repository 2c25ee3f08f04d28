package fleetsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// LabelJob is the label every upgrade pod carries (the NodeUpgradeJob's
// name); the simulator runs only pods that have it.
const LabelJob = v1alpha1.LabelJob

// DefaultUpgradeDuration is how long an upgrade pod runs, first init
// container to end, when neither Options nor the node say otherwise.
const DefaultUpgradeDuration = 3 * time.Second

// Options configures a Simulator.
type Options struct {
	// UpgradeDuration is how long an upgrade pod runs. Zero: DefaultUpgradeDuration.
	// A node's nodeupgrade.test/duration annotation overrides it.
	UpgradeDuration time.Duration
	// RollbackDuration is how long the job's unit of a pod deleted in its
	// upgrade step stays on the node after the pod has gone when the
	// upgrade fails there (it rolls back); the next pod on the node waits
	// for it (AnnotationRunnerBusyUntil). Zero: the node's upgrade duration.
	// An upgrade that succeeds there keeps the node until the pod would
	// have ended, then the node reports the target version.
	RollbackDuration time.Duration
	// Namespace limits the pods run to one namespace. Empty: all.
	Namespace string
	// Workers is how many pods are advanced at once. Zero: 16.
	Workers int
	// QPS and Burst limit the simulator's own API requests. Zero: 500 and
	// 1000, enough for 500 concurrent upgrades of a few seconds each.
	QPS   float32
	Burst int
	// Logger receives errors and, at V(1), every pod transition.
	Logger logr.Logger
}

// Stats counts what a Simulator did.
type Stats struct {
	// PodsStarted counts pods the simulator began to run.
	PodsStarted int64
	// PodsSucceeded and PodsFailed count pods it ended.
	PodsSucceeded int64
	PodsFailed    int64
	// PodsKilled counts deleted pods whose containers it stopped.
	PodsKilled int64
	// StatusWrites counts pod status patches; NodeWrites node version patches.
	StatusWrites int64
	NodeWrites   int64
	// Errors counts failed API requests (each is retried).
	Errors int64
}

// Simulator plays the kubelet and keadm of every simulated edge node: it
// watches upgrade pods bound to nodes annotated kwok.x-k8s.io/node=fake and
// writes the pod status a real node would report as the pod runs
// (init containers one by one, then the upgrade container, then Succeeded or
// Failed), makes the node report the new edgecore version when an upgrade
// succeeds, and stops the containers of deleted pods.
//
// All state it needs lives in the API objects, so a restarted Simulator
// carries on where the last one stopped; the exact start instant of each
// pod is kept in memory only because status.startTime has whole seconds.
type Simulator struct {
	opts   Options
	client kubernetes.Interface
	log    logr.Logger

	factory     informers.SharedInformerFactory
	nodeFactory informers.SharedInformerFactory
	pods        cache.SharedIndexInformer
	nodes       listersv1.NodeLister
	nodeInf     cache.SharedIndexInformer
	queue       workqueue.TypedRateLimitingInterface[string]

	mu     sync.Mutex
	states map[types.UID]*podState

	synced chan struct{}
	stats  struct {
		started, succeeded, failed, killed, statusWrites, nodeWrites, errors atomic.Int64
	}
	now func() time.Time
}

// podState is what the simulator remembers about a pod between syncs.
type podState struct {
	start time.Time
	// confirmedAt is when the simulator first saw the pod approved
	// (v1alpha1.AnnotationApproved): a confirm step waits until then, as
	// the runner's does for the downwardAPI file the kubelet rewrites.
	confirmedAt time.Time
	written     int // the progress last written, so a stale cache is not rewritten
	killed      bool
}

const nodeNameIndex = "spec.nodeName"

// NewSimulator makes a Simulator talking to the apiserver at cfg.
func NewSimulator(cfg *rest.Config, opts Options) (*Simulator, error) {
	if cfg == nil {
		return nil, errors.New("fleetsim: nil rest.Config")
	}
	if opts.UpgradeDuration <= 0 {
		opts.UpgradeDuration = DefaultUpgradeDuration
	}
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	if cfg.QPS == 0 {
		cfg.QPS = 500
	}
	if cfg.Burst == 0 {
		cfg.Burst = 1000
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("fleetsim: client: %w", err)
	}
	return newSimulator(cs, opts)
}

func newSimulator(cs kubernetes.Interface, opts Options) (*Simulator, error) {
	req, err := labels.NewRequirement(LabelJob, selection.Exists, nil)
	if err != nil {
		return nil, fmt.Errorf("fleetsim: pod selector: %w", err)
	}
	s := &Simulator{
		opts:   opts,
		client: cs,
		log:    opts.Logger,
		states: map[types.UID]*podState{},
		synced: make(chan struct{}),
		now:    time.Now,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 5*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "fleetsim"},
		),
	}
	// Resync 0: every change we need comes as an event or a timed requeue.
	s.factory = informers.NewSharedInformerFactoryWithOptions(cs, 0,
		informers.WithNamespace(opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = req.String() }))
	s.nodeFactory = informers.NewSharedInformerFactory(cs, 0)
	s.pods = s.factory.Core().V1().Pods().Informer()
	if err := s.pods.AddIndexers(cache.Indexers{nodeNameIndex: func(obj any) ([]string, error) {
		if pod, ok := obj.(*corev1.Pod); ok && pod.Spec.NodeName != "" {
			return []string{pod.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("fleetsim: pod index: %w", err)
	}
	nodeInformer := s.nodeFactory.Core().V1().Nodes()
	s.nodeInf = nodeInformer.Informer()
	s.nodes = nodeInformer.Lister()

	if _, err := s.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.enqueuePod,
		UpdateFunc: func(_, obj any) { s.enqueuePod(obj) },
		DeleteFunc: s.forgetPod,
	}); err != nil {
		return nil, fmt.Errorf("fleetsim: pod handler: %w", err)
	}
	// A node that appears, comes online or changes behaviour may unblock
	// pods already bound to it.
	if _, err := s.nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: s.enqueueNodePods,
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := obj.(*corev1.Node)
			if !ok1 || !ok2 {
				return
			}
			for _, k := range []string{AnnotationFakeNode, AnnotationOffline, AnnotationBehavior, AnnotationDuration} {
				if o.Annotations[k] != n.Annotations[k] {
					s.enqueueNodePods(obj)
					return
				}
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("fleetsim: node handler: %w", err)
	}
	return s, nil
}

// Run runs the simulator until ctx ends. It returns an error only if its
// caches cannot sync.
func (s *Simulator) Run(ctx context.Context) error {
	defer s.queue.ShutDown()
	s.factory.Start(ctx.Done())
	s.nodeFactory.Start(ctx.Done())
	defer s.factory.Shutdown()
	defer s.nodeFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), s.pods.HasSynced, s.nodeInf.HasSynced) {
		return fmt.Errorf("fleetsim: caches did not sync: %w", ctx.Err())
	}
	close(s.synced)
	var wg sync.WaitGroup
	for range s.opts.Workers {
		wg.Go(func() {
			for s.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	s.queue.ShutDown()
	wg.Wait()
	return nil
}

// Synced is closed once Run has listed pods and nodes and started working.
func (s *Simulator) Synced() <-chan struct{} { return s.synced }

// Stats returns counts of what the simulator did so far.
func (s *Simulator) Stats() Stats {
	return Stats{
		PodsStarted:   s.stats.started.Load(),
		PodsSucceeded: s.stats.succeeded.Load(),
		PodsFailed:    s.stats.failed.Load(),
		PodsKilled:    s.stats.killed.Load(),
		StatusWrites:  s.stats.statusWrites.Load(),
		NodeWrites:    s.stats.nodeWrites.Load(),
		Errors:        s.stats.errors.Load(),
	}
}

func (s *Simulator) enqueuePod(obj any) {
	if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
		s.queue.Add(key)
	}
}

func (s *Simulator) forgetPod(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		s.mu.Lock()
		delete(s.states, pod.UID)
		s.mu.Unlock()
	}
}

func (s *Simulator) enqueueNodePods(obj any) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	pods, err := s.pods.GetIndexer().ByIndex(nodeNameIndex, node.Name)
	if err != nil {
		return
	}
	for _, p := range pods {
		s.enqueuePod(p)
	}
}

func (s *Simulator) processNext(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	if err := s.sync(ctx, key); err != nil {
		if ctx.Err() != nil {
			return false
		}
		s.stats.errors.Add(1)
		s.log.Error(err, "pod sync failed, retrying", "pod", key)
		s.queue.AddRateLimited(key)
		return true
	}
	s.queue.Forget(key)
	return true
}

// state returns the remembered state of a pod, making it on first sight.
func (s *Simulator) state(pod *corev1.Pod, now time.Time) *podState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.states[pod.UID]
	if st == nil {
		st = &podState{start: now}
		if pod.Status.StartTime != nil {
			// Started by an earlier simulator: go on from its clock.
			st.start = pod.Status.StartTime.Time
		}
		s.states[pod.UID] = st
	}
	return st
}

func (s *Simulator) sync(ctx context.Context, key string) error {
	obj, exists, err := s.pods.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return nil
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return nil
	}
	node, err := s.nodes.Get(pod.Spec.NodeName)
	if err != nil {
		// Not created yet (its add event requeues the pod), or not ours.
		return nil
	}
	if node.Annotations[AnnotationFakeNode] != FakeNodeValue || node.Annotations[AnnotationOffline] == "true" {
		// No simulated kubelet there: the pod neither runs nor stops, as
		// on an edge node that lost its connection to the cloud.
		return nil
	}
	now := s.now()
	d := s.opts.UpgradeDuration
	if v := node.Annotations[AnnotationDuration]; v != "" {
		if nd, err := time.ParseDuration(v); err == nil && nd > 0 {
			d = nd
		} else {
			s.log.Error(err, "bad duration annotation, using default", "node", node.Name, "value", v)
		}
	}
	if pod.DeletionTimestamp != nil {
		if inUpgradeStep(pod) {
			if err := s.unitGoesOn(ctx, pod, node, d, now); err != nil {
				return err
			}
		}
		return s.kill(ctx, pod, now)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	if pod.Annotations[v1alpha1.AnnotationPodAction] == v1alpha1.PodActionStage {
		return s.stage(ctx, pod, now)
	}

	behavior, at, err := ParseBehavior(node.Annotations[AnnotationBehavior])
	if err != nil {
		s.log.Error(err, "treating node as succeeding", "node", node.Name)
	}
	busyUntil, err := runnerBusyUntil(node)
	if err != nil {
		s.log.Error(err, "bad runner-busy-until annotation, ignored", "node", node.Name)
	}
	st := s.state(pod, now)
	s.mu.Lock()
	if st.confirmedAt.IsZero() && pod.Annotations[v1alpha1.AnnotationApproved] == "true" {
		st.confirmedAt = now
	}
	confirmedAt := st.confirmedAt
	s.mu.Unlock()
	p := newTimeline(pod, timelineInput{
		start: st.start, duration: d, behavior: behavior, at: at, nodeVersion: NodeVersion(node), nodeBusyUntil: busyUntil,
		confirmedAt: confirmedAt,
	})
	want := p.progressAt(now)
	s.mu.Lock()
	have := max(p.progressOf(pod), st.written)
	s.mu.Unlock()

	if want > have {
		if want == p.done() && p.succeeds() {
			// edgecore reports its new version before the runner exits, so
			// whoever sees the pod Succeeded sees the node upgraded.
			if err := s.reportVersion(ctx, node, TargetVersion(pod)); err != nil {
				return err
			}
		}
		if err := s.writeStatus(ctx, pod, p.podStatus(pod, want)); err != nil {
			return err
		}
		s.mu.Lock()
		st.written = want
		s.mu.Unlock()
		if have == 0 {
			s.stats.started.Add(1)
		}
		if want == p.done() {
			if p.succeeds() {
				s.stats.succeeded.Add(1)
			} else {
				s.stats.failed.Add(1)
			}
		}
		s.log.V(1).Info("pod advanced", "pod", key, "node", node.Name, "progress", want, "of", p.done())
	}
	if next, ok := p.nextChange(now); ok {
		s.queue.AddAfter(key, max(next.Sub(now), time.Millisecond))
	}
	return nil
}

// unitGoesOn plays the job's unit on the node of a pod deleted in its
// upgrade step: on real nodes the backup and upgrade run in a systemd unit
// that the pod's deletion does not touch (pkg/runner/unit.go), so the
// upgrade goes on after the pod is gone. The node stays busy until the pod
// would have ended and then reports the target version; an upgrade that
// fails there rolls back instead, for RollbackDuration, and the node keeps
// its version.
func (s *Simulator) unitGoesOn(ctx context.Context, pod *corev1.Pod, node *corev1.Node, d time.Duration, now time.Time) error {
	behavior, at, err := ParseBehavior(node.Annotations[AnnotationBehavior])
	if err != nil {
		s.log.Error(err, "treating node as succeeding", "node", node.Name)
	}
	st := s.state(pod, now)
	s.mu.Lock()
	confirmedAt := st.confirmedAt
	s.mu.Unlock()
	p := newTimeline(pod, timelineInput{start: st.start, duration: d, behavior: behavior, at: at, nodeVersion: NodeVersion(node), confirmedAt: confirmedAt})
	if !p.succeeds() {
		linger := s.opts.RollbackDuration
		if linger <= 0 {
			linger = d
		}
		return s.holdNode(ctx, node, now.Add(linger))
	}
	done := p.end.at
	if done.Before(now) {
		done = now
	}
	if err := s.holdNode(ctx, node, done); err != nil {
		return err
	}
	name, target := node.Name, TargetVersion(pod)
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(done)):
		}
		n, err := s.nodes.Get(name)
		if err != nil {
			return
		}
		if err := s.reportVersion(ctx, n, target); err != nil {
			s.log.Error(err, "report the version a deleted pod's unit upgraded to", "node", name)
		}
	}()
	return nil
}

// inUpgradeStep reports whether a pod's unit was in keadm upgrade (its
// upgrade container running after a successful backup), as its last status
// shows: deleted there, the unit goes on after the pod is gone.
func inUpgradeStep(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	backedUp, upgrading := false, false
	for _, c := range pod.Status.ContainerStatuses {
		switch c.Name {
		case runner.ContainerBackup:
			backedUp = c.State.Terminated != nil && c.State.Terminated.ExitCode == 0
		case runner.ContainerUpgrade:
			upgrading = c.State.Running != nil
		}
	}
	return backedUp && upgrading
}

// runnerBusyUntil reads AnnotationRunnerBusyUntil; zero when unset.
func runnerBusyUntil(node *corev1.Node) (time.Time, error) {
	v := node.Annotations[AnnotationRunnerBusyUntil]
	if v == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, v)
}

// holdNode records on the node that a runner stays there until until,
// unless one already stays longer.
func (s *Simulator) holdNode(ctx context.Context, node *corev1.Node, until time.Time) error {
	if v, err := runnerBusyUntil(node); err == nil && !v.Before(until) {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		AnnotationRunnerBusyUntil: until.UTC().Format(time.RFC3339Nano),
	}}})
	if err != nil {
		return fmt.Errorf("fleetsim: node annotation patch: %w", err)
	}
	if _, err := s.client.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("fleetsim: hold node %s for a lingering runner: %w", node.Name, err)
	}
	s.stats.nodeWrites.Add(1)
	return nil
}

// reportVersion makes the node report edgecore version v.
func (s *Simulator) reportVersion(ctx context.Context, node *corev1.Node, v string) error {
	if v == "" || NodeVersion(node) == v {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"nodeInfo": map[string]any{
		"kubeletVersion": withKubeEdgeVersion(node.Status.NodeInfo.KubeletVersion, v),
	}}})
	if err != nil {
		return fmt.Errorf("fleetsim: version patch: %w", err)
	}
	if _, err := s.client.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("fleetsim: report version %s on node %s: %w", v, node.Name, err)
	}
	s.stats.nodeWrites.Add(1)
	return nil
}

// writeStatus replaces the pod's status. A JSON merge patch swaps whole
// lists, and needs no resourceVersion: the simulator is the only writer of
// upgrade pod status, as the kubelet is on a real node. It carries the
// pod's UID, as the kubelet's status patch does: an upgrade pod is named
// after its node, so a later job's pod may have taken the name of the one
// a stale cache shows, and the API server then refuses the patch (the UID
// is immutable) rather than give that pod another's status.
func (s *Simulator) writeStatus(ctx context.Context, pod *corev1.Pod, status corev1.PodStatus) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": pod.UID}, "status": status})
	if err != nil {
		return fmt.Errorf("fleetsim: status patch: %w", err)
	}
	_, err = s.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) || apierrors.IsInvalid(err) && pod.UID != "" && s.replaced(ctx, pod) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fleetsim: write status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	s.stats.statusWrites.Add(1)
	return nil
}

// replaced reports whether the pod of this name is no longer this one
// (another UID, or none): the pod it was is gone.
func (s *Simulator) replaced(ctx context.Context, pod *corev1.Pod) bool {
	cur, err := s.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	return apierrors.IsNotFound(err) || err == nil && cur.UID != pod.UID
}

// kill does what a kubelet does with a deleted pod: stop its containers,
// report them terminated, then confirm the deletion with grace period 0.
// It never touches finalizers: with finalizers left the pod stays
// (deletionGracePeriodSeconds 0) until their owner removes them, and the
// apiserver then deletes it at once.
func (s *Simulator) kill(ctx context.Context, pod *corev1.Pod, now time.Time) error {
	s.mu.Lock()
	st := s.states[pod.UID]
	killed := st != nil && st.killed
	s.mu.Unlock()
	terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if !killed && (!terminal || !containersStopped(pod)) {
		if err := s.writeStatus(ctx, pod, killedStatus(pod, now)); err != nil {
			return err
		}
		s.stats.killed.Add(1)
		s.mu.Lock()
		if st = s.states[pod.UID]; st == nil {
			st = &podState{start: now}
			s.states[pod.UID] = st
		}
		st.killed = true
		s.mu.Unlock()
	}
	if g := pod.DeletionGracePeriodSeconds; g != nil && *g == 0 {
		return nil
	}
	uid := pod.UID
	err := s.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64(0)),
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("fleetsim: finish deletion of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	s.log.V(1).Info("pod killed", "pod", pod.Namespace+"/"+pod.Name, "node", pod.Spec.NodeName)
	return nil
}

// stage plays a stage pod (spec.preStage): its containers only pull their
// images and exit 0. Pulls take no time here; on a real node the package's
// pull is most of a stage (docs/kubeedge.md).
func (s *Simulator) stage(ctx context.Context, pod *corev1.Pod, now time.Time) error {
	st := corev1.PodStatus{Phase: corev1.PodSucceeded, StartTime: &metav1.Time{Time: now}}
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed",
				StartedAt: metav1.Time{Time: now}, FinishedAt: metav1.Time{Time: now}}}})
	}
	return s.writeStatus(ctx, pod, st)
}
