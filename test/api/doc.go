// Package api tests the NodeUpgradeJob API on a real kube-apiserver and
// etcd, with no controller: the CRD's REST paths (the seed's), its
// defaults, every validation rule (OpenAPI and CEL, through v1alpha1 and
// v1alpha2), and the status's size at fleet scale. It stands on
// test/testenv alone (envtest's control plane with the project's CRDs
// installed). The tests are in package api_test; this file only documents
// the package.
package api
