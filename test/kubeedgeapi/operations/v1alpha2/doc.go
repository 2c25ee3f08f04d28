// Package v1alpha2 is KubeEdge v1.23.1's NodeUpgradeJob v1alpha2 Go types,
// copied verbatim (see ../../README.md) so that tests decode this
// controller's jobs the way KubeEdge's own clients do.
package v1alpha2
