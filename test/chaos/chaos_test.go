// Package chaos runs NodeUpgradeJobs on a local world (test/localcluster:
// envtest apiserver+etcd, KWOK, the fleet simulator, the REAL controller
// binary) while breaking things: SIGKILLing the controller, killing the
// leader of two replicas, restarting kube-apiserver, taking nodes offline
// and deleting upgrade pods behind the controller's back. An independent
// observer (test/observer: its own watches, none of the controller's
// code) checks the controller's promises on every run.
//
// The tests share one world, started by the first of them and stopped by
// TestMain; each brings its own fleet, labelled with its name, and its job
// selects only that. By default each test is CI-sized (100 nodes, 3
// kills). NODEUPGRADE_CHAOS=full runs the documented sizes
// (300 nodes at concurrency 30, 10 kills); NODEUPGRADE_CHAOS_SEED fixes the
// random kill moments. docs/reliability.md records the results.
package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
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

const (
	// labelRun names the test whose fleet a node belongs to.
	labelRun = "chaos.nodeupgrade.test/run"
	// leaseName is the controller's leader-election Lease.
	leaseName = "nodeupgrade-controller"
)

// shared is the package's world; NODEUPGRADE_CHAOS_DIR keeps its logs.
var shared = &localcluster.Shared{Options: localcluster.Options{
	Dir:              os.Getenv("NODEUPGRADE_CHAOS_DIR"),
	UpgradeDuration:  scale().upgrade,
	NodeReadyTimeout: 3 * time.Minute,
}}

func TestMain(m *testing.M) { shared.Main(m) }

// world returns the package's world, starting it on first use, with a
// fleet of its own for this test: n succeeding nodes named after it, or
// specs when given. Every node gets the test's labelRun, which newJob
// selects. The test's controllers are stopped when it ends.
func world(t *testing.T, ctx context.Context, sz size, prefix string, specs []fleetsim.NodeSpec) *localcluster.Cluster {
	t.Helper()
	cl := shared.Get(t)
	if specs == nil {
		specs = fleetsim.Fleet(prefix, sz.nodes, "v1.20.0")
	}
	for i := range specs {
		if specs[i].Labels == nil {
			specs[i].Labels = map[string]string{}
		}
		specs[i].Labels[labelRun] = prefix
	}
	if err := cl.CreateNodes(ctx, specs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.KillController(); err != nil {
			t.Errorf("stop controllers: %v", err)
		}
	})
	return cl
}

// newJob creates a job over every node of the test's fleet.
func newJob(t *testing.T, ctx context.Context, cl *localcluster.Cluster, name, prefix string, concurrency int, timeout int64, tolerate string) {
	t.Helper()
	job := framework.NewJob(name, func(s *v1alpha1.NodeUpgradeJobSpec) {
		s.LabelSelector = &metav1.LabelSelector{MatchLabels: map[string]string{labelRun: prefix}}
		s.Concurrency = int32(concurrency)
		s.TimeoutSeconds = timeout
		s.FailureTolerate = tolerate
	})
	if err := cl.Client.Create(ctx, job); err != nil {
		t.Fatalf("create job: %v", err)
	}
}

func getJob(ctx context.Context, cl *localcluster.Cluster, name string) (*v1alpha1.NodeUpgradeJob, error) {
	return framework.GetJob(ctx, cl.Client, name)
}

func finished(job *v1alpha1.NodeUpgradeJob) int32 {
	c := job.Status.Counts
	return c.Succeeded + c.Failed + c.NotAttempted
}

// waitProgress waits until at least n nodes of the job are final, or the job is.
func waitProgress(t *testing.T, ctx context.Context, cl *localcluster.Cluster, name string, n int32) {
	t.Helper()
	for {
		if job, err := getJob(ctx, cl, name); err == nil && (finished(job) >= n || framework.Final(job.Status.State)) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job %s did not reach %d final nodes: %v", name, n, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// expect is what a run's final status must show.
type expect struct {
	state     string
	succeeded int32
	failed    int32
	// failedNodes must each end Failed.
	failedNodes []string
}

// verify waits for the job to end and checks every promise
// (framework.Invariants: one pod per node at most, never more than
// concurrency pods active, every node final with counts that add up) and
// the expected outcome. It returns the final job.
func verify(t *testing.T, ctx context.Context, cl *localcluster.Cluster, obs *observer.Observer, name string, concurrency int, want expect) *v1alpha1.NodeUpgradeJob {
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
	for _, p := range framework.Invariants(job, rep, concurrency) {
		t.Error(p)
	}
	c := job.Status.Counts
	states := map[string]string{}
	for _, e := range job.Status.NodeStatus {
		states[e.NodeName] = e.State
		if e.State == v1alpha1.StateFailed {
			t.Logf("failed node %s: action %s, event %s, reason %q", e.NodeName, e.Action, e.Event, e.Reason)
		}
	}
	if job.Status.State != want.state || c.Succeeded != want.succeeded || c.Failed != want.failed {
		t.Errorf("job ended %s with %d succeeded, %d failed; want %s with %d and %d", job.Status.State, c.Succeeded, c.Failed, want.state, want.succeeded, want.failed)
	}
	for _, n := range want.failedNodes {
		if states[n] != v1alpha1.StateFailed {
			t.Errorf("node %s ended %q, want Failed", n, states[n])
		}
	}
	return job
}

// TestControllerKilled SIGKILLs the controller at random moments of a job
// and restarts it each time.
func TestControllerKilled(t *testing.T) {
	controllerKilled(t, "kills", nil)
}

// TestControllerKilledShardedJob does the same to a job whose per-node
// records are in status shards (pkg/statusshard): the threshold is lowered
// so that the fleet's job has 10 shards, and a kill may land between the
// job's write and its shards'.
func TestControllerKilledShardedJob(t *testing.T) {
	nodes := scale().nodes
	controllerKilled(t, "shardkills", []string{fmt.Sprintf("--status-shard-threshold=%d", nodes/5), fmt.Sprintf("--status-shard-size=%d", nodes/10)})
}

func controllerKilled(t *testing.T, name string, args []string) {
	sz := scale()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(seed(t), 1))
	cl := world(t, ctx, sz, name, nil)
	ctl, err := cl.StartController(ctx, localcluster.ControllerOptions{Name: name + "-0", Args: args})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := observer.Start(ctx, cl.RESTConfig(), cl.Namespace(), name)
	if err != nil {
		t.Fatal(err)
	}
	newJob(t, ctx, cl, name, name, sz.concurrency, 300, "0")
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
		if framework.Final(job.Status.State) {
			break
		}
		if err := ctl.Kill(); err != nil {
			t.Fatal(err)
		}
		kills++
		t.Logf("kill %d after %s at %d/%d final nodes", kills, wait.Round(time.Millisecond), finished(job), sz.nodes)
		if ctl, err = cl.StartController(ctx, localcluster.ControllerOptions{Name: fmt.Sprintf("%s-%d", name, kills), Args: args}); err != nil {
			t.Fatal(err)
		}
	}
	if kills < sz.kills {
		t.Logf("job ended after %d of %d planned kills", kills, sz.kills)
	}
	job := verify(t, ctx, cl, obs, name, sz.concurrency, expect{state: v1alpha1.StateSuccessful, succeeded: int32(sz.nodes)})
	if args != nil && (job.Status.Shards == nil || len(job.Status.Shards.Revisions) != 10 || len(job.Status.NodeStatus) != sz.nodes) {
		t.Errorf("the job is not sharded in 10 shards read whole: shards %+v, %d entries", job.Status.Shards, len(job.Status.NodeStatus))
	}
	t.Logf("RESULT %s: %d SIGKILLs", name, kills)
}

// TestLeaderKilled runs two replicas with leader election and SIGKILLs the
// leader mid-job: the standby, which did nothing while it was not leading,
// takes the Lease once it runs out and finishes the job without creating a
// pod its predecessor had created.
func TestLeaderKilled(t *testing.T) {
	sz := scale()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	name := "leader"
	cl := world(t, ctx, sz, name, nil)
	lease := []string{"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=1s"}
	var ctls []*localcluster.Controller
	for i := range 2 {
		ctl, err := cl.StartController(ctx, localcluster.ControllerOptions{Name: fmt.Sprintf("%s-replica-%d", name, i), LeaderElect: true, Args: lease})
		if err != nil {
			t.Fatal(err)
		}
		ctls = append(ctls, ctl)
	}
	// Exactly one replica leads, and the Lease names the same process the
	// metrics do: controller-runtime logs "<identity> became leader" in the
	// winner's log only.
	var leader, standby *localcluster.Controller
	for leader == nil {
		for i, c := range ctls {
			if ok, err := c.IsLeader(ctx); err == nil && ok {
				leader, standby = c, ctls[1-i]
			}
		}
		if ctx.Err() != nil {
			t.Fatal("no replica leads")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ok, err := standby.IsLeader(ctx); err != nil || ok {
		t.Fatalf("both replicas lead (%v)", err)
	}
	firstHolder := leaseHolder(t, ctx, cl)
	if firstHolder == "" {
		t.Fatal("the Lease names no holder")
	}
	if log := controllerLog(t, leader); !strings.Contains(log, firstHolder+" became leader") {
		t.Errorf("the leader's log does not say %q became leader", firstHolder)
	}
	if strings.Contains(controllerLog(t, standby), "became leader") {
		t.Errorf("the standby's log says it became leader")
	}

	obs, err := observer.Start(ctx, cl.RESTConfig(), cl.Namespace(), name)
	if err != nil {
		t.Fatal(err)
	}
	newJob(t, ctx, cl, name, name, sz.concurrency, 300, "0")
	waitProgress(t, ctx, cl, name, int32(sz.nodes/3))
	job, err := getJob(ctx, cl, name)
	if err != nil {
		t.Fatal(err)
	}
	if framework.Final(job.Status.State) {
		t.Fatalf("the job ended before the kill")
	}
	killed := time.Now()
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed leader %s (lease holder %s) at %d/%d final nodes", leader.Name(), firstHolder, finished(job), sz.nodes)
	before := podCreations(t, leader, name)
	if got := podCreations(t, standby, name); len(got) > 0 {
		t.Errorf("the standby created pods while it was not leading: %v", got)
	}
	if len(before) < sz.nodes/3 {
		t.Errorf("the leader logged %d pod creations, want at least the %d final nodes'", len(before), sz.nodes/3)
	}
	for {
		ok, err := standby.IsLeader(ctx)
		if holder := leaseHolder(t, ctx, cl); err == nil && ok && holder != firstHolder {
			if !strings.Contains(controllerLog(t, standby), holder+" became leader") {
				t.Errorf("the new leader's log does not say %q became leader", holder)
			}
			t.Logf("RESULT leader: %s took over %s after the kill", standby.Name(), time.Since(killed).Round(100*time.Millisecond))
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no new leader")
		}
		time.Sleep(100 * time.Millisecond)
	}
	verify(t, ctx, cl, obs, name, sz.concurrency, expect{state: v1alpha1.StateSuccessful, succeeded: int32(sz.nodes)})
	// The new leader did the rest, and created no pod its predecessor had
	// logged. (A pod the old leader created in its last instant may be in
	// neither log; the observer counted it.)
	after := podCreations(t, standby, name)
	if len(after) == 0 {
		t.Error("the new leader created no pod")
	}
	if len(before)+len(after) > sz.nodes {
		t.Errorf("%d + %d pod creations logged for %d nodes", len(before), len(after), sz.nodes)
	}
	again := map[string]bool{}
	for _, n := range before {
		again[n] = true
	}
	for _, n := range after {
		if again[n] {
			t.Errorf("the new leader created a pod for %s again", n)
		}
	}
}

func leaseHolder(t *testing.T, ctx context.Context, cl *localcluster.Cluster) string {
	t.Helper()
	l, err := cl.Clientset.CoordinationV1().Leases(cl.Namespace()).Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func controllerLog(t *testing.T, c *localcluster.Controller) string {
	t.Helper()
	log, err := c.Log()
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// podCreations lists, from a controller's -v=2 log, the nodes of job's
// fleet (named after the job) it created an upgrade pod for.
func podCreations(t *testing.T, c *localcluster.Controller, prefix string) []string {
	t.Helper()
	// The pod is named after its node (upgradepod.PodName).
	line := regexp.MustCompile(`"Upgrade pod created".*pod="[^"]*/nodeupgrade-(` + regexp.QuoteMeta(prefix) + `-[0-9]+)"`)
	var nodes []string
	for _, m := range line.FindAllStringSubmatch(controllerLog(t, c), -1) {
		nodes = append(nodes, m[1])
	}
	return nodes
}

// TestAPIServerRestart kills kube-apiserver mid-job and starts it again on
// the same port and etcd; the controller and the simulated kubelets must
// reconnect and the job finish as if nothing happened.
func TestAPIServerRestart(t *testing.T) {
	sz := scale()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	name := "apiserver"
	cl := world(t, ctx, sz, name, nil)
	if _, err := cl.StartController(ctx, localcluster.ControllerOptions{Name: name + "-ctl"}); err != nil {
		t.Fatal(err)
	}
	obs, err := observer.Start(ctx, cl.RESTConfig(), cl.Namespace(), name)
	if err != nil {
		t.Fatal(err)
	}
	newJob(t, ctx, cl, name, name, sz.concurrency, 300, "0")
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
	name := "notready"
	specs := fleetsim.Fleet(name, sz.nodes, "v1.20.0")
	// The victims are early in the dispatch order (status is sorted by
	// name) and slower than the rest, so their pods are surely running when
	// we strike; left alone they would still finish within the timeout.
	offline := []string{specs[1].Name, specs[4].Name, specs[7].Name}
	deleted := []string{specs[2].Name, specs[5].Name, specs[8].Name}
	// Offline before its turn: deferred, then failed after the timeout. A
	// fifth of the way in, so its timeout runs beside the victims' rather
	// than after the whole rollout.
	late := specs[len(specs)/5].Name
	for _, i := range []int{1, 2, 4, 5, 7, 8} {
		specs[i].Duration = 12 * time.Second
	}
	cl := world(t, ctx, sz, name, specs)
	if _, err := cl.StartController(ctx, localcluster.ControllerOptions{Name: name + "-ctl"}); err != nil {
		t.Fatal(err)
	}
	obs, err := observer.Start(ctx, cl.RESTConfig(), cl.Namespace(), name)
	if err != nil {
		t.Fatal(err)
	}
	if err := fleetsim.SetOffline(ctx, cl.Client, late, true); err != nil {
		t.Fatal(err)
	}
	const timeout = 20
	newJob(t, ctx, cl, name, name, sz.concurrency, timeout, "0.5")

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
		// The controller's finalizer is what lets it see the deletion.
		if !slices.Contains(pods[n].Finalizers, v1alpha1.FinalizerPodTracking) {
			t.Errorf("the pod of %s lacks %s: %v", n, v1alpha1.FinalizerPodTracking, pods[n].Finalizers)
		}
		if err := cl.Client.Delete(ctx, pods[n]); err != nil {
			t.Fatalf("delete pod of %s: %v", n, err)
		}
	}
	t.Logf("took %v offline mid-upgrade and %s before its turn; deleted the pods of %v", offline, late, deleted)
	failedNodes := append(append([]string{late}, offline...), deleted...)
	nFailed := int32(len(failedNodes))
	job := verify(t, ctx, cl, obs, name, sz.concurrency, expect{
		state: v1alpha1.StateSuccessful, succeeded: int32(sz.nodes) - nFailed, failed: nFailed, failedNodes: failedNodes,
	})
	// Each fault is named in its node's reason.
	for _, n := range offline {
		if e, _ := framework.NodeEntry(job, n); !strings.Contains(e.Reason, fmt.Sprintf("did not finish within %ds", timeout)) {
			t.Errorf("node %s, offline mid-upgrade: reason %q", n, e.Reason)
		}
	}
	for _, n := range deleted {
		if e, _ := framework.NodeEntry(job, n); !strings.Contains(e.Reason, "deleted before it finished") {
			t.Errorf("node %s, whose pod was deleted: reason %q", n, e.Reason)
		}
	}
	if e, _ := framework.NodeEntry(job, late); e.Reason != fmt.Sprintf("node stayed NotReady for %ds", timeout) {
		t.Errorf("node %s, offline before its turn: reason %q", late, e.Reason)
	}
}
