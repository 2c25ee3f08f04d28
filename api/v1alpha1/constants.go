package v1alpha1

// Job and node states (status.state and status.nodeStatus[].state).
const (
	StateNone      = ""
	StateInit      = "Init"
	StateChecking  = "Checking"
	StateBackingUp = "BackingUp"
	StateUpgrading = "Upgrading"
	// StateSuspended is a job whose spec.suspend holds its rollout: no node
	// starts, nodes in flight finish. It is never a node's state.
	StateSuspended   = "Suspended"
	StateRollingBack = "RollingBack"
	// StateWaitingConfirmation is a node of a job with
	// spec.requireConfirmation that passed its checks and waits for its
	// confirmation. It holds no concurrency slot and no clock runs for it.
	StateWaitingConfirmation = "WaitingConfirmation"
	// StateConfirmed is a waiting node that was confirmed and given a slot:
	// its pod is told to go on (AnnotationApproved), and its timeout runs
	// from then.
	StateConfirmed  = "Confirmed"
	StateSuccessful = "Successful"
	StateFailed     = "Failed"
	// StateNotAttempted marks a node that was never started because the job
	// stopped on failure tolerance; it is final, and not a failure.
	StateNotAttempted = "NotAttempted"
	// StateSkipped marks a selected node that is not this controller's to
	// upgrade: it is no edge node, or no Node has its name. It is final, and
	// neither a failure nor a success.
	StateSkipped = "Skipped"
)

// Events (status.event and status.nodeStatus[].event): the step a node reached.
const (
	EventInit     = "Init"
	EventCheck    = "Check"
	EventBackUp   = "BackUp"
	EventUpgrade  = "Upgrade"
	EventTimeOut  = "TimeOut"
	EventRollback = "Rollback"
	// EventWaitingConfirmation: the node passed its checks and waits for
	// its confirmation (spec.requireConfirmation).
	EventWaitingConfirmation = "WaitingConfirmation"
)

// ApproveAll in spec.approvedNodes approves every node of the job.
const ApproveAll = "*"

// Actions (status.action and status.nodeStatus[].action): a final result.
const (
	ActionSuccess = "Success"
	ActionFailure = "Failure"
	ActionTimeOut = "TimeOut"
)

// Check items a job may ask for (spec.checkItems).
const (
	CheckItemCPU  = "cpu"
	CheckItemMem  = "mem"
	CheckItemDisk = "disk"
)

// Condition types on status.conditions.
const (
	// ConditionProgressing is True while the job has nodes to start or finish.
	ConditionProgressing = "Progressing"
	// ConditionComplete is True when every selected node runs the target version.
	ConditionComplete = "Complete"
	// ConditionFailed is True when the job ended with failed nodes.
	ConditionFailed = "Failed"
	// ConditionNotHandled is True on a job this controller leaves alone:
	// another controller handles it, or it asks for what this one lacks.
	ConditionNotHandled = "NotHandled"
	// ConditionSuspended is True while spec.suspend holds an unfinished
	// job's rollout, and False (reason Resumed or Finished) once it no longer
	// does. A job never suspended has no such condition.
	ConditionSuspended = "Suspended"
	// ConditionNeedsAttention is True while a node that timed out is
	// NotReady: how its upgrade ended is unknown until it reports, and
	// someone should look at it. It goes False once every such node has
	// reported; a job none of whose nodes needed attention has none.
	ConditionNeedsAttention = "NeedsAttention"
	// ConditionOtherController is True on a job this controller took first
	// and still runs, when one of KubeEdge's controllers has marked it since
	// (its finalizer, its field manager, a status written through
	// v1alpha2): both may act on the job's nodes, and the other should be
	// disabled. It goes False once the marks are gone.
	ConditionOtherController = "OtherController"
	// ConditionStatusWriteFailed is True when the controller's last status
	// write was refused for a reason other than a conflict; its message is
	// the API server's. The next write that succeeds removes it.
	ConditionStatusWriteFailed = "StatusWriteFailed"
)

// Reasons of the NotHandled condition.
const (
	// ReasonKubeEdgeControllerManager: kubeedge-controller-manager (v1.21+)
	// handles the job (its finalizer, or a v1alpha2 status.phase).
	ReasonKubeEdgeControllerManager = "KubeEdgeControllerManager"
	// ReasonKubeEdgeTaskManager: cloudcore's taskManager module writes the
	// job's status.
	ReasonKubeEdgeTaskManager = "KubeEdgeTaskManager"
	// ReasonUnsupportedField: the job set a KubeEdge field an earlier
	// version of this controller did not implement (requireConfirmation,
	// imageDigestGatter); a job it left alone so stays alone.
	ReasonUnsupportedField = "UnsupportedField"
)

// DefaultNamespace is where the controller runs, creates the upgrade pods
// and holds its leader-election Lease, unless --namespace says otherwise.
// config/ and the RBAC markers (strings) in pkg/controller and pkg/manager
// repeat it.
const DefaultNamespace = "nodeupgrade-system"

// FinalizerKubeEdgeController is the finalizer kubeedge-controller-manager
// (KubeEdge v1.21+) puts on the NodeUpgradeJobs it handles.
const FinalizerKubeEdgeController = "kubeedge.io/nodeupgradejob-controller"

// Defaults the seed API states; the CRD applies them on create, and the
// controller applies them again for zero values (timeoutSeconds: 0 means 300).
// The default image is imageref.DefaultImage: the runner, which must not
// import this package, needs it too.
const (
	DefaultTimeoutSeconds = int64(300)
	// MaxTimeoutSeconds is the CRD's bound on spec.timeoutSeconds (7 days);
	// the controller clamps older stored objects to it.
	MaxTimeoutSeconds = int64(7 * 24 * 3600)
	// MaxNodeStatusItems is the CRD's maxItems on status.nodeStatus (keep
	// the marker in step): no more entries fit etcd's 1.5 MiB, so the
	// controller refuses a larger job before its first write.
	MaxNodeStatusItems     = 13500
	DefaultConcurrency     = int32(1)
	DefaultFailureTolerate = "0.1"
)

// Labels and annotations on upgrade pods. Monitoring and tests rely on them.
const (
	// LabelJob names the NodeUpgradeJob a pod belongs to.
	LabelJob = "operations.kubeedge.io/nodeupgradejob"
	// LabelNode names the node a pod upgrades.
	LabelNode = "operations.kubeedge.io/node"
	// AnnotationNode holds the full node name, for names too long for a label.
	AnnotationNode = "operations.kubeedge.io/node-name"
	// AnnotationDeadline is the RFC 3339 instant after which the pod must not
	// start an upgrade: dispatch time plus timeoutSeconds, on the controller's clock.
	AnnotationDeadline = "operations.kubeedge.io/deadline"
	// AnnotationApproved ("true") tells a waiting upgrade pod that its node
	// is confirmed and may go on (runner.ApprovedAnnotation, the same name).
	AnnotationApproved = "operations.kubeedge.io/approved"
	// FinalizerPodTracking keeps an upgrade pod until the controller has
	// recorded its outcome, so a pod deleted behind its back is never forgotten.
	FinalizerPodTracking = "operations.kubeedge.io/upgrade-tracking"
	// FinalizerJobCleanup lets the controller cancel in-flight upgrades and
	// delete every upgrade pod before a deleted job goes away.
	FinalizerJobCleanup = "operations.kubeedge.io/cleanup"
)
