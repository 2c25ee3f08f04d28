package controller

import (
	"bytes"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
)

// Each decision is logged at V(2) as the plan describes itself; a reconcile
// that changes nothing stays below it.
func TestPlansAreLoggedAtEachDecision(t *testing.T) {
	g := NewWithT(t)
	var out bytes.Buffer
	log := textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(2), textlogger.Output(&out)))
	h := newHarness(t, testJob("logged", 1, "a", "b"), edgeNodes("a", "b"), nil)
	h.ctx = klog.NewContext(h.ctx, log)

	h.mustReconcile()
	g.Expect(out.String()).To(ContainSubstring(`"Plan committed"`))
	g.Expect(out.String()).To(ContainSubstring("job Upgrading 0/2: upgrading: 0 succeeded, 0 failed, 1 in flight, 1 pending"))
	g.Expect(out.String()).To(MatchRegexp(`dispatch a \(from v1\.21\.0, deadline [0-9TZ:-]+\)`))

	out.Reset()
	h.mustReconcile()
	g.Expect(out.String()).NotTo(ContainSubstring("Plan"), "nothing changed, nothing decided: not logged at V(2)")

	h.finish("a", true)
	h.mustReconcile()
	g.Expect(out.String()).To(ContainSubstring("dispatch b"))
	g.Expect(out.String()).To(ContainSubstring("release a"))
}
