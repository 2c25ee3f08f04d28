package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
)

var (
	buildOnce sync.Once
	demoBin   string
	buildErr  error
)

// buildDemo builds this program once per test binary: the tests run it as a
// user would, a separate process with its own signals and exit code.
func buildDemo(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "demo-bin-")
		if err != nil {
			buildErr = err
			return
		}
		demoBin = filepath.Join(dir, "demo")
		out, err := exec.Command("go", "build", "-o", demoBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return demoBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if demoBin != "" {
		_ = os.RemoveAll(filepath.Dir(demoBin))
	}
	os.Exit(code)
}

// demoRun is one run of the demo binary, with every process below it
// recorded while it runs: a process that outlives its parent is reparented,
// so only a look taken during the run can find it afterwards.
type demoRun struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    strings.Builder
	lines  chan string
	seen   map[int]localcluster.Process
	exited chan struct{}
	err    error
}

func startDemo(t *testing.T, args ...string) *demoRun {
	t.Helper()
	bin := buildDemo(t)
	args = append([]string{"--dir=" + t.TempDir()}, args...)
	r := &demoRun{lines: make(chan string, 10000), seen: map[int]localcluster.Process{}, exited: make(chan struct{})}
	r.cmd = exec.Command(bin, args...)
	// Its own group, so a test timeout's cleanup can reach it, as a
	// terminal's Ctrl-C reaches a foreground demo.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stderr = r.cmd.Stdout
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-r.exited:
		default:
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
			<-r.exited
		}
	})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.mu.Lock()
			r.out.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			select {
			case r.lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		for {
			procs := localcluster.Descendants(r.cmd.Process.Pid)
			r.mu.Lock()
			for _, p := range procs {
				r.seen[p.PID] = p
			}
			r.mu.Unlock()
			select {
			case <-readDone:
				r.err = r.cmd.Wait()
				close(r.exited)
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return r
}

// waitFor waits for a line containing s.
func (r *demoRun) waitFor(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case line := <-r.lines:
			if strings.Contains(line, s) {
				return
			}
		case <-r.exited:
			t.Fatalf("demo exited (%v) before printing %q:\n%s", r.err, s, r.output())
		case <-deadline:
			t.Fatalf("no %q within %s:\n%s", s, within, r.output())
		}
	}
}

func (r *demoRun) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-r.exited:
	case <-time.After(within):
		t.Fatalf("demo still running after %s:\n%s", within, r.output())
	}
	return r.cmd.ProcessState.ExitCode()
}

func (r *demoRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// assertNothingLeft fails for every process the run started that is still
// alive, and checks that the watch saw the processes it should have.
func (r *demoRun) assertNothingLeft(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	comms := map[string]bool{}
	for _, p := range r.seen {
		comms[p.Comm] = true
		if p.Alive() {
			t.Errorf("%s outlived the demo", p)
		}
	}
	for _, want := range []string{"etcd", "kube-apiserver", "kwok", "nodeupgrade-con"} {
		if !comms[want] {
			t.Errorf("never saw %s below the demo (saw %v): the check is blind", want, comms)
		}
	}
}

func TestDemoRunsToSummary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a whole local cluster for about 100s")
	}
	began := time.Now()
	r := startDemo(t, "--exit-when-done")
	code := r.wait(t, 4*time.Minute)
	out := r.output()
	t.Logf("demo exited %d after %s", code, time.Since(began).Round(time.Second))
	if code != 0 {
		t.Fatalf("exit code %d:\n%s", code, out)
	}
	r.assertNothingLeft(t)

	at := strings.Index(out, "=== Summary")
	if at < 0 {
		t.Fatalf("no summary:\n%s", out)
	}
	summary := out[at:]
	want := []string{
		"export KUBECONFIG=",
		"kubectl get nodeupgradejobs",
		"upgrade-plant-a: Successful (Success)",
		"selected 30: 25 upgraded, 1 skipped, 4 failed, 0 not attempted",
		"completed: 26 of 30 nodes upgraded, 4 failed (within failureTolerate 0.2)",
		"upgrade-gateways: Successful (Success)",
		"selected 3: 3 upgraded, 0 skipped, 0 failed, 0 not attempted",
		offlineNode + "   Failure  Init      node stayed NotReady for 1m0s",
		atTargetNode + "   skipped  skipped: already at " + targetVersion,
		"$ kubectl get nodeupgradejobs",
		"stopped; nothing is left running",
	}
	for _, n := range failingNodes {
		want = append(want, n+"   Failure  Rollback  rollback succeeded")
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	// kubectl's own table, with the CRD's printer columns.
	if !containsFields(summary, "NAME", "VERSION", "STATE", "RESULT", "PROGRESS", "FAILED", "AGE") ||
		!containsFields(summary, "upgrade-plant-a", "v1.21.0", "Successful", "Success", "30/30", "4") ||
		!containsFields(summary, "upgrade-gateways", "v1.21.0", "Successful", "Success", "3/3") {
		t.Errorf("kubectl get nodeupgradejobs table missing or wrong:\n%s", summary)
	}
	checkPlan(t, out)
	checkCanaryAndWindows(t, out)
	checkPause(t, out)
	checkRetry(t, out, summary)
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// checkPlan: `kubectl nodeupgrade plan -f` ran for every sample job before
// they were applied, and printed waves.
func checkPlan(t *testing.T, out string) {
	t.Helper()
	apply := strings.Index(out, "$ kubectl apply -f")
	if apply < 0 {
		t.Fatalf("no kubectl apply")
	}
	files, err := sampleFiles(filepath.Join("..", "..", "config", "samples", "demo"))
	if err != nil || len(files) == 0 {
		t.Fatalf("sample files: %v %v", files, err)
	}
	for _, f := range files {
		cmd := "$ kubectl nodeupgrade plan -f config/samples/demo/" + filepath.Base(f) + " --per-node=" + perNode + " " + allowList
		at := strings.Index(out, cmd)
		if at < 0 || at > apply {
			t.Errorf("no %q before the apply", cmd)
			continue
		}
		block := out[at:apply]
		if next := strings.Index(block[len(cmd):], "$ kubectl"); next >= 0 {
			block = block[:len(cmd)+next]
		}
		if !regexp.MustCompile(`Plan for NodeUpgradeJob \S+: upgrade to `+regexp.QuoteMeta(targetVersion)).MatchString(block) ||
			!regexp.MustCompile(`\d+ to upgrade in \d+ waves?`).MatchString(block) ||
			!regexp.MustCompile(`  wave 1( \(starts \S+\))?: `).MatchString(block) {
			t.Errorf("plan output without its waves:\n%s", block)
		}
	}
	// upgrade-plant-a: 28 nodes to upgrade (one at the target, one
	// offline and deferred), five at a time.
	if !strings.Contains(out, "28 to upgrade in 6 waves") || !strings.Contains(out, "  wave 6: ") {
		t.Errorf("upgrade-plant-a's plan lacks its 6 waves")
	}
}

// changeLine is one node change of the view's log:
// "    0:25  upgrade-plant-a  edge-node-13 Upgrading -> upgraded [...]".
var changeLine = regexp.MustCompile(`^    \d+:\d\d  (\S+)\s+(\S+)\s+(\S+) -> (\S+)`)

// checkPause: the job was paused mid-rollout, went Suspended, no node
// started while in-flight ones finished, and it was resumed.
func checkPause(t *testing.T, out string) {
	t.Helper()
	for _, w := range []string{
		"$ kubectl nodeupgrade pause " + pausedJob,
		"nodeupgradejob " + pausedJob + " paused: no new node is dispatched; nodes in flight finish",
		"$ kubectl nodeupgrade status -w " + pausedJob,
		"$ kubectl nodeupgrade resume " + pausedJob,
		"nodeupgradejob " + pausedJob + " resumed",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	from := strings.Index(out, pausedJob+" "+markSuspended)
	to := strings.Index(out, "$ kubectl nodeupgrade resume "+pausedJob)
	if from < 0 || to < from {
		t.Fatalf("no Suspended marker before the resume")
	}
	window := out[from:to]
	// status -w ran from the job's start: its last screen before the pause
	// has the ETA from the node times it measured.
	if !regexp.MustCompile(`per node: \S+ \(measured: median of \d+ nodes? of this job, dispatch to end\)`).MatchString(out) {
		t.Errorf("status -w's screen before the pause lacks an ETA from the node times it measured")
	}
	if !strings.Contains(window, "NodeUpgradeJob "+pausedJob+": Suspended,") || !strings.Contains(window, "Paused (spec.suspend)") {
		t.Errorf("status while paused does not show Suspended and Paused:\n%s", window)
	}
	if !strings.Contains(window, "no node started") {
		t.Errorf("the demo's own check saw a node start while paused:\n%s", window)
	}
	// The view's log, independently: while Suspended no node of the job
	// left pending (or deferred) except to fail waiting, and in-flight
	// ones finished.
	waiting := map[string]bool{"pending": true, "deferred": true}
	ended := 0
	for line := range strings.SplitSeq(window, "\n") {
		m := changeLine.FindStringSubmatch(line)
		if m == nil || m[1] != pausedJob {
			continue
		}
		if waiting[m[3]] && !waiting[m[4]] && m[4] != "FAILED" {
			t.Errorf("a node started while the job was Suspended: %s", line)
		}
		if m[4] == "upgraded" || m[4] == "FAILED" {
			ended++
		}
	}
	if ended == 0 {
		t.Errorf("no in-flight node finished while paused:\n%s", window)
	}
	// And after the resume, nodes start again.
	restarted := false
	for line := range strings.SplitSeq(out[to:], "\n") {
		if m := changeLine.FindStringSubmatch(line); m != nil && m[1] == pausedJob && m[3] == "pending" {
			restarted = true
			break
		}
	}
	if !restarted {
		t.Errorf("no node of %s started after the resume", pausedJob)
	}
}

// checkRetry: `retry --yes` made <job>-retry-1 for exactly the job's failed
// and not-attempted nodes (as its summary lists them), and it ran to an end.
func checkRetry(t *testing.T, out, summary string) {
	t.Helper()
	retried := pausedJob + "-retry-1"
	for _, w := range []string{
		"$ kubectl nodeupgrade retry " + pausedJob + " --yes",
		"nodeupgradejob " + retried + " created",
		"$ kubectl nodeupgrade status " + retried,
		retried + ": Failed (Failure)",
		"selected 4: 2 upgraded, 0 skipped, 2 failed, 0 not attempted",
		retried + " ended Failed: upgraded " + offlineNode + " " + fixedNode + "; failed again: " + strings.Join(failingNodes[1:], " "),
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	// The original job's failed and not-attempted nodes, from its summary.
	at := strings.Index(summary, "\n"+pausedJob+": ")
	if at < 0 {
		t.Fatalf("no summary of %s", pausedJob)
	}
	section := summary[at+1:]
	if end := strings.Index(section, "\n\n"); end >= 0 {
		section = section[:end]
	}
	var want []string
	inFailed := false
	for line := range strings.SplitSeq(section, "\n") {
		switch {
		case strings.HasPrefix(line, "  failed nodes:"):
			inFailed = true
		case strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "    "):
			inFailed = false
		case strings.HasPrefix(line, "    "):
			f := strings.Fields(line)
			if inFailed || (len(f) > 1 && f[1] == "unattempted") {
				want = append(want, f[0])
			}
		}
	}
	sort.Strings(want)
	if len(want) != len(failingNodes)+1 {
		t.Errorf("summary of %s lists failed/not-attempted %v, want the %d failing nodes and %s", pausedJob, want, len(failingNodes), offlineNode)
	}
	wantJSON, _ := json.Marshal(want)
	if !strings.Contains(out, "jsonpath={.spec.nodeNames}\n    "+string(wantJSON)+"\n") {
		t.Errorf("%s's spec.nodeNames is not %s:\n%s", retried, wantJSON, out)
	}
	if !containsFields(summary, retried, targetVersion, "Failed", "Failure", "4/4", "2") {
		t.Errorf("kubectl get nodeupgradejobs lacks %s", retried)
	}
}

func TestDemoInterruptedLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cluster")
	}
	r := startDemo(t)
	// Mid-rollout: the controller, KWOK and the simulator are all busy.
	r.waitFor(t, "upgrade-plant-a  edge-node-0", 2*time.Minute)
	if err := r.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	code := r.wait(t, time.Minute)
	out := r.output()
	if code != exitInterrupted {
		t.Errorf("exit code %d, want %d", code, exitInterrupted)
	}
	if !strings.Contains(out, "stopped; nothing is left running") {
		t.Errorf("no orderly stop:\n%s", out)
	}
	r.assertNothingLeft(t)
}

// containsFields reports whether some line starts with these
// whitespace-separated fields, in order (kubectl pads columns, and AGE
// varies).
func containsFields(text string, fields ...string) bool {
	want := strings.Join(fields, " ")
	for line := range strings.SplitSeq(text, "\n") {
		got := strings.Join(strings.Fields(line), " ")
		if got == want || strings.HasPrefix(got, want+" ") {
			return true
		}
	}
	return false
}

// checkCanaryAndWindows: upgrade-gateways' plan shows its windows and its
// canary's pause, and the job suspended itself after the canary and
// resumed itself after the soak, in that order.
func checkCanaryAndWindows(t *testing.T, out string) {
	t.Helper()
	for _, w := range []string{"maintenance window: every day 22:00-04:00 (to the next day) Europe/Berlin",
		"pause: after wave 1 (the canary) the job suspends itself and resumes by itself 5s later"} {
		if !strings.Contains(out, w) {
			t.Errorf("the plan lacks %q", w)
		}
	}
	paused := strings.Index(out, canaryJob+" "+markCanaryPaused+" canary wave of 1 nodes: 1 succeeded, 0 failed")
	resumed := strings.Index(out, canaryJob+" "+markCanaryResumed)
	if paused < 0 || resumed < paused {
		t.Errorf("want %s to suspend itself after its canary, then resume itself (at %d, %d)", canaryJob, paused, resumed)
	}
}
