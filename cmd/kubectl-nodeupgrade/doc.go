// Command kubectl-nodeupgrade is the kubectl plugin for operating
// NodeUpgradeJobs: `kubectl nodeupgrade plan|status|pause|resume|approve|retry|logs`.
// Each command is a function of a client, a clock and writers, so its
// output is tested against golden files; main only wires flags to them.
package main
