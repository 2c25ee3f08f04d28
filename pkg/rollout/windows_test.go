package rollout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func zone(name string) *time.Location {
	loc, err := LoadZone(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// TestWindowOpenAndNext reads windows at chosen instants: days, a window
// across midnight, 24:00, a node's own zone against the job's, and the
// nights daylight saving time begins and ends.
func TestWindowOpenAndNext(t *testing.T) {
	berlin := v1alpha1.MaintenanceWindow{StartTime: "01:00", EndTime: "04:00", TimeZone: "Europe/Berlin"}
	cases := []struct {
		name   string
		window v1alpha1.MaintenanceWindow
		node   string // the node's zone ("" for none)
		at     string
		open   bool
		next   string // when closed
	}{
		{name: "inside, UTC default", window: v1alpha1.MaintenanceWindow{StartTime: "02:00", EndTime: "04:00"},
			at: "2026-11-27T03:59:59Z", open: true},
		{name: "the end is outside", window: v1alpha1.MaintenanceWindow{StartTime: "02:00", EndTime: "04:00"},
			at: "2026-11-27T04:00:00Z", next: "2026-11-28T02:00:00Z"},
		{name: "the start is inside", window: v1alpha1.MaintenanceWindow{StartTime: "02:00", EndTime: "04:00"},
			at: "2026-11-27T02:00:00Z", open: true},
		// 2026-11-27 is a Friday.
		{name: "not on an unlisted day", window: v1alpha1.MaintenanceWindow{Days: []string{"saturday", "sunday"}, StartTime: "02:00", EndTime: "04:00"},
			at: "2026-11-27T03:00:00Z", next: "2026-11-28T02:00:00Z"},
		{name: "across midnight, after midnight, opened on a listed day", window: v1alpha1.MaintenanceWindow{Days: []string{"thursday"}, StartTime: "22:00", EndTime: "02:00"},
			at: "2026-11-27T01:00:00Z", open: true},
		{name: "across midnight, before midnight of an unlisted day", window: v1alpha1.MaintenanceWindow{Days: []string{"thursday"}, StartTime: "22:00", EndTime: "02:00"},
			at: "2026-11-27T23:00:00Z", next: "2026-12-03T22:00:00Z"},
		{name: "until 24:00", window: v1alpha1.MaintenanceWindow{StartTime: "20:00", EndTime: "24:00"},
			at: "2026-11-27T23:59:00Z", open: true},
		{name: "whole day", window: v1alpha1.MaintenanceWindow{Days: []string{"friday"}, StartTime: "00:00", EndTime: "24:00"},
			at: "2026-11-27T12:00:00Z", open: true},
		// The job's zone is at day (Berlin 14:00), the node's at night (Tokyo 22:00).
		{name: "the node's zone at night while the job's is at day", window: v1alpha1.MaintenanceWindow{StartTime: "22:00", EndTime: "02:00", TimeZone: "Europe/Berlin"},
			node: "Asia/Tokyo", at: "2026-11-27T13:00:00Z", open: true},
		{name: "the job's zone alone, the same instant", window: v1alpha1.MaintenanceWindow{StartTime: "22:00", EndTime: "02:00", TimeZone: "Europe/Berlin"},
			at: "2026-11-27T13:00:00Z", next: "2026-11-27T21:00:00Z"},
		// Europe/Berlin goes from CET (+1) to CEST (+2) at 02:00 on
		// 2026-03-29: 01:00-04:00 lasts two hours, 00:00Z to 02:00Z.
		{name: "spring forward: opens at 01:00 CET", window: berlin, at: "2026-03-29T00:00:00Z", open: true},
		{name: "spring forward: open at 03:59 CEST", window: berlin, at: "2026-03-29T01:59:00Z", open: true},
		{name: "spring forward: closed at 04:00 CEST, two hours after it opened", window: berlin, at: "2026-03-29T02:00:00Z", next: "2026-03-29T23:00:00Z"},
		// Back from CEST to CET at 03:00 on 2026-10-25: 01:00 CEST is
		// 23:00Z, 04:00 CET is 03:00Z: four hours.
		{name: "fall back: opens at 01:00 CEST", window: berlin, at: "2026-10-24T23:00:00Z", open: true},
		{name: "fall back: open in the repeated hour", window: berlin, at: "2026-10-25T01:30:00Z", open: true},
		{name: "fall back: open at 03:59 CET, four hours after it opened", window: berlin, at: "2026-10-25T02:59:00Z", open: true},
		{name: "fall back: closed at 04:00 CET", window: berlin, at: "2026-10-25T03:00:00Z", next: "2026-10-26T00:00:00Z"},
		// A window inside the skipped hour (02:00-03:00 CET does not exist
		// that night) opens an hour later on the wall clock, 03:15 CEST.
		{name: "a window inside the skipped hour", window: v1alpha1.MaintenanceWindow{StartTime: "02:15", EndTime: "02:45", TimeZone: "Europe/Berlin"},
			at: "2026-03-29T00:30:00Z", next: "2026-03-29T01:15:00Z"},
		// New York changes on other dates (2026-03-08): the node's zone rules.
		{name: "the node's daylight saving, not the job's", window: v1alpha1.MaintenanceWindow{StartTime: "01:00", EndTime: "04:00", TimeZone: "Europe/Berlin"},
			node: "America/New_York", at: "2026-03-08T06:00:00Z", open: true}, // 01:00 EST
		{name: "the node's daylight saving: closes at 04:00 EDT", window: v1alpha1.MaintenanceWindow{StartTime: "01:00", EndTime: "04:00", TimeZone: "Europe/Berlin"},
			node: "America/New_York", at: "2026-03-08T08:00:00Z", next: "2026-03-09T05:00:00Z"}, // 04:00 EDT; next 01:00 EDT
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			s, err := ParseWindows([]v1alpha1.MaintenanceWindow{c.window})
			g.Expect(err).NotTo(HaveOccurred())
			var node *time.Location
			if c.node != "" {
				node = zone(c.node)
			}
			at := utc(c.at)
			g.Expect(s.Open(at, node)).To(Equal(c.open))
			if !c.open {
				g.Expect(s.NextOpen(at, node).UTC()).To(Equal(utc(c.next)))
				g.Expect(s.Open(utc(c.next), node)).To(BeTrue(), "open when it opens")
			}
		})
	}
}

func TestParseWindowsNamesTheField(t *testing.T) {
	cases := []struct {
		window v1alpha1.MaintenanceWindow
		field  string
	}{
		{v1alpha1.MaintenanceWindow{StartTime: "01:00", EndTime: "02:00", TimeZone: "Mars/Olympus_Mons"}, "spec.maintenanceWindows[1].timeZone: unknown time zone"},
		{v1alpha1.MaintenanceWindow{StartTime: "01:00", EndTime: "02:00", TimeZone: "Local"}, "spec.maintenanceWindows[1].timeZone"},
		{v1alpha1.MaintenanceWindow{StartTime: "1:00", EndTime: "02:00"}, "spec.maintenanceWindows[1].startTime"},
		{v1alpha1.MaintenanceWindow{StartTime: "24:00", EndTime: "02:00"}, "spec.maintenanceWindows[1].startTime"},
		{v1alpha1.MaintenanceWindow{StartTime: "01:00", EndTime: "02:60"}, "spec.maintenanceWindows[1].endTime"},
		{v1alpha1.MaintenanceWindow{StartTime: "01:00", EndTime: "01:00"}, "spec.maintenanceWindows[1].endTime"},
		{v1alpha1.MaintenanceWindow{Days: []string{"Friday"}, StartTime: "01:00", EndTime: "02:00"}, "spec.maintenanceWindows[1].days"},
	}
	for _, c := range cases {
		g := NewWithT(t)
		_, err := ParseWindows([]v1alpha1.MaintenanceWindow{{StartTime: "00:00", EndTime: "24:00"}, c.window})
		g.Expect(err).To(MatchError(ContainSubstring(c.field)), "%+v", c.window)
	}
	_, err := ConfigFromSpec(&v1alpha1.NodeUpgradeJobSpec{Version: "v1.21.0",
		MaintenanceWindows: []v1alpha1.MaintenanceWindow{{StartTime: "01:00", EndTime: "02:00", TimeZone: "Europe/Nowhere"}}})
	NewWithT(t).Expect(err).To(MatchError(ContainSubstring("spec.maintenanceWindows[0].timeZone")))
}

// TestNodeZoneLabel: a node whose zone label names no zone fails when its
// turn comes, saying why; the others are not held by it.
func TestNodeZoneLabel(t *testing.T) {
	g := NewWithT(t)
	g.Expect(NodeZoneName("America.Argentina.Buenos_Aires")).To(Equal("America/Argentina/Buenos_Aires"))
	c := cfg(2, "1")
	c.Windows = mustWindows(v1alpha1.MaintenanceWindow{StartTime: "00:00", EndTime: "24:00"})
	nodes := fleet(2)
	bad := nodes["node-00"]
	bad.TimeZone = "Europe.Atlantis"
	nodes["node-00"] = bad
	p := start(c, names(2), nodes)
	g.Expect(entry(p, "node-00").State).To(Equal(v1alpha1.StateFailed))
	g.Expect(entry(p, "node-00").Reason).To(ContainSubstring(v1alpha1.LabelTimeZone + "=Europe.Atlantis"))
	g.Expect(dispatched(p)).To(Equal([]string{"node-01"}))
}

// TestWindowWakesTheJobWhenItOpens: outside every window nothing starts,
// the job shows when the next opens, and asks to plan again then, not
// sooner.
func TestWindowWakesTheJobWhenItOpens(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "0")
	c.Windows = mustWindows(v1alpha1.MaintenanceWindow{StartTime: "22:00", EndTime: "02:00"}) // t0 is 10:00Z
	p := start(c, names(1), fleet(1))
	g.Expect(p.Dispatch).To(BeEmpty())
	g.Expect(p.Status.NextWindow).To(Equal("2026-11-27T22:00:00Z"))
	g.Expect(p.RequeueAfter).To(Equal(12 * time.Hour))
	g.Expect(entry(p, "node-00").Time).To(BeEmpty(), "no clock runs for a node held by its window")
	next := Decide(Input{Config: c, Status: p.Status, Nodes: fleet(1), Now: t0.Add(12 * time.Hour)})
	g.Expect(dispatched(next)).To(Equal([]string{"node-00"}))
	g.Expect(next.Status.NextWindow).To(BeEmpty())
}

// TestStagingWindowsOnly: spec.preStage.windowsOnly stages a node only in
// its window; without it staging starts at once, outside any window.
func TestStagingWindowsOnly(t *testing.T) {
	g := NewWithT(t)
	c := cfg(1, "0")
	c.Windows = mustWindows(v1alpha1.MaintenanceWindow{StartTime: "22:00", EndTime: "02:00"}) // t0 is 10:00Z
	c.PreStage = &StageConfig{Concurrency: 5}
	nodes := fleet(2)
	tokyo := nodes["node-01"]
	tokyo.TimeZone = "Asia.Tokyo" // 19:00 there
	nodes["node-01"] = tokyo
	p := start(c, names(2), nodes)
	g.Expect(p.Stage).To(HaveLen(2), "staging ignores the windows by default")
	g.Expect(p.Dispatch).To(BeEmpty())

	c.PreStage.WindowsOnly = true
	g.Expect(start(c, names(2), nodes).Stage).To(BeEmpty(), "both outside their window")
	p = Decide(Input{Config: c, Status: start(c, names(2), nodes).Status, Nodes: nodes, Now: t0.Add(3 * time.Hour)}) // 22:00 in Tokyo
	g.Expect(p.Stage).To(ConsistOf(StageDispatch{Node: "node-01"}))
}
