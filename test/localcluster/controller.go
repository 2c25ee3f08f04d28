package localcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// DefaultRunnerImage is the --runner-image the controllers get. Nothing
// pulls it: the simulator plays the pods.
const DefaultRunnerImage = "ghcr.io/nodeupgrade/nodeupgrade:localcluster"

// DefaultAllowedImageRepositories is the --allowed-image-repositories the
// controllers get: the Deployment's (config/manager), KubeEdge's own
// installation package, which jobs name by default. A later
// --allowed-image-repositories in the arguments replaces it.
const DefaultAllowedImageRepositories = "docker.io/kubeedge/installation-package"

// buildMu keeps two Clusters of one process from building at once; the
// file lock in BuildController does the same across processes.
var buildMu sync.Mutex

// BuildController builds ./cmd/nodeupgrade-controller into
// bin/localcluster/nodeupgrade-controller and returns its path. go build
// leaves an up-to-date binary alone, so a repeat costs about a second. The
// folder is separate from `make build`'s bin/nodeupgrade-controller, whose
// flags differ: sharing it would relink on every switch.
func BuildController(ctx context.Context) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	root := testenv.RepoRoot()
	dir := filepath.Join(root, "bin", "localcluster")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("localcluster: create %s: %w", dir, err)
	}
	// Test packages run in parallel processes; a lock file keeps their
	// builds from writing the same binary at once.
	lock, err := os.OpenFile(filepath.Join(dir, ".build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("localcluster: build lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("localcluster: build lock: %w", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()

	out := filepath.Join(dir, "nodeupgrade-controller")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/nodeupgrade-controller")
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("localcluster: go build ./cmd/nodeupgrade-controller: %w\n%s", err, msg)
	}
	return out, nil
}

// ControllerOptions configures one controller process.
type ControllerOptions struct {
	// Name tells processes apart in logs; it names the log file
	// <Dir>/<Name>.log. Empty: controller-1, controller-2, ...
	Name string
	// LeaderElect passes --leader-elect.
	LeaderElect bool
	// Verbosity is klog's -v. Zero means 2, where the controller logs each
	// pod it creates or deletes.
	Verbosity int
	// RunnerImage is --runner-image. Empty: DefaultRunnerImage.
	RunnerImage string
	// Args are appended to the command line, e.g. lease durations.
	Args []string
	// ReadyTimeout bounds the wait for /readyz. Zero: 60s.
	ReadyTimeout time.Duration
}

// Controller is one running nodeupgrade-controller process.
type Controller struct {
	name       string
	cmd        *exec.Cmd
	logPath    string
	logFile    *os.File
	metricsURL string
	healthURL  string
	exited     chan struct{}
	waitErr    error
	stopOnce   sync.Once
}

// StartController builds nothing (Start did) and runs the controller binary
// against the cluster's kubeconfig, in a process group of its own, with its
// output in a log file. It returns once the process serves /readyz.
func (c *Cluster) StartController(ctx context.Context, opts ControllerOptions) (*Controller, error) {
	if c.binary == "" {
		return nil, errors.New("localcluster: no controller binary (Options.InProcessOnly is set)")
	}
	c.mu.Lock()
	n := len(c.controllers) + 1
	c.mu.Unlock()
	if opts.Name == "" {
		opts.Name = "controller-" + strconv.Itoa(n)
	}
	if opts.Verbosity == 0 {
		opts.Verbosity = 2
	}
	if opts.RunnerImage == "" {
		opts.RunnerImage = DefaultRunnerImage
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	metricsAddr, err := testenv.FreeLocalAddr()
	if err != nil {
		return nil, err
	}
	probeAddr, err := testenv.FreeLocalAddr()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--kubeconfig=" + c.kubeconfig,
		"--namespace=" + c.opts.Namespace,
		"--metrics-bind-address=" + metricsAddr,
		"--health-probe-bind-address=" + probeAddr,
		"--runner-image=" + opts.RunnerImage,
		"--allowed-image-repositories=" + DefaultAllowedImageRepositories,
		"-v=" + strconv.Itoa(opts.Verbosity),
	}
	if opts.LeaderElect {
		args = append(args, "--leader-elect")
	}
	args = append(args, opts.Args...)

	ctl := &Controller{
		name:       opts.Name,
		logPath:    filepath.Join(c.dir, opts.Name+".log"),
		metricsURL: "http://" + metricsAddr + "/metrics",
		healthURL:  "http://" + probeAddr + "/readyz",
		exited:     make(chan struct{}),
	}
	// Append: a name started twice keeps both runs' lines.
	if ctl.logFile, err = os.OpenFile(ctl.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, fmt.Errorf("localcluster: controller log: %w", err)
	}
	_, _ = fmt.Fprintf(ctl.logFile, "### %s %s %s\n", time.Now().Format(time.RFC3339Nano), c.binary, strings.Join(args, " "))
	ctl.cmd = exec.Command(c.binary, args...)
	ctl.cmd.Stdout, ctl.cmd.Stderr = ctl.logFile, ctl.logFile
	// Own group, so a terminal's Ctrl-C reaches the caller (which stops the
	// controller in order) and a kill takes anything it spawned. Pdeathsig
	// is a second net under the sentinel.
	ctl.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := ctl.cmd.Start(); err != nil {
		_ = ctl.logFile.Close()
		return nil, fmt.Errorf("localcluster: start %s: %w", c.binary, err)
	}
	c.reaper.add(ctl.cmd.Process.Pid)
	go func() {
		ctl.waitErr = ctl.cmd.Wait()
		_ = ctl.logFile.Close()
		close(ctl.exited)
	}()
	c.mu.Lock()
	c.controllers = append(c.controllers, ctl)
	c.mu.Unlock()

	if err := ctl.waitReady(ctx, opts.ReadyTimeout); err != nil {
		_ = ctl.Kill()
		return nil, err
	}
	return ctl, nil
}

func (ctl *Controller) waitReady(ctx context.Context, timeout time.Duration) error {
	err := testenv.WaitHealthy(ctx, ctl.healthURL, timeout, ctl.exited)
	switch {
	case errors.Is(err, testenv.ErrExited):
		exitErr := ctl.waitErr
		if exitErr == nil {
			exitErr = errors.New("exit status 0")
		}
		return fmt.Errorf("localcluster: %s exited before it was ready (%w); log:\n%s", ctl.name, exitErr, testenv.TailFile(ctl.logPath, 4096))
	case err != nil:
		return fmt.Errorf("localcluster: %s %w; log:\n%s", ctl.name, err, testenv.TailFile(ctl.logPath, 4096))
	}
	return nil
}

// Name is the controller's name, as in its log file's name.
func (ctl *Controller) Name() string { return ctl.name }

// Pid is the process id (also its process group id).
func (ctl *Controller) Pid() int { return ctl.cmd.Process.Pid }

// LogPath is the file holding the process's output.
func (ctl *Controller) LogPath() string { return ctl.logPath }

// MetricsURL is the process's Prometheus endpoint.
func (ctl *Controller) MetricsURL() string { return ctl.metricsURL }

// Exited is closed when the process has ended.
func (ctl *Controller) Exited() <-chan struct{} { return ctl.exited }

// Running reports whether the process is still alive.
func (ctl *Controller) Running() bool {
	select {
	case <-ctl.exited:
		return false
	default:
		return true
	}
}

// Log returns the process's output so far.
func (ctl *Controller) Log() (string, error) {
	data, err := os.ReadFile(ctl.logPath)
	if err != nil {
		return "", fmt.Errorf("localcluster: read %s: %w", ctl.logPath, err)
	}
	return string(data), nil
}

// Stop sends SIGTERM to the process group and waits for it (SIGKILL after
// 15s), as a Deployment rollout would. Safe to call twice.
func (ctl *Controller) Stop() error { return ctl.signal(syscall.SIGTERM, 15*time.Second) }

// Kill sends SIGKILL to the process group and waits for it: a crash, with no
// chance to release the Lease.
func (ctl *Controller) Kill() error { return ctl.signal(syscall.SIGKILL, 5*time.Second) }

func (ctl *Controller) signal(sig syscall.Signal, grace time.Duration) error {
	var err error
	ctl.stopOnce.Do(func() {
		pgid := ctl.cmd.Process.Pid
		if e := syscall.Kill(-pgid, sig); e != nil && !errors.Is(e, syscall.ESRCH) {
			err = fmt.Errorf("localcluster: signal %s: %w", ctl.name, e)
		}
		select {
		case <-ctl.exited:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-ctl.exited
		}
		// Whatever else is left in its group goes too.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
	// A second call (say Kill after Stop) still waits for the end.
	<-ctl.exited
	return err
}

// IsLeader asks the process's metrics whether it holds the leader Lease
// (controller-runtime's leader_election_master_status gauge). Every process
// on one machine has the same hostname, so the Lease's holderIdentity alone
// cannot tell which local process leads.
func (ctl *Controller) IsLeader(ctx context.Context) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ctl.metricsURL, nil)
	if err != nil {
		return false, fmt.Errorf("localcluster: metrics request: %w", err)
	}
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		return false, fmt.Errorf("localcluster: %s metrics: %w", ctl.name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "leader_election_master_status{") {
			fields := strings.Fields(line)
			return fields[len(fields)-1] == "1", nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("localcluster: %s metrics: %w", ctl.name, err)
	}
	// The gauge appears once the elector has tried; absent means not yet.
	return false, nil
}

// Controllers returns every controller started so far, running or not.
func (c *Cluster) Controllers() []*Controller {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Controller(nil), c.controllers...)
}

// Controller returns the controller started last, or nil.
func (c *Cluster) Controller() *Controller {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.controllers) == 0 {
		return nil
	}
	return c.controllers[len(c.controllers)-1]
}

// MetricsURL is the metrics endpoint of the controller started last; empty
// when none was.
func (c *Cluster) MetricsURL() string {
	if ctl := c.Controller(); ctl != nil {
		return ctl.MetricsURL()
	}
	return ""
}

// StopController stops every running controller with SIGTERM and waits.
func (c *Cluster) StopController() error {
	var errs []error
	for _, ctl := range c.Controllers() {
		if err := ctl.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// KillController kills every running controller with SIGKILL and waits.
func (c *Cluster) KillController() error {
	var errs []error
	for _, ctl := range c.Controllers() {
		if err := ctl.Kill(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
