package rollout

import (
	"fmt"
	"strings"
	"time"
)

// maxListed bounds the nodes a line of Plan.String names: a plan at fleet
// scale dispatches or cleans up hundreds at once, and a log line is read by
// a person.
const maxListed = 10

// String describes the plan's decisions, one line per kind, in the order the
// controller carries them out, leaving out the kinds the plan does not have:
//
//	job <state> <progress>[ finished][: <reason>]
//	dispatch <node> (from <version>, deadline <RFC 3339>[, replaces <job>'s kept pod]), ...
//	cancel <node>: <why>; ...
//	release <node>, ...
//	delete <node>, ...
//	set spec.suspend=<bool>
//	requeue after <duration>
//
// A line names at most 10 nodes and counts the rest. The events a plan
// records are not in it: the controller records them as Events, each with
// its message.
func (p Plan) String() string {
	var b strings.Builder
	s := p.Status
	fmt.Fprintf(&b, "job %s %s", orDash(s.State), orDash(s.Progress))
	if p.Finished {
		b.WriteString(" finished")
	}
	if s.Reason != "" {
		b.WriteString(": " + s.Reason)
	}
	var dispatch, cancel, release, del []string
	for _, d := range p.Dispatch {
		dispatch = append(dispatch, d.String())
	}
	for _, c := range p.Cleanup {
		if c.Cancel != "" {
			cancel = append(cancel, c.Node+": "+c.Cancel)
		}
		if c.Release {
			release = append(release, c.Node)
		}
		if c.Delete {
			del = append(del, c.Node)
		}
	}
	writeList(&b, "dispatch", ", ", dispatch)
	writeList(&b, "cancel", "; ", cancel)
	writeList(&b, "release", ", ", release)
	writeList(&b, "delete", ", ", del)
	if p.SetSuspend != nil {
		fmt.Fprintf(&b, "\nset spec.suspend=%t", *p.SetSuspend)
	}
	if p.RequeueAfter > 0 {
		fmt.Fprintf(&b, "\nrequeue after %s", p.RequeueAfter)
	}
	return b.String()
}

// String describes one dispatch: the node, the version it upgrades from,
// its deadline, and the kept pod it replaces.
func (d Dispatch) String() string {
	s := fmt.Sprintf("%s (from %s, deadline %s", d.Node, orDash(d.FromVersion), d.Deadline.UTC().Format(time.RFC3339))
	if d.Replaces != "" {
		s += ", replaces " + d.Replaces + "'s kept pod"
	}
	return s + ")"
}

// writeList writes a line of kind listing items, at most maxListed of them.
func writeList(b *strings.Builder, kind, sep string, items []string) {
	if len(items) == 0 {
		return
	}
	b.WriteString("\n" + kind + " ")
	if len(items) > maxListed {
		fmt.Fprintf(b, "%s%s(and %d more)", strings.Join(items[:maxListed], sep), sep, len(items)-maxListed)
		return
	}
	b.WriteString(strings.Join(items, sep))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
