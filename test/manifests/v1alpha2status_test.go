package manifests

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	kubeedge "github.com/nodeupgrade/nodeupgrade/test/kubeedgeapi/operations/v1alpha2"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// plannedStatus is a status as the controller writes it: the planner's
// (rollout.Decide) for a job at some point of its life.
type plannedStatus struct {
	name   string
	spec   v1alpha1.NodeUpgradeJobSpec
	status v1alpha1.NodeUpgradeJobStatus
}

// plannedStatuses runs the planner over three nodes through the states a
// job goes through: dispatched, in flight in each step, suspended, refused,
// and finished each way.
func plannedStatuses(t *testing.T) []plannedStatus {
	t.Helper()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	names := []string{"edge-1", "edge-2", "edge-3"}
	view := func(version string) rollout.NodeView {
		return rollout.NodeView{Exists: true, Edge: true, Ready: true, Version: version, Reported: "v1.31.12-kubeedge-" + version}
	}
	nodes := map[string]rollout.NodeView{"edge-1": view("v1.22.0"), "edge-2": view("v1.22.0"), "edge-3": view("v1.22.0")}
	spec := v1alpha1.NodeUpgradeJobSpec{NodeNames: names, Version: "v1.23.1", Concurrency: 2, FailureTolerate: "0.5"}
	cfg, err := rollout.ConfigFromSpec(&spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg.EdgeNodeLabel = "node-role.kubernetes.io/edge"
	plan := func(in rollout.Input) rollout.Plan {
		in.Config, in.SelectionSource, in.Nodes = cfg, "spec.nodeNames", nodes
		return rollout.Decide(in)
	}
	var out []plannedStatus
	add := func(name string, p rollout.Plan, s v1alpha1.NodeUpgradeJobSpec) {
		out = append(out, plannedStatus{name: name, spec: s, status: p.Status})
	}

	first := plan(rollout.Input{Selection: names, Now: t0})
	add("dispatched", first, spec)
	upgrading := plan(rollout.Input{Status: first.Status, Now: t0.Add(10 * time.Second), Pods: map[string]rollout.PodView{
		"edge-1": {Phase: rollout.PodUpgrading}, "edge-2": {Phase: rollout.PodBackingUp}}})
	add("in flight", upgrading, spec)
	nodes["edge-1"] = view("v1.23.1")
	mixed := plan(rollout.Input{Status: upgrading.Status, Now: t0.Add(40 * time.Second), Pods: map[string]rollout.PodView{
		"edge-1": {Phase: rollout.PodSucceeded},
		"edge-2": {Phase: rollout.PodFailed, FailedEvent: v1alpha1.EventRollback, Reason: "rollback succeeded, the node is back on v1.22.0; upgrade to v1.23.1 failed: edgecore is not running"}}})
	add("one upgraded, one rolled back", mixed, spec)
	nodes["edge-3"] = view("v1.23.1")
	done := plan(rollout.Input{Status: mixed.Status, Now: t0.Add(80 * time.Second), Pods: map[string]rollout.PodView{
		"edge-3": {Phase: rollout.PodSucceeded}}})
	add("finished", done, spec)
	if done.Status.State != v1alpha1.StateSuccessful {
		t.Fatalf("the planned job did not finish: %s", done.Status.Reason)
	}

	suspended := spec
	suspended.Suspend = true
	cfg.Suspended = true
	nodes["edge-1"], nodes["edge-3"] = view("v1.22.0"), view("v1.22.0")
	add("suspended", plan(rollout.Input{Selection: names, Now: t0}), suspended)
	cfg.Suspended = false
	cfg.Refusal = `image repository "evil.example/keadm" is not allowed by this controller`
	add("refused", plan(rollout.Input{Selection: names, Now: t0}), spec)
	cfg.Refusal = ""
	timedOut := plan(rollout.Input{Status: first.Status, Now: t0.Add(time.Hour), Pods: map[string]rollout.PodView{
		"edge-1": {Phase: rollout.PodChecking}, "edge-2": {Phase: rollout.PodFailed, FailedEvent: v1alpha1.EventCheck, Reason: "cpu usage 93.0% >= threshold 80%"}}})
	add("failed", timedOut, spec)
	return out
}

// TestStatusReadsAndPatchesInBothVersions writes each status the planner
// makes, as the controller does (v1alpha1), then patches it with kubectl as
// a new user would, through v1alpha2 (kubectl's preferred version, whose
// schema requires status.phase, as KubeEdge's does) and through v1alpha1,
// and reads it with KubeEdge's own v1alpha2 Go types: the phases and
// action flows are KubeEdge's words and agree with the seed's state.
// Before the controller wrote status.phase, the v1alpha2 patch was refused
// with `status.phase: Required value`.
func TestStatusReadsAndPatchesInBothVersions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	kubectlPath(t)
	cfg, kc, _ := startAdminAPIServer(t, nil)
	k8s, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	controller := client.WithFieldOwner(k8s, "nodeupgrade-controller")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	for i, c := range plannedStatuses(t) {
		t.Run(c.name, func(t *testing.T) {
			name := fmt.Sprintf("planned-%d", i)
			job := &v1alpha1.NodeUpgradeJob{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: c.spec}
			if err := controller.Create(ctx, job); err != nil {
				t.Fatalf("creating %s: %v", name, err)
			}
			job.Status = c.status
			if err := controller.Status().Update(ctx, job); err != nil {
				t.Fatalf("writing the planner's status: %v", err)
			}

			kc("patch", "nodeupgradejob", name, "--subresource=status", "--type=merge", "-p", `{"status":{"reason":"patched through v1alpha2"}}`)
			kc("patch", "nodeupgradejobs.v1alpha1.operations.kubeedge.io", name, "--subresource=status", "--type=merge", "-p", `{"status":{"reason":"patched through v1alpha1"}}`)

			var theirs kubeedge.NodeUpgradeJob
			raw := kc("get", "nodeupgradejobs.v1alpha2.operations.kubeedge.io", name, "-o", "json")
			if err := json.Unmarshal(raw, &theirs); err != nil {
				t.Fatalf("KubeEdge's v1alpha2 types cannot decode the job: %v\n%s", err, raw)
			}
			checkKubeEdgeReading(t, &theirs, c.status)
			if theirs.Status.Reason != "patched through v1alpha1" {
				t.Errorf("reason = %q: a patch was lost", theirs.Status.Reason)
			}
		})
	}
}

// checkKubeEdgeReading checks a job as KubeEdge's v1alpha2 types decoded it
// against the status the controller wrote: the job's and each node's phase
// are KubeEdge's constants and say what the seed's state says, and each
// action flow holds KubeEdge's actions, statuses and RFC 3339 times.
func checkKubeEdgeReading(t *testing.T, theirs *kubeedge.NodeUpgradeJob, ours v1alpha1.NodeUpgradeJobStatus) {
	t.Helper()
	jobPhases := []kubeedge.JobPhase{kubeedge.JobPhaseInProgress, kubeedge.JobPhaseCompleted, kubeedge.JobPhaseFailure}
	if !slices.Contains(jobPhases, theirs.Status.Phase) || string(theirs.Status.Phase) != rollout.JobPhase(ours.State) {
		t.Errorf("status.phase = %q for state %q", theirs.Status.Phase, ours.State)
	}
	nodePhases := []kubeedge.NodeTaskPhase{kubeedge.NodeTaskPhasePending, kubeedge.NodeTaskPhaseInProgress,
		kubeedge.NodeTaskPhaseSuccessful, kubeedge.NodeTaskPhaseFailure, kubeedge.NodeTaskPhaseUnknown}
	actions := []kubeedge.NodeUpgradeJobAction{kubeedge.NodeUpgradeJobActionCheck, kubeedge.NodeUpgradeJobActionWaitingConfirmation,
		kubeedge.NodeUpgradeJobActionBackUp, kubeedge.NodeUpgradeJobActionUpgrade, kubeedge.NodeUpgradeJobActionRollBack}
	if len(theirs.Status.NodeStatus) != len(ours.NodeStatus) {
		t.Fatalf("%d node entries read, %d written", len(theirs.Status.NodeStatus), len(ours.NodeStatus))
	}
	for i, n := range theirs.Status.NodeStatus {
		mine := ours.NodeStatus[i]
		if n.NodeName != mine.NodeName || !slices.Contains(nodePhases, n.Phase) || string(n.Phase) != rollout.NodePhase(mine.State) {
			t.Errorf("node %s: phase %q for state %q", n.NodeName, n.Phase, mine.State)
		}
		for _, a := range n.ActionFlow {
			if !slices.Contains(actions, a.Action) || !slices.Contains([]metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}, a.Status) {
				t.Errorf("node %s: action %q status %q", n.NodeName, a.Action, a.Status)
			}
			if _, err := time.Parse(time.RFC3339, a.Time); err != nil {
				t.Errorf("node %s: action %s time %q: %v", n.NodeName, a.Action, a.Time, err)
			}
		}
		if mine.State == v1alpha1.StateSuccessful && mine.Event == v1alpha1.EventUpgrade && len(n.ActionFlow) != 3 {
			t.Errorf("upgraded node %s: flow %+v, want Check, BackUp, Upgrade", n.NodeName, n.ActionFlow)
		}
	}
}
