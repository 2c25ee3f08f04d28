// Package rollout is the pure planner of a NodeUpgradeJob: given the job's
// normalised spec, its recorded status, what the cluster shows of its nodes
// and upgrade pods, and the time, it decides the next status and the pod
// actions to take. It has no client and no clock, so every rollout rule is
// table- and simulation-tested without a cluster.
//
// # Where each rule lives
//
// One plan is [Decide]: initialize (first plan only), progressInFlight,
// startPending, summarize, then fitStatus and cleanupPods. Each rule below
// names the function that implements it (planner.go unless another file is
// named).
//
// Input and configuration:
//   - Defaults and parsing of the spec (timeout clamp, concurrency,
//     failureTolerate as an exact ratio): [ConfigFromSpec] (config.go);
//     failureTolerate's grammar, the CRD's: [ParseFailureTolerate],
//     [FailureToleratePattern] (api/v1alpha1/grammar_test.go ties them to
//     the CRD).
//   - What a Node looks like to the planner (edge label, Ready, edgecore
//     version): [ViewNode], [NodeReady] (nodes.go).
//
// Selection (first plan only):
//   - spec.nodeNames or spec.labelSelector, taken once: [SelectNodes],
//     [ObserveNodes] (nodes.go).
//   - Every selected node gets its entry, sorted and deduplicated; a refused
//     job writes NotAttempted entries: planner.initialize.
//
// Skip:
//   - A node that does not exist or is no edge node is Skipped, one already
//     at the target version is Successful: planner.settleIfNeedless (called
//     at initialize and again before each dispatch round).
//   - Skipped nodes are outside the tolerance ratio: Config.exceeded,
//     planner.stopped.
//
// Dispatch and concurrency:
//   - Pending nodes start in name order while slots are free:
//     planner.startPending.
//   - A node in Init, Checking, BackingUp, Upgrading or RollingBack holds a
//     slot: [NodeInFlight]; a final node whose pod still runs holds one too:
//     planner.draining.
//   - A dispatched node whose pod is not observed is asked for again until
//     its deadline: planner.progressInFlight (case !hasPod).
//
// Deferral (NotReady, or busy with another job's pod):
//   - Why a node cannot start: waitReason.
//   - The wait starts when the node's turn comes, without a slot:
//     planner.deferNode.
//   - A wait longer than the timeout fails the node: planner.expireDeferral.
//
// Timeout:
//   - A dispatched node's deadline is its dispatch time plus the timeout;
//     past it the node is TimeOut: planner.progressInFlight.
//   - A pod that succeeded but whose node is not verified by the deadline
//     fails: planner.verify.
//
// Pod outcomes:
//   - Running phase to node state: phaseState.
//   - Failed pod, deleted pod (checked first), succeeded pod:
//     planner.progressInFlight.
//
// Verification:
//   - A succeeded pod counts only once the node reports the target version
//     and is Ready: planner.verify, describeNode.
//
// Tolerance:
//   - failed/eligible > failureTolerate, exactly: [Config.ToleranceExceeded].
//   - Once exceeded no node starts and the pending ones are NotAttempted;
//     in-flight nodes finish: planner.startPending, planner.stopped.
//   - The FailureToleranceExceeded event and the "stopping" reason:
//     planner.summarize.
//
// Refusal:
//   - Config.Refusal set at the first plan: planner.initialize; set later
//     (nothing new starts, what runs finishes): planner.startPending and
//     planner.progressInFlight; the final reason: planner.summarize.
//   - A job too large for its status is refused before its first write:
//     tooLarge (size.go), called from planner.initialize.
//
// Suspend:
//   - No node starts; pending nodes' deferral clocks are cleared:
//     planner.startPending, holdPending.
//   - The Suspended state and condition, Suspended/Resumed events:
//     planner.summarize, planner.setSuspended.
//
// Finish:
//   - Counters, progress, versions and the final state and reason:
//     planner.summarize, tally, planner.finish.
//   - Progress events at each tenth: planner.summarize, decile.
//
// Pod cleanup:
//   - Drop the tracking finalizer once the outcome is recorded; delete the
//     pods of upgraded or cancelled nodes, keep failed ones for their logs:
//     planner.cleanupPods; without a status write: [Cleanup].
//
// Status size (etcd's request limit):
//   - Reasons cut to MaxNodeReasonBytes, then shorter, final nodes first:
//     planner.fitStatus, [Truncate] (size.go).
//
// Requeue:
//   - The next deadline wakes the job: planner.wakeAt.
//
// Tests: planner_test.go tests each rule alone; sequence_test.go drives
// whole rollouts tick by tick into testdata/*.golden traces (rerun with
// -update); simulation_test.go checks invariants over random fleets.
package rollout
