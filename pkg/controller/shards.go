package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/pkg/statusshard"
)

// +kubebuilder:rbac:groups="",namespace=nodeupgrade-system,resources=configmaps,verbs=get;list;watch;create;update

// A job of more than Options.StatusShardThreshold nodes keeps its per-node
// records in shards (pkg/statusshard): each status write rewrites the job's
// small status and only the shards whose entries changed, so its cost
// follows what changed, not the fleet.
//
// The job is the commit point. A write goes in three steps: shards the job
// does not reference yet are created (only on its first write; an orphan of
// a failed first write is overwritten by the next), then the job's status
// is patched with the resourceVersion the plan was made from, recording
// each shard's new revision, then the changed shards are updated. Pods are
// acted on only after all three succeeded, as before. So:
//   - a plan made from a stale job fails at the job's patch, before any
//     shard it references changes;
//   - a plan made from a stale shard is never made: a cached shard older
//     than the revision the job records is waited for;
//   - a shard update lost after the job's patch (a crash, a refused write)
//     leaves the shard older than the job says. Its entries then hold what
//     they held before that plan, which is safe: that plan's pods were
//     never created, released or deleted, so its dispatches are pending
//     again and its outcomes are recorded again from the pods, which still
//     carry their tracking finalizer. The next plan reads the shard around
//     the cache, sees it is older than the job records, and rewrites it.

// shardState is what a sharded job's status was read from.
type shardState struct {
	// ref is the job's status.shards as read; nil before its first write.
	ref *v1alpha1.StatusShards
	// stored is the job's own status as stored: counters and the summary.
	stored v1alpha1.NodeUpgradeJobStatus
	// cms are the shards read, by index, and entries their entries.
	cms     []*corev1.ConfigMap
	entries [][]v1alpha1.TaskStatus
	// lost marks shards older than the job records: their last write was lost.
	lost []bool
}

// decodedShard is a shard's entries, decoded once per resourceVersion.
type decodedShard struct {
	resourceVersion string
	entries         []v1alpha1.TaskStatus
}

// shardCache keeps decoded shards by name, so a reconcile decodes only the
// shards that changed since the last.
type shardCache struct{ m sync.Map }

func (c *shardCache) decode(cm *corev1.ConfigMap) ([]v1alpha1.TaskStatus, error) {
	if d, ok := c.m.Load(cm.Name); ok && d.(decodedShard).resourceVersion == cm.ResourceVersion {
		return d.(decodedShard).entries, nil
	}
	entries, err := statusshard.Decode(cm)
	if err != nil {
		return nil, err
	}
	c.store(cm, entries)
	return entries, nil
}

func (c *shardCache) store(cm *corev1.ConfigMap, entries []v1alpha1.TaskStatus) {
	c.m.Store(cm.Name, decodedShard{resourceVersion: cm.ResourceVersion, entries: entries})
}

// forget drops a job's decoded shards.
func (c *shardCache) forget(ref *v1alpha1.StatusShards) {
	if ref == nil {
		return
	}
	for i := range ref.Revisions {
		c.m.Delete(statusshard.Name(ref, i))
	}
}

// shardsWanted reports whether a job's status is, or is to be, sharded:
// it has shards, or its first plan selects more nodes than the threshold,
// or more than its own status can hold (long names).
func (r *Reconciler) shardsWanted(job *v1alpha1.NodeUpgradeJob, in rollout.Input) bool {
	if job.Status.Shards != nil {
		return true
	}
	if rollout.Initialized(job.Status) {
		return false // a job that started unsharded stays so
	}
	unique := make(map[string]struct{}, len(in.Selection))
	for _, name := range in.Selection {
		unique[name] = struct{}{}
	}
	return len(unique) > r.opts.StatusShardThreshold || !rollout.FitsInJob(in.Selection, in.ObjectBytes)
}

// loadShards puts every entry of a sharded job into job.Status.NodeStatus,
// read from its shards in the cache. wait is set when the cache is behind
// the job (or the job behind the cache): the plan must wait for it.
func (r *Reconciler) loadShards(ctx context.Context, job *v1alpha1.NodeUpgradeJob) (st *shardState, wait bool, err error) {
	st = &shardState{ref: job.Status.Shards, stored: *job.Status.DeepCopy()}
	ref := st.ref
	if ref == nil {
		return st, false, nil
	}
	list := &corev1.ConfigMapList{}
	if err := r.client.List(ctx, list, client.InNamespace(ref.Namespace),
		client.MatchingLabels{v1alpha1.LabelShardOf: string(job.UID)}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, false, fmt.Errorf("listing status shards: %w", err)
	}
	byName := make(map[string]*corev1.ConfigMap, len(list.Items))
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	n := len(ref.Revisions)
	st.cms, st.entries, st.lost = make([]*corev1.ConfigMap, n), make([][]v1alpha1.TaskStatus, n), make([]bool, n)
	all := make([]v1alpha1.TaskStatus, 0, ref.Nodes)
	for i, want := range ref.Revisions {
		cm := byName[statusshard.Name(ref, i)]
		switch {
		case cm != nil && statusshard.Revision(cm) == want:
		case cm != nil && statusshard.Revision(cm) > want:
			return nil, true, nil // the cached job is older than its shard
		default:
			live := &corev1.ConfigMap{}
			if err := r.apiReader.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: statusshard.Name(ref, i)}, live); err != nil {
				return nil, false, fmt.Errorf("status shard %s/%s: %w", ref.Namespace, statusshard.Name(ref, i), err)
			}
			if statusshard.Revision(live) >= want {
				return nil, true, nil // the cache has not caught up
			}
			klog.FromContext(ctx).Info("Status shard older than the job records: its last write was lost, rewriting it",
				"shard", klog.KObj(live), "revision", statusshard.Revision(live), "recorded", want)
			cm, st.lost[i] = live, true
		}
		entries, err := r.shards.decode(cm)
		if err != nil {
			return nil, false, err
		}
		st.cms[i], st.entries[i] = cm, entries
		all = append(all, entries...)
	}
	job.Status.NodeStatus = all
	return st, false, nil
}

// writeSharded commits next, a sharded job's status: new shards, the job,
// changed shards, in this order (see above). job holds the status as read.
func (r *Reconciler) writeSharded(ctx context.Context, job *v1alpha1.NodeUpgradeJob, st *shardState, next v1alpha1.NodeUpgradeJobStatus) (*v1alpha1.NodeUpgradeJobStatus, error) {
	ref, parts, creates, updates := r.shardWrites(job, st, next)
	build := func(i int) (*corev1.ConfigMap, error) {
		return statusshard.Build(job, ref, i, parts[i], ref.Revisions[i])
	}
	if err := r.eachShard(ctx, creates, func(ctx context.Context, i int) error {
		cm, err := build(i)
		if err != nil {
			return err
		}
		err = r.client.Create(ctx, cm)
		if apierrors.IsAlreadyExists(err) {
			// Left by a first write whose job patch failed: the job does
			// not reference it, so it is ours to overwrite.
			live := &corev1.ConfigMap{}
			if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(cm), live); err != nil {
				return err
			}
			cm.ResourceVersion = live.ResourceVersion
			err = r.client.Update(ctx, cm)
		}
		if err == nil {
			r.shards.store(cm, slices.Clone(parts[i]))
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("creating status shards: %w", err)
	}

	base := job.DeepCopy()
	base.Status = st.stored
	patched := base.DeepCopy()
	patched.Status = next
	patched.Status.NodeStatus = statusshard.Summary(next.NodeStatus)
	patched.Status.Shards = ref
	if err := r.client.Status().Patch(ctx, patched, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return nil, err
	}
	job.ResourceVersion = patched.ResourceVersion

	if err := r.eachShard(ctx, updates, func(ctx context.Context, i int) error {
		cm, err := build(i)
		if err != nil {
			return err
		}
		cm.ResourceVersion = st.cms[i].ResourceVersion
		if err := r.client.Update(ctx, cm); err != nil {
			return err
		}
		r.shards.store(cm, slices.Clone(parts[i]))
		return nil
	}); err != nil {
		return nil, fmt.Errorf("updating status shards (the job records their new revisions; the next plan rewrites them): %w", err)
	}
	r.metrics.observeShardWrites(len(creates) + len(updates))
	return &patched.Status, nil
}

// shardWrites says what writing next takes: the job's new shard reference
// (each changed shard's revision one up), what each shard stores
// (statusshard.Persisted), and the shards to create (not yet referenced by
// the job) and to update.
func (r *Reconciler) shardWrites(job *v1alpha1.NodeUpgradeJob, st *shardState, next v1alpha1.NodeUpgradeJobStatus) (
	ref *v1alpha1.StatusShards, parts [][]v1alpha1.TaskStatus, creates, updates []int) {
	if st.ref != nil {
		ref = st.ref.DeepCopy()
	} else {
		ref = statusshard.NewRef(job, r.opts.Namespace, len(next.NodeStatus), r.opts.StatusShardSize)
	}
	parts = statusshard.Split(ref, next.NodeStatus)
	for i, part := range parts {
		known := i < len(st.cms) && st.cms[i] != nil
		var stored []v1alpha1.TaskStatus
		if known {
			stored = st.entries[i]
		}
		part = statusshard.Persisted(stored, part)
		parts[i] = part
		if known && !st.lost[i] && equality.Semantic.DeepEqual(st.entries[i], part) {
			continue
		}
		ref.Revisions[i]++
		if known {
			updates = append(updates, i)
		} else {
			creates = append(creates, i)
		}
	}
	return ref, parts, creates, updates
}

// eachShard runs write for each shard index, up to --pod-workers at once.
func (r *Reconciler) eachShard(ctx context.Context, indexes []int, write func(context.Context, int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.PodWorkers)
	for _, i := range indexes {
		g.Go(func() error { return write(gctx, i) })
	}
	return g.Wait()
}
