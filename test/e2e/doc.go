// Package e2e tests nodeupgrade as an operator meets it: the real
// nodeupgrade-controller binary runs as its own process, and every action
// and assertion on NodeUpgradeJobs goes through kubectl and the kubectl
// nodeupgrade plugin (apply, get, describe, wait, patch, delete; plan,
// pause, resume, status, logs, retry). It stands on test/localcluster (a
// world of its own, started in BeforeSuite: envtest's control plane, KWOK's
// fake edge nodes, fleetsim playing their kubelets and keadm) and
// test/framework (builders, waits, the invariants every finished job
// keeps). The tests are in package e2e_test; this file only documents the
// package.
package e2e
