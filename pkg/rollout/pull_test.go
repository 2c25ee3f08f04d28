package rollout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

const (
	notFound = `copy-keadm: cannot pull registry.test/kubeedge/installation-package:v1.22.7: not found`
	refused  = `copy-keadm: cannot pull registry.test/kubeedge/installation-package:v1.23.1: dial tcp 10.0.0.1:5000: connect: connection refused`
	backOff  = `copy-keadm: cannot pull registry.test/kubeedge/installation-package:v1.23.1: back-off`
)

// A node whose pod waits on an image pull says so with the runtime's words;
// a pull the registry refuses fails the node at once, before any step ran;
// one that may still pass waits until the deadline, which names it.
func TestPullFailures(t *testing.T) {
	type obs struct {
		at  time.Duration
		pod PodView
		// want: the node's state, action and a substring of its reason.
		state, action, reason string
	}
	pending := func(pull PullState, reason string) PodView {
		return PodView{Phase: PodPending, Pull: pull, Reason: reason, Tracked: true}
	}
	for _, tc := range []struct {
		name string
		seq  []obs
		// cancelled: the last plan deletes the pod that never ran.
		cancelled bool
	}{
		{"a tag the registry does not have fails the node at once", []obs{
			{10 * time.Second, pending(PullRefused, notFound), v1alpha1.StateFailed, v1alpha1.ActionFailure, pullRefusedPrefix + notFound},
		}, true},
		{"an unreachable registry: the node waits with the runtime's words, then times out naming them", []obs{
			{10 * time.Second, pending(PullRetrying, refused), v1alpha1.StateInit, "", pullWaitPrefix + refused},
			{20 * time.Second, pending(PullBackOff, backOff), v1alpha1.StateInit, "", pullWaitPrefix + refused},
			{300 * time.Second, pending(PullBackOff, backOff), v1alpha1.StateFailed, v1alpha1.ActionTimeOut, "did not finish within 5m0s (last seen: Init; " + pullWaitPrefix + refused + ")"},
		}, true},
		{"a back-off alone is a reason too", []obs{
			{10 * time.Second, pending(PullBackOff, backOff), v1alpha1.StateInit, "", pullWaitPrefix + backOff},
		}, false},
		{"the registry comes back: the pull reason goes", []obs{
			{10 * time.Second, pending(PullRetrying, refused), v1alpha1.StateInit, "", refused},
			{30 * time.Second, PodView{Phase: PodChecking, Tracked: true}, v1alpha1.StateChecking, "", ""},
		}, false},
		{"a refusal seen after a retry still fails at once", []obs{
			{10 * time.Second, pending(PullRetrying, refused), v1alpha1.StateInit, "", refused},
			{20 * time.Second, pending(PullRefused, notFound), v1alpha1.StateFailed, v1alpha1.ActionFailure, notFound},
		}, true},
		{"the runner image refused after copy-keadm ran (phase Checking) fails too", []obs{
			{10 * time.Second, PodView{Phase: PodChecking, Pull: PullRefused, Reason: notFound, Tracked: true}, v1alpha1.StateFailed, v1alpha1.ActionFailure, notFound},
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := cfg(1, "1")
			nodes := fleet(1)
			p := start(c, names(1), nodes)
			for _, o := range tc.seq {
				p = step(p, c, nodes, map[string]PodView{"node-00": o.pod}, t0.Add(o.at))
				e := entry(p, "node-00")
				g.Expect(e.State).To(Equal(o.state), "at %s: %+v", o.at, e)
				g.Expect(e.Action).To(Equal(o.action), "at %s", o.at)
				if o.reason == "" {
					g.Expect(e.Reason).To(BeEmpty(), "at %s", o.at)
				} else {
					g.Expect(e.Reason).To(ContainSubstring(o.reason), "at %s", o.at)
				}
				if e.State == v1alpha1.StateFailed && o.action == v1alpha1.ActionFailure {
					g.Expect(e.Event).To(Equal(v1alpha1.EventInit), "no step ran: the node failed in Init")
				}
			}
			if tc.cancelled {
				g.Expect(p.Deletions()).To(ConsistOf("node-00"), "the pod that will never run is deleted")
				g.Expect(p.Cleanup[0].Cancel).NotTo(BeEmpty())
			} else {
				g.Expect(p.Deletions()).To(BeEmpty())
			}
		})
	}
}
