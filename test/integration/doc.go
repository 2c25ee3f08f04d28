// Package integration tests the controller in this test process, built by
// the same manager.BindFlags and manager.New that main runs, against a real
// kube-apiserver: what needs the controller in reach (status committed
// before any pod action, the finalizers and the orphan sweep, restarts at
// exact points, two jobs on one node, its in-process metrics). It stands on
// test/localcluster (a world of its own with an in-process controller,
// started in BeforeSuite: envtest's control plane, KWOK's fake edge nodes,
// fleetsim playing their kubelets and keadm) and test/framework. The
// tests are in package integration_test; this file only documents the
// package.
package integration
