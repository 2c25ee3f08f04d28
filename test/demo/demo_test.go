package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
		t.Skip("runs a whole local cluster for about 90s")
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
	if t.Failed() {
		t.Logf("output:\n%s", out)
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
