// Package rollout is the pure planner of a NodeUpgradeJob: given the job's
// normalised spec, its recorded status, what the cluster shows of its nodes
// and upgrade pods, and the time, it decides the next status and the pod
// actions to take. It has no client and no clock, so every rollout rule is
// table- and simulation-tested without a cluster.
package rollout
