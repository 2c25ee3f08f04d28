// Command bench runs the rollout benchmark (see docs/benchmarks.md):
//
//	go run ./test/bench/cmd/bench                      # the full matrix (~50 min)
//	go run ./test/bench/cmd/bench -quick               # 300 nodes, one run, no doc update
//	go run ./test/bench/cmd/bench -nodes 10000 -concurrency 500 -repeats 1
//
// Every invocation writes docs/bench-results/<time>.json and regenerates the
// results section of docs/benchmarks.md from all JSON files there.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/nodeupgrade/nodeupgrade/test/bench"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("bad number %q: %w", f, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// repeatsFor parses "1000:3,5000:2,10000:1" or a plain number.
func repeatsFor(spec string, n int) (int, error) {
	if v, err := strconv.Atoi(spec); err == nil {
		return v, nil
	}
	best := 1
	for _, f := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), ":")
		if !ok {
			return 0, fmt.Errorf("bad -repeats entry %q", f)
		}
		kn, err1 := strconv.Atoi(k)
		vn, err2 := strconv.Atoi(v)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("bad -repeats entry %q", f)
		}
		if kn == n {
			return vn, nil
		}
		if kn < n {
			best = vn // the nearest smaller N's count
		}
	}
	return best, nil
}

func machine() string {
	host, _ := os.Hostname()
	model := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				_, model, _ = strings.Cut(line, ":")
				model = strings.TrimSpace(model)
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0]); len(f) >= 2 {
			kb, _ := strconv.Atoi(f[1])
			mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	return fmt.Sprintf("%s, %d cores (%s), %s RAM, %s", host, runtime.NumCPU(), model, mem, runtime.Version())
}

func run() error {
	// The observer uses controller-runtime's client, which wants a logger;
	// its messages are noise here.
	ctrllog.SetLogger(logr.Discard())
	root := testenv.RepoRoot()
	nodes := flag.String("nodes", "1000,5000,10000", "comma-separated fleet sizes N")
	conc := flag.String("concurrency", "100,500", "comma-separated job concurrencies c")
	upgrade := flag.Duration("t", 0, "simulated per-node upgrade time; 0 picks c/20 seconds, so the simulator sees 20 dispatches a second")
	repeats := flag.String("repeats", "1000:3,5000:2,10000:1", "runs per point: a number, or N:count pairs (a missing N takes the nearest smaller N's count)")
	quick := flag.Bool("quick", false, "a 2-minute smoke run: 300 nodes, c=50, t=2.5s, once; results kept out of docs unless -doc is given")
	ctlArgs := flag.String("controller-args", "", "extra nodeupgrade-controller flags, space-separated (e.g. '--kube-api-qps=200 --kube-api-burst=400')")
	out := flag.String("out", filepath.Join(root, "docs", "bench-results"), "folder for the raw JSON results")
	doc := flag.String("doc", "", "markdown file whose results section is regenerated (default docs/benchmarks.md; '-' for none)")
	pprofMin := flag.Int("pprof-min-nodes", 10000, "save CPU and heap profiles of the controller for runs with at least this many nodes (0: never)")
	keep := flag.String("dir", "", "keep the worlds' logs (controller, KWOK) under this folder")
	renderOnly := flag.Bool("render", false, "run nothing: regenerate the doc's results section from the JSON files in -out")
	flag.Parse()
	if *renderOnly {
		if *doc == "" {
			*doc = filepath.Join(root, "docs", "benchmarks.md")
		}
		files, names, err := bench.LoadFiles(*out)
		if err != nil {
			return err
		}
		return bench.UpdateDoc(*doc, bench.Render(files, names))
	}

	if *quick {
		*nodes, *conc, *repeats = "300", "50", "1"
		if *upgrade == 0 {
			*upgrade = 2500 * time.Millisecond
		}
		if !flagSet("out") {
			*out = filepath.Join(root, "bin", "bench-quick")
		}
		if *doc == "" {
			*doc = "-"
		}
	}
	if *doc == "" {
		*doc = filepath.Join(root, "docs", "benchmarks.md")
	}
	ns, err := ints(*nodes)
	if err != nil {
		return err
	}
	cs, err := ints(*conc)
	if err != nil {
		return err
	}
	var points []bench.Point
	for _, n := range ns {
		rep, err := repeatsFor(*repeats, n)
		if err != nil {
			return err
		}
		for _, c := range cs {
			t := *upgrade
			if t == 0 {
				// c/t = 20 dispatches/s: ~100 pod status writes/s from the
				// simulator plus the controller's own, about half of what this
				// machine's apiserver sustains (docs/benchmarks.md).
				t = time.Duration(float64(c) / 20 * float64(time.Second))
			}
			points = append(points, bench.Point{Nodes: n, Concurrency: c, UpgradeTime: t, Repeats: rep})
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", *out, err)
	}
	pprofDir := filepath.Join(root, "bin", "bench-pprof")
	if err := os.MkdirAll(pprofDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", pprofDir, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	file := bench.File{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Machine: machine(),
		Command: "go run ./test/bench/cmd/bench " + shellJoin(os.Args[1:]),
		Commit:  commit(root),
	}
	path := filepath.Join(*out, time.Now().UTC().Format("20060102T150405Z")+".json")
	save := func() error {
		data, err := json.MarshalIndent(file, "", "  ")
		if err != nil {
			return fmt.Errorf("encode results: %w", err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if *doc == "-" {
			return nil
		}
		files, names, err := bench.LoadFiles(*out)
		if err != nil {
			return err
		}
		return bench.UpdateDoc(*doc, bench.Render(files, names))
	}
	var extra []string
	if *ctlArgs != "" {
		extra = strings.Fields(*ctlArgs)
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	_, runErr := bench.Run(ctx, bench.Options{
		Points:         points,
		ControllerArgs: extra,
		PprofMinNodes:  *pprofMin,
		PprofDir:       pprofDir,
		Dir:            *keep,
		Logf:           logf,
		OnResult: func(r bench.Result) {
			file.Results = append(file.Results, r)
			if err := save(); err != nil {
				logf("saving results: %v", err)
			}
		},
	})
	if len(file.Results) > 0 {
		logf("results: %s", path)
	}
	return runErr
}

// shellJoin quotes the arguments that need it, so the recorded command can
// be pasted back into a shell.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// commit names the checkout the controller is built from.
func commit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", "pkg", "api", "cmd").Output(); err == nil && len(st) > 0 {
		c += "+dirty"
	}
	return c
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
