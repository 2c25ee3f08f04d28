package localcluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/nodeupgrade/nodeupgrade/pkg/manager"
)

// InProcessController is a controller run inside the caller's process,
// through the code main runs (manager.BindFlags, manager.New), for tests
// that read its in-process metrics registry or stop it at an exact point.
// The process-level contract (a binary, its flags, SIGKILL, leader
// election between processes) is StartController's.
type InProcessController struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// inProcessArgs are the Deployment's flags (config/manager), minus what
// only makes sense in a cluster: probes and metrics serve nowhere, and the
// runner image is one nothing pulls.
func (c *Cluster) inProcessArgs(extra []string) []string {
	return append([]string{
		"--namespace=" + c.opts.Namespace,
		"--runner-image=" + DefaultRunnerImage,
		"--allowed-image-repositories=" + DefaultAllowedImageRepositories,
		"--metrics-bind-address=0",
		"--health-probe-bind-address=0",
	}, extra...)
}

// NewInProcessManager parses args as the controller's command line
// (after the defaults above) and builds its manager, not yet started.
// Several run in one test process, one after the other or side by side,
// so controller-runtime's check that a controller name is registered once
// per process is skipped here (and only here: the binary keeps it).
func (c *Cluster) NewInProcessManager(args ...string) (ctrl.Manager, error) {
	return c.newInProcessManager(nil, args)
}

func (c *Cluster) newInProcessManager(clk clock.PassiveClock, args []string) (ctrl.Manager, error) {
	fs := flag.NewFlagSet("nodeupgrade-controller", flag.ContinueOnError)
	cfg := manager.BindFlags(fs)
	if err := fs.Parse(c.inProcessArgs(args)); err != nil {
		return nil, fmt.Errorf("localcluster: controller flags: %w", err)
	}
	cfg.Clock = clk
	return manager.New(c.RESTConfig(), cfg, func(o *ctrl.Options) {
		o.Controller.SkipNameValidation = ptr.To(true)
	})
}

// StartInProcessController builds a manager from args and starts it; it
// runs until Stop or until the cluster stops.
func (c *Cluster) StartInProcessController(args ...string) (*InProcessController, error) {
	return c.StartInProcessControllerWithClock(nil, args...)
}

// StartInProcessControllerWithClock is StartInProcessController with the
// controller on clk (nil: the real clock), e.g. a clock that differs from
// the nodes'.
func (c *Cluster) StartInProcessControllerWithClock(clk clock.PassiveClock, args ...string) (*InProcessController, error) {
	mgr, err := c.newInProcessManager(clk, args)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &InProcessController{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = mgr.Start(ctx)
	}()
	c.mu.Lock()
	c.inProcess = append(c.inProcess, p)
	c.mu.Unlock()
	return p, nil
}

// Stop cancels the manager and waits up to 30s for it to return; its error,
// if it ended with one. Safe to call twice.
func (p *InProcessController) Stop() error {
	p.cancel()
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		return errors.New("localcluster: in-process controller did not stop within 30s")
	}
}
