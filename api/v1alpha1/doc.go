// Package v1alpha1 holds the NodeUpgradeJob API (operations.kubeedge.io/v1alpha1):
// its Go types, validation and defaulting markers, and the constants that name
// states, events, actions, conditions and labels. It has no logic.
//
// +kubebuilder:object:generate=true
// +groupName=operations.kubeedge.io
package v1alpha1
