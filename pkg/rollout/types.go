package rollout

import (
	"time"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// NodeView is what the cluster shows of one node.
type NodeView struct {
	// Exists is false when no Node object has the name.
	Exists bool
	// Edge reports whether the node carries the edge-node label.
	Edge bool
	// Ready is the node's Ready condition.
	Ready bool
	// Version is the edgecore version the node reports, "" when it reports none.
	Version string
	// Reported is the raw status.nodeInfo.kubeletVersion, quoted in reasons.
	Reported string
	// Arch is the node's kubernetes.io/arch label (edgecore sets it), which
	// picks the image digest a pinned job's pod pulls by.
	Arch string
	// ReadySince is when the node last became Ready (its Ready condition's
	// lastTransitionTime); zero when it is not Ready or does not say.
	ReadySince time.Time
	// BusyWith names another job whose upgrade pod still holds the node
	// ("" when none): it runs, is being deleted, or its job has not yet
	// recorded its outcome. Two upgrade pods on one node would run two
	// keadms against one edgecore. The pod's name (the node's) also keeps
	// this job's pod from being created while it exists.
	BusyWith string
	// KeptPodOf names another job whose finished upgrade pod, released and
	// kept on the node for its logs, still has the node's pod name ("" when
	// none): it holds nothing, but the API server refuses this job's pod
	// until it is gone, so a dispatch to the node deletes it first
	// (Dispatch.Replaces).
	KeptPodOf string
	// TimeZone is the node's v1alpha1.LabelTimeZone value ("" when it has
	// none): its maintenance windows are read in that zone.
	TimeZone string
	// OptedOut: the node carries v1alpha1.LabelOptOut=true, and no job
	// upgrades it.
	OptedOut bool
	// Canary: spec.canary.selector matches the node's labels (read only
	// when the job starts).
	Canary bool
}

// PodPhase is how far an upgrade pod has got, read from its status.
type PodPhase string

// Pod phases, in the order a pod goes through them.
const (
	PodPending   PodPhase = "Pending"
	PodChecking  PodPhase = "Checking"
	PodBackingUp PodPhase = "BackingUp"
	// PodWaitingConfirmation: the check passed and the confirm container
	// waits for the job's confirmation (spec.requireConfirmation); nothing
	// on the node has changed.
	PodWaitingConfirmation PodPhase = "WaitingConfirmation"
	PodUpgrading           PodPhase = "Upgrading"
	PodSucceeded           PodPhase = "Succeeded"
	PodFailed              PodPhase = "Failed"
	// PodDetached is a pod whose containers ended without the verdict of
	// the job's unit on the node (they were killed, or stopped following
	// it): the backup and upgrade run in that unit, not in the pod, so the
	// outcome is on the node, and the Node object shows it.
	PodDetached PodPhase = "Detached"
)

// Terminated reports whether a pod in this phase has finished, one way or
// the other: its containers no longer run.
func (ph PodPhase) Terminated() bool {
	return ph == PodSucceeded || ph == PodFailed || ph == PodDetached
}

// PodView is what the cluster shows of one node's upgrade pod.
type PodView struct {
	Phase PodPhase
	// FailedEvent is the event a failed pod records: Check, BackUp, Upgrade or
	// Rollback (the step that failed, Rollback when it rolled back).
	FailedEvent string
	// Reason explains a failure in words.
	Reason string
	// Deleting is set once the pod has a deletionTimestamp.
	Deleting bool
	// Tracked is set while the pod carries the controller's tracking finalizer.
	Tracked bool
	// Pull is what the node's pulls of the pod's images say while none of
	// its steps has started (nothing on the node has changed yet); Reason
	// then carries the container runtime's words. See pull.go.
	Pull PullState
}

// Input is everything the planner looks at.
type Input struct {
	Config     Config
	Generation int64
	Status     v1alpha1.NodeUpgradeJobStatus
	// Selection names the nodes the job selects. It is read only on the first
	// plan, which records it in status; later plans follow status.nodeStatus.
	Selection []string
	// SelectionSource describes how nodes were selected, for reasons.
	SelectionSource string
	// Nodes is keyed by node name; a missing key means the node does not exist.
	Nodes map[string]NodeView
	// Pods is keyed by node name: the job's upgrade pods as observed.
	Pods map[string]PodView
	// StagePods is keyed by node name: the job's stage pods (spec.preStage).
	StagePods map[string]PodView
	// RollbackPods is keyed by node name: the job's health-gate rollback
	// pods (spec.healthGate).
	RollbackPods map[string]PodView
	Now          time.Time
	// HeldBy says what holds a node's upgrade ("" when nothing does): a
	// pod on it annotated with KubeEdge's edge.kubeedge.io/hold-upgrade=true,
	// named "namespace/name", or why its pods could not be read. The
	// planner asks only for an approved node waiting for its confirmation,
	// when a slot is free for it, so the controller reads a node's pods
	// only then. Nil means nothing holds any node.
	HeldBy func(node string) string
	// GatePods says which pods of the health gate's selector on a node are
	// not Running and Ready ("" when all are, or none is there); ok is
	// false when they could not be read (the node then waits). The
	// planner asks only at the end of a node's soak. Nil: all are.
	GatePods func(node string) (notReady string, ok bool)
	// ObjectBytes bounds the JSON size of the job without its status
	// (metadata and spec): the status may use what etcd leaves beside it.
	ObjectBytes int
	// Sharded says the job's per-node records live in shards, not in the
	// job (see pkg/controller/shards.go): no node count is too large, and
	// fitStatus only bounds each reason.
	Sharded bool
}

// Dispatch asks for one node's upgrade pod.
type Dispatch struct {
	Node        string
	FromVersion string
	Deadline    time.Time
	// ImageDigest is the digest the node's pod pulls the install image by
	// (Config.ImageDigests, for the node's architecture); "" when the job
	// pins none.
	ImageDigest string
	// Replaces names the other job whose finished pod, kept on the node for
	// its logs, the controller deletes first (NodeView.KeptPodOf): one
	// upgrade pod name per node, and this dispatch needs it.
	Replaces string
	// Rollback asks for the node's health-gate rollback pod instead of an
	// upgrade pod; the node's upgrade pod stays (it holds the node).
	Rollback bool
}

// Event is something worth telling the user about, recorded on the job.
type Event struct {
	Warning bool
	Reason  string
	Node    string
	Message string
}

// Plan is the planner's decision. The caller commits Status first and acts on
// the pods only after that write succeeded, so every action it takes is
// already visible in the API when it matters.
type Plan struct {
	Status v1alpha1.NodeUpgradeJobStatus
	// Dispatch lists the pods to create: new dispatches and in-flight nodes
	// whose pod is not (yet) observed.
	Dispatch []Dispatch
	// Cleanup lists what to do with the pods of final nodes: release, delete,
	// cancel. Cancellations come first. See planCleanup.
	Cleanup []PodCleanup
	Events  []Event
	// Stage lists the stage pods to create (spec.preStage); StageDelete the
	// nodes whose stage pod is done with.
	Stage       []StageDispatch
	StageDelete []string
	// RollbackDelete lists the nodes whose rollback pod is done with.
	RollbackDelete []string
	// Approve lists the waiting nodes confirmed by this plan (state
	// Confirmed): the controller tells each one's pod to go on
	// (v1alpha1.AnnotationApproved) once the status is written.
	Approve []string
	// SetSuspend, when not nil, asks the controller to set spec.suspend to
	// it once the status is written: true when the canary wave is done (its
	// condition says Pausing), false when it soaked and passed (canary.go).
	SetSuspend *bool
	// RequeueAfter is when the plan may change with no event: the next
	// deadline or window opening. Zero means no such time.
	RequeueAfter time.Duration
	// Finished is set when the job has reached a final state.
	Finished bool
}

// Event reasons recorded on NodeUpgradeJobs.
const (
	ReasonStarted           = "Started"
	ReasonDispatched        = "Dispatched"
	ReasonNodeUpgraded      = "NodeUpgraded"
	ReasonNodeSkipped       = "NodeSkipped"
	ReasonNodeFailed        = "NodeFailed"
	ReasonNodeTimedOut      = "NodeTimedOut"
	ReasonNodeDeferred      = "NodeDeferred"
	ReasonToleranceExceeded = "FailureToleranceExceeded"
	ReasonJobCompleted      = "JobCompleted"
	ReasonJobFailed         = "JobFailed"
	ReasonJobRefused        = "JobRefused"
	ReasonProgress          = "Progress"
	ReasonSuspended         = "Suspended"
	ReasonResumed           = "Resumed"
	// ReasonNodeWaitingConfirmation: a node passed its checks and waits for
	// its confirmation, without a slot.
	ReasonNodeWaitingConfirmation = "NodeWaitingConfirmation"
	// ReasonNodeConfirmed: a waiting node was confirmed, from the cloud or
	// on the node, and goes on.
	ReasonNodeConfirmed = "NodeConfirmed"
	// ReasonNodeNeedsAttention: a node that timed out is NotReady.
	ReasonNodeNeedsAttention = "NodeNeedsAttention"
	// ReasonNodeReportedAfterTimeout: a node that timed out is Ready again,
	// on the target version or not.
	ReasonNodeReportedAfterTimeout = "NodeReportedAfterTimeout"
	// ReasonWaitingForWindow: pending nodes wait for their maintenance
	// window; the message says when the next opens.
	ReasonWaitingForWindow = "WaitingForWindow"
	// ReasonWindowOpen: a maintenance window opened and nodes may start.
	ReasonWindowOpen = "WindowOpen"
	// ReasonCanaryStarted, ReasonCanaryPaused (Warning when a canary node
	// failed) and ReasonCanaryResumed follow the canary wave.
	ReasonCanaryStarted = "CanaryStarted"
	ReasonCanaryPaused  = "CanaryPaused"
	ReasonCanaryResumed = "CanaryResumed"
)
