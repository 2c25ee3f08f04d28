package v1alpha1

// KubeEdge v1alpha2's status vocabulary (github.com/kubeedge/api
// apis/operations/v1alpha2, types_common.go and types_nodeupgrade.go, as
// vendored in KubeEdge v1.23.1). The controller writes it beside the seed's
// state, event and action, so that KubeEdge's own clients read its jobs.

// Job phases (status.phase). This controller never writes JobPhaseInit:
// cloudcore's taskManager starts executing any v1alpha2 job whose phase is
// Init (taskmanager/downstream, CanDownstreamPhase), so a job of ours shows
// InProgress from its first status write.
const (
	JobPhaseInit       = "Init"
	JobPhaseInProgress = "InProgress"
	JobPhaseCompleted  = "Completed"
	JobPhaseFailure    = "Failure"
)

// Node task phases (status.nodeStatus[].phase).
const (
	NodeTaskPhasePending    = "Pending"
	NodeTaskPhaseInProgress = "InProgress"
	NodeTaskPhaseSuccessful = "Successful"
	NodeTaskPhaseFailure    = "Failure"
	NodeTaskPhaseUnknown    = "Unknown"
)

// Actions of a node's action flow (status.nodeStatus[].actionFlow[].action),
// in KubeEdge's order: Check (--> WaitingConfirmation) --> BackUp -->
// Upgrade --> [if it fails] RollBack.
const (
	FlowCheck               = "Check"
	FlowWaitingConfirmation = "WaitingConfirmation"
	FlowBackUp              = "BackUp"
	FlowUpgrade             = "Upgrade"
	FlowRollBack            = "RollBack"
)
