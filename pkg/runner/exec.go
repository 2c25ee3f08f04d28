package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nodeupgrade/nodeupgrade/pkg/nodetext"
)

// tailLines is how many lines of a command's output a report keeps.
const tailLines = 20

// maxLineBytes bounds one kept line, so a command printing one huge line
// cannot grow the runner's memory.
const maxLineBytes = 512

// tailWriter keeps the last tailLines lines written to it.
type tailWriter struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.appendPartial(p)
			break
		}
		t.appendPartial(p[:i])
		t.push()
		p = p[i+1:]
	}
	return n, nil
}

func (t *tailWriter) appendPartial(p []byte) {
	if room := maxLineBytes - len(t.partial); room > 0 {
		if len(p) > room {
			p = p[:room]
		}
		t.partial = append(t.partial, p...)
	}
}

// push ends the partial line. Lines are made inert (nodetext.Clean): they
// go into the report, and from there into the job's status, Events and
// operators' terminals; keadm's output is the node's, not ours.
func (t *tailWriter) push() {
	line := nodetext.Clean(strings.TrimRight(string(t.partial), "\r"))
	t.partial = t.partial[:0]
	t.lines = append(t.lines, line)
	if len(t.lines) > tailLines {
		t.lines = t.lines[len(t.lines)-tailLines:]
	}
}

// String returns the kept lines, including an unterminated last line.
func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.partial) > 0 {
		lines = append(append([]string(nil), lines...), nodetext.Clean(string(t.partial)))
		if len(lines) > tailLines {
			lines = lines[len(lines)-tailLines:]
		}
	}
	return strings.Join(lines, "\n")
}

// cmdResult is the outcome of one host command.
type cmdResult struct {
	err  error  // nil on success; says why otherwise (exit status, deadline, ...)
	tail string // last lines of combined stdout and stderr
}

// waitDelay is how long after a kill the runner waits for the output pipes
// to close before giving up on them.
const waitDelay = 5 * time.Second

// hostArgv builds the argv running the host binary at hostPath with args:
// through nsenter into PID 1's namespaces, where hostPath is the right path,
// or directly at HostRoot+hostPath (tests, or hosts where nsenter is
// unavailable). No shell is involved.
func (o Options) hostArgv(hostPath string, args ...string) []string {
	if o.UseNsenter {
		return o.inHostNamespaces(hostPath, args...)
	}
	return append([]string{filepath.Join(o.HostRoot, hostPath)}, args...)
}

// hostCommand builds the argv running the command name, found on the host's
// PATH (systemctl, say): through nsenter into PID 1's namespaces from the
// pod, directly on the host (the job's unit) or in tests.
func (o Options) hostCommand(name string, args ...string) []string {
	if o.UseNsenter {
		return o.inHostNamespaces(name, args...)
	}
	return append([]string{name}, args...)
}

// inHostNamespaces is the argv that runs command with args in PID 1's
// mount, UTS, IPC, network and PID namespaces, through nsenter.
func (o Options) inHostNamespaces(command string, args ...string) []string {
	return append([]string{o.Nsenter, "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--", command}, args...)
}

// runCommand executes argv (named label in errors), streaming its output
// to log and keeping a tail. The command runs in its own process group and
// the whole group is killed when ctx ends: keadm and the fake test scripts
// start children that would otherwise survive and hold the output pipe
// open.
func runCommand(ctx context.Context, log io.Writer, label string, argv []string) cmdResult {
	fmt.Fprintf(log, "+ %s\n", quoteArgv(argv))
	tail := &tailWriter{}
	out := io.MultiWriter(log, tail)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// One writer for both streams: os/exec then uses a single pipe, which
	// keeps stdout and stderr lines in order.
	cmd.Stdout = out
	cmd.Stderr = out
	killGroupOnCancel(cmd)
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	res := cmdResult{tail: tail.String()}
	if err == nil {
		return res
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.err = fmt.Errorf("%s killed when its time ran out: %w", label, context.DeadlineExceeded)
	case errors.Is(ctx.Err(), context.Canceled):
		res.err = fmt.Errorf("%s killed because the runner was stopped: %w", label, context.Canceled)
	default:
		res.err = fmt.Errorf("%s: %w", label, err)
	}
	return res
}

func quoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = strconv.Quote(a)
	}
	return strings.Join(q, " ")
}
