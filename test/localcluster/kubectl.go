package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// KubectlResult is what one kubectl run printed and how it ended.
type KubectlResult struct {
	Args     []string
	Stdout   string
	Stderr   string
	ExitCode int
	// Err is set when kubectl could not run or exited non-zero.
	Err error
}

// String describes the run for assertion messages.
func (r KubectlResult) String() string {
	return fmt.Sprintf("kubectl %s (exit %d)\nstdout:\n%s\nstderr:\n%s", strings.Join(r.Args, " "), r.ExitCode, r.Stdout, r.Stderr)
}

// Kubectl runs kubectl with args as an argv list (no shell) against the
// cluster's admin kubeconfig, through KUBECONFIG as a user would set it.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) KubectlResult {
	return c.KubectlWithInput(ctx, nil, args...)
}

// KubectlWithInput is Kubectl with stdin, e.g. for `apply -f -`.
func (c *Cluster) KubectlWithInput(ctx context.Context, stdin []byte, args ...string) KubectlResult {
	cmd := c.KubectlCommand(ctx, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	res := KubectlResult{Args: args, Stdout: out.String(), Stderr: errOut.String()}
	if err != nil {
		res.ExitCode = -1
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			res.ExitCode = exit.ExitCode()
		}
		res.Err = fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return res
}

// KubectlCommand returns an unstarted kubectl command with KUBECONFIG set,
// for callers that stream its output.
func (c *Cluster) KubectlCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
	return cmd
}
