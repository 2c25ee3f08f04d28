// Package kwokworld runs KWOK next to a test control plane (envtest's etcd
// and kube-apiserver) so that fake KubeEdge edge nodes look alive: KWOK makes
// every node annotated kwok.x-k8s.io/node=fake Ready and keeps it
// heartbeating, and keeps nodes annotated nodeupgrade.test/offline=true
// NotReady (conditions Unknown).
//
// KWOK is used for nodes only. Upgrade pods are run by the fleet simulator
// (package test/fleetsim), because their outcome depends on the node's
// behaviour annotations, which KWOK pod stages cannot see, and because a Go
// watcher drives far more pod transitions per second than KWOK does on a small
// machine.
//
// KWOK runs as a separate process (the binary built by hack/build-tools.sh),
// never as a Go dependency of the product.
package kwokworld

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

const (
	// AnnotationFakeNode marks a node KWOK manages; its value is FakeNodeValue.
	AnnotationFakeNode = "kwok.x-k8s.io/node"
	// FakeNodeValue is the value of AnnotationFakeNode on managed nodes.
	FakeNodeValue = "fake"
	// AnnotationOffline set to "true" keeps a fake node NotReady.
	AnnotationOffline = "nodeupgrade.test/offline"

	// EnvKwokBinary overrides where the kwok binary is looked for.
	EnvKwokBinary = "NODEUPGRADE_KWOK"
	// KwokVersion is the KWOK release the stage files are written for.
	KwokVersion = "v0.8.0"

	// DefaultHeartbeatInterval matches KWOK's own node-heartbeat stage.
	DefaultHeartbeatInterval = 20 * time.Second
)

//go:embed stages/*.yaml
var stageFS embed.FS

// Options configures Start.
type Options struct {
	// RESTConfig reaches the apiserver KWOK must work against. Required.
	RESTConfig *rest.Config
	// Binary is the kwok executable. Empty means $NODEUPGRADE_KWOK, then
	// bin/kwok-<KwokVersion>/kwok in the checkout, then kwok on PATH.
	Binary string
	// Dir holds the kubeconfig, the stage file and the log. Empty means a new
	// temporary folder, removed by Stop.
	Dir string
	// LogPath is where KWOK's output goes. Empty means Dir/kwok.log. A path
	// outside Dir survives Stop, which helps when a test fails.
	LogPath string
	// HeartbeatInterval is the least time between two status heartbeats of a
	// Ready node (KWOK adds up to a quarter more as jitter). Zero means
	// DefaultHeartbeatInterval; negative turns heartbeats off, which keeps a
	// 10,000-node benchmark from spending its apiserver on node status.
	HeartbeatInterval time.Duration
	// NodePlayStageParallelism is how many node stage transitions KWOK runs at
	// once. Zero means KWOK's default (4).
	NodePlayStageParallelism int
	// NodeLeaseDurationSeconds, when positive, makes KWOK keep a Lease per
	// node in kube-node-lease. Zero (the default) keeps no leases: envtest has
	// no node lifecycle controller that would read them.
	NodeLeaseDurationSeconds int
	// LogLevel is KWOK's --v: DEBUG, INFO (the default; one line per node
	// patch), WARN or ERROR. Benchmarks with many nodes want WARN.
	LogLevel string
	// ReadyTimeout bounds the wait for KWOK to serve /healthz. Zero means 60s.
	ReadyTimeout time.Duration
	// ExtraArgs are appended to kwok's command line.
	ExtraArgs []string
}

// World is a running KWOK process.
type World struct {
	dir        string
	ownDir     bool
	kubeconfig string
	logPath    string
	healthURL  string
	cmd        *exec.Cmd
	logFile    *os.File
	exited     chan struct{}
	waitErr    error
	stopOnce   sync.Once
	stopErr    error
}

// Start writes a kubeconfig for opts.RESTConfig and the embedded stage
// files, starts kwok in a process group of its own and waits until it serves
// /healthz. ctx bounds only the start: the process lives until Stop.
func Start(ctx context.Context, opts Options) (*World, error) {
	if opts.RESTConfig == nil {
		return nil, errors.New("kwokworld: Options.RESTConfig is required")
	}
	bin, err := findBinary(opts.Binary)
	if err != nil {
		return nil, err
	}

	w := &World{dir: opts.Dir, exited: make(chan struct{})}
	if w.dir == "" {
		if w.dir, err = os.MkdirTemp("", "kwokworld-"); err != nil {
			return nil, fmt.Errorf("kwokworld: create work dir: %w", err)
		}
		w.ownDir = true
	} else if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return nil, fmt.Errorf("kwokworld: create work dir: %w", err)
	}
	started := false
	defer func() {
		if !started {
			_ = w.cleanup() // best effort: the start error is what the caller needs
		}
	}()

	w.kubeconfig = filepath.Join(w.dir, "kubeconfig")
	if err := WriteKubeconfig(opts.RESTConfig, w.kubeconfig); err != nil {
		return nil, err
	}
	config, err := ConfigYAML(opts)
	if err != nil {
		return nil, err
	}
	configPath := filepath.Join(w.dir, "kwok.yaml")
	if err := os.WriteFile(configPath, config, 0o644); err != nil {
		return nil, fmt.Errorf("kwokworld: write stage config: %w", err)
	}
	w.logPath = opts.LogPath
	if w.logPath == "" {
		w.logPath = filepath.Join(w.dir, "kwok.log")
	}
	if w.logFile, err = os.Create(w.logPath); err != nil {
		return nil, fmt.Errorf("kwokworld: create log: %w", err)
	}

	addr, err := testenv.FreeLocalAddr()
	if err != nil {
		return nil, err
	}
	w.healthURL = "http://" + addr + "/healthz"
	leaseSeconds := max(opts.NodeLeaseDurationSeconds, 0)
	args := []string{
		"--kubeconfig=" + w.kubeconfig,
		"--config=" + configPath,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + AnnotationFakeNode + "=" + FakeNodeValue,
		"--server-address=" + addr,
		"--node-lease-duration-seconds=" + strconv.Itoa(leaseSeconds),
	}
	if opts.LogLevel != "" {
		args = append(args, "--v="+opts.LogLevel)
	}
	args = append(args, opts.ExtraArgs...)

	w.cmd = exec.Command(bin, args...)
	w.cmd.Dir = w.dir
	w.cmd.Stdout = w.logFile
	w.cmd.Stderr = w.logFile
	// HOME points into our folder so KWOK never reads or writes the user's
	// ~/.kwok. Its own process group lets Stop kill anything it spawns, and
	// Pdeathsig takes it down if the test binary dies without calling Stop.
	w.cmd.Env = append(os.Environ(), "HOME="+w.dir)
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("kwokworld: start %s: %w", bin, err)
	}
	started = true
	go func() {
		w.waitErr = w.cmd.Wait()
		close(w.exited)
	}()

	timeout := opts.ReadyTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	if err := w.waitHealthy(ctx, timeout); err != nil {
		_ = w.Stop()
		return nil, err
	}
	return w, nil
}

// KubeconfigPath is the kubeconfig KWOK uses; other processes (a demo's
// kubectl, the fleetsim CLI) can use it too. It is removed by Stop when
// Options.Dir was empty.
func (w *World) KubeconfigPath() string { return w.kubeconfig }

// LogPath is the file KWOK writes its output to.
func (w *World) LogPath() string { return w.logPath }

// Dir is the folder holding the kubeconfig and stage file.
func (w *World) Dir() string { return w.dir }

// Exited is closed when the kwok process has ended, for whatever reason.
func (w *World) Exited() <-chan struct{} { return w.exited }

// Stop ends KWOK's process group (SIGTERM, then SIGKILL after 5s), waits for
// it and removes the work folder if Start made it. It is safe to call twice.
func (w *World) Stop() error {
	w.stopOnce.Do(func() {
		if w.cmd != nil && w.cmd.Process != nil {
			pgid := w.cmd.Process.Pid
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			select {
			case <-w.exited:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				<-w.exited
			}
			// Anything KWOK left in its group goes too.
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		w.stopErr = w.cleanup()
	})
	return w.stopErr
}

func (w *World) cleanup() error {
	var errs []error
	if w.logFile != nil {
		if err := w.logFile.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, fmt.Errorf("kwokworld: close log: %w", err))
		}
	}
	if w.ownDir && w.dir != "" {
		if err := os.RemoveAll(w.dir); err != nil {
			errs = append(errs, fmt.Errorf("kwokworld: remove %s: %w", w.dir, err))
		}
	}
	return errors.Join(errs...)
}

func (w *World) waitHealthy(ctx context.Context, timeout time.Duration) error {
	err := testenv.WaitHealthy(ctx, w.healthURL, timeout, w.exited)
	switch {
	case errors.Is(err, testenv.ErrExited):
		return fmt.Errorf("kwokworld: kwok exited before it was ready (%w); log:\n%s", w.waitErr, testenv.TailFile(w.logPath, 4096))
	case err != nil:
		return fmt.Errorf("kwokworld: kwok %w; log:\n%s", err, testenv.TailFile(w.logPath, 4096))
	}
	return nil
}

// ConfigYAML is the --config file Start gives KWOK: the embedded node stages,
// with the heartbeat delay filled in, and a KwokConfiguration for the
// options that have no command-line flag.
func ConfigYAML(opts Options) ([]byte, error) {
	names, err := fs.Glob(stageFS, "stages/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("kwokworld: list stages: %w", err)
	}
	sort.Strings(names)
	heartbeat := opts.HeartbeatInterval
	if heartbeat == 0 {
		heartbeat = DefaultHeartbeatInterval
	}
	var docs []string
	if opts.NodePlayStageParallelism > 0 {
		docs = append(docs, fmt.Sprintf(
			"apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n  nodePlayStageParallelism: %d\n",
			opts.NodePlayStageParallelism))
	}
	for _, name := range names {
		if heartbeat < 0 && strings.HasSuffix(name, "/node-heartbeat.yaml") {
			continue
		}
		data, err := stageFS.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("kwokworld: read %s: %w", name, err)
		}
		text := strings.NewReplacer(
			"__HEARTBEAT_MS__", strconv.FormatInt(heartbeat.Milliseconds(), 10),
			"__HEARTBEAT_JITTER_MS__", strconv.FormatInt(heartbeat.Milliseconds()*5/4, 10),
		).Replace(string(data))
		docs = append(docs, text)
	}
	return []byte(strings.Join(docs, "\n---\n")), nil
}

// WriteKubeconfig writes a kubeconfig file reaching cfg's apiserver with
// cfg's credentials: client certificates and CA inline or as files, a bearer
// token, or basic auth, whichever envtest (or the caller) provided.
func WriteKubeconfig(cfg *rest.Config, path string) error {
	if cfg == nil {
		return errors.New("kwokworld: nil rest.Config")
	}
	server := cfg.Host
	if !strings.Contains(server, "://") {
		scheme := "https"
		if !rest.IsConfigTransportTLS(*cfg) {
			scheme = "http"
		}
		server = scheme + "://" + server
	}
	server = strings.TrimSuffix(server, "/") + strings.TrimSuffix(cfg.APIPath, "/")
	const name = "kwokworld"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthority:     cfg.CAFile,
		CertificateAuthorityData: cfg.CAData,
		InsecureSkipTLSVerify:    cfg.Insecure,
		TLSServerName:            cfg.ServerName,
	}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificate:     cfg.CertFile,
		ClientCertificateData: cfg.CertData,
		ClientKey:             cfg.KeyFile,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
		Username:              cfg.Username,
		Password:              cfg.Password,
	}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("kwokworld: write kubeconfig %s: %w", path, err)
	}
	return nil
}

// BinaryPath finds the kwok executable: explicit, then $NODEUPGRADE_KWOK,
// then the checkout's bin/ folder, then PATH.
func BinaryPath() (string, error) { return findBinary("") }

func findBinary(explicit string) (string, error) {
	candidates := []string{explicit, os.Getenv(EnvKwokBinary)}
	if root := testenv.RepoRoot(); root != "" {
		candidates = append(candidates, filepath.Join(root, "bin", "kwok-"+KwokVersion, "kwok"))
		if more, _ := filepath.Glob(filepath.Join(root, "bin", "kwok-v*", "kwok")); len(more) > 0 {
			sort.Sort(sort.Reverse(sort.StringSlice(more)))
			candidates = append(candidates, more...)
		}
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if info, err := os.Stat(c); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
			return c, nil
		}
		if explicit != "" && c == explicit {
			return "", fmt.Errorf("kwokworld: kwok binary %s is not an executable file", c)
		}
	}
	if p, err := exec.LookPath("kwok"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("kwokworld: no kwok binary: set $%s or run hack/build-tools.sh kwok", EnvKwokBinary)
}
