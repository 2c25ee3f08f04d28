// Command demo shows nodeupgrade at work on a laptop, with nothing but Go
// and the binaries `make tools` builds: it starts a local control plane with
// a simulated KubeEdge fleet (test/localcluster), runs the real controller
// binary, plans the sample jobs in config/samples/demo/ with the kubectl
// plugin (`kubectl nodeupgrade plan -f`), applies them with kubectl, draws
// their progress live while it pauses and resumes one of them with the
// plugin, retries that job's failed nodes (`kubectl nodeupgrade retry`),
// prints a summary, and then keeps the cluster up for kubectl until Ctrl-C
// (or exits, with --exit-when-done). See operator.go.
//
//	make demo                          # or: go run ./test/demo
//	go run ./test/demo --exit-when-done
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// Exit codes: 0 once the summary is printed, 1 on errors, 130 when
// interrupted before the jobs ended (as a shell reports SIGINT).
const (
	exitOK          = 0
	exitError       = 1
	exitInterrupted = 130
)

func main() { os.Exit(run()) }

func run() int {
	root := testenv.RepoRoot()
	exitWhenDone := flag.Bool("exit-when-done", false, "Exit after the summary instead of keeping the cluster up for kubectl.")
	dir := flag.String("dir", filepath.Join(root, "tmp", "demo"), "Work folder: kubeconfig and logs. Emptied at start (only if empty or an earlier demo's).")
	samples := flag.String("samples", filepath.Join(root, "config", "samples", "demo"), "Folder of NodeUpgradeJob YAMLs to kubectl apply.")
	timeout := flag.Duration("timeout", 5*time.Minute, "Give up when the jobs have not ended by then.")
	upgradeTime := flag.Duration("upgrade-duration", 4*time.Second, "Simulated upgrade time of a node without its own (every demo node has one, 3-6s).")
	flag.Parse()

	start := time.Now()
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	unlock, err := lockWorkDir(*dir)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	if err := checkWorkDir(*dir); err != nil {
		return fail(err)
	}
	if err := os.RemoveAll(*dir); err != nil {
		return fail(fmt.Errorf("empty %s: %w", *dir, err))
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return fail(fmt.Errorf("create %s: %w", *dir, err))
	}
	logger, closeLog, err := fileLogger(filepath.Join(*dir, "demo.log"))
	if err != nil {
		return fail(err)
	}
	defer closeLog()
	// envtest and client-go log through these; on the screen they would
	// tear the live view apart.
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)

	kubeconfig := filepath.Join(*dir, "kubeconfig")
	exportLine := fmt.Sprintf("export KUBECONFIG=%s; kubectl get nodeupgradejobs", kubeconfig)
	fmt.Printf("nodeupgrade demo: a simulated KubeEdge fleet upgraded by the real controller\n")
	fmt.Printf("  kubeconfig: %s\n", kubeconfig)
	fmt.Printf("  try:        %s\n", exportLine)
	fmt.Printf("  logs:       %s/{controller-1,kwok,demo}.log\n", *dir)
	fmt.Printf("  Ctrl-C stops everything.\n\n")

	say := func(format string, args ...any) {
		fmt.Printf("[%s] %s\n", clock(time.Since(start)), fmt.Sprintf(format, args...))
	}

	say("building the controller and the kubectl plugin, starting etcd, kube-apiserver, KWOK and the fleet simulator...")
	pluginBuilt := make(chan error, 1)
	go func() { pluginBuilt <- buildPlugin(ctx, root, *dir) }()
	fleet := demoFleet()
	cl, err := localcluster.Start(ctx, localcluster.Options{
		Dir:             *dir,
		Nodes:           fleet,
		UpgradeDuration: *upgradeTime,
		Logger:          logger.WithName("fleetsim"),
	})
	if err != nil {
		return failOrInterrupted(ctx, fmt.Errorf("start the local cluster: %w", err))
	}
	defer func() {
		say("stopping the controller, simulator, KWOK, kube-apiserver and etcd...")
		if err := cl.Stop(); err != nil {
			say("stop: %v", err)
			return
		}
		say("stopped; nothing is left running")
	}()
	say("cluster up: %d nodes (%d edge in plant-a incl. %s offline, %s already at %s and %s failing; %d gateways; %d cloud nodes)",
		len(fleet), plantANodes, offlineNode, atTargetNode, targetVersion, strings.Join(failingNodes, ","), gatewayNodes, cloudNodes)

	ctl, err := cl.StartController(ctx, localcluster.ControllerOptions{RunnerImage: "ghcr.io/nodeupgrade/nodeupgrade:demo"})
	if err != nil {
		return failOrInterrupted(ctx, fmt.Errorf("start the controller: %w", err))
	}
	say("controller running: pid %d, metrics %s", ctl.Pid(), ctl.MetricsURL())

	if err := <-pluginBuilt; err != nil {
		return failOrInterrupted(ctx, err)
	}
	v := newView(os.Stdout, start, []string{
		"nodeupgrade demo   (Ctrl-C stops everything)",
		"  " + exportLine,
	})
	op := &operator{cl: cl, root: root, dir: *dir, v: v}
	defer op.stopWatch()

	// The plan first, as an operator would check it before applying.
	files, err := sampleFiles(*samples)
	if err != nil {
		return fail(err)
	}
	for _, f := range files {
		op.plugin(ctx, "plan", "-f", relToRoot(root, f), "--per-node="+perNode, allowList)
		if ctx.Err() != nil {
			return failOrInterrupted(ctx, ctx.Err())
		}
	}
	if v.tty {
		// The live view takes the screen next: leave time to read the plan.
		say("applying in 8s...")
		select {
		case <-ctx.Done():
			return failOrInterrupted(ctx, ctx.Err())
		case <-time.After(8 * time.Second):
		}
	}

	shown := samplesForDisplay(root, *samples)
	say("$ kubectl apply -f %s", shown)
	res := cl.Kubectl(ctx, "apply", "-f", *samples)
	fmt.Print(indent(res.Stdout + res.Stderr))
	if res.Err != nil {
		return failOrInterrupted(ctx, res.Err)
	}

	v.clearScreen()
	jobs, err := watchJobs(ctx, cl, ctl, v, op.step, *timeout)
	if err != nil {
		return failOrInterrupted(ctx, err)
	}
	op.stopWatch()

	// The failed nodes again, as a new job.
	if name, ok := op.retry(ctx, v.say); ok {
		jobs, err = watchJobs(ctx, cl, ctl, v, nil, *timeout)
		if err != nil {
			return failOrInterrupted(ctx, err)
		}
		v.endLive()
		op.plugin(ctx, "status", name)
		if retried := findJob(jobs, name); retried != nil {
			op.retryOutcome(retried)
		}
	}

	v.endLive()
	printSummary(ctx, cl, jobs, time.Since(start))
	if *exitWhenDone {
		return exitOK
	}
	fmt.Printf("\nThe cluster keeps running. In another shell:\n")
	fmt.Printf("  %s\n", exportLine)
	fmt.Printf("  kubectl describe nodeupgradejob upgrade-plant-a\n")
	fmt.Printf("  kubectl get nodes -L %s\n", zoneLabel)
	fmt.Printf("  kubectl get pods -n %s\n", cl.Namespace())
	fmt.Printf("Press Ctrl-C to stop everything.\n")
	<-ctx.Done()
	// From here a second Ctrl-C kills the demo at once; the sentinel of
	// package localcluster then takes the cluster down.
	stopSignals()
	fmt.Println()
	return exitOK
}

// watchJobs redraws the view every second until every job has ended, and
// returns them then.
func watchJobs(ctx context.Context, cl *localcluster.Cluster, ctl *localcluster.Controller, v *view,
	step func(context.Context, []v1alpha1.NodeUpgradeJob), timeout time.Duration,
) ([]v1alpha1.NodeUpgradeJob, error) {
	deadline := time.After(timeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		list := &v1alpha1.NodeUpgradeJobList{}
		if err := cl.Client.List(ctx, list); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("list NodeUpgradeJobs: %w", err)
		}
		v.update(list.Items)
		if step != nil {
			step(ctx, list.Items)
		}
		if allFinal(list.Items) {
			return list.Items, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ctl.Exited():
			return nil, fmt.Errorf("the controller exited; see %s", ctl.LogPath())
		case <-deadline:
			return nil, fmt.Errorf("the jobs did not end within %s", timeout)
		case <-tick.C:
		}
	}
}

func allFinal(jobs []v1alpha1.NodeUpgradeJob) bool {
	if len(jobs) == 0 {
		return false
	}
	for _, j := range jobs {
		if j.Status.State != v1alpha1.StateSuccessful && j.Status.State != v1alpha1.StateFailed {
			return false
		}
	}
	return true
}

// printSummary tells how each job ended and which nodes failed and why,
// then shows what kubectl shows.
func printSummary(ctx context.Context, cl *localcluster.Cluster, jobs []v1alpha1.NodeUpgradeJob, elapsed time.Duration) {
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].Name < jobs[j].Name })
	fmt.Printf("\n=== Summary: all %d jobs ended, %s after the demo started ===\n", len(jobs), clock(elapsed))
	for _, job := range jobs {
		c := job.Status.Counts
		skipped := countSkipped(job.Status.NodeStatus)
		fmt.Printf("\n%s: %s (%s) in %s\n", job.Name, job.Status.State, job.Status.Action, jobDuration(job))
		fmt.Printf("  selected %d: %d upgraded, %d skipped, %d failed, %d not attempted\n",
			c.Selected, int(c.Succeeded)-skipped, skipped, c.Failed, c.NotAttempted)
		fmt.Printf("  versions: %s -> %s\n", job.Status.HistoricVersion, job.Status.CurrentVersion)
		fmt.Printf("  reason: %s\n", job.Status.Reason)
		var failed, other []v1alpha1.TaskStatus
		for _, e := range job.Status.NodeStatus {
			switch {
			case e.State == v1alpha1.StateFailed:
				failed = append(failed, e)
			case isSkipped(e), e.State == v1alpha1.StateNotAttempted:
				other = append(other, e)
			}
		}
		if len(failed) > 0 {
			fmt.Printf("  failed nodes:\n")
			for _, e := range failed {
				fmt.Printf("    %-14s %-8s %-9s %s\n", e.NodeName, e.Action, e.Event, e.Reason)
			}
		}
		if len(other) > 0 {
			fmt.Printf("  not upgraded, and fine:\n")
			for _, e := range other {
				fmt.Printf("    %-14s %-8s %s\n", e.NodeName, nodeLabel(e), e.Reason)
			}
		}
	}
	fmt.Printf("\n$ kubectl get nodeupgradejobs\n")
	res := cl.Kubectl(ctx, "get", "nodeupgradejobs")
	fmt.Print(res.Stdout)
	if res.Err != nil {
		fmt.Printf("(kubectl failed: %v)\n", res.Err)
	}
}

// jobDuration is creation to the last state change, which for an ended job
// is its end. Both have whole seconds.
func jobDuration(job v1alpha1.NodeUpgradeJob) string {
	end, err := time.Parse(time.RFC3339, job.Status.Time)
	if err != nil {
		return "?"
	}
	return end.Sub(job.CreationTimestamp.Time).String()
}

// relToRoot is path relative to the repository root when it is inside it
// (the demo runs from there), else path.
func relToRoot(root, path string) string {
	if rel, err := filepath.Rel(root, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

func samplesForDisplay(root, dir string) string {
	if rel, err := filepath.Rel(root, dir); err == nil && !strings.HasPrefix(rel, "..") {
		return rel + "/"
	}
	return dir
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

// fileLogger is a logr.Logger writing to path, for everything that is not
// the demo's own output.
func fileLogger(path string) (logr.Logger, func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return logr.Logger{}, nil, fmt.Errorf("create %s: %w", path, err)
	}
	l := funcr.New(func(prefix, args string) {
		_, _ = fmt.Fprintf(f, "%s %s %s\n", time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{})
	return l, func() { _ = f.Close() }, nil
}

// lockWorkDir takes an exclusive lock on <dir>.lock, so a second demo with
// the same folder fails at once instead of emptying the first one's.
func lockWorkDir(dir string) (func(), error) {
	path := filepath.Clean(dir) + ".lock"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("another demo is running with --dir=%s (lock %s): %w", dir, path, err)
	}
	return func() { _ = f.Close() }, nil
}

// checkWorkDir refuses to empty a folder that holds something other than
// an earlier demo's files: --dir may be mistyped.
func checkWorkDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || len(entries) == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kubeconfig")); err != nil {
		return fmt.Errorf("%s is not empty and holds no earlier demo's kubeconfig: refusing to empty it", dir)
	}
	return nil
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "demo: %v\n", err)
	return exitError
}

func failOrInterrupted(ctx context.Context, err error) int {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "\ndemo: interrupted\n")
		return exitInterrupted
	}
	return fail(err)
}
