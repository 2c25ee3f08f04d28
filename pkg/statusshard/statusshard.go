// Package statusshard keeps the per-node records of a large NodeUpgradeJob
// in shards: ConfigMaps in the controller's namespace, owned by the job,
// each holding the status.nodeStatus entries of one range of the selection.
// The job's own status keeps the counters, conditions, a bounded summary of
// failed and in-flight nodes, and status.shards (v1alpha1.StatusShards),
// which says where the rest lives. The controller writes shards
// (pkg/controller/shards.go); readers (kubectl nodeupgrade, tests) use
// Read to see a sharded job's every entry.
package statusshard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

// NewRef describes the shards of a job of nodes entries, size per shard, in
// namespace, none written yet (every revision 0).
func NewRef(job *v1alpha1.NodeUpgradeJob, namespace string, nodes, size int) *v1alpha1.StatusShards {
	count := (nodes + size - 1) / size
	return &v1alpha1.StatusShards{
		Kind: v1alpha1.ShardKindConfigMap, Namespace: namespace,
		NamePrefix: "nodeupgrade-status-" + string(job.UID),
		Selector:   labels.Set{v1alpha1.LabelShardOf: string(job.UID)}.String(),
		Size:       int32(size), Nodes: int32(nodes), Revisions: make([]int64, count),
	}
}

// Name is the name of shard i.
func Name(ref *v1alpha1.StatusShards, i int) string {
	return ref.NamePrefix + "-" + strconv.Itoa(i)
}

// Range is the selection range [first, end) shard i holds.
func Range(ref *v1alpha1.StatusShards, i int) (first, end int) {
	first = i * int(ref.Size)
	return first, min(first+int(ref.Size), int(ref.Nodes))
}

// Split cuts entries into the ranges of ref's shards.
func Split(ref *v1alpha1.StatusShards, entries []v1alpha1.TaskStatus) [][]v1alpha1.TaskStatus {
	parts := make([][]v1alpha1.TaskStatus, len(ref.Revisions))
	for i := range parts {
		first, end := Range(ref, i)
		parts[i] = entries[min(first, len(entries)):min(end, len(entries))]
	}
	return parts
}

// Persisted is what a shard stores of next, the plan's entries of its
// range, when it holds stored now (nil before its first write). A shard
// is rewritten whole, and a node's entry changes several times while it
// is in flight, so a shard is written only for what a plan after a restart
// must not lose:
//   - the dispatch (pending to in flight, with its time: the deadline runs
//     from it, and the pod may exist only once it is recorded),
//   - the confirmation (a new clock), and entering the steps that change the
//     node (BackingUp, Upgrading, RollingBack: a pod deleted from then on is
//     judged by the node, not failed: rollout's unitMayRun),
//   - the final entry.
//
// A step within the same stage (Init to Checking, BackingUp to Upgrading)
// keeps the stored entry: the next plan derives it again from the pod,
// which holds it until the outcome is recorded. The job's own summary
// shows the current step. A Successful entry is stored without its
// actionFlow: its phase says every action passed.
func Persisted(stored, next []v1alpha1.TaskStatus) []v1alpha1.TaskStatus {
	out := make([]v1alpha1.TaskStatus, len(next))
	for i := range next {
		e := next[i]
		if e.State == v1alpha1.StateSuccessful {
			e.ActionFlow = nil
		}
		if i < len(stored) && stored[i].NodeName == e.NodeName && sameStage(&stored[i], &e) {
			e = stored[i]
		}
		out[i] = e
	}
	return out
}

// sameStage reports whether two in-flight entries of a node differ only in
// what the next plan derives again from the node's pod.
func sameStage(stored, next *v1alpha1.TaskStatus) bool {
	return rollout.NodeInFlight(stored.State) && rollout.NodeInFlight(next.State) &&
		stored.Time == next.Time && stage(stored.State) == stage(next.State)
}

// stage groups the in-flight states by what a restart must know: dispatched
// (Init, Checking), confirmed (its clock restarted), changing the node,
// soaking in its health gate (its time is when the soak began).
func stage(state string) int {
	switch state {
	case v1alpha1.StateConfirmed:
		return 1
	case v1alpha1.StateBackingUp, v1alpha1.StateUpgrading, v1alpha1.StateRollingBack:
		return 2
	case v1alpha1.StateVerifying:
		return 3
	}
	return 0
}

// Summary is what a sharded job keeps in its own status.nodeStatus: its
// failed nodes (at most half of v1alpha1.MaxSummaryNodes), then its nodes
// in flight or waiting for their confirmation (without their actionFlow),
// at most v1alpha1.MaxSummaryNodes in all, each group in selection order.
func Summary(entries []v1alpha1.TaskStatus) []v1alpha1.TaskStatus {
	var failed, active []v1alpha1.TaskStatus
	for i := range entries {
		e := &entries[i]
		switch {
		case e.State == v1alpha1.StateFailed && len(failed) < v1alpha1.MaxSummaryNodes/2:
			failed = append(failed, *e)
		case (rollout.NodeInFlight(e.State) || e.State == v1alpha1.StateWaitingConfirmation) && len(active) < v1alpha1.MaxSummaryNodes:
			// Without its flow: its state says where it is, and the job
			// is written every second while nodes are in flight.
			brief := *e
			brief.ActionFlow = nil
			active = append(active, brief)
		}
	}
	out := make([]v1alpha1.TaskStatus, 0, len(failed)+len(active))
	out = append(out, failed...)
	out = append(out, active...)
	return out[:min(len(out), v1alpha1.MaxSummaryNodes)]
}

// Build renders shard i of job holding entries at revision.
func Build(job *v1alpha1.NodeUpgradeJob, ref *v1alpha1.StatusShards, i int, entries []v1alpha1.TaskStatus, revision int64) (*corev1.ConfigMap, error) {
	data, err := Encode(entries)
	if err != nil {
		return nil, err
	}
	first, _ := Range(ref, i)
	yes := true
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: Name(ref, i), Namespace: ref.Namespace,
			Labels: map[string]string{v1alpha1.LabelShardOf: string(job.UID)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "NodeUpgradeJob",
				Name: job.Name, UID: job.UID, Controller: &yes}},
		},
		Data: map[string]string{
			v1alpha1.ShardKeyJob: job.Name, v1alpha1.ShardKeyFirst: strconv.Itoa(first),
			v1alpha1.ShardKeyRevision: strconv.FormatInt(revision, 10), v1alpha1.ShardKeyNodeStatus: data,
		},
	}, nil
}

// Encode is the JSON of entries as a shard stores them: without HTML
// escapes, which would make a reason of '<' six bytes a character.
func Encode(entries []v1alpha1.TaskStatus) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if entries == nil {
		entries = []v1alpha1.TaskStatus{}
	}
	if err := enc.Encode(entries); err != nil {
		return "", err
	}
	return string(bytes.TrimRight(b.Bytes(), "\n")), nil
}

// Revision reads a shard's revision; a shard that does not say has 0.
func Revision(cm *corev1.ConfigMap) int64 {
	rev, err := strconv.ParseInt(cm.Data[v1alpha1.ShardKeyRevision], 10, 64)
	if err != nil {
		return 0
	}
	return rev
}

// Decode reads a shard's entries.
func Decode(cm *corev1.ConfigMap) ([]v1alpha1.TaskStatus, error) {
	var entries []v1alpha1.TaskStatus
	if err := json.Unmarshal([]byte(cm.Data[v1alpha1.ShardKeyNodeStatus]), &entries); err != nil {
		return nil, fmt.Errorf("status shard %s/%s: %s: %w", cm.Namespace, cm.Name, v1alpha1.ShardKeyNodeStatus, err)
	}
	return entries, nil
}

// Read returns every nodeStatus entry of job, in selection order: its own
// status.nodeStatus when it has no shards, else its shards', read through
// reader (which must see ConfigMaps in the shards' namespace). A shard that
// is missing, or older than the job records, is an error naming it.
func Read(ctx context.Context, reader client.Reader, job *v1alpha1.NodeUpgradeJob) ([]v1alpha1.TaskStatus, error) {
	ref := job.Status.Shards
	if ref == nil {
		return job.Status.NodeStatus, nil
	}
	list := &corev1.ConfigMapList{}
	if err := reader.List(ctx, list, client.InNamespace(ref.Namespace), client.MatchingLabels{v1alpha1.LabelShardOf: string(job.UID)}); err != nil {
		return nil, fmt.Errorf("listing the status shards of NodeUpgradeJob %s: %w", job.Name, err)
	}
	byName := make(map[string]*corev1.ConfigMap, len(list.Items))
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	entries := make([]v1alpha1.TaskStatus, 0, ref.Nodes)
	for i, want := range ref.Revisions {
		cm, ok := byName[Name(ref, i)]
		if !ok {
			return nil, fmt.Errorf("status shard %s/%s of NodeUpgradeJob %s is missing", ref.Namespace, Name(ref, i), job.Name)
		}
		if got := Revision(cm); got < want {
			return nil, fmt.Errorf("status shard %s/%s of NodeUpgradeJob %s is at revision %d, the job records %d: read again", ref.Namespace, cm.Name, job.Name, got, want)
		}
		part, err := Decode(cm)
		if err != nil {
			return nil, err
		}
		entries = append(entries, part...)
	}
	return entries, nil
}

// Full returns job with every entry in status.nodeStatus (Read), the form
// every reader of a job that fits has.
func Full(ctx context.Context, reader client.Reader, job *v1alpha1.NodeUpgradeJob) (*v1alpha1.NodeUpgradeJob, error) {
	if job.Status.Shards == nil {
		return job, nil
	}
	entries, err := Read(ctx, reader, job)
	if err != nil {
		return nil, err
	}
	full := job.DeepCopy()
	full.Status.NodeStatus = entries
	return full, nil
}
