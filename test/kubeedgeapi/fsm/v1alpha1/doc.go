// Package v1alpha1 is KubeEdge v1.23.1's fsm state and action types, which
// its NodeUpgradeJob v1alpha2 types use, copied verbatim (see ../../README.md).
package v1alpha1
