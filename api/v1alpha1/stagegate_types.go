package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HealthGate is spec.healthGate: after its upgrade, a node counts as
// upgraded only once it has stayed Ready on the target version for
// SoakSeconds and, when PodSelector is set, the pods it selects on the node
// are Running and Ready at the end of the soak. A node that fails its gate
// is rolled back (keadm rollback edge, by the job's unit on the node, from
// the backup the upgrade made) and counts as failed. v1alpha2 carries the
// same field (nodeupgrade's, not KubeEdge's).
type HealthGate struct {
	// SoakSeconds is how long the node must stay Ready on the target
	// version, counted from when the controller first sees it there.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	SoakSeconds int32 `json:"soakSeconds"`
	// PodSelector selects the pods (in any namespace) that must be Running
	// and Ready on the node at the end of the soak, e.g. the node's
	// DaemonSet pods. Unset: only the node itself is watched. A selector
	// that matches no pod on the node passes.
	// +optional
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`
}

// Node states of the health gate (spec.healthGate).
const (
	// StateVerifying is a node that reached the target version and Ready
	// and soaks in its health gate: it holds its concurrency slot, and its
	// entry's time is when the soak began.
	StateVerifying = "Verifying"
	// EventHealthGate is the event of a node in or failed by its gate.
	EventHealthGate = "HealthGate"
)

// AnnotationPodAction marks a pod the controller made for something else
// than an upgrade: PodActionRollback is a health gate's rollback pod.
const (
	AnnotationPodAction = "nodeupgrade.kubeedge.io/action"
	PodActionRollback   = "rollback"
)

// PreStage is spec.preStage: before its upgrade, each selected node pulls
// the installation package and the runner image (a stage pod of the job,
// which only pulls them), at most Concurrency nodes at a time, from the
// job's start; its entry's stage says Staging, Staged or Failed (the pull's
// failure is the node's reason, and the node fails). A node is dispatched
// only once Staged, so its upgrade pulls nothing. v1alpha2 carries the same
// field (nodeupgrade's, not KubeEdge's).
type PreStage struct {
	// Concurrency is how many nodes pull at the same time, independent of
	// spec.concurrency.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=5000
	Concurrency int32 `json:"concurrency,omitempty"`
	// WindowsOnly stages only inside the job's maintenance windows, when
	// the job has windows (spec.maintenanceWindows, read in each node's zone).
	// False, the default: staging starts as soon as the job exists, inside
	// or outside any window, so that no window time is spent pulling.
	// +optional
	WindowsOnly bool `json:"windowsOnly,omitempty"`
}

// Stages of a node of a job with spec.preStage (nodeStatus[].stage).
const (
	StageStaging = "Staging"
	StageStaged  = "Staged"
	StageFailed  = "Failed"
)

// PodActionStage marks a pre-staging pod (AnnotationPodAction).
const PodActionStage = "stage"
