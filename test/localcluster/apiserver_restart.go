package localcluster

// This file adds a kube-apiserver stop/start pair for chaos tests. It does
// not use envtest's APIServer.Stop and Start: Stop removes the generated
// certificate folder and Start makes a new serving CA and client CA, so
// every kubeconfig already handed out (the controller's, the simulator's)
// would stop working. Instead it kills the process and starts the very
// same command line again: same port, same certificates, same etcd, so
// every client reconnects on its own, as it would after a real apiserver
// restart.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// apiserverState remembers, per Cluster, the command line of the stopped
// apiserver and the process started in its place. It lives outside Cluster
// so that this helper needs no change to the struct.
var apiserverState sync.Map // *Cluster -> *apiserverProc

type apiserverProc struct {
	mu      sync.Mutex
	argv    []string
	running *exec.Cmd
}

// findAPIServer returns the pid of this process's kube-apiserver child, or
// of the one StartAPIServer started.
func (c *Cluster) findAPIServer() (int, error) {
	if v, ok := apiserverState.Load(c); ok {
		p := v.(*apiserverProc)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.running != nil {
			return p.running.Process.Pid, nil
		}
	}
	for _, p := range childProcesses(os.Getpid()) {
		if p.Comm == "kube-apiserver" && !p.zombie {
			return p.PID, nil
		}
	}
	return 0, fmt.Errorf("localcluster: no kube-apiserver child process found")
}

// StopAPIServer kills kube-apiserver with SIGKILL (an abrupt crash; etcd
// keeps running) and waits until it is gone. StartAPIServer brings it back.
func (c *Cluster) StopAPIServer(ctx context.Context) error {
	pid, err := c.findAPIServer()
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return fmt.Errorf("localcluster: read apiserver command line: %w", err)
	}
	argv := []string{}
	for _, a := range bytes.Split(bytes.TrimRight(raw, "\x00"), []byte{0}) {
		argv = append(argv, string(a))
	}
	v, _ := apiserverState.LoadOrStore(c, &apiserverProc{})
	p := v.(*apiserverProc)
	p.mu.Lock()
	p.argv = argv
	running := p.running
	p.running = nil
	p.mu.Unlock()

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("localcluster: kill kube-apiserver %d: %w", pid, err)
	}
	if running != nil {
		_ = running.Wait() // ours: reap it
		return nil
	}
	// envtest's child: envtest reaps it; wait until the pid is gone or a
	// zombie (the port is free either way).
	for {
		if proc, ok := readStat(pid); !ok || proc.zombie {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localcluster: kube-apiserver did not exit: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartAPIServer starts kube-apiserver again with the command line it had
// when StopAPIServer stopped it, and waits until it serves /readyz.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	v, ok := apiserverState.Load(c)
	if !ok {
		return fmt.Errorf("localcluster: StartAPIServer without StopAPIServer")
	}
	p := v.(*apiserverProc)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running != nil {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(c.dir, "kube-apiserver-restarted.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("localcluster: apiserver log: %w", err)
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("localcluster: restart kube-apiserver: %w", err)
	}
	_ = logf.Close() // the child holds its own descriptor
	c.reaper.add(cmd.Process.Pid)
	p.running = cmd

	deadline := time.Now().Add(90 * time.Second)
	for {
		body, err := c.Clientset.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localcluster: restarted kube-apiserver not ready: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localcluster: waiting for kube-apiserver: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
