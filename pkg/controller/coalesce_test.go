package controller

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
)

func TestUntilNextWrite(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		interval  time.Duration
		lastWrite time.Duration // before now; 0 means never written
		finished  bool
		want      time.Duration
	}{
		{name: "first write goes at once", interval: time.Second, want: 0},
		{name: "too soon waits for the rest of the interval", interval: time.Second, lastWrite: 300 * time.Millisecond, want: 700 * time.Millisecond},
		{name: "after the interval goes at once", interval: time.Second, lastWrite: 2 * time.Second, want: -time.Second},
		{name: "the final write never waits", interval: time.Second, lastWrite: 100 * time.Millisecond, finished: true, want: 0},
		{name: "interval 0 disables coalescing", interval: 0, lastWrite: 100 * time.Millisecond, want: 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			r := &Reconciler{clock: clocktesting.NewFakePassiveClock(now), opts: Options{StatusWriteInterval: c.interval}}
			if c.lastWrite > 0 {
				r.lastWrite.Store("job", now.Add(-c.lastWrite))
			}
			g.Expect(r.untilNextWrite("job", rollout.Plan{Finished: c.finished})).To(Equal(c.want))
		})
	}
}
