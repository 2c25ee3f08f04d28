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
