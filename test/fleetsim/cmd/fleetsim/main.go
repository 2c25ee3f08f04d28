// Command fleetsim creates a fleet of simulated KubeEdge edge nodes and then
// runs their upgrade pods until interrupted. KWOK (see test/kwokworld) must
// run against the same apiserver to keep the nodes Ready.
//
//	fleetsim --kubeconfig=k.yaml --nodes=100 --fail=3 --hang=1 --offline=2 \
//	    --at-target=5 --target-version=v1.21.0 --duration=10s
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr/funcr"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		kubeconfig    = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the apiserver")
		nodes         = flag.Int("nodes", 10, "number of edge nodes to create (0: only run the simulator)")
		prefix        = flag.String("prefix", "edge", "node name prefix: <prefix>-00000, ...")
		fromVersion   = flag.String("from-version", fleetsim.DefaultVersion, "edgecore version the nodes start at")
		targetVersion = flag.String("target-version", "v1.21.0", "version the --at-target nodes already run")
		fail          = flag.Int("fail", 0, "how many nodes fail their upgrade (keadm rolls back)")
		hang          = flag.Int("hang", 0, "how many nodes hang in the upgrade container")
		offline       = flag.Int("offline", 0, "how many nodes are offline (NotReady, pods never run)")
		atTarget      = flag.Int("at-target", 0, "how many nodes already run --target-version")
		duration      = flag.Duration("duration", fleetsim.DefaultUpgradeDuration, "how long one upgrade pod runs")
		namespace     = flag.String("namespace", "", "only run upgrade pods in this namespace (default: all)")
		workers       = flag.Int("create-workers", 32, "parallel node creations")
		seed          = flag.Uint64("seed", 1, "seed for spreading failing/hanging/offline nodes over the fleet")
		verbose       = flag.Bool("v", false, "log every pod transition")
	)
	flag.Parse()
	special := *fail + *hang + *offline + *atTarget
	if special > *nodes && *nodes > 0 {
		return fmt.Errorf("--fail + --hang + --offline + --at-target = %d exceeds --nodes=%d", special, *nodes)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	// client-go's default of 5 requests/s would take half an hour for
	// 10,000 nodes; a test apiserver takes far more.
	cfg.QPS, cfg.Burst = 500, 1000
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *nodes > 0 {
		specs := fleetsim.Fleet(*prefix, *nodes, *fromVersion)
		// Spread the special nodes over the fleet so that each batch the
		// controller picks sees some of them, the same way every run.
		order := rand.New(rand.NewPCG(*seed, *seed)).Perm(*nodes)
		i := 0
		take := func(n int, set func(*fleetsim.NodeSpec)) {
			for ; n > 0; n-- {
				set(&specs[order[i]])
				i++
			}
		}
		take(*fail, func(s *fleetsim.NodeSpec) { s.Behavior = fleetsim.BehaviorFail })
		take(*hang, func(s *fleetsim.NodeSpec) { s.Behavior = fleetsim.BehaviorHang })
		take(*offline, func(s *fleetsim.NodeSpec) { s.Offline = true })
		take(*atTarget, func(s *fleetsim.NodeSpec) { s.Version = *targetVersion })

		c, err := client.New(cfg, client.Options{})
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}
		began := time.Now()
		if err := fleetsim.CreateNodes(ctx, c, specs, *workers); err != nil {
			return err
		}
		fmt.Printf("created %d nodes in %s\n", *nodes, time.Since(began).Round(time.Millisecond))
		printSpecial(specs, *targetVersion)
	}

	verbosity := 0
	if *verbose {
		verbosity = 1
	}
	log := funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, time.Now().Format(time.TimeOnly), prefix, args)
	}, funcr.Options{Verbosity: verbosity})
	sim, err := fleetsim.NewSimulator(cfg, fleetsim.Options{
		UpgradeDuration: *duration,
		Namespace:       *namespace,
		Logger:          log,
	})
	if err != nil {
		return err
	}
	go report(ctx, sim)
	fmt.Println("simulating upgrade pods; Ctrl-C to stop")
	if err := sim.Run(ctx); err != nil {
		return err
	}
	fmt.Printf("stopped: %+v\n", sim.Stats())
	return nil
}

func printSpecial(specs []fleetsim.NodeSpec, target string) {
	groups := map[string][]string{}
	for _, s := range specs {
		switch {
		case s.Version == target:
			groups["at-target"] = append(groups["at-target"], s.Name)
		case s.Behavior != "":
			groups[string(s.Behavior)] = append(groups[string(s.Behavior)], s.Name)
		case s.Offline:
			groups["offline"] = append(groups["offline"], s.Name)
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sort.Strings(groups[k])
		fmt.Printf("  %s: %s\n", k, strings.Join(groups[k], " "))
	}
}

// report prints the simulator's counts every 10s while they change.
func report(ctx context.Context, sim *fleetsim.Simulator) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	var last fleetsim.Stats
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if st := sim.Stats(); st != last {
				fmt.Printf("%s %+v\n", time.Now().Format(time.TimeOnly), st)
				last = st
			}
		}
	}
}
