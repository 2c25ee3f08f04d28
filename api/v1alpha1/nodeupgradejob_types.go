package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeUpgradeJobSpec is the specification of the desired behavior of the NodeUpgradeJob.
// The spec is immutable but for suspend: a job is a one-shot request, and
// changing its target while nodes are mid-upgrade would leave the fleet in a
// mixed state. Pausing and resuming it changes no target.
//
// Immutability is one transition rule per field rather than one on the whole
// spec, so the refusal names the field; a field present on one side only is
// a change too. TestEverySpecFieldButSuspendIsImmutable fails when a new
// field lacks its rule. A boolean that is absent equals false.
//
// +kubebuilder:validation:XValidation:rule="has(self.nodeNames) != has(self.labelSelector)",message="exactly one of spec.nodeNames and spec.labelSelector must be set"
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
	// NodeNames is a request to select some specific nodes. If it is non-empty,
	// the upgrade job simply select these edge nodes to do upgrade operation.
	// Users must set one and can only set one of NodeNames and LabelSelector.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=5000
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	NodeNames []string `json:"nodeNames,omitempty"`

	// LabelSelector is a filter to select nodes by labels. It must match a
	// node's labels for the NodeUpgradeJob to be operated on that node. The
	// selection is taken once, when the job starts.
	// Users must set one and can only set one of NodeNames and LabelSelector.
	// +optional
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`

	// The Go side of the markers below: imageref.VersionPattern and
	// imageref.MaxVersionLength for version; imageref.DefaultImage and
	// imageref.Repository for image; rollout.FailureToleratePattern and
	// rollout.MaxFailureTolerateLength for failureTolerate. Markers cannot
	// name Go constants, so grammar_test.go feeds both the same inputs.

	// Version is the target edgecore version, such as v1.21.0.
	// +required
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^v\d+\.\d+\.\d+(-[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*)?$`
	Version string `json:"version"`

	// Image specifies a container image name that contains keadm and edgecore.
	// If it includes a tag or digest, the tag or digest is overwritten by
	// Version. If the registry hostname is empty, docker.io is used.
	// +optional
	// +kubebuilder:default="kubeedge/installation-package"
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*(:[0-9]{1,5})?/)?[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$`
	Image string `json:"image,omitempty"`

	// TimeoutSeconds limits how long one node's upgrade may take, counted from
	// its dispatch on the controller's clock. 0 means the default, 300. At
	// most 604800 (7 days): an upgrade pod's activeDeadlineSeconds is an
	// int32 and the deadline is computed as a Go duration, and no keadm
	// upgrade needs a week; a longer value would only hold a slot for good.
	// +optional
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=604800
	TimeoutSeconds int64 `json:"timeoutSeconds,omitempty"`

	// Concurrency specifies the max number of edge nodes that can be upgraded
	// at the same time.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	Concurrency int32 `json:"concurrency,omitempty"`

	// FailureTolerate is the tolerated ratio of failed nodes, a decimal in
	// [0, 1]. When failed / selected exceeds it, no new node is started.
	// +optional
	// +kubebuilder:default="0.1"
	// +kubebuilder:validation:MaxLength=20
	// +kubebuilder:validation:Pattern=`^(0(\.[0-9]+)?|1(\.0+)?)$`
	FailureTolerate string `json:"failureTolerate,omitempty"`

	// CheckItems specifies the items to check on a node before it is upgraded:
	// cpu, mem and disk usage.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=3
	// +kubebuilder:validation:items:Enum=cpu;mem;disk
	CheckItems []string `json:"checkItems,omitempty"`

	// ImageDigestGatter is KubeEdge's image digest check (the field name is
	// KubeEdge's, misspelling included). It is kept so that no job written by
	// KubeEdge's tooling loses it; this controller does not check digests and
	// leaves a job that sets it untouched (condition NotHandled).
	// +optional
	ImageDigestGatter *ImageDigestGatter `json:"imageDigestGatter,omitempty"`

	// RequireConfirmation makes each node wait, after its checks and before
	// anything on it changes, for a confirmation: from the cloud
	// (spec.approvedNodes, `kubectl nodeupgrade approve`) or on the node
	// (touch /var/lib/nodeupgrade/approved/<job name>). A waiting node holds
	// no concurrency slot and its timeout does not run.
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

	// Suspend pauses the rollout while true: no node is started, nodes in
	// flight finish under their own deadlines, and the job shows state and
	// condition Suspended. Setting it back to false resumes the rollout. It
	// is the only field that may change after creation, and it has no effect
	// on a job that has finished.
	// +optional
	// +kubebuilder:default=false
	Suspend bool `json:"suspend,omitempty"`
}

// ImageDigestGatter is KubeEdge's registry v2 access configuration for
// checking the install image's digest: value in KubeEdge's v1alpha1, amd64
// and arm64 in its v1alpha2. Both versions of this CRD carry all four fields,
// so none is pruned whichever version an object is read in.
type ImageDigestGatter struct {
	// RegistryAPI defines registry v2 interface access configuration.
	// +optional
	RegistryAPI *RegistryAPI `json:"registryAPI,omitempty"`
	// Value is a digest to check the image against (KubeEdge v1alpha1).
	// +optional
	Value string `json:"value,omitempty"`
	// AMD64 is the digest of the amd64 image (KubeEdge v1alpha2).
	// +optional
	AMD64 string `json:"amd64,omitempty"`
	// ARM64 is the digest of the arm64 image (KubeEdge v1alpha2).
	// +optional
	ARM64 string `json:"arm64,omitempty"`
}

// RegistryAPI defines registry v2 interface access configuration.
type RegistryAPI struct {
	// +required
	Host string `json:"host"`
	// +required
	Token string `json:"token"`
}

// ActionStatus is one action of KubeEdge v1alpha2's per-node action flow,
// appended when the node is past it (see pkg/rollout/phase.go).
type ActionStatus struct {
	// Action is the step: Check, WaitingConfirmation, BackUp, Upgrade, RollBack.
	// +optional
	Action string `json:"action,omitempty"`
	// Status is True (passed), False (failed) or Unknown (the job stopped
	// waiting for it).
	// +optional
	Status metav1.ConditionStatus `json:"status,omitempty"`
	// Reason is why the action failed.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Time is an RFC 3339 timestamp: when the controller saw the action end.
	// +optional
	Time string `json:"time,omitempty"`
}

// TaskStatus stores the status of Upgrade for each edge node.
type TaskStatus struct {
	// NodeName is the name of edge node.
	// +required
	NodeName string `json:"nodeName"`
	// State is the node's upgrade phase: "" (pending), Init (dispatched),
	// Checking, WaitingConfirmation (checked, waiting for its confirmation:
	// no slot, no clock), Confirmed (confirmed and given a slot), BackingUp,
	// Upgrading, Verifying (soaking in its health gate), RollingBack,
	// Successful, Failed, NotAttempted or Skipped.
	// +optional
	State string `json:"state,omitempty"`
	// Event is the last step the node reached: Init, Check,
	// WaitingConfirmation, BackUp, Upgrade, TimeOut or Rollback.
	// +optional
	Event string `json:"event,omitempty"`
	// Action is the node's result once final: Success, Failure or TimeOut.
	// +optional
	Action string `json:"action,omitempty"`
	// Reason says why the node is where it is, in words.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Time is an RFC 3339 timestamp: when the node was dispatched (while in
	// flight), deferred (while waiting for a NotReady node) or finished.
	// +optional
	Time string `json:"time,omitempty"`

	// Phase is KubeEdge v1alpha2's node phase (Pending, InProgress,
	// Successful, Failure, Unknown), derived from state.
	// +optional
	Phase string `json:"phase,omitempty"`
	// ActionFlow is KubeEdge v1alpha2's per-action record: Check,
	// WaitingConfirmation, BackUp, Upgrade, RollBack, each with its status,
	// reason and time. The controller may drop it from final nodes to keep
	// the job within etcd's size limit.
	// +optional
	// +listType=atomic
	ActionFlow []ActionStatus `json:"actionFlow,omitempty"`
	// Stage is the node's pre-staging (spec.preStage): Staging, Staged or
	// Failed; "" without pre-staging or before the node's turn to stage.
	// (nodeupgrade's.)
	// +optional
	Stage string `json:"stage,omitempty"`
	// CurrentVersion is the node's edgecore version as KubeEdge v1alpha2
	// records it. This controller does not write it.
	// +optional
	CurrentVersion string `json:"currentVersion,omitempty"`
	// HistoricVersion is the node's previous edgecore version as KubeEdge
	// v1alpha2 records it. This controller does not write it.
	// +optional
	HistoricVersion string `json:"historicVersion,omitempty"`
	// Canary marks a node of the canary wave (spec.canary), chosen when
	// the job starts. (nodeupgrade's field.)
	// +optional
	Canary bool `json:"canary,omitempty"`
}

// NodeUpgradeJobStatus stores the status of NodeUpgradeJob. It contains
// multiple edge nodes' upgrade status.
type NodeUpgradeJobStatus struct {
	// State is the phase of the job: "", Init, Upgrading, Suspended,
	// Successful or Failed.
	// +optional
	State string `json:"state,omitempty"`
	// Event is the job's latest event.
	// +optional
	Event string `json:"event,omitempty"`
	// Action is the job's result once it ends: Success or Failure.
	// +optional
	Action string `json:"action,omitempty"`
	// Reason summarises the job in words.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Time is an RFC 3339 timestamp of the job's last state change.
	// +optional
	Time string `json:"time,omitempty"`
	// CurrentVersion lists the edgecore versions the selected nodes report now.
	// +optional
	CurrentVersion string `json:"currentVersion,omitempty"`
	// HistoricVersion lists the edgecore versions the selected nodes reported
	// when the job started.
	// +optional
	HistoricVersion string `json:"historicVersion,omitempty"`
	// NodeStatus contains the upgrade status of each selected edge node,
	// sorted by name, the order in which nodes are dispatched.
	// The list is atomic: the controller is its only writer, and a map-typed
	// list would make server-side field tracking record every node again in
	// metadata.managedFields, doubling the object at fleet scale.
	// At most 13500 entries (v1alpha1.MaxNodeStatusItems): more never fit
	// etcd's 1.5 MiB limit, and the controller refuses such a job up front.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=13500
	NodeStatus []TaskStatus `json:"nodeStatus,omitempty"`

	// Conditions are the job's Progressing, Complete, Failed and Suspended
	// conditions.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Counts tallies nodeStatus by outcome, for printer columns and alerts.
	// +optional
	Counts NodeCounts `json:"counts,omitzero"`
	// Progress is "finished/selected", e.g. "7/10".
	// +optional
	Progress string `json:"progress,omitempty"`
	// NextWindow is when the next maintenance window opens (RFC 3339),
	// while a pending node waits for one (condition WaitingForWindow).
	// +optional
	NextWindow string `json:"nextWindow,omitempty"`

	// ResolvedImageDigests are the install image's digests the controller
	// read from spec.imageDigestGatter.registryAPI, once, before any node
	// started: the nodes pull by them, and they stay what the job ran
	// whatever the tag names later. (nodeupgrade's field.)
	// +optional
	ResolvedImageDigests *ResolvedImageDigests `json:"resolvedImageDigests,omitempty"`

	// Phase is KubeEdge v1alpha2's job phase (Init, InProgress, Completed,
	// Failure), derived from state. The controller writes InProgress from its
	// first write, never Init (cloudcore's taskManager runs Init jobs). On a
	// job the controller has not taken, a phase was written by one of
	// KubeEdge's controllers, and the job is left to that controller.
	// +optional
	Phase string `json:"phase,omitempty"`

	// Shards is set on a job whose per-node records live in shards (see
	// shards_types.go); nodeStatus then holds only the failed and in-flight
	// nodes, at most MaxSummaryNodes.
	// +optional
	Shards *StatusShards `json:"shards,omitempty"`
}

// ResolvedImageDigests are what a registry served for the install image's
// tag when the controller asked (see NodeUpgradeJobStatus).
type ResolvedImageDigests struct {
	// Image is the reference looked up: registryAPI.host, the install
	// image's path and spec.version as the tag.
	Image string `json:"image"`
	// Tag is the digest of the manifest or index the tag named.
	Tag string `json:"tag"`
	// AMD64 is the digest of the linux/amd64 image, if the tag serves one.
	// +optional
	AMD64 string `json:"amd64,omitempty"`
	// ARM64 is the digest of the linux/arm64 image, if the tag serves one.
	// +optional
	ARM64 string `json:"arm64,omitempty"`
	// Time is when the registry answered.
	Time metav1.Time `json:"time"`
}

// NodeCounts tallies a job's nodes by where they are.
type NodeCounts struct {
	// Selected is the number of nodes in nodeStatus.
	// +optional
	Selected int32 `json:"selected"`
	// Pending nodes wait for a slot (including deferred NotReady nodes).
	// +optional
	Pending int32 `json:"pending"`
	// InFlight nodes hold a concurrency slot.
	// +optional
	InFlight int32 `json:"inFlight"`
	// Succeeded nodes run the target version (including skipped ones).
	// +optional
	Succeeded int32 `json:"succeeded"`
	// Failed nodes failed, timed out or could not be upgraded.
	// +optional
	Failed int32 `json:"failed"`
	// NotAttempted nodes were never started because the job stopped.
	// +optional
	NotAttempted int32 `json:"notAttempted"`
	// Skipped nodes are not edge nodes or do not exist; they count neither
	// as failed nor in failureTolerate's ratio.
	// +optional
	Skipped int32 `json:"skipped"`
	// WaitingConfirmation nodes passed their checks and wait for their
	// confirmation (spec.requireConfirmation); they hold no slot.
	// +optional
	WaitingConfirmation int32 `json:"waitingConfirmation"`
}

// NodeUpgradeJob is used to upgrade edge nodes from the cloud side.
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
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

	// Spec is the specification of the desired behavior of NodeUpgradeJob.
	// +required
	Spec NodeUpgradeJobSpec `json:"spec"`
	// Status is the most recently observed status of the NodeUpgradeJob.
	// +optional
	Status NodeUpgradeJobStatus `json:"status,omitzero"`
}

// NodeUpgradeJobList is a list of NodeUpgradeJob.
//
// +kubebuilder:object:root=true
type NodeUpgradeJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeUpgradeJob `json:"items"`
}
