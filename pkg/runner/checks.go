package runner

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cpuSample is the aggregate "cpu" line of /proc/stat, in clock ticks.
type cpuSample struct {
	idle  uint64 // idle + iowait
	total uint64 // user..steal; guest time is already counted in user
}

func readCPUSample(path string) (cpuSample, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return cpuSample{}, fmt.Errorf("read %s: %w", path, err)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 5 || fields[0] != "cpu" {
		return cpuSample{}, fmt.Errorf("%s: first line %q is not the aggregate cpu line", path, line)
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice]
	var v [8]uint64
	for i := 0; i < len(v) && i+1 < len(fields); i++ {
		n, err := strconv.ParseUint(fields[i+1], 10, 64)
		if err != nil {
			return cpuSample{}, fmt.Errorf("%s: cpu field %d: %w", path, i+1, err)
		}
		v[i] = n
	}
	var s cpuSample
	for _, n := range v {
		s.total += n
	}
	s.idle = v[3] + v[4]
	return s, nil
}

// cpuUsage is the busy share between two samples, in percent. When no tick
// elapsed between them (or counters went backwards) it falls back to the
// average since boot held by b.
func cpuUsage(a, b cpuSample) float64 {
	if b.total > a.total && b.idle >= a.idle && b.total-a.total >= b.idle-a.idle {
		dt, di := b.total-a.total, b.idle-a.idle
		return 100 * float64(dt-di) / float64(dt)
	}
	if b.total == 0 || b.idle > b.total {
		return 0
	}
	return 100 * float64(b.total-b.idle) / float64(b.total)
}

// readCPUUsage samples <host-root>/proc/stat twice, interval apart; with a
// zero interval it reports the average since boot.
func readCPUUsage(ctx context.Context, hostRoot string, interval time.Duration) (float64, error) {
	path := filepath.Join(hostRoot, "proc", "stat")
	a, err := readCPUSample(path)
	if err != nil {
		return 0, err
	}
	if interval <= 0 {
		return cpuUsage(cpuSample{}, a), nil
	}
	t := time.NewTimer(interval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return 0, fmt.Errorf("sampling cpu: %w", ctx.Err())
	case <-t.C:
	}
	b, err := readCPUSample(path)
	if err != nil {
		return 0, err
	}
	return cpuUsage(a, b), nil
}

// readMemUsage is 1 - MemAvailable/MemTotal from <host-root>/proc/meminfo,
// in percent. Kernels older than 3.14 lack MemAvailable; MemFree + Buffers
// + Cached approximates it there.
func readMemUsage(hostRoot string) (float64, error) {
	path := filepath.Join(hostRoot, "proc", "meminfo")
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	vals := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		vals[key] = n
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	total, ok := vals["MemTotal"]
	if !ok || total == 0 {
		return 0, fmt.Errorf("%s has no MemTotal", path)
	}
	avail, ok := vals["MemAvailable"]
	if !ok {
		avail = vals["MemFree"] + vals["Buffers"] + vals["Cached"]
	}
	if avail > total {
		avail = total
	}
	return 100 * float64(total-avail) / float64(total), nil
}

// readDiskUsage is the used share of the file system holding the host's
// jobs directory (/var/lib/nodeupgrade/jobs, on most nodes the root file
// system, where keadm writes its backup and the new edgecore too), computed
// like df: used / (used + available to unprivileged users). The check's
// container sees only that directory and /proc of the host.
func readDiskUsage(hostRoot string) (float64, error) {
	dir := filepath.Join(hostRoot, JobsDir)
	blocks, free, avail, err := statfs(dir)
	if err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	if blocks < free {
		return 0, fmt.Errorf("statfs %s: inconsistent block counts", dir)
	}
	used := blocks - free
	if used+avail == 0 {
		return 0, fmt.Errorf("statfs %s: filesystem reports no blocks", dir)
	}
	return 100 * float64(used) / float64(used+avail), nil
}

// runChecks reads every item and compares it with its threshold. It returns
// a summary of all readings and an error naming every failed item.
func runChecks(ctx context.Context, o Options) (string, error) {
	seen := map[string]bool{}
	var readings, failures []string
	for _, item := range o.CheckItems {
		if seen[item] {
			continue
		}
		seen[item] = true
		var (
			usage     float64
			threshold int
			err       error
		)
		switch item {
		case CheckCPU:
			usage, err = readCPUUsage(ctx, o.HostRoot, o.CPUSampleInterval)
			threshold = o.CPUThreshold
		case CheckMem:
			usage, err = readMemUsage(o.HostRoot)
			threshold = o.MemThreshold
		case CheckDisk:
			usage, err = readDiskUsage(o.HostRoot)
			threshold = o.DiskThreshold
		default:
			// ParseArgs refuses unknown items; this guards direct callers.
			err = fmt.Errorf("unknown check item %q", item)
		}
		switch {
		case err != nil:
			failures = append(failures, fmt.Sprintf("%s: %v", item, err))
		case usage >= float64(threshold):
			failures = append(failures, fmt.Sprintf("%s usage %.1f%% >= threshold %d%%", item, usage, threshold))
		default:
			readings = append(readings, fmt.Sprintf("%s usage %.1f%% < threshold %d%%", item, usage, threshold))
		}
	}
	if len(seen) == 0 {
		return "no check items", nil
	}
	if len(failures) > 0 {
		return strings.Join(readings, "; "), errors.New(strings.Join(failures, "; "))
	}
	return strings.Join(readings, "; "), nil
}
