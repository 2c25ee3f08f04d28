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
const entryKeys = len(`{"nodeName":"","state":"","event":"","action":"","reason":"","time":""},`)

// entryBytes is an upper bound of one entry's JSON size.
func entryBytes(e *v1alpha1.TaskStatus) int {
	n := entryKeys + jsonLen(e.NodeName) + len(e.State) + len(e.Event) + len(e.Action) + jsonLen(e.Reason) + len(e.Time)
	// KubeEdge's fields: this controller never writes them, but a status it
	// carries on keeps them.
	if e.Phase != "" || e.CurrentVersion != "" || e.HistoricVersion != "" || len(e.ActionFlow) > 0 {
		n += len(`,"phase":"","currentVersion":"","historicVersion":"","actionFlow":[]`) +
			jsonLen(e.Phase) + jsonLen(e.CurrentVersion) + jsonLen(e.HistoricVersion)
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

// fitStatus bounds the status the plan writes: every node's reason is cut
// to MaxNodeReasonBytes, and when the whole status would still pass the
// budget, reasons are cut further, those of final nodes first (their
// outcome is in state and action, their full reason in events and pods),
// until it fits. A job that cannot fit even with no reason at all is
// refused before its first write (tooLarge), so the last step always fits.
func (p *planner) fitStatus() {
	entries := p.status.NodeStatus
	total := jobLevelBytes(&p.status)
	for i := range entries {
		entries[i].Reason = Truncate(entries[i].Reason, MaxNodeReasonBytes)
		total += entryBytes(&entries[i])
	}
	budget := statusBudget(p.in.ObjectBytes)
	steps := []struct {
		finalOnly bool
		max       int
	}{{true, shortReasonBytes}, {false, shortReasonBytes}, {true, 0}, {false, 0}}
	for _, step := range steps {
		if total <= budget {
			return
		}
		for i := range entries {
			e := &entries[i]
			if len(e.Reason) <= step.max || (step.finalOnly && !NodeFinal(e.State)) {
				continue
			}
			before := jsonLen(e.Reason)
			e.Reason = Truncate(e.Reason, step.max)
			total -= before - jsonLen(e.Reason)
		}
	}
}
