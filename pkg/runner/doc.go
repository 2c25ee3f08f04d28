// Package runner is the node side of an upgrade, run as nodeupgrade-runner.
// In the upgrade pod: the check, and the backup and upgrade containers,
// which launch the job's systemd unit on the host and follow it (runner.go,
// follow.go). On the host: that unit, which backs up, upgrades, lets the new
// edgecore settle, and commits or rolls back, resuming from its records
// after a crash or a boot (hostjob.go, unit.go, keadm.go), with its time as
// a budget on the node's monotonic clock (budget.go) and its records
// (jobstate.go). contract.go is the whole contract with the controller:
// container names, steps, exit codes, the Report each container leaves as
// its termination message, the host paths and the records.
//
// The tests in this package test the parts, each file's beside it
// (report_test.go tests report.go). The whole runner, pod steps and unit, is
// tested as a process on a fake node (fake systemd and keadm, pause points,
// power cuts) by cmd/nodeupgrade-runner's tests.
package runner
