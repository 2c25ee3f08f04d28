// Package bench measures the real nodeupgrade-controller binary rolling out
// one NodeUpgradeJob over a simulated fleet (test/localcluster: envtest's
// etcd and kube-apiserver, KWOK nodes, the fleet simulator). cmd/bench is
// its command line; docs/benchmarks.md describes the method and results.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
	"github.com/nodeupgrade/nodeupgrade/test/localcluster"
	"github.com/nodeupgrade/nodeupgrade/test/observer"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// Point is one cell of the matrix.
type Point struct {
	Nodes       int
	Concurrency int
	// UpgradeTime is the simulated per-node upgrade time t.
	UpgradeTime time.Duration
	Repeats     int
}

// Options configures Run.
type Options struct {
	Points []Point
	// ControllerArgs are extra controller flags (e.g. --kube-api-qps=100).
	ControllerArgs []string
	// PprofMinNodes: runs with at least this many nodes save a 30 s CPU
	// profile from mid-rollout and a heap profile at the end into PprofDir.
	PprofMinNodes int
	PprofDir      string
	// Dir keeps the world's logs; empty: a temporary folder per world.
	Dir string
	// Logf prints progress.
	Logf func(format string, args ...any)
	// OnResult is called after each run, so partial results are kept.
	OnResult func(Result)
}

// Result is one run's measurements. Times are seconds, sizes bytes.
type Result struct {
	Nodes          int       `json:"nodes"`
	Concurrency    int       `json:"concurrency"`
	UpgradeTimeS   float64   `json:"upgradeTimeSeconds"`
	Repeat         int       `json:"repeat"`
	Started        time.Time `json:"started"`
	ControllerArgs []string  `json:"controllerArgs,omitempty"`

	JobState  string  `json:"jobState"`
	Succeeded int32   `json:"succeeded"`
	Failed    int32   `json:"failed"`
	WallS     float64 `json:"wallSeconds"`
	IdealS    float64 `json:"idealSeconds"`
	// Efficiency is WallS / IdealS (1.0 is perfect).
	Efficiency float64 `json:"efficiency"`

	// APIRequests is the apiserver_request_total delta by "VERB resource".
	APIRequests        map[string]float64 `json:"apiRequests"`
	APIRequestsPerNode float64            `json:"apiRequestsPerNode"`
	// ControllerRequests is the controller's rest_client_requests_total
	// delta by method, over the job only (after its caches synced).
	ControllerRequests        map[string]float64 `json:"controllerRequests"`
	ControllerRequestsPerNode float64            `json:"controllerRequestsPerNode"`
	// OthersPerNode is everything else: the simulated kubelets (pod status,
	// node version, deletion confirmations), KWOK and the harness's watches.
	OthersPerNode   float64 `json:"othersPerNode"`
	SimStatusWrites int64   `json:"simPodStatusWrites"`
	SimNodeWrites   int64   `json:"simNodeWrites"`
	StatusWrites    float64 `json:"statusWrites"`
	// ShardWrites counts the status shards the controller created or
	// updated (a sharded job: above --status-shard-threshold).
	ShardWrites float64 `json:"shardWrites,omitempty"`
	// StatusBytesStored sums the size of every stored version of the job
	// and its shards (the observer's watch events); per node upgraded in
	// StatusBytesPerNode: what the job's status writes cost etcd.
	StatusBytesStored  int64   `json:"statusBytesStored,omitempty"`
	StatusBytesPerNode float64 `json:"statusBytesPerNode,omitempty"`
	// EtcdWALBytes is etcd's own etcd_disk_wal_write_bytes_total delta over
	// the run: everything written (pods, nodes, events, the job), per node
	// upgraded in EtcdBytesPerNode.
	EtcdWALBytes     float64 `json:"etcdWALBytes,omitempty"`
	EtcdBytesPerNode float64 `json:"etcdBytesPerNode,omitempty"`
	// RSSBytesPerNode is the controller's peak RSS divided by N.
	RSSBytesPerNode  float64 `json:"controllerRSSBytesPerNode,omitempty"`
	FinalBytes       int     `json:"finalJobBytes"`
	MaxBytesWatched  int     `json:"maxJobBytesWatched"`
	BytesPerNode     float64 `json:"bytesPerNode"`
	JobWatchEvents   int     `json:"jobWatchEvents"`
	LagP50S          float64 `json:"lagP50Seconds"`
	LagP95S          float64 `json:"lagP95Seconds"`
	LagMaxS          float64 `json:"lagMaxSeconds"`
	LagMissing       int     `json:"lagMissing"`
	CPUSeconds       float64 `json:"controllerCPUSeconds"`
	PeakRSSMiB       float64 `json:"controllerPeakRSSMiB"`
	MaxActivePods    int     `json:"maxActivePods"`
	TwiceDispatched  int     `json:"twiceDispatched"`
	LoadAvgAtStart   string  `json:"loadAvgAtStart"`
	ProfileCPU       string  `json:"profileCPU,omitempty"`
	ProfileHeap      string  `json:"profileHeap,omitempty"`
	ControllerLogDir string  `json:"controllerLogDir,omitempty"`
}

// Run runs every point, one world per node count (worlds are expensive:
// 10,000 nodes take a minute or two to create and turn Ready).
func Run(ctx context.Context, opts Options) ([]Result, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	byN := map[int][]Point{}
	var ns []int
	for _, p := range opts.Points {
		if _, ok := byN[p.Nodes]; !ok {
			ns = append(ns, p.Nodes)
		}
		byN[p.Nodes] = append(byN[p.Nodes], p)
	}
	sort.Ints(ns)
	var all []Result
	for _, n := range ns {
		res, err := runWorld(ctx, opts, n, byN[n])
		all = append(all, res...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

func runWorld(ctx context.Context, opts Options, n int, points []Point) ([]Result, error) {
	bin, err := localcluster.BuildController(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	dir := ""
	if opts.Dir != "" {
		dir = filepath.Join(opts.Dir, fmt.Sprintf("n%d", n))
	}
	opts.Logf("world: starting control plane for %d nodes", n)
	cl, err := localcluster.Start(ctx, localcluster.Options{
		Dir:              dir,
		UpgradeDuration:  points[0].UpgradeTime,
		NodeReadyTimeout: 15 * time.Minute,
		// No heartbeats: nothing here reads their age, and 10,000 nodes
		// heartbeating would spend the apiserver the benchmark measures.
		KWOKHeartbeat:    -1,
		ControllerBinary: bin,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: start world: %w", err)
	}
	defer func() {
		if err := cl.Stop(); err != nil {
			opts.Logf("world: stop: %v", err)
		}
	}()

	// Create the fleet with a fast client: localcluster's CreateNodes uses
	// 8 workers at 200 QPS, which is minutes for 10,000 nodes.
	cfg := cl.RESTConfig()
	cfg.QPS, cfg.Burst = 2000, 4000
	fast, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return nil, fmt.Errorf("bench: client: %w", err)
	}
	specs := fleetsim.Fleet("bench", n, "v1.20.0")
	t0 := time.Now()
	if err := fleetsim.CreateNodes(ctx, fast, specs, 32); err != nil {
		return nil, fmt.Errorf("bench: create nodes: %w", err)
	}
	names := make([]string, len(specs))
	for i := range specs {
		names[i] = specs[i].Name
	}
	if err := cl.WaitNodesReady(ctx, names...); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	opts.Logf("world: %d nodes created and Ready in %s", n, time.Since(t0).Round(time.Second))

	var results []Result
	minor := 21 // each job upgrades the fleet one minor version further
	current := points[0].UpgradeTime
	for _, p := range points {
		if p.UpgradeTime != current {
			if err := cl.RestartSimulator(ctx, p.UpgradeTime); err != nil {
				return results, fmt.Errorf("bench: %w", err)
			}
			current = p.UpgradeTime
		}
		for rep := 1; rep <= p.Repeats; rep++ {
			version := fmt.Sprintf("v1.%d.0", minor)
			minor++
			opts.Logf("run: N=%d c=%d t=%s repeat %d/%d (target %s, ideal %.0fs)", p.Nodes, p.Concurrency, p.UpgradeTime, rep, p.Repeats, version,
				float64(p.Nodes)*p.UpgradeTime.Seconds()/float64(p.Concurrency))
			r, err := runOne(ctx, opts, cl, p, rep, version)
			if err != nil {
				return results, err
			}
			opts.Logf("result: wall %.1fs ideal %.1fs efficiency %.3f; api/node %.1f (controller %.1f); status writes %.0f (+%.0f shard writes), %d bytes (%.0f B/node); status stored %.0f B/node, etcd WAL %.0f B/node; lag p50 %.2fs p95 %.2fs max %.2fs; cpu %.1fs rss %.0f MiB (%.0f B/node); peak active %d",
				r.WallS, r.IdealS, r.Efficiency, r.APIRequestsPerNode, r.ControllerRequestsPerNode, r.StatusWrites, r.ShardWrites, r.FinalBytes, r.BytesPerNode,
				r.StatusBytesPerNode, r.EtcdBytesPerNode, r.LagP50S, r.LagP95S, r.LagMaxS, r.CPUSeconds, r.PeakRSSMiB, r.RSSBytesPerNode, r.MaxActivePods)
			results = append(results, r)
			if opts.OnResult != nil {
				opts.OnResult(r)
			}
		}
	}
	return results, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

func runOne(ctx context.Context, opts Options, cl *localcluster.Cluster, p Point, rep int, version string) (Result, error) {
	r := Result{Nodes: p.Nodes, Concurrency: p.Concurrency, UpgradeTimeS: p.UpgradeTime.Seconds(), Repeat: rep,
		ControllerArgs: opts.ControllerArgs, LoadAvgAtStart: loadAvg(), ControllerLogDir: cl.Dir()}
	r.IdealS = float64(p.Nodes) * p.UpgradeTime.Seconds() / float64(p.Concurrency)
	name := fmt.Sprintf("bench-n%d-c%d-%d", p.Nodes, p.Concurrency, rep)

	// A fresh controller per run, so its CPU time and peak RSS belong to
	// this job (plus its cache sync) and nothing earlier.
	args := append([]string(nil), opts.ControllerArgs...)
	profile := opts.PprofDir != "" && opts.PprofMinNodes > 0 && p.Nodes >= opts.PprofMinNodes
	pprofAddr := ""
	if profile {
		var err error
		if pprofAddr, err = freePort(); err != nil {
			return r, err
		}
		args = append(args, "--pprof-bind-address="+pprofAddr)
	}
	ctl, err := cl.StartController(ctx, localcluster.ControllerOptions{Name: name, Verbosity: 1, Args: args, ReadyTimeout: 3 * time.Minute})
	if err != nil {
		return r, fmt.Errorf("bench: %w", err)
	}
	defer func() { _ = ctl.Stop() }()

	apiBefore, err := scrapeAPIServer(ctx, cl.Clientset)
	if err != nil {
		return r, err
	}
	ctlBefore, err := scrapeController(ctx, ctl.MetricsURL())
	if err != nil {
		return r, err
	}
	simBefore := cl.Simulator().Stats()
	walBefore, walErr := etcdWALBytes(ctx, cl.EtcdMetricsURL())
	if walErr != nil {
		opts.Logf("etcd metrics: %v", walErr)
	}

	obs, err := observer.Start(ctx, cl.RESTConfig(), cl.Namespace(), name)
	if err != nil {
		return r, fmt.Errorf("bench: %w", err)
	}
	defer func() { _ = obs.Stop() }()

	job := &v1alpha1.NodeUpgradeJob{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.NodeUpgradeJobSpec{
			Version:       version,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{fleetsim.LabelEdgeRole: ""}},
			Concurrency:   int32(p.Concurrency),
			// Far beyond t: a timeout here would be a bug, not a result.
			TimeoutSeconds:  int64(10*p.UpgradeTime.Seconds()) + 300,
			FailureTolerate: "0",
		},
	}
	r.Started = time.Now()
	if err := cl.Client.Create(ctx, job); err != nil {
		return r, fmt.Errorf("bench: create job: %w", err)
	}
	created := time.Now()

	profDone := make(chan struct{})
	go func() {
		defer close(profDone)
		if !profile {
			return
		}
		// A CPU profile from the steady middle of the rollout.
		select {
		case <-time.After(time.Duration(r.IdealS/3) * time.Second):
		case <-ctx.Done():
			return
		}
		path := filepath.Join(opts.PprofDir, name+".cpu.pprof")
		if err := fetch(ctx, "http://"+pprofAddr+"/debug/pprof/profile?seconds=30", path, 60*time.Second); err != nil {
			opts.Logf("pprof: %v", err)
			return
		}
		r.ProfileCPU = path
	}()

	wctx, cancel := context.WithTimeout(ctx, time.Duration(3*r.IdealS)*time.Second+10*time.Minute)
	finalAt, state, err := obs.WaitFinal(wctx)
	cancel()
	if err != nil {
		return r, fmt.Errorf("bench: %w", err)
	}
	r.JobState = state
	r.WallS = finalAt.Sub(created).Seconds()
	r.Efficiency = r.WallS / r.IdealS

	// Cost first: nothing below should count against the controller.
	if r.CPUSeconds, r.PeakRSSMiB, err = costMiB(ctl.Pid()); err != nil {
		return r, err
	}
	ctlAfter, err := scrapeController(ctx, ctl.MetricsURL())
	if err != nil {
		return r, err
	}
	// The simulator and the controller finish their last requests (pod
	// deletions, their confirmations) within a moment of the final write:
	// let them land before the apiserver is read.
	waitPodsGone(ctx, cl, name, time.Minute)
	apiAfter, err := scrapeAPIServer(ctx, cl.Clientset)
	if err != nil {
		return r, err
	}
	if walAfter, err := etcdWALBytes(ctx, cl.EtcdMetricsURL()); err == nil && walErr == nil {
		r.EtcdWALBytes = walAfter - walBefore
		r.EtcdBytesPerNode = r.EtcdWALBytes / float64(p.Nodes)
	}
	ctlAfter2, err := scrapeController(ctx, ctl.MetricsURL())
	if err == nil {
		ctlAfter.Requests = ctlAfter2.Requests
	}
	simAfter := cl.Simulator().Stats()
	r.SimStatusWrites = simAfter.StatusWrites - simBefore.StatusWrites
	r.SimNodeWrites = simAfter.NodeWrites - simBefore.NodeWrites

	r.APIRequests = map[string]float64{}
	total := 0.0
	for k, v := range apiAfter {
		if d := v - apiBefore[k]; d > 0 && !strings.HasPrefix(k, "WATCH") {
			r.APIRequests[k] = d
			total += d
		}
	}
	r.ControllerRequests = map[string]float64{}
	ctlTotal := 0.0
	for k, v := range ctlAfter.Requests {
		if d := v - ctlBefore.Requests[k]; d > 0 {
			r.ControllerRequests[k] = d
			ctlTotal += d
		}
	}
	r.APIRequestsPerNode = total / float64(p.Nodes)
	r.ControllerRequestsPerNode = ctlTotal / float64(p.Nodes)
	r.OthersPerNode = (total - ctlTotal) / float64(p.Nodes)
	r.StatusWrites = ctlAfter.StatusWrites - ctlBefore.StatusWrites
	r.ShardWrites = ctlAfter.ShardWrites - ctlBefore.ShardWrites
	r.RSSBytesPerNode = r.PeakRSSMiB * (1 << 20) / float64(p.Nodes)

	raw, err := cl.Clientset.Discovery().RESTClient().Get().AbsPath("/apis/operations.kubeedge.io/v1alpha1/nodeupgradejobs/" + name).DoRaw(ctx)
	if err != nil {
		return r, fmt.Errorf("bench: get job: %w", err)
	}
	final := &v1alpha1.NodeUpgradeJob{}
	if err := json.Unmarshal(raw, final); err != nil {
		return r, fmt.Errorf("bench: decode job: %w", err)
	}
	// A sharded job's records are in its shards: the job and its shards
	// together are what it stores.
	r.FinalBytes = len(raw)
	if sh := final.Status.Shards; sh != nil {
		cms, err := cl.Clientset.CoreV1().ConfigMaps(sh.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sh.Selector})
		if err != nil {
			return r, fmt.Errorf("bench: list status shards: %w", err)
		}
		for i := range cms.Items {
			if b, err := json.Marshal(&cms.Items[i]); err == nil {
				r.FinalBytes += len(b)
			}
		}
	}
	r.BytesPerNode = float64(r.FinalBytes) / float64(p.Nodes)
	r.Succeeded, r.Failed = final.Status.Counts.Succeeded, final.Status.Counts.Failed

	if err := obs.Stop(); err != nil {
		opts.Logf("observer: %v", err)
	}
	rep2 := obs.Report()
	r.LagP50S = observer.Quantile(rep2.Lags, 0.50).Seconds()
	r.LagP95S = observer.Quantile(rep2.Lags, 0.95).Seconds()
	if len(rep2.Lags) > 0 {
		r.LagMaxS = rep2.Lags[len(rep2.Lags)-1].Seconds()
	}
	r.LagMissing = rep2.Missing
	r.MaxBytesWatched = rep2.MaxBytes
	r.JobWatchEvents = rep2.JobEvents
	r.StatusBytesStored = rep2.StatusBytes
	r.StatusBytesPerNode = float64(rep2.StatusBytes) / float64(p.Nodes)
	r.MaxActivePods = rep2.MaxActive
	r.TwiceDispatched = len(rep2.TwiceDispatched)

	<-profDone
	if profile {
		path := filepath.Join(opts.PprofDir, name+".heap.pprof")
		if err := fetch(ctx, "http://"+pprofAddr+"/debug/pprof/heap", path, 30*time.Second); err == nil {
			r.ProfileHeap = path
		}
	}

	// Clean up for the next run while the controller still runs: it owns
	// the job's cleanup finalizer.
	if err := cl.Client.Delete(ctx, final); err != nil && !apierrors.IsNotFound(err) {
		return r, fmt.Errorf("bench: delete job: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		err := cl.Client.Get(ctx, types.NamespacedName{Name: name}, &v1alpha1.NodeUpgradeJob{})
		if apierrors.IsNotFound(err) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	waitPodsGone(ctx, cl, name, 2*time.Minute)
	return r, nil
}

func costMiB(pid int) (float64, float64, error) {
	cpu, rss, err := procCost(pid)
	return cpu, float64(rss) / (1 << 20), err
}

// waitPodsGone waits (best effort) until the job has no pods left.
func waitPodsGone(ctx context.Context, cl *localcluster.Cluster, job string, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		list := &corev1.PodList{}
		err := cl.Client.List(ctx, list, client.InNamespace(cl.Namespace()), client.MatchingLabels{v1alpha1.LabelJob: job})
		if err == nil && len(list.Items) == 0 {
			return
		}
		time.Sleep(time.Second)
	}
}
