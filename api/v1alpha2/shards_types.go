package v1alpha2

// nodeupgrade: a job of many nodes keeps its per-node records in shards
// (ConfigMaps owned by the job, see api/v1alpha1/shards_types.go): its
// status.nodeStatus then holds only the failed and in-flight nodes
// (bounded), and status.shards says where every node's record lives.

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
