package rollout

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// simNode is one simulated edge node and how its upgrade will go.
type simNode struct {
	view     NodeView
	duration time.Duration
	fails    bool // the runner fails (and rolls back)
	hangs    bool // the pod never ends
	lies     bool // the pod succeeds but the node keeps reporting the old version
	flaky    bool // goes NotReady and back at random
}

// simPod is one upgrade pod in the simulated cluster.
type simPod struct {
	created  time.Time
	deleted  bool
	tracked  bool
	phase    PodPhase
	yankedAt time.Time // deleted behind the controller's back
}

// world is the simulated cluster: nodes, pods and a lagging cache.
type world struct {
	rng       *rand.Rand
	nodes     map[string]*simNode
	pods      map[string]*simPod
	creations map[string]int
	now       time.Time
}

func newWorld(seed uint64, n int) (*world, []string) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &world{rng: rng, nodes: map[string]*simNode{}, pods: map[string]*simPod{}, creations: map[string]int{}, now: t0}
	var selection []string
	for i := range n {
		name := fmt.Sprintf("n%03d", i)
		selection = append(selection, name)
		if rng.IntN(25) == 0 {
			continue // selected by name, does not exist
		}
		node := &simNode{
			view:     edgeNode("v1.20.0"),
			duration: time.Duration(5+rng.IntN(120)) * time.Second,
			fails:    rng.IntN(8) == 0,
			hangs:    rng.IntN(15) == 0,
			lies:     rng.IntN(20) == 0,
			flaky:    rng.IntN(6) == 0,
		}
		switch rng.IntN(20) {
		case 0:
			node.view.Version = "v1.21.0" // already there
		case 1:
			node.view.Edge = false
		case 2:
			node.view.Ready = false
		}
		w.nodes[name] = node
	}
	return w, selection
}

// advance moves time on and lets pods and nodes do what they do.
func (w *world) advance(d time.Duration) {
	w.now = w.now.Add(d)
	for name, pod := range w.pods {
		node := w.nodes[name]
		if pod.deleted || node == nil || pod.phase == PodSucceeded || pod.phase == PodFailed {
			continue
		}
		if !node.view.Ready {
			continue // an offline node runs nothing
		}
		elapsed := w.now.Sub(pod.created)
		switch {
		case node.hangs:
			pod.phase = PodUpgrading
		case elapsed >= node.duration && node.fails:
			pod.phase = PodFailed
		case elapsed >= node.duration:
			pod.phase = PodSucceeded
			if !node.lies {
				node.view.Version = "v1.21.0"
			}
		case elapsed >= node.duration*2/3:
			pod.phase = PodUpgrading
		case elapsed >= node.duration/3:
			pod.phase = PodBackingUp
		default:
			pod.phase = PodChecking
		}
	}
	for _, name := range sortedKeys(w.nodes) {
		node := w.nodes[name]
		if node.flaky && w.rng.IntN(4) == 0 {
			node.view.Ready = !node.view.Ready
		}
		if pod, ok := w.pods[name]; ok && !pod.deleted && w.rng.IntN(200) == 0 {
			pod.yankedAt = w.now // someone deletes it; the finalizer keeps it visible
		}
	}
}

// input is what a controller with a possibly lagging cache sees.
func (w *world) input(c Config, status v1alpha1.NodeUpgradeJobStatus, selection []string) Input {
	in := Input{Config: c, Status: status, Selection: selection, SelectionSource: "spec.nodeNames", Now: w.now,
		Nodes: map[string]NodeView{}, Pods: map[string]PodView{}}
	for name, node := range w.nodes {
		in.Nodes[name] = node.view
	}
	for _, name := range sortedKeys(w.pods) {
		pod := w.pods[name]
		if pod.deleted && !pod.tracked {
			continue
		}
		if w.now.Sub(pod.created) < 2*time.Second && w.rng.IntN(2) == 0 {
			continue // the cache has not shown the new pod yet
		}
		view := PodView{Phase: pod.phase, Tracked: pod.tracked, Deleting: pod.deleted || !pod.yankedAt.IsZero()}
		if pod.phase == PodFailed {
			view.FailedEvent, view.Reason = v1alpha1.EventRollback, "keadm upgrade failed; rolled back"
		}
		if pod.phase == "" {
			view.Phase = PodPending
		}
		in.Pods[name] = view
	}
	return in
}

// activePods counts pods that run an upgrade: not terminated and not being
// deleted, as an outside observer of the cluster would count them.
func (w *world) activePods() int {
	n := 0
	for _, pod := range w.pods {
		if !pod.deleted && pod.yankedAt.IsZero() && pod.phase != PodSucceeded && pod.phase != PodFailed {
			n++
		}
	}
	return n
}

// sortedKeys keeps the simulation deterministic: map order must not decide
// which random numbers go where, or a failing seed could not be replayed.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// apply carries out a committed plan, as the reconciler does.
func (w *world) apply(p Plan, afterCreates func()) {
	for _, d := range p.Dispatch {
		if _, exists := w.pods[d.Node]; exists {
			continue // AlreadyExists: the name is fixed
		}
		w.pods[d.Node] = &simPod{created: w.now, tracked: true, phase: PodPending}
		w.creations[d.Node]++
	}
	afterCreates()
	for _, name := range p.Releases() {
		if pod, ok := w.pods[name]; ok {
			pod.tracked = false
		}
	}
	for _, name := range p.Deletions() {
		if pod, ok := w.pods[name]; ok {
			pod.deleted = true
		}
	}
	for name, pod := range w.pods {
		if (pod.deleted || !pod.yankedAt.IsZero()) && !pod.tracked {
			delete(w.pods, name) // gone once nothing holds it
		}
	}
}

// TestSimulatedRollouts drives the planner through thousands of random
// fleets and checks every rollout rule after every step.
func TestSimulatedRollouts(t *testing.T) {
	scenarios := 2000
	if testing.Short() {
		scenarios = 200
	}
	tolerances := []string{"0", "0.1", "0.25", "0.5", "1"}
	for seed := range uint64(scenarios) {
		w, selection := newWorld(seed, 5+int(seed%40))
		c := cfg(1+int(seed%7), tolerances[seed%uint64(len(tolerances))])
		c.Timeout = time.Duration(60+seed%240) * time.Second
		withWindowsAndCanary(w, &c, seed)
		var status v1alpha1.NodeUpgradeJobStatus
		finalSeen := map[string]v1alpha1.TaskStatus{}
		for step := 0; ; step++ {
			if step > 5000 {
				t.Fatalf("seed %d: job did not finish in 5000 steps: %+v, suspended %v, canary %+v, conditions %+v, reason %s", seed, status.Counts, c.Suspended, c.Canary, status.Conditions, status.Reason)
			}
			if seed%4 == 1 && c.Canary == nil && w.rng.IntN(8) == 0 {
				// An operator pauses and resumes the rollout at random. Not
				// beside a canary: a canary node NotReady for good then
				// waits for an unsuspended stretch as long as the timeout
				// (no clock runs while suspended), which this operator,
				// toggling every 80 s or so, may never leave it (seed 9).
				c.Suspended = !c.Suspended
			}
			if c.Canary != nil && c.Suspended && canaryPaused(status) && w.rng.IntN(5) == 0 {
				c.Suspended = false // an operator resumes after the canary
			}
			p := Decide(w.input(c, status, selection))
			checkInvariants(t, seed, c, w, status, p, finalSeen)
			if p.SetSuspend != nil {
				c.Suspended = *p.SetSuspend // as the controller, after the status write
			}
			status = p.Status
			w.apply(p, func() {
				// The reconciler's creates and deletes race; check the
				// worst order, creates landing first.
				if active := w.activePods(); active > c.Concurrency {
					t.Fatalf("seed %d: %d upgrade pods running and not being deleted, concurrency %d", seed, active, c.Concurrency)
				}
			})
			if p.Finished && len(w.pods) == 0 {
				break
			}
			if p.Finished {
				// Keep planning until cleanup is done, with time moving on.
				w.advance(time.Second)
				continue
			}
			if next, err := time.Parse(time.RFC3339, p.Status.NextWindow); err == nil && p.Status.Counts.InFlight == 0 && w.activePods() == 0 {
				// Nothing runs and nothing may start before the next window:
				// the controller sleeps until it opens (RequeueAfter).
				w.advance(next.Sub(w.now))
				continue
			}
			w.advance(time.Duration(1+w.rng.IntN(20)) * time.Second)
		}
		checkFinal(t, seed, c, w, status)
		checkAfterFinish(t, seed, c, w, status, selection, finalSeen)
	}
}

// checkAfterFinish goes on planning a finished job while its nodes change:
// they go NotReady and back, and an upgrade the job gave up on may end on
// the host after all. The job's result stays what it was; only the notes of
// timed-out nodes follow the nodes, and NeedsAttention names the timed-out
// nodes that are NotReady.
func checkAfterFinish(t *testing.T, seed uint64, c Config, w *world, status v1alpha1.NodeUpgradeJobStatus, selection []string, finalSeen map[string]v1alpha1.TaskStatus) {
	t.Helper()
	for range 20 {
		w.advance(time.Duration(1+w.rng.IntN(600)) * time.Second)
		for _, name := range sortedKeys(w.nodes) {
			if w.rng.IntN(10) == 0 {
				w.nodes[name].view.Version = "v1.21.0" // an abandoned upgrade ended on the host
			}
		}
		p := Decide(w.input(c, status, selection))
		checkInvariants(t, seed, c, w, status, p, finalSeen)
		if p.Status.State != status.State || p.Status.Counts != status.Counts || p.Status.Reason != status.Reason || len(p.Dispatch) > 0 {
			t.Fatalf("seed %d: a finished job changed: %s/%+v/%q to %s/%+v/%q, dispatching %v", seed,
				status.State, status.Counts, status.Reason, p.Status.State, p.Status.Counts, p.Status.Reason, p.Dispatch)
		}
		var attention []string
		unwatched := false // a node timed out over a day ago: its note and the condition stay as they were
		for i := range p.Status.NodeStatus {
			e := &p.Status.NodeStatus[i]
			watched := w.now.Before(ReadEntryTime(e).Finished.Add(WatchAfterTimeout))
			unwatched = unwatched || timedOut(e) && !watched
			if n := w.nodes[e.NodeName]; timedOut(e) && n != nil && !n.view.Ready && watched {
				attention = append(attention, e.NodeName)
			}
		}
		cond := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionNeedsAttention)
		switch {
		case len(attention) > 0 && (cond == nil || cond.Status != metav1.ConditionTrue || !strings.Contains(cond.Message, attention[0])):
			t.Fatalf("seed %d: timed-out nodes %v are NotReady, condition %+v", seed, attention, cond)
		case len(attention) == 0 && cond != nil && cond.Status == metav1.ConditionTrue && !unwatched:
			t.Fatalf("seed %d: no timed-out node is NotReady, condition %+v", seed, cond)
		}
		status = p.Status
	}
}

func checkInvariants(t *testing.T, seed uint64, c Config, w *world, before v1alpha1.NodeUpgradeJobStatus, p Plan, finalSeen map[string]v1alpha1.TaskStatus) {
	t.Helper()
	counts := tally(p.Status.NodeStatus)
	if int(counts.InFlight) > c.Concurrency {
		t.Fatalf("seed %d: %d in flight > concurrency %d", seed, counts.InFlight, c.Concurrency)
	}
	for name, n := range w.creations {
		if n > 1 {
			t.Fatalf("seed %d: node %s upgraded %d times", seed, name, n)
		}
	}
	exceeded := c.exceeded(judged(counts, p.Status.NodeStatus))
	for _, e := range p.Status.NodeStatus {
		if e.State == v1alpha1.StateSkipped && w.creations[e.NodeName] > 0 {
			t.Fatalf("seed %d: skipped node %s got an upgrade pod", seed, e.NodeName)
		}
		if old, ok := finalSeen[e.NodeName]; ok && !reflect.DeepEqual(old, e) && !onlyLateNoteChanged(old, e) {
			t.Fatalf("seed %d: final node %s changed from %+v to %+v", seed, e.NodeName, old, e)
		}
		// Watched for a day; the sim jumps to a window a day later at times.
		if timedOut(&e) && w.now.Before(ReadEntryTime(&e).Finished.Add(WatchAfterTimeout)) {
			checkLateNote(t, seed, e, w.nodes[e.NodeName])
		}
		if NodeFinal(e.State) {
			finalSeen[e.NodeName] = e
		}
		if e.State == v1alpha1.StateNotAttempted && !exceeded {
			t.Fatalf("seed %d: %s not attempted although tolerance holds", seed, e.NodeName)
		}
		if NodeInFlight(e.State) {
			dispatched := ReadEntryTime(&e).Dispatched
			if dispatched.IsZero() || !w.now.Before(c.Deadline(dispatched)) {
				t.Fatalf("seed %d: node %s in flight past its deadline (dispatched %s, now %s)", seed, e.NodeName, e.Time, w.now)
			}
		}
		if e.State == v1alpha1.StateSuccessful && e.Event == v1alpha1.EventUpgrade && w.nodes[e.NodeName].view.Version != "v1.21.0" {
			t.Fatalf("seed %d: node %s counted upgraded but reports %s", seed, e.NodeName, w.nodes[e.NodeName].view.Version)
		}
	}
	for _, d := range p.Dispatch {
		if exceeded && !wasInFlight(before, d.Node) && !canaryHeld(before) {
			t.Fatalf("seed %d: dispatched %s after tolerance was exceeded", seed, d.Node)
		}
		if !wasInFlight(before, d.Node) {
			checkNewDispatch(t, seed, c, w, before, p, d.Node)
		}
		if c.Suspended && !wasInFlight(before, d.Node) {
			t.Fatalf("seed %d: dispatched %s while suspended", seed, d.Node)
		}
	}
	if !p.Finished && (p.Status.State == v1alpha1.StateSuspended) != c.Suspended {
		t.Fatalf("seed %d: unfinished job in state %s with suspend %v", seed, p.Status.State, c.Suspended)
	}
}

// onlyLateNoteChanged reports whether a final entry changed only in the
// note watchTimedOut puts before a timed-out node's reason.
func onlyLateNoteChanged(old, e v1alpha1.TaskStatus) bool {
	if !timedOut(&old) || !timedOut(&e) {
		return false
	}
	_, oldBase := splitNote(old.Reason)
	_, base := splitNote(e.Reason)
	old.Reason, e.Reason = oldBase, base
	return reflect.DeepEqual(old, e)
}

// checkLateNote checks a timed-out node's note against what the node shows.
func checkLateNote(t *testing.T, seed uint64, e v1alpha1.TaskStatus, node *simNode) {
	t.Helper()
	note, _ := splitNote(e.Reason)
	want := ""
	switch {
	case node == nil:
	case !node.view.Ready:
		want = noteNeedsAttention
	case node.view.Version == "v1.21.0":
		want = noteUpgraded
	}
	if noteKind(note) != want {
		t.Fatalf("seed %d: timed-out node %s (%+v) has reason %q, want the note %q", seed, e.NodeName, node.view, e.Reason, want)
	}
}

func wasInFlight(s v1alpha1.NodeUpgradeJobStatus, node string) bool {
	for _, e := range s.NodeStatus {
		if e.NodeName == node {
			return NodeInFlight(e.State)
		}
	}
	return false
}

func checkFinal(t *testing.T, seed uint64, c Config, w *world, s v1alpha1.NodeUpgradeJobStatus) {
	t.Helper()
	counts := tally(s.NodeStatus)
	if counts.Pending != 0 || counts.InFlight != 0 {
		t.Fatalf("seed %d: finished with %+v", seed, counts)
	}
	if counts.Succeeded+counts.Failed+counts.NotAttempted+counts.Skipped != counts.Selected || s.Counts != counts {
		t.Fatalf("seed %d: counts do not add up: %+v vs %+v", seed, s.Counts, counts)
	}
	// Skipped nodes are outside the ratio, and so are the canary's failures.
	exceeded := c.exceeded(judged(counts, s.NodeStatus))
	wantFailed := exceeded || counts.Succeeded == 0
	if (s.State == v1alpha1.StateFailed) != wantFailed {
		t.Fatalf("seed %d: job state %s, want failed=%v (%+v, tolerance %s)", seed, s.State, wantFailed, counts, c.Tolerance.RatString())
	}
	for name, pod := range w.pods {
		if pod.tracked {
			t.Fatalf("seed %d: pod of %s still tracked after the job finished", seed, name)
		}
	}
}

// withWindowsAndCanary gives some fleets maintenance windows (a third of
// their nodes in their own zones) and some a canary wave.
func withWindowsAndCanary(w *world, c *Config, seed uint64) {
	zones := []string{"", "Asia.Tokyo", "America.New_York", "Europe.Berlin"}
	if seed%5 == 2 || seed%10 == 3 {
		// Ten minutes a day in Berlin (t0 is 10:00Z, 11:00 in Berlin).
		c.Windows = mustWindows(v1alpha1.MaintenanceWindow{StartTime: "11:03", EndTime: "11:13", TimeZone: "Europe/Berlin"})
		for _, name := range sortedKeys(w.nodes) {
			w.nodes[name].view.TimeZone = zones[w.rng.IntN(len(zones))]
		}
	}
	if seed%5 == 4 || seed%10 == 3 {
		c.Canary = &CanaryConfig{Count: 1 + w.rng.IntN(3)}
		if w.rng.IntN(2) == 0 {
			c.Canary = &CanaryConfig{Percent: 10 + w.rng.IntN(40)}
		}
		if w.rng.IntN(2) == 0 {
			c.Canary.Soak = time.Duration(1+w.rng.IntN(60)) * time.Second
		}
	}
}

// canaryPaused reports whether the job is paused after its canary wave.
func canaryPaused(s v1alpha1.NodeUpgradeJobStatus) bool {
	cond := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionCanary)
	return cond != nil && (cond.Reason == v1alpha1.CanaryPassed || cond.Reason == v1alpha1.CanaryFailed)
}

// canaryHeld reports whether the canary wave ran or paused the job in
// status s: failureTolerate stopped nothing then.
func canaryHeld(s v1alpha1.NodeUpgradeJobStatus) bool {
	cond := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionCanary)
	return cond != nil && cond.Reason != v1alpha1.CanaryResumed
}

// checkNewDispatch: a node starts only inside its window, read in its
// zone, and only a canary node while the wave runs.
func checkNewDispatch(t *testing.T, seed uint64, c Config, w *world, before v1alpha1.NodeUpgradeJobStatus, p Plan, node string) {
	t.Helper()
	if len(c.Windows) > 0 {
		var zone *time.Location
		if label := w.nodes[node].view.TimeZone; label != "" {
			zone, _ = LoadZone(NodeZoneName(label))
		}
		if !c.Windows.Open(w.now.UTC().Truncate(time.Second), zone) {
			t.Fatalf("seed %d: %s dispatched at %s outside its window (zone %v)", seed, node, w.now, zone)
		}
	}
	cond := meta.FindStatusCondition(before.Conditions, v1alpha1.ConditionCanary)
	if c.Canary != nil && (cond == nil || cond.Reason == v1alpha1.CanaryInProgress) {
		for _, e := range p.Status.NodeStatus {
			if e.NodeName == node && !e.Canary {
				t.Fatalf("seed %d: %s is no canary node and started while the wave ran", seed, node)
			}
		}
	}
}
