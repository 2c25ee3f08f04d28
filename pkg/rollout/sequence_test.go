package rollout

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// Sequence tests, after Cluster API's machinedeployment rollout sequence
// tests: each scenario drives Decide tick by tick with a fake clock over a
// small scripted cluster, and writes what the planner saw and decided to
// testdata/<scenario>.golden. A reviewer reads the trace as the rollout's
// story; a change to the planner's behaviour shows as a diff there.
//
// Regenerate with: go test ./pkg/rollout -run TestRolloutSequences -update

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// seqNode is how one node's upgrade goes in a sequence scenario.
type seqNode struct {
	view NodeView
	// ticks is how many ticks the pod runs before it ends (default 4:
	// Checking, BackingUp, Upgrading, then the end).
	ticks int
	// fails makes the pod fail (rolled back) when it ends.
	fails bool
	// hangs keeps the pod Upgrading for ever once it gets there.
	hangs bool
}

// seqPod is an upgrade pod in the scripted cluster.
type seqPod struct {
	view PodView
	age  int // ticks since it was created
}

// seqWorld is the scripted cluster a sequence scenario runs in.
type seqWorld struct {
	nodes map[string]*seqNode
	pods  map[string]*seqPod
	// created counts the upgrade pods created per node.
	created map[string]int
	// suspended is spec.suspend.
	suspended bool
	// refusal is the controller's Config.Refusal (say, a stricter image
	// allow-list after a restart).
	refusal string
}

// notes are what a scenario does to the world at a tick, written in the trace.
type seqStep struct {
	note string
	do   func(w *seqWorld)
}

type seqScenario struct {
	name string
	// about is the scenario's story in one line, the trace's first.
	about       string
	concurrency int
	tolerate    string
	timeout     time.Duration
	tick        time.Duration
	selection   []string
	nodes       map[string]*seqNode
	// at lists what happens to the world before the plan of a tick.
	at map[int]seqStep
	// afterFinish is how many ticks to plan on once the job is finished
	// and its pods are let go: what its nodes do later.
	afterFinish int
	// windows and canary are spec.maintenanceWindows and spec.canary.
	windows Schedule
	canary  *CanaryConfig
}

func seqFleet(n int) map[string]*seqNode {
	nodes := map[string]*seqNode{}
	for _, name := range names(n) {
		nodes[name] = &seqNode{view: edgeNode("v1.20.0")}
	}
	return nodes
}

func with(nodes map[string]*seqNode, name string, change func(n *seqNode)) map[string]*seqNode {
	if nodes[name] == nil {
		nodes[name] = &seqNode{view: edgeNode("v1.20.0")}
	}
	change(nodes[name])
	return nodes
}

func setReady(name string, ready bool) func(w *seqWorld) {
	return func(w *seqWorld) { w.nodes[name].view.Ready = ready }
}

// setReported makes a node Ready or not on a version, as if an upgrade
// ended on the host while nobody watched.
func setReported(name, version string, ready bool) func(w *seqWorld) {
	return func(w *seqWorld) { w.nodes[name].view.Version, w.nodes[name].view.Ready = version, ready }
}

func setRefusal(why string) func(w *seqWorld) {
	return func(w *seqWorld) { w.refusal = why }
}

func setSuspended(suspended bool) func(w *seqWorld) {
	return func(w *seqWorld) { w.suspended = suspended }
}

func sequenceScenarios() []seqScenario {
	return []seqScenario{{
		name:        "sliding-window",
		about:       "concurrency 2 over 5 nodes: each finished node frees its slot for the next in name order",
		concurrency: 2, tolerate: "0", timeout: 300 * time.Second, tick: 30 * time.Second,
		selection: names(5),
		nodes: with(with(seqFleet(5), "node-00", func(n *seqNode) { n.ticks = 2 }),
			"node-03", func(n *seqNode) { n.ticks = 1 }),
	}, {
		name:        "tolerance-exceeded",
		about:       "failureTolerate 0.2 over 5 nodes: the second failure (2/5 > 0.2) stops dispatch; in-flight nodes finish, the rest are NotAttempted",
		concurrency: 2, tolerate: "0.2", timeout: 300 * time.Second, tick: 30 * time.Second,
		selection: names(5),
		nodes: with(with(seqFleet(5), "node-00", func(n *seqNode) { n.fails = true }),
			"node-02", func(n *seqNode) { n.fails, n.ticks = true, 1 }),
	}, {
		name:        "hanging-node-times-out",
		about:       "timeout 150s: node-01's pod hangs in Upgrading, the node times out and its pod is deleted; its slot frees only once the pod is no longer running (the next plan), and the job completes within failureTolerate 0.5",
		concurrency: 1, tolerate: "0.5", timeout: 150 * time.Second, tick: 30 * time.Second,
		selection: names(3),
		nodes:     with(seqFleet(3), "node-01", func(n *seqNode) { n.hangs = true }),
	}, {
		name:        "notready-deferred-then-fails",
		about:       "node-00 stays NotReady: deferred without a slot when its turn comes, failed after the timeout; node-02 is NotReady for a while, then Ready, and upgrades",
		concurrency: 1, tolerate: "0.5", timeout: 120 * time.Second, tick: 30 * time.Second,
		selection: names(3),
		nodes: with(with(seqFleet(3), "node-00", func(n *seqNode) { n.view.Ready = false }),
			"node-02", func(n *seqNode) { n.view.Ready = false; n.ticks = 1 }),
		at: map[int]seqStep{3: {"node-02 becomes Ready", setReady("node-02", true)}},
	}, {
		name:        "suspend-resume",
		about:       "spec.suspend set mid-rollout: no node starts, in-flight nodes finish; resumed, the rollout goes on",
		concurrency: 2, tolerate: "0", timeout: 300 * time.Second, tick: 30 * time.Second,
		selection: names(4),
		nodes:     seqFleet(4),
		at: map[int]seqStep{
			1: {"spec.suspend: true", setSuspended(true)},
			6: {"spec.suspend: false", setSuspended(false)},
		},
	}, {
		name:        "refused-mid-job",
		about:       "the controller restarts under an allow-list that refuses the job's image: nothing new starts, the pending nodes are NotAttempted, the running upgrades finish, and the job fails as refused",
		concurrency: 2, tolerate: "0", timeout: 300 * time.Second, tick: 30 * time.Second,
		selection: names(4),
		nodes:     seqFleet(4),
		at: map[int]seqStep{
			2: {"controller restarted: image repository not allowed", setRefusal(`image repository "docker.io/kubeedge/installation-package" is not allowed (allowed: [registry.example.com/kubeedge])`)},
		},
	}, {
		name:        "timed-out-node-reports-later",
		about:       "node-00 goes NotReady in its upgrade and times out: it needs attention; the job ends within failureTolerate 0.5 and, later, node-00 reports v1.21.0 and Ready: its reason says it upgraded after its timeout, the job's result stands",
		concurrency: 2, tolerate: "0.5", timeout: 150 * time.Second, tick: 30 * time.Second,
		selection: names(2),
		nodes:     seqFleet(2),
		at: map[int]seqStep{
			2: {"node-00 goes NotReady (its link is down)", setReady("node-00", false)},
			8: {"node-00 is Ready again, on v1.21.0: the upgrade ended on the host", setReported("node-00", c21, true)},
		},
		afterFinish: 4,
	}, {
		name:        "skipped-nodes",
		about:       "a missing node and a cloud node are Skipped, a node at the target version is Successful at once; only the rest are upgraded",
		concurrency: 2, tolerate: "0", timeout: 300 * time.Second, tick: 30 * time.Second,
		selection: []string{"cloud-0", "edge-0", "edge-1", "edge-done", "ghost"},
		nodes: map[string]*seqNode{
			"cloud-0":   {view: NodeView{Exists: true, Ready: true, Version: "", Reported: "v1.30.7"}},
			"edge-0":    {view: edgeNode("v1.20.0")},
			"edge-1":    {view: edgeNode("v1.20.0"), ticks: 2},
			"edge-done": {view: edgeNode("v1.21.0")},
		},
	}, {
		name: "windows-node-zones",
		about: "one window, 22:00-01:00 (across midnight) in the job's Europe/Berlin, read in each node's own zone where it has one: " +
			"Tokyo's nodes start at their night while Berlin's day runs, a node dispatched at 00:00 JST finishes after the window closed, " +
			"the next Tokyo node waits for the next night; node-00 (no label) starts at Berlin's night, node-02 at New York's",
		concurrency: 1, tolerate: "0", timeout: 3 * time.Hour, tick: time.Hour,
		selection: names(5),
		nodes: with(with(with(with(with(seqFleet(5),
			"node-00", func(n *seqNode) { n.ticks = 2 }),
			"node-01", func(n *seqNode) { n.ticks, n.view.TimeZone = 2, "Asia.Tokyo" }),
			"node-02", func(n *seqNode) { n.ticks, n.view.TimeZone = 2, "America.New_York" }),
			"node-03", func(n *seqNode) { n.ticks, n.view.TimeZone = 2, "Asia.Tokyo" }),
			"node-04", func(n *seqNode) { n.ticks, n.view.TimeZone = 2, "Asia.Tokyo" }),
		windows: mustWindows(v1alpha1.MaintenanceWindow{StartTime: "22:00", EndTime: "01:00", TimeZone: "Europe/Berlin"}),
	}, {
		name:        "canary-pauses-for-operator",
		about:       "canary count 2 of 6: only the canary nodes start; when they are done the controller suspends the job, and an operator resumes it",
		concurrency: 3, tolerate: "0", timeout: 300 * time.Second, tick: 30 * time.Second,
		selection: names(6),
		nodes:     seqFleet(6),
		canary:    &CanaryConfig{Count: 2},
		at:        map[int]seqStep{9: {"an operator sets spec.suspend: false", setSuspended(false)}},
	}, {
		name:        "canary-failure-pauses",
		about:       "canary count 2 of 5 with failureTolerate 0: a canary node fails, the job pauses (not fails); resumed by an operator, who judged that failure, the rest upgrade (the canary failure is outside failureTolerate)",
		concurrency: 2, tolerate: "0", timeout: 300 * time.Second, tick: 30 * time.Second,
		selection: names(5),
		nodes:     with(seqFleet(5), "node-00", func(n *seqNode) { n.fails = true }),
		canary:    &CanaryConfig{Count: 2},
		at:        map[int]seqStep{8: {"an operator sets spec.suspend: false", setSuspended(false)}},
	}, {
		name:        "canary-soak-resumes",
		about:       "canary 25% of 4 nodes (one) with a soak of 90s: it passes, the job suspends, and resumes by itself 90s later",
		concurrency: 2, tolerate: "0", timeout: 300 * time.Second, tick: 30 * time.Second,
		selection: names(4),
		nodes:     seqFleet(4),
		canary:    &CanaryConfig{Percent: 25, Soak: 90 * time.Second},
	}}
}

func mustWindows(ws ...v1alpha1.MaintenanceWindow) Schedule {
	s, err := ParseWindows(ws)
	if err != nil {
		panic(err)
	}
	return s
}

// TestRolloutSequences runs each scenario until the job is finished and its
// pods are let go, and compares the trace with testdata/<scenario>.golden.
func TestRolloutSequences(t *testing.T) {
	for _, sc := range sequenceScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			got := runSequence(t, sc)
			path := filepath.Join("testdata", sc.name+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v: run go test ./pkg/rollout -run TestRolloutSequences -update to create it", err)
			}
			if got != string(want) {
				t.Errorf("trace differs from %s; rerun with -update if the change is intended, and review the diff.\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff shows the first lines where two traces differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, wl, gl)
		}
	}
	return ""
}

const maxSequenceTicks = 40

func runSequence(t *testing.T, sc seqScenario) string {
	t.Helper()
	c := cfg(sc.concurrency, sc.tolerate)
	c.Timeout = sc.timeout
	w := &seqWorld{nodes: sc.nodes, pods: map[string]*seqPod{}, created: map[string]int{}}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n", sc.about)
	fmt.Fprintf(&b, "# concurrency %d, failureTolerate %s, timeout %s, a tick every %s; selection %s\n",
		sc.concurrency, sc.tolerate, sc.timeout, sc.tick, strings.Join(sc.selection, ","))
	var prev Plan
	var lastJob string
	finalSeen := map[string]v1alpha1.TaskStatus{}
	for tick := 0; ; tick++ {
		if tick == maxSequenceTicks {
			t.Fatalf("not finished after %d ticks:\n%s", tick, b.String())
		}
		now := t0.Add(time.Duration(tick) * sc.tick)
		fmt.Fprintf(&b, "\n== tick %d %s (%s)\n", tick, rel(now), now.Format(time.RFC3339))
		if tick > 0 {
			w.advance(&b)
		}
		if s, ok := sc.at[tick]; ok {
			fmt.Fprintf(&b, "world: %s\n", s.note)
			s.do(w)
		}
		cc := c
		cc.Windows, cc.Canary = sc.windows, sc.canary
		cc.Suspended, cc.Refusal = w.suspended, w.refusal
		in := Input{Config: cc, Status: prev.Status, Selection: sc.selection, SelectionSource: "spec.nodeNames",
			Nodes: w.nodeViews(), Pods: w.podViews(), Now: now}
		if tick > 0 {
			in.Selection = nil // read on the first plan only
		}
		p := Decide(in)
		writePlan(&b, prev, p, &lastJob)
		if p.SetSuspend != nil {
			// As the controller: once the status is written.
			w.suspended = *p.SetSuspend
			fmt.Fprintf(&b, "world: the controller sets spec.suspend: %t\n", w.suspended)
		}
		w.apply(p, func() { checkSequenceStep(t, tick, sc, w, p, finalSeen) })
		prev = p
		if p.Finished && len(p.Dispatch)+len(p.Cleanup) == 0 {
			if sc.afterFinish == 0 {
				break
			}
			sc.afterFinish--
		}
	}
	return b.String()
}

// advance ages every pod by a tick: Pending, Checking, BackingUp, then
// Upgrading until it ends as its node's script says. A pod on a NotReady
// node runs nothing.
func (w *seqWorld) advance(b *strings.Builder) {
	for _, name := range sortedKeys(w.pods) {
		pod := w.pods[name]
		node := w.nodes[name]
		if pod.view.Deleting || pod.view.Phase == PodSucceeded || pod.view.Phase == PodFailed || !node.view.Ready {
			continue
		}
		pod.age++
		ticks := node.ticks
		if ticks == 0 {
			ticks = 4
		}
		before := pod.view.Phase
		switch {
		case pod.age >= ticks && !node.hangs && node.fails:
			pod.view.Phase, pod.view.FailedEvent, pod.view.Reason = PodFailed, v1alpha1.EventRollback, "keadm upgrade failed; rolled back to v1.20.0"
		case pod.age >= ticks && !node.hangs:
			pod.view.Phase = PodSucceeded
			node.view = edgeNode(c21)
		case pod.age == 1:
			pod.view.Phase = PodChecking
		case pod.age == 2:
			pod.view.Phase = PodBackingUp
		default:
			pod.view.Phase = PodUpgrading
		}
		if pod.view.Phase != before {
			fmt.Fprintf(b, "pod %s: %s -> %s\n", name, before, pod.view.Phase)
		}
	}
}

const c21 = "v1.21.0"

// apply does what the controller does with a committed plan: create the
// pods asked for (a create of an existing pod is a no-op, as its name is
// fixed), drop the tracking finalizer, and delete (a tracked pod stays,
// Deleting, until its finalizer is dropped; an untracked one goes at once,
// as if its grace period were shorter than a tick). afterCreates runs
// between the creates and the rest: the worst order for concurrency.
func (w *seqWorld) apply(p Plan, afterCreates func()) {
	for _, d := range p.Dispatch {
		if _, ok := w.pods[d.Node]; !ok {
			w.pods[d.Node] = &seqPod{view: PodView{Phase: PodPending, Tracked: true}}
			w.created[d.Node]++
		}
	}
	afterCreates()
	for _, name := range p.Releases() {
		if pod, ok := w.pods[name]; ok {
			pod.view.Tracked = false
			if pod.view.Deleting {
				delete(w.pods, name)
			}
		}
	}
	for _, name := range p.Deletions() {
		if pod, ok := w.pods[name]; ok {
			if pod.view.Tracked {
				pod.view.Deleting = true
				continue
			}
			delete(w.pods, name)
		}
	}
}

// checkSequenceStep asserts, at every step of a golden run, the promises
// the trace must keep whatever it says: never more than concurrency nodes
// in flight in status nor upgrade pods running and not being deleted, no
// node given a second pod, and no final node un-finished (only a timed-out
// node's note may change).
func checkSequenceStep(t *testing.T, tick int, sc seqScenario, w *seqWorld, p Plan, finalSeen map[string]v1alpha1.TaskStatus) {
	t.Helper()
	if inFlight := tally(p.Status.NodeStatus).InFlight; int(inFlight) > sc.concurrency {
		t.Errorf("tick %d: %d nodes in flight, concurrency %d", tick, inFlight, sc.concurrency)
	}
	active := 0
	for _, pod := range w.pods {
		if !pod.view.Deleting && !pod.view.Phase.Terminated() {
			active++
		}
	}
	if active > sc.concurrency {
		t.Errorf("tick %d: %d upgrade pods running and not being deleted, concurrency %d", tick, active, sc.concurrency)
	}
	for node, n := range w.created {
		if n > 1 {
			t.Errorf("tick %d: node %s was given %d upgrade pods", tick, node, n)
		}
	}
	for _, e := range p.Status.NodeStatus {
		if old, ok := finalSeen[e.NodeName]; ok && !reflect.DeepEqual(old, e) && !onlyLateNoteChanged(old, e) {
			t.Errorf("tick %d: final node %s changed from %+v to %+v", tick, e.NodeName, old, e)
		}
		if NodeFinal(e.State) {
			finalSeen[e.NodeName] = e
		}
	}
}

func (w *seqWorld) nodeViews() map[string]NodeView {
	out := map[string]NodeView{}
	for name, n := range w.nodes {
		out[name] = n.view
	}
	return out
}

func (w *seqWorld) podViews() map[string]PodView {
	out := map[string]PodView{}
	for name, p := range w.pods {
		out[name] = p.view
	}
	return out
}

// rel writes a time as the offset from t0, the scenario's start.
func rel(t time.Time) string {
	return "t+" + t.Sub(t0).String()
}

// relStamp writes a status time (RFC 3339) as the offset from t0.
func relStamp(s string) string {
	if s == "" {
		return "-"
	}
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return s
	}
	return rel(ts)
}

// writePlan writes one plan: the node entries that changed, the plan's
// own description (Plan.String), the events, and the rest of the job's
// status when it changed (*lastJob is the last written).
func writePlan(b *strings.Builder, prev, p Plan, lastJob *string) {
	old := map[string]v1alpha1.TaskStatus{}
	for _, e := range prev.Status.NodeStatus {
		old[e.NodeName] = e
	}
	for _, e := range p.Status.NodeStatus {
		if o, ok := old[e.NodeName]; ok && reflect.DeepEqual(o, e) {
			continue
		}
		canary := ""
		if e.Canary {
			canary = " canary"
		}
		fmt.Fprintf(b, "node %-9s state=%-12s event=%-8s action=%-7s time=%-7s reason=%q%s\n",
			e.NodeName, orDash(e.State), orDash(e.Event), orDash(e.Action), relStamp(e.Time), e.Reason, canary)
	}
	b.WriteString(p.String() + "\n")
	for _, e := range p.Events {
		kind := "Normal"
		if e.Warning {
			kind = "Warning"
		}
		fmt.Fprintf(b, "event %s %s: %s\n", kind, e.Reason, e.Message)
	}
	s := p.Status
	var conds []string
	for _, c := range s.Conditions {
		conds = append(conds, fmt.Sprintf("%s=%s(%s)", c.Type, c.Status, c.Reason))
	}
	slices.Sort(conds)
	job := fmt.Sprintf("status action=%s counts=%+v conditions=%s", orDash(s.Action), s.Counts, strings.Join(conds, ","))
	if s.NextWindow != "" {
		job += " nextWindow=" + relStamp(s.NextWindow)
	}
	job += "\n"
	if job != *lastJob {
		b.WriteString(job)
		*lastJob = job
	}
}
