package rollout

import (
	"fmt"
	"testing"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
)

// BenchmarkDecideWindows measures one plan of a started 10,000-node job
// whose pending nodes all wait for their window, with and without node
// zones (a third of the nodes in each of Tokyo, New York and the job's
// own), against the same job without windows: the cost windows add to
// every reconcile of a large job (issue 26's scale).
//
//	go test ./pkg/rollout -run '^$' -bench DecideWindows -benchmem
func BenchmarkDecideWindows(b *testing.B) {
	const n = 10000
	zones := []string{"", "Asia.Tokyo", "America.New_York"}
	for _, bc := range []struct {
		name      string
		windows   bool
		nodeZones bool
	}{{"no-windows", false, false}, {"windows", true, false}, {"windows-node-zones", true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			c := cfg(50, "0.1")
			if bc.windows {
				c.Windows = mustWindows(v1alpha1.MaintenanceWindow{StartTime: "22:00", EndTime: "02:00", TimeZone: "Europe/Berlin"})
			}
			nodes := map[string]NodeView{}
			selection := make([]string, n)
			for i := range n {
				name := fmt.Sprintf("edge-%05d", i)
				selection[i] = name
				v := edgeNode("v1.20.0")
				if bc.nodeZones {
					v.TimeZone = zones[i%len(zones)]
				}
				nodes[name] = v
			}
			// t0 is 10:00Z: every window is closed, every node waits.
			first := start(c, selection, nodes)
			c.Suspended = false
			in := Input{Config: c, Status: first.Status, Nodes: nodes, Now: t0.Add(1)}
			b.ResetTimer()
			for b.Loop() {
				p := Decide(in)
				if bc.windows && p.Status.NextWindow == "" {
					b.Fatal("no node waits for a window")
				}
			}
		})
	}
}
