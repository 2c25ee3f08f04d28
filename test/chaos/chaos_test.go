// Package chaos runs NodeUpgradeJobs on a local world (test/localcluster:
// envtest apiserver+etcd, KWOK, the fleet simulator, the REAL controller
// binary) while breaking things: SIGKILLing the controller, killing the
// leader of two replicas, restarting kube-apiserver, taking nodes offline
// and deleting upgrade pods behind the controller's back. An independent
// observer (test/bench/observer: its own watches, none of the controller's
// code) checks the controller's promises on every run.
//
// By default each test is CI-sized (100 nodes, 3 kills; the package runs in
// about two minutes). NODEUPGRADE_CHAOS=full runs the documented sizes
// (300 nodes at concurrency 30, 10 kills); NODEUPGRADE_CHAOS_SEED fixes the
// random kill moments. docs/reliability.md records the results.
package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
	"github.com/nodeupgrade/nodeupgrade/test/observer"
)

// The observer uses controller-runtime's client, which wants a logger.
func init() { ctrllog.SetLogger(logr.Discard()) }

// size is one test's scale.
type size struct {
	nodes, concurrency, kills int
	upgrade                   time.Duration
}

func full() bool { return os.Getenv("NODEUPGRADE_CHAOS") == "full" }

// scale returns the CI size, or the documented full size.
func scale() size {
	if full() {
		return size{nodes: 300, concurrency: 30, kills: 10, upgrade: 4 * time.Second}
	}
	return size{nodes: 100, concurrency: 10, kills: 3, upgrade: time.Second}
}

func seed(t *testing.T) uint64 {
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("NODEUPGRADE_CHAOS_SEED"); v != "" {
		var err error
		if s, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("NODEUPGRADE_CHAOS_SEED: %v", err)
		}
	}
	t.Logf("seed %d (rerun with NODEUPGRADE_CHAOS_SEED=%d)", s, s)
	return s
}

// world starts a local world with n succeeding nodes (extra specs appended).
func world(t *testing.T, ctx context.Context, sz size, specs []fleetsim.NodeSpec) *localcluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	dir := ""
	if d := os.Getenv("NODEUPGRADE_CHAOS_DIR"); d != "" {
		dir = d + "/" + t.Name()
		_ = os.RemoveAll(dir)
	}
	if specs == nil {
		specs = fleetsim.Fleet("chaos", sz.nodes, "v1.20.0")
	}
	cl, err := localcluster.Start(ctx, localcluster.Options{
		Dir:              dir,
		Nodes:            specs,
		UpgradeDuration:  sz.upgrade,
		NodeReadyTimeout: 3 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Stop(); err != nil {
			t.Errorf("stop world: %v", err)
		}
	})
	return cl
}

// newJob creates a job over every edge node.
func newJob(t *testing.T, ctx context.Context, cl *localcluster.Cluster, name string, concurrency int, timeout int64, tolerate string) {
	t.Helper()
	job := &v1alpha1.NodeUpgradeJob{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.NodeUpgradeJobSpec{
			Version:         "v1.21.0",
			LabelSelector:   &metav1.LabelSelector{MatchLabels: map[string]string{fleetsim.LabelEdgeRole: ""}},
			Concurrency:     int32(concurrency),
			TimeoutSeconds:  timeout,
			FailureTolerate: tolerate,
		},
	}
	if err := cl.Client.Create(ctx, job); err != nil {
		t.Fatalf("create job: %v", err)
	}
}

func getJob(ctx context.Context, cl *localcluster.Cluster, name string) (*v1alpha1.NodeUpgradeJob, error) {
	job := &v1alpha1.NodeUpgradeJob{}
	if err := cl.Client.Get(ctx, types.NamespacedName{Name: name}, job); err != nil {
		return nil, fmt.Errorf("get job %s: %w", name, err)
	}
	return job, nil
}

func finished(job *v1alpha1.NodeUpgradeJob) int32 {
	c := job.Status.Counts
	return c.Succeeded + c.Failed + c.NotAttempted
}

// waitProgress waits until at least n nodes of the job are final, or the job is.
func waitProgress(t *testing.T, ctx context.Context, cl *localcluster.Cluster, name string, n int32) {
	t.Helper()
	for {
		if job, err := getJob(ctx, cl, name); err == nil && (finished(job) >= n || final(job.Status.State)) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job %s did not reach %d final nodes: %v", name, n, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func final(state string) bool {
	return state == v1alpha1.StateSuccessful || state == v1alpha1.StateFailed
}

// expect is what a run's final status must show.
type expect struct {
	state     string
	succeeded int32
	failed    int32
	// failedNodes must each end Failed.
	failedNodes []string
}

// verify waits for the job to end and checks every promise: one pod per
// node at most, never more than concurrency pods active, every node final
// with counts that add up, and the expected outcome.
func verify(t *testing.T, ctx context.Context, cl *localcluster.Cluster, obs *observer.Observer, name string, concurrency int, want expect) {
	t.Helper()
	if _, _, err := obs.WaitFinal(ctx); err != nil {
		t.Fatal(err)
	}
	job, err := getJob(ctx, cl, name)
	if err != nil {
		t.Fatal(err)
	}
	// Let the last pod events (deletions after the final write) arrive.
	time.Sleep(time.Second)
	if err := obs.Stop(); err != nil {
		t.Errorf("observer: %v", err)
	}
	rep := obs.Report()
	t.Logf("RESULT %s: state=%s succeeded=%d failed=%d notAttempted=%d; pods per node max %d over %d nodes; peak active %d (concurrency %d); watch relists %d; reason %q",
		name, job.Status.State, job.Status.Counts.Succeeded, job.Status.Counts.Failed, job.Status.Counts.NotAttempted,
		rep.PodsPerNode, rep.NodesWithPods, rep.MaxActive, concurrency, rep.Relists, job.Status.Reason)

	if len(rep.TwiceDispatched) > 0 {
		t.Errorf("nodes with more than one upgrade pod: %v", rep.TwiceDispatched)
	}
	if rep.MaxActive > concurrency {
		t.Errorf("%d upgrade pods were active at once, concurrency is %d: %v", rep.MaxActive, concurrency, rep.PeakPods)
	}
	for _, v := range rep.Violations {
		t.Errorf("status: %s", v)
	}
	c := job.Status.Counts
	var succ, fail, na int32
	states := map[string]string{}
	for _, e := range job.Status.NodeStatus {
		states[e.NodeName] = e.State
		switch e.State {
		case v1alpha1.StateSuccessful:
			succ++
		case v1alpha1.StateFailed:
			fail++
			t.Logf("failed node %s: action %s, event %s, reason %q", e.NodeName, e.Action, e.Event, e.Reason)
		case v1alpha1.StateNotAttempted:
			na++
		default:
			t.Errorf("node %s ended in non-final state %q", e.NodeName, e.State)
		}
	}
	if int(c.Selected) != len(job.Status.NodeStatus) || c.Succeeded+c.Failed+c.NotAttempted != c.Selected ||
		c.Pending != 0 || c.InFlight != 0 || succ != c.Succeeded || fail != c.Failed || na != c.NotAttempted {
		t.Errorf("counts do not add up: %+v, entries %d (successful %d, failed %d, not attempted %d)", c, len(job.Status.NodeStatus), succ, fail, na)
	}
	if job.Status.State != want.state || c.Succeeded != want.succeeded || c.Failed != want.failed {
		t.Errorf("job ended %s with %d succeeded, %d failed; want %s with %d and %d", job.Status.State, c.Succeeded, c.Failed, want.state, want.succeeded, want.failed)
	}
	for _, n := range want.failedNodes {
		if states[n] != v1alpha1.StateFailed {
			t.Errorf("node %s ended %q, want Failed", n, states[n])
		}
	}
}

// TestControllerKilled SIGKILLs the controller at random moments of a job
// and restarts it each time.
func TestControllerKilled(t *testing.T) {
	sz := scale()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(seed(t), 1))
	cl := world(t, ctx, sz, nil)
	ctl, err := cl.StartController(ctx, localcluster.ControllerOptions{Name: "ctl-0"})
	if err != nil {
		t.Fatal(err)
	}
	name := "kills"
	obs, err := observer.Start(ctx, cl.RESTConfig(), cl.Namespace(), name)
	if err != nil {
		t.Fatal(err)
	}
	newJob(t, ctx, cl, name, sz.concurrency, 300, "0")
	ideal := time.Duration(sz.nodes/sz.concurrency) * sz.upgrade
	kills := 0
	for kills < sz.kills {
		// Spread the kills over the rollout: each a random moment up to
		// ideal/kills after the last restart, so they land early, late and
		// in between, and all of them land before the job ends (each
		// restart also stretches the job by a second or two).
		wait := time.Duration(rng.Int64N(int64(ideal/time.Duration(sz.kills)))) + 100*time.Millisecond
		time.Sleep(wait)
		job, err := getJob(ctx, cl, name)
		if err != nil {
			t.Fatal(err)
		}
		if final(job.Status.State) {
			break
		}
		if err := ctl.Kill(); err != nil {
			t.Fatal(err)
		}
		kills++
		t.Logf("kill %d after %s at %d/%d final nodes", kills, wait.Round(time.Millisecond), finished(job), sz.nodes)
		if ctl, err = cl.StartController(ctx, localcluster.ControllerOptions{Name: fmt.Sprintf("ctl-%d", kills)}); err != nil {
			t.Fatal(err)
		}
	}
	if kills < sz.kills {
		t.Logf("job ended after %d of %d planned kills", kills, sz.kills)
	}
	verify(t, ctx, cl, obs, name, sz.concurrency, expect{state: v1alpha1.StateSuccessful, succeeded: int32(sz.nodes)})
	t.Logf("RESULT kills: %d SIGKILLs", kills)
}

// TestLeaderKilled runs two replicas with leader election and SIGKILLs the
// leader mid-job: the other must take over after the lease runs out.
func TestLeaderKilled(t *testing.T) {
	sz := scale()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cl := world(t, ctx, sz, nil)
	lease := []string{"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=1s"}
	var ctls []*localcluster.Controller
	for i := range 2 {
		ctl, err := cl.StartController(ctx, localcluster.ControllerOptions{Name: fmt.Sprintf("replica-%d", i), LeaderElect: true, Args: lease})
		if err != nil {
			t.Fatal(err)
		}
		ctls = append(ctls, ctl)
	}
	name := "leader"
	obs, err := observer.Start(ctx, cl.RESTConfig(), cl.Namespace(), name)
	if err != nil {
		t.Fatal(err)
	}
	newJob(t, ctx, cl, name, sz.concurrency, 300, "0")
	waitProgress(t, ctx, cl, name, int32(sz.nodes/3))
	var leader *localcluster.Controller
	for leader == nil {
		for _, c := range ctls {
			if ok, err := c.IsLeader(ctx); err == nil && ok {
				leader = c
			}
		}
		if leader == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	job, err := getJob(ctx, cl, name)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed leader %s at %d/%d final nodes", leader.Name(), finished(job), sz.nodes)
	for _, c := range ctls {
		if c == leader {
			continue
		}
		for {
			if ok, err := c.IsLeader(ctx); err == nil && ok {
				t.Logf("RESULT leader: %s took over %s after the kill", c.Name(), time.Since(killed).Round(100*time.Millisecond))
				break
			}
			if ctx.Err() != nil {
				t.Fatal("no new leader")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	verify(t, ctx, cl, obs, name, sz.concurrency, expect{state: v1alpha1.StateSuccessful, succeeded: int32(sz.nodes)})
}

// TestAPIServerRestart kills kube-apiserver mid-job and starts it again on
// the same port and etcd; the controller and the simulated kubelets must
// reconnect and the job finish as if nothing happened.
func TestAPIServerRestart(t *testing.T) {
	sz := scale()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cl := world(t, ctx, sz, nil)
	if _, err := cl.StartController(ctx, localcluster.ControllerOptions{Name: "ctl"}); err != nil {
		t.Fatal(err)
	}
	name := "apiserver"
	obs, err := observer.Start(ctx, cl.RESTConfig(), cl.Namespace(), name)
	if err != nil {
		t.Fatal(err)
	}
	newJob(t, ctx, cl, name, sz.concurrency, 300, "0")
	waitProgress(t, ctx, cl, name, int32(sz.nodes/3))
	down := 5 * time.Second
	if err := cl.StopAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver killed; down for %s", down)
	time.Sleep(down)
	start := time.Now()
	if err := cl.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("RESULT apiserver: back and ready %s after restart", time.Since(start).Round(100*time.Millisecond))
	verify(t, ctx, cl, obs, name, sz.concurrency, expect{state: v1alpha1.StateSuccessful, succeeded: int32(sz.nodes)})
}

// TestNotReadyAndDeletedPods takes nodes offline mid-upgrade (and one
// before its turn) and deletes running upgrade pods behind the controller's
// back. Offline nodes must time out, deleted pods must fail their node, and
// nothing may be dispatched twice.
func TestNotReadyAndDeletedPods(t *testing.T) {
	sz := scale()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	specs := fleetsim.Fleet("chaos", sz.nodes, "v1.20.0")
	// The victims are early in the dispatch order (status is sorted by
	// name) and slower than the rest, so their pods are surely running when
	// we strike; left alone they would still finish within the timeout.
	offline := []string{specs[1].Name, specs[4].Name, specs[7].Name}
	deleted := []string{specs[2].Name, specs[5].Name, specs[8].Name}
	late := specs[len(specs)-2].Name // offline before its turn: deferred
	for _, i := range []int{1, 2, 4, 5, 7, 8} {
		specs[i].Duration = 12 * time.Second
	}
	cl := world(t, ctx, sz, specs)
	if _, err := cl.StartController(ctx, localcluster.ControllerOptions{Name: "ctl"}); err != nil {
		t.Fatal(err)
	}
	name := "notready"
	obs, err := observer.Start(ctx, cl.RESTConfig(), cl.Namespace(), name)
	if err != nil {
		t.Fatal(err)
	}
	if err := fleetsim.SetOffline(ctx, cl.Client, late, true); err != nil {
		t.Fatal(err)
	}
	const timeout = 20
	newJob(t, ctx, cl, name, sz.concurrency, timeout, "0.5")

	// Wait until every victim's pod exists and has begun (the simulator
	// has written a start time): it is mid-upgrade.
	victims := append(append([]string(nil), offline...), deleted...)
	pods := map[string]*corev1.Pod{}
	for len(pods) < len(victims) {
		list := &corev1.PodList{}
		if err := cl.Client.List(ctx, list, client.InNamespace(cl.Namespace()), client.MatchingLabels{v1alpha1.LabelJob: name}); err != nil {
			t.Fatal(err)
		}
		for i := range list.Items {
			p := &list.Items[i]
			for _, v := range victims {
				if p.Annotations[v1alpha1.AnnotationNode] == v && p.Status.StartTime != nil &&
					p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
					pods[v] = p
				}
			}
		}
		if ctx.Err() != nil {
			t.Fatal("victim pods did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range offline {
		if err := fleetsim.SetOffline(ctx, cl.Client, n, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range deleted {
		if err := cl.Client.Delete(ctx, pods[n]); err != nil {
			t.Fatalf("delete pod of %s: %v", n, err)
		}
	}
	t.Logf("took %v offline mid-upgrade and %s before its turn; deleted the pods of %v", offline, late, deleted)
	failedNodes := append(append([]string{late}, offline...), deleted...)
	nFailed := int32(len(failedNodes))
	verify(t, ctx, cl, obs, name, sz.concurrency, expect{
		state: v1alpha1.StateSuccessful, succeeded: int32(sz.nodes) - nFailed, failed: nFailed, failedNodes: failedNodes,
	})
}
