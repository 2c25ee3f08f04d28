package kubeedgeworld

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// hostProcess is a real component the world runs on the host (cloudcore,
// kube-scheduler, kube-controller-manager), in a process group of its own,
// logging to a file.
type hostProcess struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	exited  chan struct{}
	waitErr error
}

// cloudcore is the real cloudcore process on the host.
type cloudcore = hostProcess

// cloudcoreConfig edits `cloudcore --defaultconfig`: the world's apiserver,
// the bridge address, all state under dir, and KubeEdge's own NodeUpgradeJob
// controller (taskManager) and the modules that need iptables or a tunnel
// off.
func cloudcoreConfig(binary, dir, kubeconfig, addr, monitorAddr string) ([]byte, error) {
	return editDefaultConfig(binary, map[string]any{
		"kubeAPIConfig.kubeConfig":                   kubeconfig,
		"commonConfig.monitorServer.bindAddress":     monitorAddr,
		"modules.cloudHub.advertiseAddress":          []string{addr},
		"modules.cloudHub.dnsNames":                  []string{"localhost"},
		"modules.cloudHub.https.address":             addr,
		"modules.cloudHub.websocket.address":         addr,
		"modules.cloudHub.quic.enable":               false,
		"modules.cloudHub.unixsocket.address":        "unix://" + filepath.Join(dir, "kubeedge.sock"),
		"modules.cloudHub.tlsCAFile":                 filepath.Join(dir, "ca", "rootCA.crt"),
		"modules.cloudHub.tlsCAKeyFile":              filepath.Join(dir, "ca", "rootCA.key"),
		"modules.cloudHub.tlsCertFile":               filepath.Join(dir, "certs", "server.crt"),
		"modules.cloudHub.tlsPrivateKeyFile":         filepath.Join(dir, "certs", "server.key"),
		"modules.iptablesManager.enable":             false,
		"modules.cloudStream.enable":                 false,
		"modules.taskManager.enable":                 false,
		"modules.router.enable":                      false,
		"modules.dynamicController.enable":           false,
		"modules.cloudHub.authorization.enable":      false,
		"modules.cloudHub.nodeLimit":                 int64(1000),
		"modules.edgeController.nodeUpdateFrequency": int64(10),
	})
}

func startCloudcore(binary, dir, configPath string) (*cloudcore, error) {
	return startHostProcess("cloudcore", binary, dir, filepath.Join(dir, "cloudcore.log"), "--config="+configPath, "-v=2")
}

// startHostProcess starts binary with args in dir, output to logPath.
func startHostProcess(name, binary, dir, logPath string, args ...string) (*hostProcess, error) {
	p := &hostProcess{name: name, logPath: logPath, exited: make(chan struct{})}
	var err error
	if p.logFile, err = os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, err
	}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.logFile, p.logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		_ = p.logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		_ = p.logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *hostProcess) running() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%w); log:\n%s", p.name, p.waitErr, testenv.TailFile(p.logPath, 4096))
	default:
		return nil
	}
}

// stop sends the group SIGTERM, then SIGKILL after 10 s. Safe on nil.
func (p *hostProcess) stop() error {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return nil
	}
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return nil
}

// waitToken waits for cloudcore's join token in secret kubeedge/tokensecret.
func (w *World) waitToken(ctx context.Context, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		s, err := w.Cluster.Clientset.CoreV1().Secrets("kubeedge").Get(ctx, "tokensecret", metaGet)
		if err == nil && len(s.Data["tokendata"]) > 0 {
			return string(s.Data["tokendata"]), nil
		}
		if err := w.cc.running(); err != nil {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no token in secret kubeedge/tokensecret: %w; cloudcore log:\n%s", ctx.Err(), testenv.TailFile(w.cc.logPath, 4096))
		case <-time.After(250 * time.Millisecond):
		}
	}
}
