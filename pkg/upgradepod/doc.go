// Package upgradepod owns the per-node upgrade Pod, both ways: Build renders
// it from a job's parameters (copy keadm, check, backup, upgrade), and View
// is the controller's one reader of it, turning a Pod's status into the
// planner's rollout.PodView (phase, failed step, reason, deleting,
// tracked). What the pod and nodeupgrade-runner agree on, container names,
// exit codes, the report and the records on the host, is in
// pkg/runner/contract.go.
package upgradepod
