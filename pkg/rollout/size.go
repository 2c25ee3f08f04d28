package rollout

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// A NodeUpgradeJob is one etcd value: etcd refuses a write of more than its
// --max-request-bytes (1.5 MiB by default), and the status write then fails
// with no way forward. These bounds keep every status the planner writes
// inside that limit.
const (
	// MaxNodeReasonBytes bounds one node's reason in status. The full text
	// stays in the node's event and in the pod's termination message.
	MaxNodeReasonBytes = 256
	// MaxObjectBytes is the part of etcd's 1.5 MiB default the job may use;
	// the rest is margin for what the controller does not see of the object
	// (the field sets of metadata.managedFields are dropped from its cache).
	MaxObjectBytes = 1536 * 1024 * 90 / 100
	// shortReasonBytes is what a reason is cut to first when the status
	// would not fit with every reason at MaxNodeReasonBytes.
	shortReasonBytes = 64
)

// ellipsis marks a cut reason.
const ellipsis = "…"

// Truncate cuts s to at most max bytes on a UTF-8 boundary, ending in "…"
// when it cut anything.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	if max <= len(ellipsis) {
		return ""
	}
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// jsonLen is an upper bound of s's length as a JSON string, quotes
// excluded: every byte encoding/json may escape counts as six (\u00XX).
func jsonLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c == '"', c == '\\', c == '<', c == '>', c == '&':
			n += 5
		case c == 0xe2: // U+2028 and U+2029 are escaped too
			n += 3
		}
	}
	return n
}

// entryKeys is the JSON of one entry's keys, quotes, braces and separator:
// {"nodeName":"","state":"","event":"","action":"","reason":"","time":""},
// leastEntryBytes counts them all; entryBytes counts only the keys an entry
// has (every one but nodeName is omitted when empty).
const entryKeys = len(`{"nodeName":"","state":"","event":"","action":"","reason":"","time":""},`)

// entryBytes is an upper bound of one entry's JSON size.
func entryBytes(e *v1alpha1.TaskStatus) int {
	n := len(`{"nodeName":""},`) + jsonLen(e.NodeName)
	for _, f := range [...]struct{ key, value string }{
		{"state", e.State}, {"event", e.Event}, {"action", e.Action}, {"reason", e.Reason}, {"time", e.Time},
		{"phase", e.Phase}, {"currentVersion", e.CurrentVersion}, {"historicVersion", e.HistoricVersion},
	} {
		if f.value != "" {
			n += len(`,"":""`) + len(f.key) + jsonLen(f.value)
		}
	}
	if len(e.ActionFlow) > 0 {
		n += len(`,"actionFlow":[]`)
		for _, a := range e.ActionFlow {
			n += len(`{"action":"","status":"","reason":"","time":""},`) +
				jsonLen(a.Action) + jsonLen(string(a.Status)) + jsonLen(a.Reason) + jsonLen(a.Time)
		}
	}
	return n
}

// leastEntryBytes is an upper bound of a final entry of node name with no
// reason: the longest final state, event and action (Successful, Upgrade,
// Success) and an RFC 3339 time.
func leastEntryBytes(name string) int {
	return entryKeys + jsonLen(name) + len(v1alpha1.StateSuccessful+v1alpha1.EventUpgrade+v1alpha1.ActionSuccess) + len("2006-01-02T15:04:05Z")
}

// jobLevelBytes bounds everything in status but nodeStatus. The conditions,
// counters and reason are small and marshalling them costs little.
func jobLevelBytes(s *v1alpha1.NodeUpgradeJobStatus) int {
	top := *s
	top.NodeStatus = nil
	b, err := json.Marshal(top)
	if err != nil {
		return MaxObjectBytes
	}
	// Room for the conditions and reason a final plan adds.
	return len(b) + 2048 + 3*jsonLen(s.Reason)
}

// statusBudget is how many bytes the status may take in a job whose other
// parts (metadata and spec) take objectBytes.
func statusBudget(objectBytes int) int { return MaxObjectBytes - objectBytes }

// leastStatusBytes is the smallest status a job of these nodes can have
// once every node is final: each entry with no reason.
func leastStatusBytes(names []string) int {
	n := 2048 // job-level fields, as jobLevelBytes allows
	for _, name := range names {
		n += leastEntryBytes(name)
	}
	return n
}

// tooLarge reports why a job of these nodes could never be recorded in its
// status, or "" when it can.
func tooLarge(names []string, objectBytes int) string {
	need, budget := leastStatusBytes(names), statusBudget(objectBytes)
	if need <= budget {
		return ""
	}
	return fmt.Sprintf("the status of %d nodes needs at least %d bytes, more than the %d a NodeUpgradeJob can hold (etcd's 1.5 MiB request limit, less the job's spec and metadata); split the nodes over several jobs",
		len(names), need, max(budget, 0))
}

// FitsInJob reports whether a job of these nodes (objectBytes without its
// status) can keep every node's entry in its own status. The controller
// shards a job that cannot (pkg/controller/shards.go), so no job is too
// large for it.
func FitsInJob(names []string, objectBytes int) bool { return tooLarge(names, objectBytes) == "" }

// fitStatus bounds the status the plan writes: every node's reason is cut
// to MaxNodeReasonBytes, and when the whole status would still pass the
// budget, it sheds, step by step until it fits, what matters least: the
// actionFlow of Successful nodes (their phase says every action passed),
// then of every final node (its reason and event say where it ended),
// reasons cut short (those of final nodes first: their outcome is in state
// and action, their full reason in events and pods), then the reasons
// themselves, any remaining actionFlow, and
// last each node's KubeEdge phase (its state says the same in v1alpha1's
// words). A job that cannot fit even with none of these is refused before
// its first write (tooLarge), so the last step always fits. What is shed
// is not rebuilt by later plans (kubeEdgeStatus extends a node's flow only
// when its state changes), so the status stays deterministic.
func (p *planner) fitStatus() {
	entries := p.status.NodeStatus
	if p.in.Sharded {
		// Each shard holds a bounded number of entries, each bounded here.
		for i := range entries {
			entries[i].Reason = Truncate(entries[i].Reason, MaxNodeReasonBytes)
		}
		return
	}
	total := jobLevelBytes(&p.status)
	for i := range entries {
		entries[i].Reason = Truncate(entries[i].Reason, MaxNodeReasonBytes)
		total += entryBytes(&entries[i])
	}
	budget := statusBudget(p.in.ObjectBytes)
	final := func(e *v1alpha1.TaskStatus) bool { return NodeFinal(e.State) }
	successful := func(e *v1alpha1.TaskStatus) bool { return e.State == v1alpha1.StateSuccessful }
	any := func(*v1alpha1.TaskStatus) bool { return true }
	dropFlow := func(e *v1alpha1.TaskStatus) { e.ActionFlow = nil }
	cutReason := func(n int) func(*v1alpha1.TaskStatus) {
		return func(e *v1alpha1.TaskStatus) { e.Reason = Truncate(e.Reason, n) }
	}
	dropPhase := func(e *v1alpha1.TaskStatus) { e.Phase = "" }
	steps := []struct {
		of   func(*v1alpha1.TaskStatus) bool
		shed func(*v1alpha1.TaskStatus)
	}{
		{successful, dropFlow}, {final, dropFlow},
		{final, cutReason(shortReasonBytes)}, {any, cutReason(shortReasonBytes)},
		{final, cutReason(0)}, {any, cutReason(0)},
		{any, dropFlow},
		{final, dropPhase}, {any, dropPhase},
	}
	for _, step := range steps {
		if total <= budget {
			return
		}
		for i := range entries {
			e := &entries[i]
			if !step.of(e) {
				continue
			}
			before := entryBytes(e)
			step.shed(e)
			total -= before - entryBytes(e)
		}
	}
}
