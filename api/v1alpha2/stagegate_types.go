package v1alpha2

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HealthGate is nodeupgrade's spec.healthGate, as in v1alpha1 (see there).
type HealthGate struct {
	// SoakSeconds is how long the node must stay Ready on the target
	// version, counted from when the controller first sees it there.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	SoakSeconds int32 `json:"soakSeconds"`
	// PodSelector selects the pods (in any namespace) that must be Running
	// and Ready on the node at the end of the soak. Unset: only the node
	// itself is watched. A selector that matches no pod on the node passes.
	// +optional
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`
}

// PreStage is nodeupgrade's spec.preStage, as in v1alpha1 (see there).
type PreStage struct {
	// Concurrency is how many nodes pull at the same time, independent of
	// spec.concurrency.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=5000
	Concurrency int32 `json:"concurrency,omitempty"`
	// WindowsOnly stages only inside the job's maintenance windows, when
	// the job has windows. False, the default: staging starts as soon as
	// the job exists.
	// +optional
	WindowsOnly bool `json:"windowsOnly,omitempty"`
}
