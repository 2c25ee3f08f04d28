package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"
	"unsafe"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// view draws the live progress. On a terminal it redraws one screen in
// place; anywhere else (a pipe, CI, a test) it appends a snapshot only when
// something changed, so the output reads as a log.
type view struct {
	out    io.Writer
	tty    bool
	start  time.Time
	header []string

	prevNodes map[string]v1alpha1.TaskStatus // "job/node" -> last seen entry
	prevJobs  map[string]string              // job -> last printed row
	recent    []string                       // node changes, newest last
	notes     []string                       // operator output, newest last (terminal only)
}

const recentOnScreen = 10

func newView(out *os.File, start time.Time, header []string) *view {
	return &view{
		out:       out,
		tty:       isTerminal(out),
		start:     start,
		header:    header,
		prevNodes: map[string]v1alpha1.TaskStatus{},
		prevJobs:  map[string]string{},
	}
}

// update takes a fresh list of jobs and draws what changed.
func (v *view) update(jobs []v1alpha1.NodeUpgradeJob) {
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].Name < jobs[j].Name })
	elapsed := clock(time.Since(v.start))

	var changes []string
	for _, job := range jobs {
		for _, e := range job.Status.NodeStatus {
			key := job.Name + "/" + e.NodeName
			old, seen := v.prevNodes[key]
			if seen && old.State == e.State && old.Event == e.Event && old.Action == e.Action && old.Reason == e.Reason {
				continue
			}
			v.prevNodes[key] = e
			if !seen && e.State == "" && e.Reason == "" {
				continue // a freshly selected node: nothing to tell yet
			}
			changes = append(changes, fmt.Sprintf("%s  %-16s %-12s %s", elapsed, job.Name, e.NodeName, describeChange(old, e, seen)))
		}
	}
	jobsChanged := false
	for _, job := range jobs {
		row := jobRow(job, 0)
		if v.prevJobs[job.Name] != row {
			v.prevJobs[job.Name] = row
			jobsChanged = true
		}
	}
	v.recent = append(v.recent, changes...)
	if len(v.recent) > recentOnScreen {
		v.recent = v.recent[len(v.recent)-recentOnScreen:]
	}

	if v.tty {
		v.drawScreen(jobs, elapsed)
		return
	}
	if !jobsChanged && len(changes) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s\n", elapsed)
	writeJobTable(&b, jobs)
	for _, c := range changes {
		b.WriteString("    " + c + "\n")
	}
	_, _ = io.WriteString(v.out, b.String())
}

// note shows an operator step: a title line (a command) and what it
// printed, indented. A log gets it at once; a terminal keeps its last lines
// below the live view.
func (v *view) note(title, body string) {
	var lines []string
	if title != "" {
		lines = append(lines, fmt.Sprintf("[%s] %s", clock(time.Since(v.start)), title))
	}
	if b := indent(body); b != "" {
		lines = append(lines, strings.Split(strings.TrimSuffix(b, "\n"), "\n")...)
	}
	if !v.tty {
		for _, l := range lines {
			_, _ = io.WriteString(v.out, l+"\n")
		}
		return
	}
	v.notes = append(v.notes, lines...)
	if len(v.notes) > maxNotes {
		v.notes = v.notes[len(v.notes)-maxNotes:]
	}
}

// say is a note without output.
func (v *view) say(format string, args ...any) { v.note(fmt.Sprintf(format, args...), "") }

// endLive turns a terminal view into a log: what follows is printed below
// the last screen.
func (v *view) endLive() { v.tty = false }

// drawScreen redraws the terminal from the top, clearing each line's rest
// rather than the whole screen, which avoids flicker.
func (v *view) drawScreen(jobs []v1alpha1.NodeUpgradeJob, elapsed string) {
	width := terminalWidth(v.out)
	var b strings.Builder
	for _, h := range v.header {
		b.WriteString(h + "\n")
	}
	fmt.Fprintf(&b, "\nelapsed %s\n\n", elapsed)
	writeJobTable(&b, jobs)
	for _, job := range jobs {
		fmt.Fprintf(&b, "\n%s: %s\n", job.Name, selectionText(job))
		writeNodeGrid(&b, job.Status.NodeStatus, width)
	}
	b.WriteString("\nrecent node changes:\n")
	for _, c := range v.recent {
		b.WriteString("  " + c + "\n")
	}
	if len(v.notes) > 0 {
		b.WriteString("\noperator (kubectl nodeupgrade):\n")
		// As many of the newest as the terminal has rows left for.
		keep := minNotesOnScreen
		if rows := terminalHeight(v.out); rows > 0 {
			keep = max(keep, rows-strings.Count(b.String(), "\n")-1)
		}
		notes := v.notes
		if len(notes) > keep {
			notes = notes[len(notes)-keep:]
		}
		for _, n := range notes {
			b.WriteString(n + "\n")
		}
	}
	var screen strings.Builder
	screen.WriteString("\x1b[H")
	for line := range strings.SplitSeq(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if width > 0 && len(line) > width {
			line = line[:width]
		}
		screen.WriteString(line + "\x1b[K\n")
	}
	screen.WriteString("\x1b[J")
	_, _ = io.WriteString(v.out, screen.String())
}

// clearScreen starts a terminal view on an empty screen.
func (v *view) clearScreen() {
	if v.tty {
		_, _ = io.WriteString(v.out, "\x1b[H\x1b[2J")
	}
}

func writeJobTable(b *strings.Builder, jobs []v1alpha1.NodeUpgradeJob) {
	nameW := 16
	for _, job := range jobs {
		nameW = max(nameW, len(job.Name))
	}
	for _, job := range jobs {
		b.WriteString("  " + jobRow(job, nameW) + "\n")
	}
}

// jobRow is one job in a line: name (padded to nameW), version, state,
// progress, then the counts that are not zero, so it fits a narrow terminal.
func jobRow(job v1alpha1.NodeUpgradeJob, nameW int) string {
	c := job.Status.Counts
	skipped := int32(countSkipped(job.Status.NodeStatus))
	state := job.Status.State
	if state == "" {
		state = "(new)"
	}
	progress := job.Status.Progress
	if progress == "" {
		progress = "-"
	}
	var counts []string
	for _, n := range []struct {
		v    int32
		word string
	}{
		{c.Succeeded - skipped, "upgraded"}, {skipped, "skipped"}, {c.Failed, "failed"},
		{c.InFlight, "in flight"}, {c.Pending, "pending"}, {c.NotAttempted, "not attempted"},
	} {
		if n.v > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n.v, n.word))
		}
	}
	return fmt.Sprintf("%-*s %-8s %-10s %-6s %s", nameW, job.Name, job.Spec.Version, state, progress, strings.Join(counts, ", "))
}

func countSkipped(entries []v1alpha1.TaskStatus) int {
	n := 0
	for _, e := range entries {
		if isSkipped(e) {
			n++
		}
	}
	return n
}

func isSkipped(e v1alpha1.TaskStatus) bool {
	return e.State == v1alpha1.StateSuccessful && strings.HasPrefix(e.Reason, "skipped")
}

func selectionText(job v1alpha1.NodeUpgradeJob) string {
	sel := "nodeNames"
	if job.Spec.LabelSelector != nil {
		var parts []string
		for k, val := range job.Spec.LabelSelector.MatchLabels {
			parts = append(parts, k+"="+val)
		}
		sort.Strings(parts)
		sel = "labels " + strings.Join(parts, ",")
	}
	return fmt.Sprintf("%s; concurrency %d, tolerate %s, timeout %ds",
		sel, job.Spec.Concurrency, job.Spec.FailureTolerate, job.Spec.TimeoutSeconds)
}

// nodeLabel is a node's place in one short word or two.
func nodeLabel(e v1alpha1.TaskStatus) string {
	switch e.State {
	case v1alpha1.StateNone:
		if strings.HasPrefix(e.Reason, "deferred") {
			return "deferred"
		}
		return "pending"
	case v1alpha1.StateInit:
		return "dispatched"
	case v1alpha1.StateSuccessful:
		if isSkipped(e) {
			return "skipped"
		}
		return "upgraded"
	case v1alpha1.StateFailed:
		if e.Action == v1alpha1.ActionTimeOut {
			return "TIMED OUT"
		}
		return "FAILED"
	case v1alpha1.StateNotAttempted:
		return "unattempted"
	}
	if strings.HasPrefix(e.Reason, "verifying") {
		return "verifying"
	}
	return e.State // Checking, BackingUp, Upgrading, RollingBack
}

func writeNodeGrid(b *strings.Builder, entries []v1alpha1.TaskStatus, width int) {
	nameW := 0
	for _, e := range entries {
		nameW = max(nameW, len(e.NodeName))
	}
	const labelW = 11 // the longest label, RollingBack
	cell := nameW + 1 + labelW
	cols := 3
	if width > 0 {
		cols = max(1, width/(cell+2))
	}
	for i, e := range entries {
		b.WriteString("  ")
		fmt.Fprintf(b, "%-*s %-*s", nameW, e.NodeName, labelW, nodeLabel(e))
		if i%cols == cols-1 || i == len(entries)-1 {
			b.WriteString("\n")
		}
	}
}

// describeChange tells how a node's entry moved, e.g.
// "Upgrading -> Failed [Rollback/Failure] keadm upgrade failed...".
func describeChange(old, now v1alpha1.TaskStatus, seen bool) string {
	from := "pending"
	if seen {
		from = nodeLabel(old)
	}
	s := fmt.Sprintf("%s -> %s", from, nodeLabel(now))
	if now.Event != "" || now.Action != "" {
		s += fmt.Sprintf(" [%s/%s]", dash(now.Event), dash(now.Action))
	}
	if now.Reason != "" {
		s += " " + now.Reason
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clock formats a duration as m:ss.
func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// isTerminal reports whether f is a terminal, by asking for its window
// size, which only a terminal has. No dependency needed for one ioctl.
func isTerminal(f *os.File) bool {
	_, ok := winsize(f)
	return ok
}

func terminalHeight(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, ok := winsize(f)
	if !ok {
		return 0
	}
	return int(ws.Row)
}

func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, ok := winsize(f)
	if !ok || ws.Col == 0 {
		return 0
	}
	return int(ws.Col)
}

type winsizeT struct{ Row, Col, X, Y uint16 }

func winsize(f *os.File) (winsizeT, bool) {
	var ws winsizeT
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), uintptr(syscall.TIOCGWINSZ), uintptr(unsafe.Pointer(&ws)))
	return ws, errno == 0
}
