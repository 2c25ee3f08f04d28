// Package v1alpha2 holds KubeEdge's NodeUpgradeJob v1alpha2 API
// (operations.kubeedge.io/v1alpha2): every field KubeEdge v1.21.0 and v1.22.0
// define in build/crds/operations/operations_v1alpha2_nodeupgradejob.yaml,
// with the same names and types (api/v1alpha2/schema_test.go checks the generated
// schema against that file), plus this project's v1alpha1 status fields, so that both served
// versions hold the same fields. It has no logic; the controller works in
// v1alpha1.
//
// +kubebuilder:object:generate=true
// +groupName=operations.kubeedge.io
package v1alpha2
