//go:build kubeedge

package kubeedge

import (
	"strings"
	"sync"
	"testing"
	"time"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

// TestTwoJobsAtOnce: two jobs with different targets, created in the same
// instant over one real node, run one after the other: never two upgrade
// pods on the node, each job ends with its own real outcome, and the node
// ends Ready on the higher target that works. The targets are v1.22.0 and
// kubeedgeworld.BrokenVersion (v1.22.1, whose edgecore exits at once):
// whichever job's pod is created first, the v1.22.0 job upgrades the node
// and the broken one is rolled back by real keadm, to v1.21.0 before the
// good upgrade or to v1.22.0 after it. Measured before pods were named
// after the node: one job Successful and the other Failed after about a
// minute, "nothing was run: step backup had not finished by the deadline"
// (the two pods' steps fought over the node lock), although its timeout
// was 900 s.
func TestTwoJobsAtOnce(t *testing.T) {
	t.Parallel()
	ctx, w := startWorld(t, 1)
	n := w.Nodes()[0]
	start := time.Now()
	watcher, err := framework.WatchNodePods(ctx, w.Cluster.Clientset, podNamespace, []string{n.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := watcher.Stop(); err != nil {
			t.Errorf("pod watch: %v", err)
		}
	}()
	good := newJob("two-good", toVersion, []string{n.Name()}, 1, nil)
	broken := newJob("two-broken", kubeedgeworld.BrokenVersion, []string{n.Name()}, 1, nil)
	goodWatch, brokenWatch := watchJob(ctx, w.Cluster.Client, good.Name), watchJob(ctx, w.Cluster.Client, broken.Name)
	defer goodWatch.stop()
	defer brokenWatch.stop()

	// The same instant: both creates wait for one signal.
	var wg sync.WaitGroup
	gate := make(chan struct{})
	errs := make([]error, 2)
	for i, job := range []*v1alpha1.NodeUpgradeJob{good, broken} {
		wg.Go(func() {
			<-gate
			errs[i] = w.Cluster.Client.Create(ctx, job)
		})
	}
	close(gate)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	goodJob := goodWatch.waitFinal(t, ctx, 2*jobTimeout)
	brokenJob := brokenWatch.waitFinal(t, ctx, 2*jobTimeout)
	order := watcher.Order(n.Name())
	t.Logf("both jobs final after %s; upgrade pods on %s, in order: %v", time.Since(start).Round(time.Second), n.Name(), order)

	if o := watcher.Overlaps(); len(o) > 0 {
		t.Errorf("two upgrade pods on the node at once: %v", o)
	}
	if len(order) != 2 {
		t.Errorf("the node got pods of %v, want one of each job", order)
	}
	if goodJob.Status.State != v1alpha1.StateSuccessful {
		t.Errorf("job %s: %s (%s), want Successful", good.Name, goodJob.Status.State, goodJob.Status.Reason)
	}
	final := brokenJob.Status.NodeStatus[0]
	if brokenJob.Status.State != v1alpha1.StateFailed || final.Event != v1alpha1.EventRollback || !strings.Contains(final.Reason, "rollback succeeded") {
		t.Errorf("job %s: %s, node %+v: want Failed by a real rollback of %s", broken.Name, brokenJob.Status.State, final, kubeedgeworld.BrokenVersion)
	}
	if strings.Contains(final.Reason, "nothing was run") {
		t.Errorf("job %s failed spuriously: %s", broken.Name, final.Reason)
	}

	// The node itself: Ready on v1.22.0, edgecore up, keadm's lock gone.
	if err := w.WaitNodesReady(ctx, 3*time.Minute, "kubeedge-"+toVersion, n.Name()); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, ctx, w, n)
	if after.state.ActiveState != "active" {
		t.Errorf("edgecore %s after both jobs", after.state.ActiveState)
	}
	if after.binSum != fileSumOf(t, kubeedgeworld.BinaryPath(toVersion, "edgecore")) {
		t.Errorf("/usr/local/bin/edgecore on %s is not the %s binary", n.Name(), toVersion)
	}
	if after.lockFile {
		t.Errorf("keadm's lock /etc/kubeedge/idempotency_record left on %s", n.Name())
	}
	t.Logf("node %s ends at %s, Ready %v; the scenario took %s", n.Name(), after.kubelet, after.ready, time.Since(start).Round(time.Second))
}
