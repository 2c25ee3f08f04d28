// Package manager turns command-line flags into a running controller-runtime
// manager for nodeupgrade-controller: caches scoped to what the controller
// needs, leader election, probes, metrics and the NodeUpgradeJob reconciler.
// Tests start the controller through this package with the Deployment's flags.
package manager
