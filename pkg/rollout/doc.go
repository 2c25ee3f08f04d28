// Package rollout is the pure planner of a NodeUpgradeJob: given the job's
// normalised spec, its recorded status, what the cluster shows of its nodes
// and upgrade pods, and the time, it decides the next status and the pod
// actions to take. It has no client and no clock, so every rollout rule is
// table- and simulation-tested without a cluster.
//
// # Where each rule lives
//
// One plan is [Decide] (planner.go), made in one pass: initialize (first
// plan only), refuse (refused jobs only), progressInFlight, startPending,
// summarize, then fitStatus and planCleanup. Each rule below names the
// function that implements it and its file.
//
// Input and configuration:
//   - Defaults and parsing of the spec (timeout clamp, concurrency,
//     failureTolerate as an exact ratio): [ConfigFromSpec] (config.go);
//     failureTolerate's grammar, the CRD's: [ParseFailureTolerate],
//     [FailureToleratePattern] (config.go; api/v1alpha1/grammar_test.go
//     ties them to the CRD).
//   - What a Node looks like to the planner (edge label, Ready, edgecore
//     version): [ViewNode], [NodeReady] (nodes.go). What a pod looks like
//     ([PodView]) is read by upgradepod.View, the controller's one reader of
//     pods.
//   - A node entry's time means its dispatch, the start of its deferral or
//     its finish, by its state: [ReadEntryTime] (entry.go), the one decoder.
//   - Every clock is since plus the timeout: [Config.Deadline], via
//     planner.deadline (planner.go).
//
// Selection (first plan only):
//   - Whether the first plan is recorded: [Initialized]; whether a plan may
//     start a node or create a pod, so needs to know busy nodes:
//     [MayStartNodes] (planner.go).
//   - spec.nodeNames or spec.labelSelector, taken once: [SelectNodes],
//     [ObserveNodes] (nodes.go).
//   - Every selected node gets its entry, sorted and deduplicated:
//     planner.initialize (initialize.go).
//
// Skip:
//   - A node that does not exist or is no edge node is Skipped, one already
//     at the target version is Successful: planner.settleIfNeedless
//     (initialize.go; called at initialize and before each dispatch round).
//   - Skipped nodes are outside the tolerance ratio: Config.exceeded
//     (summarize.go), planner.stopped (dispatch.go).
//
// Refusal, in one branch:
//   - Config.Refusal (set by the controller: image not allowed, spec it
//     cannot read), on the first plan or later: pending nodes are
//     NotAttempted, an in-flight node without a pod fails, running pods
//     finish: planner.refuse (initialize.go); the final reason:
//     planner.summarize (summarize.go).
//   - A job too large for its status is refused before its first write,
//     with no entries: tooLarge (size.go), from planner.initialize.
//
// Dispatch and concurrency (dispatch.go):
//   - Pending nodes start in name order while slots are free:
//     planner.startPending.
//   - A node in Init, Checking, BackingUp, Upgrading or RollingBack holds a
//     slot: [NodeInFlight] (planner.go); a final node whose pod still runs
//     holds one too: planner.draining.
//   - A dispatched node whose pod is not observed is asked for again until
//     its deadline: planner.progressInFlight (progress.go, case !hasPod).
//
// Deferral (NotReady, or busy with another job's pod) (dispatch.go):
//   - Why a node cannot start: waitReason. What holds a node (a pod of
//     another job that runs, is being deleted or is not yet released) is
//     read by upgradepod.MarkBusy into [NodeView] BusyWith.
//   - The wait starts when the node's turn comes, without a slot:
//     planner.deferNode; a busy node is looked at again every
//     [BusyRecheck].
//   - A wait longer than the timeout fails the node: planner.expireDeferral.
//
// One upgrade per node across jobs (the API server refuses a second pod of
// the node's name, upgradepod.PodName):
//   - A dispatched node with no pod of its own, whose node another job
//     holds, lost the create: it goes back to pending and waits as a busy
//     node: planner.requeueBusy (progress.go).
//   - Another job's finished pod, released and kept for its logs, holds
//     nothing but the name: a dispatch to its node deletes it first,
//     [Dispatch] Replaces from [NodeView] KeptPodOf (dispatch.go,
//     progress.go).
//   - Two targets on one node: the jobs run one after the other, and a node
//     at or above a job's target is settled before each dispatch round
//     (planner.settleIfNeedless), so the node ends at the higher target and
//     no job downgrades it.
//
// Timeout (progress.go):
//   - Past its deadline an in-flight node is TimeOut:
//     planner.progressInFlight.
//   - A pod that succeeded but whose node is not verified by the deadline
//     times out too: planner.verify.
//
// Pod outcomes (progress.go):
//   - Running phase to node state: phaseState.
//   - Failed pod, deleted pod (checked first), succeeded pod:
//     planner.progressInFlight.
//
// Verification (progress.go):
//   - A succeeded pod counts only once the node reports the target version
//     and is Ready: planner.verify, describeNode; not by the deadline, the
//     node times out (TimeOut).
//
// After the timeout (late.go):
//   - A timed-out node (Failed, action TimeOut) is watched for
//     [WatchAfterTimeout], in finished jobs too: a note before its reason
//     says it needs attention (NotReady) or upgraded after its timeout
//     (Ready on the target); state, counts and the job's result stand:
//     planner.watchTimedOut, lateNote, splitNote.
//   - The NeedsAttention condition: planner.setNeedsAttention.
//   - Which finished jobs node changes still wake: [Watching].
//
// Tolerance:
//   - failed/eligible > failureTolerate, exactly: [Config.ToleranceExceeded]
//     (config.go).
//   - Once exceeded no node starts and the pending ones are NotAttempted;
//     in-flight nodes finish: planner.startPending, planner.stopped
//     (dispatch.go).
//   - The FailureToleranceExceeded event and the "stopping" reason:
//     planner.summarize (summarize.go).
//
// Suspend:
//   - No node starts; pending nodes' deferral clocks are cleared:
//     planner.startPending, holdPending (dispatch.go).
//   - The Suspended state and condition, Suspended/Resumed events:
//     planner.summarize, planner.setSuspended (summarize.go).
//
// Maintenance windows (windows.go, dispatch.go):
//   - spec.maintenanceWindows parsed, zones loaded (embedded tzdata), every
//     error naming its field: [ParseWindows], from [ConfigFromSpec].
//   - A window read in the node's zone (v1alpha1.LabelTimeZone) or its own:
//     [Schedule.Open], [Schedule.NextOpen], planner.nodeWindow (once per
//     zone and plan).
//   - A pending node outside its windows is held without a clock, as a
//     suspension holds it; a bad zone label fails it at its turn:
//     planner.outsideWindow. status.nextWindow, the WaitingForWindow
//     condition, events and the wake-up at the opening: planner.showWindow.
//
// Canary (canary.go):
//   - The wave, chosen once among the nodes to upgrade and recorded in
//     their entries: planner.markCanary (from initialize).
//   - Only its nodes start; failureTolerate stops nothing while it holds:
//     planner.canaryRuns, planner.canaryHolds, [Plan.SetSuspend].
//   - Its end records the result (reason Pausing) and suspends the job
//     (SetSuspend, after the status write); Passed or Failed and the event
//     once spec.suspend is set; the soak resumes it: planner.followCanary,
//     planner.endCanary, planner.paused. Its failures stay out of
//     failureTolerate after a resume: canaryFailures, judged.
//
// Opt-out: a node labelled v1alpha1.LabelOptOut=true is Skipped:
// planner.settleIfNeedless (initialize.go).
//
// Finish (summarize.go):
//   - Counters, progress and versions, counted once: planner.summarize,
//     tally; the final state, reason and conditions: planner.finish.
//   - Progress events at each tenth: planner.summarize, decile.
//
// Pod actions:
//   - Create: [Plan.Dispatch], from planner.startPending and
//     planner.progressInFlight; with Replaces, after deleting another
//     job's kept pod of the node's name.
//   - Release, delete, cancel: drop the tracking finalizer once the outcome
//     is recorded; delete the pods of upgraded or cancelled nodes, with the
//     reason of each cancellation; keep failed ones for their logs (until
//     the job is deleted, or another job needs the node);
//     cancellations first: planner.planCleanup, [PodCleanup] (cleanup.go);
//     without a status write: [Cleanup] (planner.go). The controller only
//     applies them, within its per-reconcile budget.
//
// Status size (etcd's request limit):
//   - Reasons cut to MaxNodeReasonBytes, then shorter, final nodes first:
//     planner.fitStatus, [Truncate] (size.go).
//
// Requeue:
//   - The next deadline wakes the job: planner.wakeAt (planner.go).
//
// Description:
//   - A plan describes itself, one line per kind of decision, for the
//     controller's log and the golden traces: [Plan.String] (describe.go).
//
// Tests: planner_test.go tests each rule alone; sequence_test.go drives
// whole rollouts tick by tick into testdata/*.golden traces (each plan as
// Plan.String writes it; rerun with -update), asserting at every step that
// no more than concurrency nodes are in flight, no node gets a second pod
// and no final node is un-finished; simulation_test.go checks those and
// more invariants over random fleets.
package rollout
