//go:build kubeedge

package kubeedge

import (
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

// matrixCell is one pair of the version matrix: nodes on from, a job to to.
type matrixCell struct {
	from, to string
}

func (c matrixCell) name() string { return c.from + "-to-" + c.to }

// versionMatrix is every pair docs/kubeedge.md's table reports: the nodes
// people run (v1.20 to v1.22) upgraded to the newest release, and the
// previous main path.
var versionMatrix = []matrixCell{
	{"v1.22.0", "v1.23.1"},
	{"v1.21.0", "v1.23.1"},
	{"v1.20.0", "v1.23.1"},
	{"v1.21.0", "v1.22.0"},
}

// matrixCellsEnv selects cells to run, by name, separated by commas
// (v1.21.0-to-v1.22.0); unset: all. `make test-kubeedge-matrix` runs them
// all; `make test-kubeedge` none (its main path, v1.22.0 to v1.23.1, is
// TestUpgrade's and TestFailedUpgradeRollsBack's).
const matrixCellsEnv = "KUBEEDGE_MATRIX"

// TestVersionMatrix: for each pair, one world with two nodes on from; one
// job upgrades the first to to, another sends the second to a package
// whose edgecore cannot start (to's keadm), which real keadm rolls back.
// Both run at once.
func TestVersionMatrix(t *testing.T) {
	want := os.Getenv(matrixCellsEnv)
	for _, cell := range versionMatrix {
		t.Run(cell.name(), func(t *testing.T) {
			if want != "" && !contains(strings.Split(want, ","), cell.name()) {
				t.Skipf("not selected (%s=%s)", matrixCellsEnv, want)
			}
			runMatrixCell(t, cell)
		})
	}
}

func runMatrixCell(t *testing.T, cell matrixCell) {
	start := time.Now()
	ctx, w := startWorldWith(t, kubeedgeworld.Options{Nodes: 2, NodeVersion: cell.from, Versions: []string{cell.to}})
	t.Logf("[matrix %s] world up in %s", cell.name(), time.Since(start).Round(time.Second))
	up, down := w.Nodes()[0], w.Nodes()[1]
	before := snapshot(t, ctx, w, down)

	var wg sync.WaitGroup
	var upJob, downJob v1alpha1.NodeUpgradeJob
	var upTook, downTook time.Duration
	run := func(name, version, node string, job *v1alpha1.NodeUpgradeJob, took *time.Duration) {
		defer wg.Done()
		jw := watchJob(ctx, w.Cluster.Client, name)
		defer jw.stop()
		begin := time.Now()
		if err := w.Cluster.Client.Create(ctx, newJob(name, version, []string{node}, 1, nil)); err != nil {
			t.Error(err)
			return
		}
		*job = jw.waitFinal(t, ctx, jobTimeout)
		*took = time.Since(begin)
	}
	wg.Add(2)
	go run("matrix-upgrade", cell.to, up.Name(), &upJob, &upTook)
	go run("matrix-rollback", kubeedgeworld.BrokenVersion, down.Name(), &downJob, &downTook)
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("[matrix %s] upgrade: %s in %s; rollback: %s in %s", cell.name(), upJob.Status.State, upTook.Round(time.Second), downJob.Status.State, downTook.Round(time.Second))

	// The upgrade: Successful, the node on to, Ready, with to's binary.
	if upJob.Status.State != v1alpha1.StateSuccessful {
		t.Errorf("upgrade %s: %s %+v", cell.name(), upJob.Status.State, upJob.Status.NodeStatus)
	}
	if err := w.WaitNodesReady(ctx, 3*time.Minute, "kubeedge-"+cell.to, up.Name()); err != nil {
		t.Error(err)
	}
	after := snapshot(t, ctx, w, up)
	if after.binSum != fileSum(t, kubeedgeworld.BinaryPath(cell.to, "edgecore")) {
		t.Errorf("/usr/local/bin/edgecore on %s is not the %s binary", up.Name(), cell.to)
	}
	if after.state.ActiveState != "active" || after.lockFile {
		t.Errorf("after the upgrade: edgecore %s, keadm lock left %v", after.state.ActiveState, after.lockFile)
	}
	if r, raw, err := readReport(up); err != nil || r.Event != "Upgrade" || !r.Success {
		t.Errorf("keadm's report after the upgrade: %s (%v)", raw, err)
	}

	// The rollback: Failed with event Rollback, the node back on from with
	// from's binary, keadm's report a successful rollback.
	var final v1alpha1.TaskStatus
	for _, ns := range downJob.Status.NodeStatus {
		final = ns
	}
	if downJob.Status.State != v1alpha1.StateFailed || final.Event != v1alpha1.EventRollback || !strings.Contains(final.Reason, "rollback succeeded") {
		t.Errorf("rollback %s: job %s, node %+v", cell.name(), downJob.Status.State, final)
	}
	if err := w.WaitNodesReady(ctx, 3*time.Minute, "kubeedge-"+cell.from, down.Name()); err != nil {
		t.Error(err)
	}
	back := snapshot(t, ctx, w, down)
	if back.binSum != before.binSum {
		t.Errorf("/usr/local/bin/edgecore on %s is not the %s binary after the rollback", down.Name(), cell.from)
	}
	if back.state.ActiveState != "active" || back.lockFile {
		t.Errorf("after the rollback: edgecore %s, keadm lock left %v", back.state.ActiveState, back.lockFile)
	}
	if r, raw, err := readReport(down); err != nil || r.Event != "Rollback" || !r.Success {
		t.Errorf("keadm's report after the rollback: %s (%v)", raw, err)
	}
	t.Logf("[matrix %s] cell done in %s", cell.name(), time.Since(start).Round(time.Second))
}
