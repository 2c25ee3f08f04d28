package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/pkg/rollout"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
)

// The demo plays an operator with the kubectl plugin (cmd/kubectl-nodeupgrade),
// run as an operator runs it: built into a folder put first on PATH, and
// found by kubectl's plugin discovery as `kubectl nodeupgrade`.
//
//   - before applying: `plan -f` for every sample job;
//   - mid-rollout: `status -w` upgrade-plant-a from its start (its ETA from
//     the node times it measured), `pause` it, `status -w` while it is
//     paused, checking that no node starts while in-flight ones finish,
//     `resume`;
//   - at the end: `retry upgrade-plant-a --yes` for its failed nodes, after
//     one of them was fixed and the offline one came back.
const (
	pausedJob = "upgrade-plant-a"
	// canaryJob is the sample with a canary wave and maintenance windows.
	canaryJob = "upgrade-gateways"
	// pauseAfter finished nodes of pausedJob, the demo pauses it.
	pauseAfter = 8
	// pauseHold is how long the demo keeps the job paused after its last
	// in-flight node finished, to show that nothing starts.
	pauseHold = 4 * time.Second
	// perNode is the plan's per-node time: the demo nodes take 3-6s.
	perNode = "5s"
	// allowList gives plan and retry the demo controller's allow-list:
	// it runs in a process of its own, not as the Deployment they read it from.
	allowList = "--allowed-image-repositories=" + localcluster.DefaultAllowedImageRepositories
	// Lines of operator output a terminal view shows at its bottom at
	// least (more if the terminal is taller), and keeps.
	minNotesOnScreen = 8
	maxNotes         = 200
)

// fixedNode is a failing node whose fault the demo clears before the retry
// (its behaviour annotation set back to succeed); the others keep failing.
var fixedNode = failingNodes[0]

// Markers the demo prints, which its test looks for.
const (
	markSuspended = "is Suspended:"
	// markCanaryPaused and markCanaryResumed follow canaryJob's wave.
	markCanaryPaused  = "suspended itself after its canary wave:"
	markCanaryResumed = "resumed itself after the canary's soak:"
	markResumed       = "resumed after"
)

// buildPlugin builds the plugin into dir/plugin-bin and puts that folder
// first on PATH, where kubectl (run with this process's environment) finds
// it.
func buildPlugin(ctx context.Context, root, dir string) error {
	binDir := filepath.Join(dir, "plugin-bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(binDir, "kubectl-nodeupgrade"), "./cmd/kubectl-nodeupgrade")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/kubectl-nodeupgrade: %w\n%s", err, out)
	}
	return os.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// operator runs the plugin commands at their moments of the rollout.
type operator struct {
	cl   *localcluster.Cluster
	root string
	dir  string
	v    *view

	phase int // 0 running, 1 pause sent, 2 Suspended seen, 3 resumed, 4 told of deferrals

	baseline    map[string]bool // nodes of pausedJob started when it was seen Suspended
	suspendedAt time.Time
	baseEnded   int       // baseline nodes already ended then
	drainedAt   time.Time // when pausedJob had no node in flight any more
	finished    int       // in-flight nodes that finished while paused
	started     []string  // nodes that started while paused: must stay empty

	canaryPaused, canaryResumed bool // canaryJob's notes were shown

	watch     *exec.Cmd // `status -w`, from the job's start to the resume
	watchFile *os.File
}

// plugin runs `kubectl nodeupgrade args...` and shows the command and
// what it printed.
func (o *operator) plugin(ctx context.Context, args ...string) localcluster.KubectlResult {
	args = append([]string{"nodeupgrade"}, args...)
	cmd := o.cl.KubectlCommand(ctx, args...)
	// From the repository root, so `plan -f` takes the paths shown.
	cmd.Dir = o.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	res := localcluster.KubectlResult{Args: args, Stdout: out.String()}
	if err != nil {
		res.ExitCode = -1
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			res.ExitCode = exit.ExitCode()
		}
		res.Err = fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	args = args[1:]
	o.v.note("$ kubectl nodeupgrade "+strings.Join(args, " "), res.Stdout+res.Stderr)
	if res.Err != nil {
		o.v.note(fmt.Sprintf("(exit %d)", res.ExitCode), "")
	}
	return res
}

// canaryNotes tells when upgrade-gateways suspends itself after its canary
// wave, and when it resumes itself after the soak.
func (o *operator) canaryNotes(jobs []v1alpha1.NodeUpgradeJob) {
	job := findJob(jobs, canaryJob)
	if job == nil {
		return
	}
	cond := meta.FindStatusCondition(job.Status.Conditions, v1alpha1.ConditionCanary)
	switch {
	case cond == nil:
	case !o.canaryPaused && (cond.Reason == v1alpha1.CanaryPassed || cond.Reason == v1alpha1.CanaryFailed):
		o.canaryPaused = true
		o.v.note(fmt.Sprintf("%s %s %s", canaryJob, markCanaryPaused, cond.Message), "")
	case o.canaryPaused && !o.canaryResumed && cond.Reason == v1alpha1.CanaryResumed:
		o.canaryResumed = true
		o.v.note(fmt.Sprintf("%s %s %s", canaryJob, markCanaryResumed, cond.Message), "")
	}
}

// step is called with every fresh list of jobs while they run.
func (o *operator) step(ctx context.Context, jobs []v1alpha1.NodeUpgradeJob) {
	o.canaryNotes(jobs)
	job := findJob(jobs, pausedJob)
	if job == nil {
		return
	}
	c := job.Status.Counts
	switch o.phase {
	case 0:
		if rollout.JobFinal(job.Status.State) {
			return
		}
		if o.watch == nil {
			// From the job's first nodes, so -w times them for its ETA.
			o.startWatch(ctx)
		}
		if int(c.Succeeded+c.Failed) < pauseAfter {
			return
		}
		o.plugin(ctx, "pause", pausedJob)
		o.phase = 1
	case 1:
		if job.Status.State != v1alpha1.StateSuspended {
			return
		}
		o.baseline = map[string]bool{}
		for _, e := range job.Status.NodeStatus {
			if e.State != v1alpha1.StateNone {
				o.baseline[e.NodeName] = true
				if !rollout.NodeInFlight(e.State) {
					o.baseEnded++
				}
			}
		}
		o.suspendedAt = time.Now()
		o.v.note(fmt.Sprintf("%s %s %d in flight finish, %d pending wait; watching that no node starts",
			pausedJob, markSuspended, c.InFlight, c.Pending), "")
		o.phase = 2
		o.checkPaused(job)
	case 2:
		o.checkPaused(job)
		if c.InFlight > 0 {
			return
		}
		if o.drainedAt.IsZero() {
			o.drainedAt = time.Now()
		}
		if time.Since(o.drainedAt) < pauseHold {
			return
		}
		o.plugin(ctx, "status", pausedJob)
		started := "no node started"
		if len(o.started) > 0 {
			started = fmt.Sprintf("NODES STARTED WHILE PAUSED: %s", strings.Join(o.started, " "))
		}
		o.v.note(fmt.Sprintf("paused %s: %d in-flight nodes finished, %s, %d pending still wait",
			time.Since(o.suspendedAt).Round(time.Second), o.finished, started, c.Pending), "")
		o.plugin(ctx, "resume", pausedJob)
		o.stopWatch()
		o.v.note(fmt.Sprintf("%s %s %s", pausedJob, markResumed, time.Since(o.suspendedAt).Round(time.Second)), "")
		o.phase = 3
	case 3:
		// Tell why the job then idles for a while.
		for _, e := range job.Status.NodeStatus {
			if e.State == v1alpha1.StateNone && strings.HasPrefix(e.Reason, "deferred") {
				o.v.note(fmt.Sprintf("%s waits (%s): a paused job's deferrals do not expire, so its %ds wait restarted at the resume; the job ends when it runs out",
					e.NodeName, e.Reason, job.Spec.TimeoutSeconds), "")
				o.phase = 4
				return
			}
		}
	}
}

// checkPaused records nodes that ended, and any that started, since the
// job was seen Suspended. A deferred (NotReady) node that fails waiting was
// never dispatched, so it does not count as started.
func (o *operator) checkPaused(job *v1alpha1.NodeUpgradeJob) {
	ended := 0
	for _, e := range job.Status.NodeStatus {
		if o.baseline[e.NodeName] {
			if e.State == v1alpha1.StateSuccessful || e.State == v1alpha1.StateFailed {
				ended++
			}
			continue
		}
		if rollout.NodeInFlight(e.State) || (e.State == v1alpha1.StateSuccessful && !isSkipped(e)) {
			if !contains(o.started, e.NodeName) {
				o.started = append(o.started, e.NodeName)
			}
		}
	}
	o.finished = ended - o.baseEnded
}

// startWatch runs `kubectl nodeupgrade status -w` into a file until
// stopWatch, so the demo can show what it printed before the pause (the
// ETA from the node times it measured) and while the job was paused.
func (o *operator) startWatch(ctx context.Context) {
	f, err := os.Create(filepath.Join(o.dir, "status-w.log"))
	if err != nil {
		o.v.note("status -w: "+err.Error(), "")
		return
	}
	cmd := o.cl.KubectlCommand(ctx, "nodeupgrade", "status", "-w", pausedJob)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		o.v.note("status -w: "+err.Error(), "")
		return
	}
	o.watch, o.watchFile = cmd, f
}

// stopWatch ends `status -w` as Ctrl-C would and shows its last screen
// before the pause and its first and last while the job was paused.
func (o *operator) stopWatch() {
	if o.watch == nil {
		return
	}
	defer func() { o.watch = nil }()
	_ = o.watch.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = o.watch.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = o.watch.Process.Kill()
		<-done
	}
	_ = o.watchFile.Close()
	data, err := os.ReadFile(o.watchFile.Name())
	if err != nil {
		return
	}
	blocks := strings.Split(strings.TrimSpace(string(data)), "\n\nNodeUpgradeJob ")
	var running string // the last screen before the pause took effect
	var paused []string
	for i, b := range blocks {
		if i > 0 {
			b = "NodeUpgradeJob " + b
		}
		switch {
		// Suspended by the status and paused by the spec: from before the resume.
		case strings.Contains(b, ": Suspended,") && strings.Contains(b, "\nPaused (spec.suspend)"):
			paused = append(paused, b)
		case len(paused) == 0 && strings.Contains(b, ": Upgrading,") && !strings.Contains(b, "\nPaused (spec.suspend)"):
			running = b
		}
	}
	o.v.note(fmt.Sprintf("$ kubectl nodeupgrade status -w %s   (ran from the job's start to the resume: %d updates, %d of them while Suspended and paused; the last before the pause, then the first and the last while paused; all in %s)",
		pausedJob, len(blocks), len(paused), o.watchFile.Name()), "")
	if running != "" {
		o.v.note("", running)
	}
	switch len(paused) {
	case 0:
	case 1:
		o.v.note("", paused[0])
	default:
		o.v.note("", paused[0]+"\n...\n"+paused[len(paused)-1])
	}
}

// retry fixes one failing node and brings the offline one back, as an
// operator would before a retry, then retries the failed nodes.
func (o *operator) retry(ctx context.Context, say func(string, ...any)) (string, bool) {
	say("fixing %s (its fleetsim behaviour annotation set back to succeed) and bringing %s back online; %s keep failing",
		fixedNode, offlineNode, strings.Join(failingNodes[1:], " and "))
	if err := fleetsim.SetBehavior(ctx, o.cl.Client, fixedNode, fleetsim.BehaviorSucceed); err != nil {
		say("set %s's behaviour: %v", fixedNode, err)
	}
	if err := fleetsim.SetOffline(ctx, o.cl.Client, offlineNode, false); err != nil {
		say("bring %s online: %v", offlineNode, err)
	}
	if err := o.cl.WaitNodesReady(ctx, offlineNode); err != nil {
		say("%v", err)
	}
	res := o.plugin(ctx, "retry", pausedJob, "--yes", "--per-node="+perNode, allowList)
	if res.Err != nil {
		return "", false
	}
	name := pausedJob + "-retry-1"
	got := o.cl.Kubectl(ctx, "get", "nodeupgradejob", name, "-o", "jsonpath={.spec.nodeNames}")
	o.v.note("$ kubectl get nodeupgradejob "+name+" -o jsonpath={.spec.nodeNames}", got.Stdout+"\n"+got.Stderr)
	return name, true
}

// retryOutcome says how the retry ended, node by node.
func (o *operator) retryOutcome(job *v1alpha1.NodeUpgradeJob) {
	var upgraded, failed []string
	for _, e := range job.Status.NodeStatus {
		switch e.State {
		case v1alpha1.StateSuccessful:
			upgraded = append(upgraded, e.NodeName)
		case v1alpha1.StateFailed:
			failed = append(failed, e.NodeName)
		}
	}
	line := fmt.Sprintf("%s ended %s: upgraded %s", job.Name, job.Status.State, orNone(upgraded))
	if len(failed) > 0 {
		line += fmt.Sprintf("; failed again: %s (their simulated fault is not transient: the demo fixed only %s)", strings.Join(failed, " "), fixedNode)
	}
	o.v.note(line, "")
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, " ")
}

func findJob(jobs []v1alpha1.NodeUpgradeJob, name string) *v1alpha1.NodeUpgradeJob {
	for i := range jobs {
		if jobs[i].Name == name {
			return &jobs[i]
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sampleFiles are the job YAMLs in dir, sorted.
func sampleFiles(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	return files, nil
}
