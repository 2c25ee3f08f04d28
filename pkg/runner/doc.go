// Package runner is the node-side half of an upgrade: the check, backup and
// upgrade (with rollback) steps that nodeupgrade-runner runs inside the
// privileged upgrade pod, and the JSON Report each step leaves as its
// container's termination message, which is the contract with the controller.
package runner
