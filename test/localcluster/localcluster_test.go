package localcluster_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/framework"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
)

// One world, one job, then Stop: the library's whole contract, including
// that no process it started is left.
func TestStartRunStop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Watch this process's descendants from the start: a process that
	// outlives Stop is reparented and would drop out of a later look.
	// Those already running belong to another world of this binary (the
	// fleet tests'), not to this one.
	others := map[int]bool{}
	for _, p := range localcluster.Descendants(os.Getpid()) {
		others[p.PID] = true
	}
	seen := map[int]localcluster.Process{}
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			for _, p := range localcluster.Descendants(os.Getpid()) {
				if !others[p.PID] {
					seen[p.PID] = p
				}
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	cl, err := localcluster.Start(ctx, localcluster.Options{
		UpgradeDuration: time.Second,
		Nodes: []fleetsim.NodeSpec{
			{Name: "lc-a"}, {Name: "lc-b"}, {Name: "lc-off", Offline: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = cl.Stop()
		}
	}()
	if _, err := os.Stat(cl.KubeconfigPath()); err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	ctl, err := cl.StartController(ctx, localcluster.ControllerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cl.MetricsURL() != ctl.MetricsURL() {
		t.Fatalf("MetricsURL %q is not the last controller's %q", cl.MetricsURL(), ctl.MetricsURL())
	}
	resp, err := http.Get(cl.MetricsURL())
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), "controller_runtime_reconcile_total") {
		t.Fatalf("metrics lack controller-runtime's counters:\n%.500s", body)
	}

	job := framework.NewJob("lc", func(s *v1alpha1.NodeUpgradeJobSpec) {
		s.NodeNames, s.Concurrency = []string{"lc-a", "lc-b"}, 2
	})
	if err := cl.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	if job, err = framework.WaitFinished(ctx, cl.Client, "lc", time.Minute); err != nil {
		t.Fatal(err)
	}
	if job.Status.State != v1alpha1.StateSuccessful {
		t.Fatalf("job ended %q (%s)", job.Status.State, job.Status.Reason)
	}
	res := cl.Kubectl(ctx, "get", "nodeupgradejob", "lc", "-o", "jsonpath={.status.progress}")
	if res.Err != nil || res.Stdout != "2/2" {
		t.Fatalf("kubectl: %v", res)
	}
	log, err := ctl.Log()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(log, "Upgrade pod created") != 2 {
		t.Fatalf("want 2 pod creations in the -v=2 log, got:\n%s", log)
	}

	if err := cl.KillController(); err != nil {
		t.Fatal(err)
	}
	if ctl.Running() {
		t.Fatal("controller still running after KillController")
	}
	stopped = true
	if err := cl.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cl.Dir()); !os.IsNotExist(err) {
		t.Errorf("the work folder %s, with every kubeconfig in it, outlived Stop: %v", cl.Dir(), err)
	}
	close(stopWatch)
	<-watchDone

	names := map[string]bool{}
	for _, p := range seen {
		names[p.Comm] = true
		if p.Alive() {
			t.Errorf("%s outlived Stop", p)
		}
	}
	for _, want := range []string{"etcd", "kube-apiserver", "kwok", "nodeupgrade-con"} {
		if !names[want] {
			t.Errorf("never saw %s among the descendants %v: the check is blind", want, names)
		}
	}
}

// envCrashHelper makes the test binary play a caller that crashes.
const envCrashHelper = "LOCALCLUSTER_CRASH_HELPER"

// A caller that dies without Stop (here: a panic in a goroutine, which runs
// no deferred calls) still leaves nothing behind: the sentinel kills the
// process groups.
func TestCrashedCallerLeavesNoProcess(t *testing.T) {
	if os.Getenv(envCrashHelper) != "" {
		crashHelper()
		return
	}
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashedCallerLeavesNoProcess$")
	cmd.Env = append(os.Environ(), envCrashHelper+"=1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := map[int]localcluster.Process{}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var waitErr error
poll:
	for {
		for _, p := range localcluster.Descendants(cmd.Process.Pid) {
			seen[p.PID] = p
		}
		select {
		case waitErr = <-exited:
			break poll
		case <-time.After(50 * time.Millisecond):
		}
	}
	if waitErr == nil || !strings.Contains(out.String(), "helper crashes on purpose") {
		t.Fatalf("the helper should have crashed: %v\n%s", waitErr, out.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range seen {
		for p.Alive() && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if p.Alive() {
			t.Errorf("%s survived its caller's crash", p)
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	if len(seen) < 4 {
		t.Errorf("saw only %v: the check is blind", seen)
	}
}

func crashHelper() {
	ctx := context.Background()
	cl, err := localcluster.Start(ctx, localcluster.Options{})
	if err != nil {
		panic(err)
	}
	if _, err := cl.StartController(ctx, localcluster.ControllerOptions{}); err != nil {
		panic(err)
	}
	// Give the parent's poll time to see every process.
	time.Sleep(time.Second)
	// The panicking goroutine ends the process. Block for good here: waking
	// on anything the panic's unwinding does (a deferred close, say) would let
	// the test return and the binary exit 0 before the panic is printed.
	go func() {
		panic("helper crashes on purpose")
	}()
	select {}
}

// The sentinel must know exactly this Cluster's processes: if it adopted
// every child, Stop of one Cluster would kill another's in the same binary.
func TestSentinelAdoptsOnlyItsOwnProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := fleet.Get(t)
	b, err := localcluster.Start(ctx, localcluster.Options{InProcessOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	// a's apiserver must have survived b's Stop.
	res := a.Kubectl(ctx, "get", "namespace", localcluster.DefaultNamespace, "-o", "name")
	if res.Err != nil {
		t.Fatalf("a's cluster died with b's Stop: %v", res)
	}
}
