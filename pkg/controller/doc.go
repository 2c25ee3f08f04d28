// Package controller reconciles NodeUpgradeJobs: it reads the job, its nodes
// and its upgrade pods from the informer cache, asks pkg/rollout for a plan,
// commits the plan's status in one write, and only then creates, releases and
// deletes upgrade pods. It is the only writer of NodeUpgradeJob status.
package controller
