// Package upgradepod owns the per-node upgrade Pod: Build renders it from a
// job's parameters (copy keadm, check, backup, upgrade), and Observe reads a
// Pod's status back into an upgrade phase, the runner's report and a reason.
package upgradepod
