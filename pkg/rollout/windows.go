package rollout

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // zones from the binary, not the host: see LoadZone

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// Window is one spec.maintenanceWindows entry, parsed.
type Window struct {
	// Days holds the weekdays the window opens on; all true when the spec
	// names none.
	Days [7]bool
	// Start and End are minutes after midnight; End may be 1440 (24:00).
	// End <= Start: the window closes on the next day.
	Start, End int
	// Zone is the window's time zone (UTC when the spec names none). A
	// node's own zone (its LabelTimeZone) takes its place.
	Zone *time.Location
}

// Schedule is a job's maintenance windows. Empty: always open.
type Schedule []Window

var weekdays = map[string]time.Weekday{"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday,
	"wednesday": time.Wednesday, "thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday}

// ParseWindows reads spec.maintenanceWindows. The CRD checks the grammar
// of days and times; this checks it again (a v1alpha2 object, or one stored
// before the rule, may lack it) and loads each time zone, which the API
// server cannot check. Every error names its field.
func ParseWindows(specs []v1alpha1.MaintenanceWindow) (Schedule, error) {
	s := make(Schedule, 0, len(specs))
	for i, spec := range specs {
		field := fmt.Sprintf("spec.maintenanceWindows[%d]", i)
		var w Window
		for _, d := range spec.Days {
			wd, ok := weekdays[d]
			if !ok {
				return nil, fmt.Errorf("%s.days: %q is not a day of the week (monday ... sunday)", field, d)
			}
			w.Days[wd] = true
		}
		if len(spec.Days) == 0 {
			w.Days = [7]bool{true, true, true, true, true, true, true}
		}
		var err error
		if w.Start, err = clockMinutes(spec.StartTime, false); err != nil {
			return nil, fmt.Errorf("%s.startTime: %w", field, err)
		}
		if w.End, err = clockMinutes(spec.EndTime, true); err != nil {
			return nil, fmt.Errorf("%s.endTime: %w", field, err)
		}
		if w.Start == w.End {
			return nil, fmt.Errorf("%s.endTime: %q equals startTime; an endTime before startTime is a window across midnight, 00:00 to 24:00 a whole day", field, spec.EndTime)
		}
		if w.Zone, err = LoadZone(spec.TimeZone); err != nil {
			return nil, fmt.Errorf("%s.timeZone: %w", field, err)
		}
		s = append(s, w)
	}
	return s, nil
}

// clockMinutes reads HH:MM on a 24-hour clock; 24:00 only when endOfDay.
func clockMinutes(s string, endOfDay bool) (int, error) {
	hh, mm, ok := strings.Cut(s, ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	switch {
	case !ok || len(hh) != 2 || len(mm) != 2 || err1 != nil || err2 != nil || h < 0 || m < 0 || m > 59:
	case h < 24:
		return h*60 + m, nil
	case h == 24 && m == 0 && endOfDay:
		return 24 * 60, nil
	}
	return 0, fmt.Errorf("%q is not a time of day HH:MM (00:00 to 23:59, or 24:00 for an end)", s)
}

// zones caches loaded time zones: a plan reads one per node, and
// time.LoadLocation parses the zone's data every time.
var zones sync.Map // name -> *time.Location or error

// LoadZone loads an IANA time zone; "" is UTC. "Local" is refused: it
// would be the controller host's, not a place. Zones are read from the
// binary (time/tzdata), not the host: the controller's image has no
// /usr/share/zoneinfo, and a plan must not depend on where it is made.
func LoadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if v, ok := zones.Load(name); ok {
		if err, bad := v.(error); bad {
			return nil, err
		}
		return v.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err == nil && name == "Local" {
		err = fmt.Errorf("the controller's local zone is no place")
	}
	if err != nil {
		err = fmt.Errorf("unknown time zone %q (want an IANA name such as Europe/Berlin)", name)
		zones.Store(name, err)
		return nil, err
	}
	zones.Store(name, loc)
	return loc, nil
}

// NodeZoneName is the IANA zone a node's LabelTimeZone value names: label
// values cannot hold "/", so it is written as ".".
func NodeZoneName(label string) string { return strings.ReplaceAll(label, ".", "/") }

// Open reports whether t is inside one of the windows, read in zone when
// it is not nil (the node's own), else in each window's. An empty schedule
// is always open.
func (s Schedule) Open(t time.Time, zone *time.Location) bool {
	if len(s) == 0 {
		return true
	}
	for _, w := range s {
		loc := w.zone(zone)
		local := t.In(loc)
		// The occurrence that opened today, or yesterday and runs past
		// midnight.
		for back := 0; back <= 1; back++ {
			day := time.Date(local.Year(), local.Month(), local.Day()-back, 0, 0, 0, 0, loc)
			if !w.Days[day.Weekday()] {
				continue
			}
			start, end := w.occurrence(day, loc)
			if !t.Before(start) && t.Before(end) {
				return true
			}
		}
	}
	return false
}

// NextOpen is the first time after t a window opens, read as Open reads
// it; zero for an empty schedule.
func (s Schedule) NextOpen(t time.Time, zone *time.Location) time.Time {
	var next time.Time
	for _, w := range s {
		loc := w.zone(zone)
		local := t.In(loc)
		for ahead := 0; ahead <= 7; ahead++ {
			day := time.Date(local.Year(), local.Month(), local.Day()+ahead, 0, 0, 0, 0, loc)
			if !w.Days[day.Weekday()] {
				continue
			}
			if start, _ := w.occurrence(day, loc); start.After(t) {
				if next.IsZero() || start.Before(next) {
					next = start
				}
				break
			}
		}
	}
	return next
}

func (w Window) zone(node *time.Location) *time.Location {
	if node != nil {
		return node
	}
	return w.Zone
}

// occurrence is the window's opening and closing on the wall clock of loc,
// opening on day (midnight of it). time.Date keeps a wall time the zone
// skips or repeats well defined: a skipped time is taken after the change.
func (w Window) occurrence(day time.Time, loc *time.Location) (start, end time.Time) {
	y, m, d := day.Date()
	start = time.Date(y, m, d, w.Start/60, w.Start%60, 0, 0, loc)
	endDay := d
	if w.End <= w.Start {
		endDay++
	}
	end = time.Date(y, m, endDay, w.End/60, w.End%60, 0, 0, loc)
	return start, end
}

// windowState is what the windows say about one node now.
type windowState struct {
	open bool
	next time.Time
}

// nodeWindow says whether a node may start now under the job's windows,
// in its own zone when it names one, and when its next window opens. The
// answer for a zone label is computed once per plan. why is set when the
// node's zone label names no zone.
func (p *planner) nodeWindow(node NodeView) (st windowState, why string) {
	if st, ok := p.windows[node.TimeZone]; ok {
		return st, ""
	}
	var zone *time.Location
	if node.TimeZone != "" {
		var err error
		if zone, err = LoadZone(NodeZoneName(node.TimeZone)); err != nil {
			return windowState{}, fmt.Sprintf("nothing was run: node label %s=%s: %v", v1alpha1.LabelTimeZone, node.TimeZone, err)
		}
	}
	st = windowState{open: p.in.Config.Windows.Open(p.now, zone)}
	if !st.open {
		st.next = p.in.Config.Windows.NextOpen(p.now, zone)
	}
	if p.windows == nil {
		p.windows = map[string]windowState{}
	}
	p.windows[node.TimeZone] = st
	return st, ""
}
