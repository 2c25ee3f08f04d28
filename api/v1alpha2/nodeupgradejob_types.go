package v1alpha2

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The types below follow KubeEdge's github.com/kubeedge/api/apis/operations/v1alpha2
// (types_nodeupgrade.go, types_common.go) as vendored in KubeEdge v1.22.0, and
// its CRD build/crds/operations/operations_v1alpha2_nodeupgradejob.yaml.
// Descriptions are KubeEdge's. No validation is added that an object
// KubeEdge's tooling wrote could fail: only transition rules that keep a
// spec from changing (see NodeUpgradeJobSpec).
//
// On top of KubeEdge's fields, v1alpha2 carries every field v1alpha1 has and
// KubeEdge's v1alpha2 lacks (marked "nodeupgrade:" below), and v1alpha1
// carries every v1alpha2 field. The CRD converts between the versions with
// strategy None, which only rewrites apiVersion; with the same fields in both
// schemas nothing is pruned either way (api/v1alpha2 and test/manifests
// check it).

// The phase and action vocabulary (status.phase, nodeStatus[].phase,
// actionFlow[].action) is defined once, in api/v1alpha1/phases.go: both
// versions hold the same values.

// FinalizerNodeUpgradeJob is the finalizer kubeedge-controller-manager (v1.21+)
// puts on the jobs it handles.
const FinalizerNodeUpgradeJob = "kubeedge.io/nodeupgradejob-controller"

// NodeUpgradeJobSpec is the specification of the desired behavior of the NodeUpgradeJob.
//
// nodeupgrade: the same per-field immutability rules as v1alpha1. kubectl
// writes through v1alpha2, the preferred version, so without them `kubectl
// edit` could change a running job's version or nodes. They are transition
// rules, checked only when a spec changes, so every object KubeEdge's
// tooling wrote stays valid.
//
// +kubebuilder:validation:XValidation:rule="has(self.nodeNames) == has(oldSelf.nodeNames) && (!has(self.nodeNames) || self.nodeNames == oldSelf.nodeNames)",message="spec.nodeNames is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".nodeNames"
// +kubebuilder:validation:XValidation:rule="has(self.labelSelector) == has(oldSelf.labelSelector) && (!has(self.labelSelector) || self.labelSelector == oldSelf.labelSelector)",message="spec.labelSelector is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".labelSelector"
// +kubebuilder:validation:XValidation:rule="has(self.version) == has(oldSelf.version) && (!has(self.version) || self.version == oldSelf.version)",message="spec.version is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".version"
// +kubebuilder:validation:XValidation:rule="has(self.image) == has(oldSelf.image) && (!has(self.image) || self.image == oldSelf.image)",message="spec.image is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".image"
// +kubebuilder:validation:XValidation:rule="has(self.timeoutSeconds) == has(oldSelf.timeoutSeconds) && (!has(self.timeoutSeconds) || self.timeoutSeconds == oldSelf.timeoutSeconds)",message="spec.timeoutSeconds is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".timeoutSeconds"
// +kubebuilder:validation:XValidation:rule="has(self.concurrency) == has(oldSelf.concurrency) && (!has(self.concurrency) || self.concurrency == oldSelf.concurrency)",message="spec.concurrency is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".concurrency"
// +kubebuilder:validation:XValidation:rule="has(self.failureTolerate) == has(oldSelf.failureTolerate) && (!has(self.failureTolerate) || self.failureTolerate == oldSelf.failureTolerate)",message="spec.failureTolerate is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".failureTolerate"
// +kubebuilder:validation:XValidation:rule="has(self.checkItems) == has(oldSelf.checkItems) && (!has(self.checkItems) || self.checkItems == oldSelf.checkItems)",message="spec.checkItems is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".checkItems"
// +kubebuilder:validation:XValidation:rule="has(self.imageDigestGatter) == has(oldSelf.imageDigestGatter) && (!has(self.imageDigestGatter) || self.imageDigestGatter == oldSelf.imageDigestGatter)",message="spec.imageDigestGatter is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".imageDigestGatter"
// +kubebuilder:validation:XValidation:rule="(has(self.requireConfirmation) && self.requireConfirmation) == (has(oldSelf.requireConfirmation) && oldSelf.requireConfirmation)",message="spec.requireConfirmation is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".requireConfirmation"
// +kubebuilder:validation:XValidation:rule="has(self.maintenanceWindows) == has(oldSelf.maintenanceWindows) && (!has(self.maintenanceWindows) || self.maintenanceWindows == oldSelf.maintenanceWindows)",message="spec.maintenanceWindows is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".maintenanceWindows"
// +kubebuilder:validation:XValidation:rule="has(self.canary) == has(oldSelf.canary) && (!has(self.canary) || self.canary == oldSelf.canary)",message="spec.canary is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".canary"
// +kubebuilder:validation:XValidation:rule="!has(self.canary) || !has(self.canary.count) || !has(self.nodeNames) || self.canary.count < size(self.nodeNames)",message="spec.canary.count must be smaller than the number of spec.nodeNames: the canary is the first wave, not the whole job",fieldPath=".canary.count"
// +kubebuilder:validation:XValidation:rule="has(self.healthGate) == has(oldSelf.healthGate) && (!has(self.healthGate) || self.healthGate == oldSelf.healthGate)",message="spec.healthGate is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".healthGate"
// +kubebuilder:validation:XValidation:rule="has(self.preStage) == has(oldSelf.preStage) && (!has(self.preStage) || self.preStage == oldSelf.preStage)",message="spec.preStage is immutable: only spec.suspend and spec.approvedNodes may change; create a new NodeUpgradeJob instead",fieldPath=".preStage"
type NodeUpgradeJobSpec struct {
	// +optional
	Version string `json:"version,omitempty"`
	// TimeoutSeconds limits the duration of the node upgrade job.
	// Default to 300.
	// If set to 0, we'll use the default value 300.
	// +optional
	TimeoutSeconds *uint32 `json:"timeoutSeconds,omitempty"`
	// NodeNames is a request to select some specific nodes. If it is non-empty,
	// the upgrade job simply select these edge nodes to do upgrade operation.
	// Please note that sets of NodeNames and LabelSelector are ORed.
	// Users must set one and can only set one.
	// +optional
	NodeNames []string `json:"nodeNames,omitempty"`
	// LabelSelector is a filter to select member clusters by labels.
	// It must match a node's labels for the NodeUpgradeJob to be operated on that node.
	// Please note that sets of NodeNames and LabelSelector are ORed.
	// Users must set one and can only set one.
	// +optional
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
	// Image specifies a container image name, the image contains: keadm and edgecore.
	// keadm is used as upgradetool, to install the new version of edgecore.
	// The image name consists of registry hostname and repository name,
	// if it includes the tag or digest, the tag or digest will be overwritten by Version field above.
	// If the registry hostname is empty, docker.io will be used as default.
	// The default image name is: kubeedge/installation-package.
	// +optional
	Image string `json:"image,omitempty"`
	// ImageDigestGetter define registry v2 interface access configuration.
	// As a transition, it is not required at first, and the image digest is checked when this field is set.
	// +optional
	ImageDigestGetter *ImageDigestGetter `json:"imageDigestGatter,omitempty"`
	// Concurrency specifies the maximum number of concurrent that edge nodes associated with
	// each CloudCore instance can be upgraded at the same time.
	// The default Concurrency value is 1.
	// +optional
	Concurrency int32 `json:"concurrency,omitempty"`
	// CheckItems specifies the items need to be checked before the task is executed.
	// The default CheckItems value is nil.
	// +optional
	CheckItems []string `json:"checkItems,omitempty"`
	// FailureTolerate specifies the task tolerance failure ratio.
	// The default FailureTolerate value is 0.1.
	// +optional
	FailureTolerate string `json:"failureTolerate,omitempty"`
	// RequireConfirmation specifies whether you need to confirm the upgrade.
	// The default RequireConfirmation value is false.
	// +optional
	RequireConfirmation bool `json:"requireConfirmation,omitempty"`

	// ApprovedNodes confirms, for a job with requireConfirmation, the nodes
	// that may go on past their checks: node names, or "*" for every node
	// of the job. Unlike the rest of the spec it may change at any time: a
	// waiting node goes on once it is approved and a concurrency slot is
	// free for it, and an approval withdrawn before then holds it again.
	// `kubectl nodeupgrade approve` adds to it. (nodeupgrade's field.)
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=5000
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$`
	ApprovedNodes []string `json:"approvedNodes,omitempty"`

	// MaintenanceWindows, when set, start nodes only inside one of these
	// times of the week (see MaintenanceWindow); a node already dispatched
	// finishes outside them. (nodeupgrade's field.)
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	MaintenanceWindows []MaintenanceWindow `json:"maintenanceWindows,omitempty"`

	// Canary, when set, upgrades a first wave of nodes and then suspends
	// the job (see Canary). (nodeupgrade's field.)
	// +optional
	Canary *Canary `json:"canary,omitempty"`
	// HealthGate (nodeupgrade's) makes each node, once upgraded, soak
	// Ready on the target before it counts, and rolls back a node that
	// fails it. Unset: no gate.
	// +optional
	HealthGate *HealthGate `json:"healthGate,omitempty"`

	// PreStage (nodeupgrade's) pulls each node's images before its
	// upgrade, at a concurrency of its own; a node is upgraded only once
	// staged. Unset: no staging.
	// +optional
	PreStage *PreStage `json:"preStage,omitempty"`

	// nodeupgrade: Suspend pauses the rollout while true, as in v1alpha1.
	// No default here: v1alpha2 adds nothing to what KubeEdge's schema does.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// ImageDigestGetter define registry v2 interface access configuration.
type ImageDigestGetter struct {
	// ARM64 indicates the image digest of the arm64 platform for verification.
	// +optional
	ARM64 string `json:"arm64,omitempty"`
	// AMD64 indicates the image digest of the amd64 platform for verification.
	// +optional
	AMD64 string `json:"amd64,omitempty"`
	// RegistryAPI define registry v2 interface access configuration.
	// +optional
	RegistryAPI *RegistryAPI `json:"registryAPI,omitempty"`
	// Value used to directly set a value to check image (KubeEdge v1alpha1's field).
	// +optional
	Value string `json:"value,omitempty"`
}

// RegistryAPI define registry v2 interface access configuration.
type RegistryAPI struct {
	Host  string `json:"host"`
	Token string `json:"token"`
}

// NodeUpgradeJobStatus stores the status of NodeUpgradeJob.
type NodeUpgradeJobStatus struct {
	// Phase represents for the phase of the NodeUpgradeJob
	Phase string `json:"phase"`
	// NodeStatus contains upgrade Status for each edge node.
	// +optional
	NodeStatus []NodeUpgradeJobNodeTaskStatus `json:"nodeStatus,omitempty"`
	// Reason represents for the reason of the NodeUpgradeJob.
	// +optional
	Reason string `json:"reason,omitempty"`
	// State represents for the state phase of the NodeUpgradeJob.
	//
	// Deprecated: For compatibility with v1alpha1 version, It will be removed in v1.23
	// +optional
	State string `json:"state,omitempty"`
	// CurrentVersion represents for the current status of the EdgeCore.
	//
	// Deprecated: For compatibility with v1alpha1 version, It will be removed in v1.23
	// +optional
	CurrentVersion string `json:"currentVersion,omitempty"`
	// HistoricVersion represents for the historic status of the EdgeCore.
	//
	// Deprecated: For compatibility with v1alpha1 version, It will be removed in v1.23
	// +optional
	HistoricVersion string `json:"historicVersion,omitempty"`
	// Time represents for the running time of the ImagePrePullJob.
	//
	// Deprecated: For compatibility with v1alpha1 version, It will be removed in v1.23
	// +optional
	Time string `json:"time,omitempty"`
	// Event represents for the event of the ImagePrePullJob.
	//
	// Deprecated: For compatibility with v1alpha1 version, It will be removed in v1.23
	// +optional
	Event string `json:"event,omitempty"`
	// Action represents for the action of the ImagePrePullJob.
	//
	// Deprecated: For compatibility with v1alpha1 version, It will be removed in v1.23
	// +optional
	Action string `json:"action,omitempty"`

	// nodeupgrade: Conditions are the job's Progressing, Complete and Failed
	// conditions, as in v1alpha1.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// nodeupgrade: Counts tallies nodeStatus by outcome, as in v1alpha1.
	// +optional
	Counts *NodeCounts `json:"counts,omitempty"`
	// nodeupgrade: Progress is "finished/selected", as in v1alpha1.
	// +optional
	Progress string `json:"progress,omitempty"`
	// nodeupgrade: Shards is set on a job whose per-node records live in
	// shards, as in v1alpha1: nodeStatus then holds only the failed and
	// in-flight nodes, and every node's record is in the shards it names.
	// +optional
	Shards *StatusShards `json:"shards,omitempty"`
	// nodeupgrade: NextWindow is when the next maintenance window opens, as
	// in v1alpha1.
	// +optional
	NextWindow string `json:"nextWindow,omitempty"`
	// nodeupgrade: ResolvedImageDigests are the install image's digests read
	// from imageDigestGatter.registryAPI, as in v1alpha1.
	// +optional
	ResolvedImageDigests *ResolvedImageDigests `json:"resolvedImageDigests,omitempty"`
}

// ResolvedImageDigests are what a registry served for the install image's
// tag (nodeupgrade's, as in v1alpha1).
type ResolvedImageDigests struct {
	Image string `json:"image"`
	Tag   string `json:"tag"`
	// +optional
	AMD64 string `json:"amd64,omitempty"`
	// +optional
	ARM64 string      `json:"arm64,omitempty"`
	Time  metav1.Time `json:"time"`
}

// NodeCounts tallies a job's nodes by where they are (nodeupgrade's, as in v1alpha1).
type NodeCounts struct {
	// +optional
	Selected int32 `json:"selected"`
	// +optional
	Pending int32 `json:"pending"`
	// +optional
	InFlight int32 `json:"inFlight"`
	// +optional
	Succeeded int32 `json:"succeeded"`
	// +optional
	Failed int32 `json:"failed"`
	// +optional
	NotAttempted int32 `json:"notAttempted"`
	// +optional
	Skipped int32 `json:"skipped"`
	// +optional
	WaitingConfirmation int32 `json:"waitingConfirmation"`
}

// NodeUpgradeJobNodeTaskStatus stores the status of Upgrade for each edge node.
type NodeUpgradeJobNodeTaskStatus struct {
	// ActionFlow represents for the results of executing the action flow.
	// +optional
	ActionFlow []NodeUpgradeJobActionStatus `json:"actionFlow,omitempty"`
	// CurrentVersion represents for the current status of the EdgeCore.
	// +optional
	CurrentVersion string `json:"currentVersion,omitempty"`
	// HistoricVersion represents for the historic status of the EdgeCore.
	// +optional
	HistoricVersion string `json:"historicVersion,omitempty"`
	// NodeName is the name of edge node.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// Phase represents for the phase of the node task.
	// +optional
	Phase string `json:"phase,omitempty"`
	// Reason represents the reason for the failure of the node task.
	// +optional
	Reason string `json:"reason,omitempty"`
	// State represents for the upgrade state phase of the edge node.
	//
	// Deprecated: For compatibility with v1alpha1 version, It will be removed in v1.23
	// +optional
	State string `json:"state,omitempty"`
	// Event represents for the event of the ImagePrePullJob.
	//
	// Deprecated: For compatibility with v1alpha1 version, It will be removed in v1.23
	// +optional
	Event string `json:"event,omitempty"`

	// nodeupgrade: Action is the node's result once final: Success, Failure
	// or TimeOut, as in v1alpha1.
	// +optional
	Action string `json:"action,omitempty"`
	// nodeupgrade: Time is an RFC 3339 timestamp, as in v1alpha1.
	// +optional
	Time string `json:"time,omitempty"`
	// nodeupgrade: Canary marks a node of the canary wave, as in v1alpha1.
	// +optional
	Canary bool `json:"canary,omitempty"`
	// nodeupgrade: Stage is the node's pre-staging, as in v1alpha1.
	// +optional
	Stage string `json:"stage,omitempty"`
}

// NodeUpgradeJobActionStatus defines the results of executing the action.
type NodeUpgradeJobActionStatus struct {
	// Action represents for the action name
	// +optional
	Action string `json:"action,omitempty"`
	// State represents for the status of this image pull on the edge node.
	// +optional
	Status metav1.ConditionStatus `json:"status,omitempty"`
	// Reason represents the reason for the failure of the action.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Time represents for the running time of the node task.
	// +optional
	Time string `json:"time,omitempty"`
}

// kubectl prefers v1alpha2 (the higher version): it gets v1alpha1's printer
// columns, so `kubectl get nodeupgradejobs` looks the same.

// NodeUpgradeJob is used to upgrade edge node from cloud side.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=nuj;nodeupgrade,categories=kubeedge
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Result",type=string,JSONPath=`.status.action`
// +kubebuilder:printcolumn:name="Progress",type=string,JSONPath=`.status.progress`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.counts.failed`
// +kubebuilder:printcolumn:name="Next-Window",type=string,JSONPath=`.status.nextWindow`,priority=1
// +kubebuilder:printcolumn:name="In-Flight",type=integer,JSONPath=`.status.counts.inFlight`,priority=1
// +kubebuilder:printcolumn:name="Waiting",type=integer,JSONPath=`.status.counts.waitingConfirmation`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`,priority=1
// +kubebuilder:printcolumn:name="Suspend",type=boolean,JSONPath=`.spec.suspend`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodeUpgradeJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Specification of the desired behavior of NodeUpgradeJob.
	// +optional
	Spec NodeUpgradeJobSpec `json:"spec,omitempty"`
	// Most recently observed status of the NodeUpgradeJob.
	// +optional
	Status NodeUpgradeJobStatus `json:"status,omitempty"`
}

// NodeUpgradeJobList is a list of NodeUpgradeJob.
//
// +kubebuilder:object:root=true
type NodeUpgradeJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeUpgradeJob `json:"items"`
}
