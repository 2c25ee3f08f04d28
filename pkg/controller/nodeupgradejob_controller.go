package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// Reconciler drives NodeUpgradeJobs. It keeps no state a restart would lose:
// every decision is recorded in the job's status or in a pod before it matters.
// Build it with NewReconciler: its fields are unexported so that options
// cannot skip Options.Validate, and a zero Reconciler refuses to reconcile.
type Reconciler struct {
	client    client.Client
	apiReader client.Reader
	recorder  events.EventRecorder
	clock     clock.PassiveClock
	opts      Options
	metrics   *Metrics

	// lastWrite remembers when each job's status was last written, to
	// coalesce writes (Options.StatusWriteInterval). Losing it on a restart
	// costs one early write, nothing more.
	lastWrite sync.Map // job name -> time.Time

	// notHandled remembers the jobs already reported as handled by another
	// controller (UID/reason), so each is reported once per process.
	notHandled sync.Map

	// shards keeps sharded jobs' shards decoded (shards.go).
	shards shardCache

	// digests reads install images' digests from registries
	// (spec.imageDigestGatter.registryAPI); digestTries remembers each
	// job's last refused lookup, to space the next (see resolveDigests).
	digests     DigestResolver
	digestTries sync.Map // job UID -> digestTry
}

// Deps are what a Reconciler reads and writes through.
type Deps struct {
	// Client is the manager's client: reads from the informer cache,
	// writes to the API server. Required.
	Client client.Client
	// APIReader reads around the cache, to confirm the cached job is
	// current before creating pods from a plan that wrote no status, and to
	// list a deleted job's pods. Required.
	APIReader client.Reader
	// Recorder records Events on jobs; nil records none.
	Recorder events.EventRecorder
	// Clock is the controller's clock; nil is the real one.
	Clock clock.PassiveClock
	// Metrics are recorded into; nil records none.
	Metrics *Metrics
	// Digests reads install images' digests from registries, for jobs with
	// spec.imageDigestGatter.registryAPI; nil holds such jobs with that
	// reason.
	Digests DigestResolver
}

// NewReconciler returns a Reconciler working through deps with opts, once
// opts pass Options.Validate.
func NewReconciler(deps Deps, opts Options) (*Reconciler, error) {
	if deps.Client == nil || deps.APIReader == nil {
		return nil, errors.New("controller: NewReconciler needs a Client and an APIReader")
	}
	opts, err := opts.Validate()
	if err != nil {
		return nil, err
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	return &Reconciler{client: deps.Client, apiReader: deps.APIReader, recorder: deps.Recorder,
		clock: deps.Clock, opts: opts, metrics: deps.Metrics, digests: deps.Digests}, nil
}

// errNotBuilt is what a Reconciler not made by NewReconciler returns.
var errNotBuilt = reconcile.TerminalError(errors.New("controller: Reconciler used without NewReconciler"))

// Jobs and their status are only ever patched (finalizer, status), never
// updated. Update on finalizers is what the API server asks of a pod
// creator that sets blockOwnerDeletion on its owner reference to the job.
// +kubebuilder:rbac:groups=operations.kubeedge.io,resources=nodeupgradejobs,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=operations.kubeedge.io,resources=nodeupgradejobs/status,verbs=patch
// +kubebuilder:rbac:groups=operations.kubeedge.io,resources=nodeupgradejobs/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch

// Reconcile moves one job forward.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if r.client == nil {
		return ctrl.Result{}, errNotBuilt
	}
	job := &v1alpha1.NodeUpgradeJob{}
	if err := r.client.Get(ctx, req.NamespacedName, job); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := klog.FromContext(ctx).WithValues("nodeupgradejob", klog.KObj(job))
	ctx = klog.NewContext(ctx, log)

	if !job.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, job)
	}
	if !owns(job) { // decided once: see kubeedge.go
		if reason, message, ok := handledElsewhere(job); ok {
			return r.standBack(ctx, job, reason, message)
		}
		base := job.DeepCopy()
		controllerutil.AddFinalizer(job, v1alpha1.FinalizerJobCleanup)
		if err := r.client.Patch(ctx, job, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return requeueOnConflict(err, "adding the cleanup finalizer")
		}
	}
	return r.reconcileNormal(ctx, job)
}

func (r *Reconciler) reconcileNormal(ctx context.Context, job *v1alpha1.NodeUpgradeJob) (ctrl.Result, error) {
	log := klog.FromContext(ctx)
	// A sharded job's entries are in its shards: the planner sees them all
	// in job.Status.NodeStatus, as for a job that fits.
	shards, wait, err := r.loadShards(ctx, job)
	if err != nil {
		return ctrl.Result{}, err
	}
	if wait {
		log.V(4).Info("Cached status shards and job disagree, planning again")
		return ctrl.Result{RequeueAfter: staleCacheRetry}, nil
	}
	in, pods, installImage, err := r.readInput(ctx, job)
	if err != nil {
		return ctrl.Result{}, err
	}
	digestRetry := r.resolveDigests(ctx, job, &in)
	in.Sharded = r.shardsWanted(job, in)
	plan := rollout.Decide(in)
	if digestRetry > 0 && (plan.RequeueAfter == 0 || digestRetry < plan.RequeueAfter) {
		plan.RequeueAfter = digestRetry
	}
	r.markOtherController(job, &plan.Status)

	statusChanged := !equality.Semantic.DeepEqual(job.Status, plan.Status)
	if statusChanged {
		if wait := r.untilNextWrite(job.Name, plan); wait > 0 {
			// Too soon after the last write: plan again when a write may go,
			// so that every change in between lands in one write.
			return ctrl.Result{RequeueAfter: wait}, nil
		}
		// The write carries the resourceVersion we planned from: a plan made
		// from a stale cache fails here, before any pod is touched.
		stored := job.DeepCopy()
		written, err := r.writeStatus(ctx, job, shards, in.Sharded, plan.Status)
		if err != nil {
			if apierrors.IsConflict(err) {
				return requeueOnConflict(err, "writing status")
			}
			return ctrl.Result{}, r.statusWriteFailed(ctx, stored, pods, plan, err)
		}
		job.Status = plan.Status
		r.lastWrite.Store(job.Name, r.clock.Now())
		r.metrics.observeStatusWrite(job, written)
	} else if len(plan.Dispatch) > 0 {
		// No write to carry the precondition, yet pods are to be created: make
		// sure the cached status is the latest before trusting it.
		fresh := &v1alpha1.NodeUpgradeJob{}
		if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(job), fresh); err != nil {
			return ctrl.Result{}, fmt.Errorf("reading the job around the cache: %w", err)
		}
		if fresh.ResourceVersion != job.ResourceVersion {
			log.V(4).Info("Cached job is stale, planning again", "cached", job.ResourceVersion, "live", fresh.ResourceVersion)
			return ctrl.Result{RequeueAfter: staleCacheRetry}, nil
		}
	}

	logPlan(log, plan, statusChanged)
	r.recordEvents(job, plan.Events)
	r.metrics.observePlan(job, in, plan)
	soon, err := r.applyPodActions(ctx, job, pods, plan, installImage)
	if err != nil {
		return ctrl.Result{}, err
	}
	if plan.Finished {
		log.V(2).Info("Job finished", "state", plan.Status.State, "reason", plan.Status.Reason)
	}
	if plan.SetSuspend != nil && *plan.SetSuspend != job.Spec.Suspend {
		return r.setSuspend(ctx, job, *plan.SetSuspend)
	}
	if soon > 0 && (plan.RequeueAfter == 0 || soon < plan.RequeueAfter) {
		return ctrl.Result{RequeueAfter: soon}, nil
	}
	return ctrl.Result{RequeueAfter: plan.RequeueAfter}, nil
}

// writeStatus commits next, the job's status, and returns what the job
// stores of it: one merge patch that carries the resourceVersion the plan
// was made from, or for a sharded job the patch and its changed shards
// (writeSharded). On success job carries the new resourceVersion.
func (r *Reconciler) writeStatus(ctx context.Context, job *v1alpha1.NodeUpgradeJob, shards *shardState, sharded bool,
	next v1alpha1.NodeUpgradeJobStatus) (*v1alpha1.NodeUpgradeJobStatus, error) {
	if sharded {
		return r.writeSharded(ctx, job, shards, next)
	}
	base := job.DeepCopy()
	patched := job.DeepCopy()
	patched.Status = next
	if err := r.client.Status().Patch(ctx, patched, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return nil, err
	}
	job.ResourceVersion = patched.ResourceVersion
	return &patched.Status, nil
}

// setSuspend sets spec.suspend for the canary wave (rollout.Plan.SetSuspend:
// true when it is done, false when it soaked and passed), after the plan's
// status is written: that status says why (the Canary condition, reason
// Pausing), so a plan that finds the job not yet suspended asks again
// rather than take it for resumed. The patch carries the resourceVersion of
// the job as written, so a job an operator changed meanwhile is planned
// again rather than overridden.
func (r *Reconciler) setSuspend(ctx context.Context, job *v1alpha1.NodeUpgradeJob, suspend bool) (ctrl.Result, error) {
	base := job.DeepCopy()
	job.Spec.Suspend = suspend
	if err := r.client.Patch(ctx, job, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return requeueOnConflict(err, "setting spec.suspend after the canary wave")
	}
	klog.FromContext(ctx).Info("Canary wave: spec.suspend set", "suspend", suspend)
	return ctrl.Result{RequeueAfter: conflictRetry}, nil
}

// logPlan logs a committed plan (rollout.Plan.String: the job's state and
// each kind of pod action). A plan that changes the status or acts on pods
// is a decision, logged at V(2) with the pod actions; one that changes
// nothing, as most reconciles of a running job do, only at V(4).
func logPlan(log klog.Logger, plan rollout.Plan, statusChanged bool) {
	if statusChanged || len(plan.Dispatch) > 0 || len(plan.Cleanup) > 0 {
		log.V(2).Info("Plan committed", "plan", plan)
		return
	}
	log.V(4).Info("Plan unchanged", "plan", plan)
}

// reconcileDelete cancels every upgrade of a deleted job and removes its pods,
// then lets the job go. It does not wait for pods on offline nodes to finish
// terminating: their kubelet ends them when it reconnects.
//
// The pods are listed from the API server, not the cache: a pod created an
// instant before the deletion may not be in the cache yet, and once the job
// is gone nothing would ever take its tracking finalizer off.
func (r *Reconciler) reconcileDelete(ctx context.Context, job *v1alpha1.NodeUpgradeJob) error {
	r.lastWrite.Delete(job.Name)
	r.shards.forget(job.Status.Shards) // the shards go with the job (owner reference)
	r.metrics.forgetJob(job.Name)
	if !controllerutil.ContainsFinalizer(job, v1alpha1.FinalizerJobCleanup) {
		return nil
	}
	pods, err := r.listPods(ctx, r.apiReader, job)
	if err != nil {
		return err
	}
	for _, pod := range pods {
		if err := r.releasePod(ctx, pod); err != nil {
			return err
		}
		if err := r.deletePod(ctx, pod, ""); err != nil { // logged as one below
			return err
		}
	}
	klog.FromContext(ctx).Info("Job deleted, upgrade pods cancelled", "pods", len(pods))
	base := job.DeepCopy()
	controllerutil.RemoveFinalizer(job, v1alpha1.FinalizerJobCleanup)
	if err := r.client.Patch(ctx, job, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing the cleanup finalizer: %w", err)
	}
	return nil
}

// statusWriteFailed makes a refused status write visible, for any reason
// but a conflict (too large, invalid, denied by a policy): a condition with
// the API server's message, a Warning event and a metric. The pods whose
// outcome the stored status already records are still released and
// deleted; nothing new starts, because nothing is committed. The error goes
// back to the work queue, which retries with backoff.
func (r *Reconciler) statusWriteFailed(ctx context.Context, stored *v1alpha1.NodeUpgradeJob, pods observedPods, plan rollout.Plan, writeErr error) error {
	log := klog.FromContext(ctx)
	message := rollout.Truncate(writeErr.Error(), maxConditionMessage)
	reason := string(apierrors.ReasonForError(writeErr))
	if reason == "" {
		reason = "Unknown"
	}
	r.metrics.statusWriteFailed(stored, reason, plan.Status)

	job := stored.DeepCopy()
	cond := meta.FindStatusCondition(job.Status.Conditions, v1alpha1.ConditionStatusWriteFailed)
	if cond == nil || cond.Message != message {
		r.recordEvents(job, []rollout.Event{{Warning: true, Reason: v1alpha1.ConditionStatusWriteFailed,
			Message: "Writing the job's status failed: " + message}})
	}
	// Only the conditions: a merge patch of the stored status plus one
	// condition is as small as what is stored, so it goes where the plan's
	// write did not.
	base := job.DeepCopy()
	// A refused first write leaves no phase, which v1alpha2 requires.
	job.Status.Phase = rollout.JobPhase(job.Status.State)
	meta.SetStatusCondition(&job.Status.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionStatusWriteFailed, Status: metav1.ConditionTrue, Reason: reason,
		Message: message, ObservedGeneration: job.Generation, LastTransitionTime: metav1.NewTime(r.clock.Now()),
	})
	if err := r.client.Status().Patch(ctx, job, client.MergeFrom(base)); err != nil {
		log.Error(err, "Recording a failed status write on the job")
	}

	cleanup := rollout.Cleanup(stored.Status, podViews(pods.own))
	if _, err := r.applyPodActions(ctx, stored, pods, cleanup, ""); err != nil {
		log.Error(err, "Cleaning up pods after a failed status write")
	}
	return fmt.Errorf("writing status: %w", writeErr)
}

// Requeues that are not backoffs: each retries something expected to clear
// at once, so the work queue's exponential backoff (from 5 ms, doubling)
// would only add delay or, for a conflict, noise in the error log.
const (
	// staleCacheRetry: the cached job is older than the API server's; the
	// informer is about to deliver the newer one.
	staleCacheRetry = 100 * time.Millisecond
	// cleanupContinue: this reconcile's cleanup budget ran out; the rest
	// follows straight away, after the queue lets other jobs in.
	cleanupContinue = 10 * time.Millisecond
	// refusedCreateRecheck: the API server refused a pod because another
	// job's pod has the node's pod name; by then the cache shows that pod,
	// and the node goes back to waiting.
	refusedCreateRecheck = 200 * time.Millisecond
	// conflictRetry: a write lost an optimistic-lock race; plan again from
	// the newer object.
	conflictRetry = 50 * time.Millisecond
)

// maxConditionMessage bounds a condition's message (the API allows 32768).
const maxConditionMessage = 1024

// perNodeEventLimit is the job size above which routine per-node events
// (dispatched, upgraded, skipped) are not recorded: 10,000 of each would cost
// the API server more than the upgrades do. Warnings are always recorded, and
// Progress events tell the story of large jobs.
const perNodeEventLimit = 100

// maxEventNote is events.k8s.io's limit on an event's note.
const maxEventNote = 1024

func (r *Reconciler) recordEvents(job *v1alpha1.NodeUpgradeJob, evs []rollout.Event) {
	if r.recorder == nil {
		return
	}
	large := len(job.Status.NodeStatus) > perNodeEventLimit
	for _, e := range evs {
		typ := corev1.EventTypeNormal
		if e.Warning {
			typ = corev1.EventTypeWarning
		}
		if large && !e.Warning && e.Node != "" {
			continue
		}
		if !large && e.Reason == rollout.ReasonProgress {
			continue // small jobs have an event per node already
		}
		// The node is the related object: the event recorder folds events
		// with the same reason and objects into one series and keeps only
		// the first message, which would hide every node but the first.
		var related runtime.Object
		if e.Node != "" {
			related = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: e.Node}}
		}
		// events.k8s.io refuses a note over 1 kB, and the event would be lost.
		r.recorder.Eventf(job, related, typ, e.Reason, "Upgrade", "%s", rollout.Truncate(e.Message, maxEventNote))
	}
}

// requeueOnConflict turns a write conflict (someone wrote since our read, or
// our cache was stale) into a quiet retry; other errors go to the caller.
func requeueOnConflict(err error, doing string) (ctrl.Result, error) {
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return ctrl.Result{}, fmt.Errorf("%s: %w", doing, err)
}
