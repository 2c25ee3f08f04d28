//go:build kubeedge

package kubeedge

import (
	"strings"
	"testing"
	"time"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
)

// TestRegistry: the node pulls the installation package from the world's
// registry with basic auth, through the controller's pull secret. A pull
// the registry refuses (a tag it does not have, a wrong credential) fails
// the node at once with the registry's words, before anything on the node
// changes; a registry that is down when the job starts keeps the node
// waiting with a true reason, and the upgrade goes through once it is back.
// One world, one node, one job after the other.
func TestRegistry(t *testing.T) {
	ctx, w := startWorld(t, 1)
	n := w.Nodes()[0]
	before := snapshot(t, ctx, w, n)

	// untouched checks that nothing on the node changed.
	untouched := func(t *testing.T) {
		t.Helper()
		now := snapshot(t, ctx, w, n)
		if len(now.starts) != len(before.starts) || now.state.MainPID != before.state.MainPID {
			t.Errorf("edgecore restarted: starts %v -> %v, MainPID %d -> %d", before.starts, now.starts, before.state.MainPID, now.state.MainPID)
		}
		if now.binSum != before.binSum {
			t.Errorf("/usr/local/bin/edgecore changed")
		}
		if _, err := n.ReadFile("/etc/kubeedge/upgrade_report.json"); err == nil {
			t.Errorf("keadm wrote a report although nothing should have run")
		}
	}
	// refused runs a job the registry refuses and checks it failed fast.
	refused := func(t *testing.T, name, version, want string) {
		t.Helper()
		jw := watchJob(ctx, w.Cluster.Client, name)
		defer jw.stop()
		start := time.Now()
		if err := w.Cluster.Client.Create(ctx, newJob(name, version, []string{n.Name()}, 1, nil)); err != nil {
			t.Fatal(err)
		}
		job := jw.waitFinal(t, ctx, jobTimeout)
		took := time.Since(start)
		ns := job.Status.NodeStatus[0]
		t.Logf("%s: %s in %s: %s/%s %q", name, job.Status.State, took.Round(time.Second), ns.Event, ns.Action, ns.Reason)
		if job.Status.State != v1alpha1.StateFailed || ns.Action != v1alpha1.ActionFailure || ns.Event != v1alpha1.EventInit {
			t.Errorf("want the node Failed in Init (not timed out): %+v", ns)
		}
		if !strings.Contains(ns.Reason, want) {
			t.Errorf("reason %q lacks the registry's words %q", ns.Reason, want)
		}
		if took > 2*time.Minute {
			t.Errorf("a refused pull took %s to fail, want well within the job's timeout", took)
		}
		waitPodsGone(t, ctx, w, n.Name(), 3*time.Minute)
		untouched(t)
	}

	t.Run("a tag the registry does not have", func(t *testing.T) {
		refused(t, "missing-tag", "v1.23.99", "not found") // a version no package of the world has
	})
	t.Run("a wrong credential", func(t *testing.T) {
		if err := w.SetPullSecretPassword(ctx, "wrong-password"); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := w.SetPullSecretPassword(ctx, kubeedgeworld.RegistryPassword); err != nil {
				t.Fatal(err)
			}
		}()
		refused(t, "wrong-credential", toVersion, "401 Unauthorized")
	})
	t.Run("the registry down while the job starts", func(t *testing.T) {
		if err := w.StopAuthRegistry(); err != nil {
			t.Fatal(err)
		}
		jw := watchJob(ctx, w.Cluster.Client, "registry-down")
		defer jw.stop()
		if err := w.Cluster.Client.Create(ctx, newJob("registry-down", toVersion, []string{n.Name()}, 1, nil)); err != nil {
			t.Fatal(err)
		}
		// The node waits, saying why.
		deadline := time.Now().Add(3 * time.Minute)
		reason := ""
		for time.Now().Before(deadline) && !strings.Contains(reason, "connection refused") {
			job, _, _ := jw.snapshot()
			if len(job.Status.NodeStatus) > 0 {
				reason = job.Status.NodeStatus[0].Reason
				if job.Status.NodeStatus[0].State == v1alpha1.StateFailed {
					t.Fatalf("the node failed while the registry was down: %+v", job.Status.NodeStatus[0])
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		if !strings.Contains(reason, "connection refused") {
			t.Fatalf("the node's reason never said the registry refused the connection: %q", reason)
		}
		t.Logf("while the registry is down the node says: %q", reason)
		untouched(t)
		back := time.Now()
		if err := w.StartAuthRegistry(ctx); err != nil {
			t.Fatal(err)
		}
		job := jw.waitFinal(t, ctx, jobTimeout)
		t.Logf("the job ended %s %s after the registry came back", job.Status.State, time.Since(back).Round(time.Second))
		if job.Status.State != v1alpha1.StateSuccessful {
			t.Fatalf("job %s: %+v", job.Status.State, job.Status.NodeStatus)
		}
		if job.Status.NodeStatus[0].Reason != "" {
			t.Errorf("the pull's reason stayed after it went through: %q", job.Status.NodeStatus[0].Reason)
		}
		if err := w.WaitNodesReady(ctx, 3*time.Minute, "kubeedge-"+toVersion, n.Name()); err != nil {
			t.Fatal(err)
		}
	})
}
