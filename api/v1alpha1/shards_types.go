package v1alpha1

// A job of many nodes keeps its per-node records in shards: ConfigMaps in
// the controller's namespace, owned by the job, each holding the nodeStatus
// entries of one range of the selection (sorted by name). The job's own
// status then keeps what an operator reads first: its state, conditions,
// counters, a bounded list of failed and in-flight nodes, and Shards, which
// says where every node's record lives. A job at or below the controller's
// --status-shard-threshold keeps every entry in status.nodeStatus and has
// no shards.

// ShardKindConfigMap is the only kind of status shard: a ConfigMap.
const ShardKindConfigMap = "ConfigMap"

// Keys and labels of a status shard ConfigMap.
const (
	// LabelShardOf, on a status shard, holds its job's UID.
	LabelShardOf = "operations.kubeedge.io/status-shard-of"
	// ShardKeyNodeStatus holds the shard's nodeStatus entries as a JSON
	// array of TaskStatus, in selection order.
	ShardKeyNodeStatus = "nodeStatus"
	// ShardKeyRevision holds the shard's revision, the number the job's
	// status.shards.revisions records for it once the shard is written.
	ShardKeyRevision = "revision"
	// ShardKeyJob holds the job's name.
	ShardKeyJob = "job"
	// ShardKeyFirst holds the index, in the selection, of the shard's first entry.
	ShardKeyFirst = "first"
)

// MaxSummaryNodes bounds the entries a sharded job keeps in its own
// status.nodeStatus: failed nodes first, then nodes in flight.
const MaxSummaryNodes = 32

// StatusShards says where a sharded job's per-node records live.
type StatusShards struct {
	// Kind of the shard objects: ConfigMap.
	// +optional
	Kind string `json:"kind,omitempty"`
	// Namespace of the shard objects (the controller's).
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// NamePrefix names the shards: shard i (from 0) is NamePrefix-i.
	// +optional
	NamePrefix string `json:"namePrefix,omitempty"`
	// Selector is the label selector that lists the shards.
	// +optional
	Selector string `json:"selector,omitempty"`
	// Size is the number of nodes per shard; the last holds the rest.
	// +optional
	Size int32 `json:"size,omitempty"`
	// Nodes is the number of nodes selected, all shards together.
	// +optional
	Nodes int32 `json:"nodes,omitempty"`
	// Revisions holds each shard's revision, in order: a shard whose data
	// says less is not yet written (or its write was lost).
	// +optional
	// +listType=atomic
	Revisions []int64 `json:"revisions,omitempty"`
}
