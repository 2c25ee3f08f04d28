package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
)

// Sample is one Prometheus series: its name, labels and value.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// parseProm reads the Prometheus text format, keeping only the series whose
// name is in want. It is a few lines instead of a dependency on
// prometheus/common (not a direct requirement of this module).
func parseProm(r io.Reader, want map[string]bool) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if !want[name] {
			continue
		}
		s := Sample{Name: name, Labels: map[string]string{}}
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			for _, kv := range splitLabels(rest[1:end]) {
				k, v, ok := strings.Cut(kv, "=")
				if ok {
					s.Labels[k] = strings.Trim(v, `"`)
				}
			}
			rest = rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		s.Value = v
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench: read metrics: %w", err)
	}
	return out, nil
}

// splitLabels splits `a="x",b="y,z"` on the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	inQ, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQ = !inQ
		case ',':
			if !inQ {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// scrapeAPIServer reads kube-apiserver's own /metrics with the admin client
// and returns apiserver_request_total keyed "VERB resource[/subresource]".
func scrapeAPIServer(ctx context.Context, cs kubernetes.Interface) (map[string]float64, error) {
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: apiserver /metrics: %w", err)
	}
	defer body.Close()
	samples, err := parseProm(body, map[string]bool{"apiserver_request_total": true})
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range samples {
		res := s.Labels["resource"]
		if sub := s.Labels["subresource"]; sub != "" {
			res += "/" + sub
		}
		out[s.Labels["verb"]+" "+res] += s.Value
	}
	return out, nil
}

// controllerMetrics are the controller's own counters the benchmark reads.
type controllerMetrics struct {
	// Requests is rest_client_requests_total summed by method.
	Requests     map[string]float64
	StatusWrites float64
	ShardWrites  float64
	Dispatches   float64
}

func scrapeController(ctx context.Context, url string) (controllerMetrics, error) {
	m := controllerMetrics{Requests: map[string]float64{}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return m, fmt.Errorf("bench: controller metrics request: %w", err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return m, fmt.Errorf("bench: controller metrics: %w", err)
	}
	defer resp.Body.Close()
	samples, err := parseProm(resp.Body, map[string]bool{
		"rest_client_requests_total": true, "nodeupgrade_status_writes_total": true, "nodeupgrade_node_dispatches_total": true,
		"nodeupgrade_status_shard_writes_total": true,
	})
	if err != nil {
		return m, err
	}
	for _, s := range samples {
		switch s.Name {
		case "rest_client_requests_total":
			m.Requests[s.Labels["method"]] += s.Value
		case "nodeupgrade_status_writes_total":
			m.StatusWrites = s.Value
		case "nodeupgrade_node_dispatches_total":
			m.Dispatches = s.Value
		case "nodeupgrade_status_shard_writes_total":
			m.ShardWrites = s.Value
		}
	}
	return m, nil
}

// etcdWALBytes reads etcd's own etcd_disk_wal_write_bytes_total: every
// byte etcd wrote to its write-ahead log, which every stored write passes
// through (all objects: pods, nodes, events, leases, the job).
func etcdWALBytes(ctx context.Context, url string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("bench: etcd metrics request: %w", err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: etcd metrics: %w", err)
	}
	defer resp.Body.Close()
	samples, err := parseProm(resp.Body, map[string]bool{"etcd_disk_wal_write_bytes_total": true})
	if err != nil {
		return 0, err
	}
	if len(samples) == 0 {
		return 0, fmt.Errorf("bench: etcd exports no etcd_disk_wal_write_bytes_total")
	}
	return samples[0].Value, nil
}

// procCost reads a process's CPU time (utime+stime, seconds) and peak
// resident memory (VmHWM, bytes) from /proc.
func procCost(pid int) (cpuSeconds float64, peakRSS int64, err error) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, fmt.Errorf("bench: read stat of %d: %w", pid, err)
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, 0, fmt.Errorf("bench: short stat of %d", pid)
	}
	// Fields after comm: state(0) ... utime(11) stime(12), in clock ticks
	// (USER_HZ, 100 on Linux).
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	cpuSeconds = (ut + st) / 100
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return cpuSeconds, 0, fmt.Errorf("bench: read status of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				peakRSS = kb * 1024
			}
		}
	}
	return cpuSeconds, peakRSS, nil
}

// fetch GETs url into file path (pprof profiles).
func fetch(ctx context.Context, url, path string, timeout time.Duration) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("bench: request %s: %w", url, err)
	}
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		return fmt.Errorf("bench: get %s: %w", url, err)
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: create %s: %w", path, err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		return fmt.Errorf("bench: save %s: %w", path, err)
	}
	return nil
}
