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

// cloudcore is the real cloudcore process on the host.
type cloudcore struct {
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	exited  chan struct{}
	waitErr error
}

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
	cc := &cloudcore{logPath: filepath.Join(dir, "cloudcore.log"), exited: make(chan struct{})}
	var err error
	if cc.logFile, err = os.OpenFile(cc.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, err
	}
	cc.cmd = exec.Command(binary, "--config="+configPath, "-v=2")
	cc.cmd.Dir = dir
	cc.cmd.Stdout, cc.cmd.Stderr = cc.logFile, cc.logFile
	cc.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cc.cmd.Start(); err != nil {
		_ = cc.logFile.Close()
		return nil, fmt.Errorf("start cloudcore: %w", err)
	}
	go func() {
		cc.waitErr = cc.cmd.Wait()
		_ = cc.logFile.Close()
		close(cc.exited)
	}()
	return cc, nil
}

func (cc *cloudcore) running() error {
	select {
	case <-cc.exited:
		return fmt.Errorf("cloudcore exited (%w); log:\n%s", cc.waitErr, testenv.TailFile(cc.logPath, 4096))
	default:
		return nil
	}
}

func (cc *cloudcore) stop() error {
	if cc == nil || cc.cmd == nil || cc.cmd.Process == nil {
		return nil
	}
	pgid := cc.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	select {
	case <-cc.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-cc.exited
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
