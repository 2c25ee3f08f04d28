package localcluster_test

import (
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
)

// TestScale measures the simulated fleet on this machine: how fast nodes
// are created and made Ready, and how many pod transitions the simulator
// drives. It is off unless FLEETSIM_SCALE_NODES is set (e.g. 10000), with
// FLEETSIM_SCALE_PODS concurrent upgrade pods (default 500) that run
// FLEETSIM_SCALE_DURATION each (default 10s).
//
// With FLEETSIM_SCALE_NODES set, fleetOptions gives KWOK a ten-minute
// heartbeat, so run this test alone (-run TestScale): TestFleet expects a
// fast one.
func TestScale(t *testing.T) {
	cl := fleet.Get(t)
	k8s, sim := cl.Client, cl.Simulator()
	nodes, _ := strconv.Atoi(os.Getenv("FLEETSIM_SCALE_NODES"))
	if nodes <= 0 {
		t.Skip("set FLEETSIM_SCALE_NODES to measure")
	}
	pods := envInt("FLEETSIM_SCALE_PODS", 500)
	d := 10 * time.Second
	if v := os.Getenv("FLEETSIM_SCALE_DURATION"); v != "" {
		var err error
		d, err = time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
	}
	g := NewWithT(t)
	ctx := t.Context()

	specs := fleetsim.Fleet("scale", nodes, "v1.20.0")
	for i := range specs {
		specs[i].Duration = d
	}
	began := time.Now()
	g.Expect(fleetsim.CreateNodes(ctx, k8s, specs, 32)).To(Succeed())
	created := time.Since(began)
	t.Logf("created %d nodes in %s (%.0f/s)", nodes, created.Round(time.Millisecond), float64(nodes)/created.Seconds())

	g.Eventually(func(g Gomega) {
		list := &corev1.NodeList{}
		g.Expect(k8s.List(ctx, list)).To(Succeed())
		ready := 0
		for i := range list.Items {
			if readyStatus(&list.Items[i]) == corev1.ConditionTrue {
				ready++
			}
		}
		g.Expect(ready).To(BeNumerically(">=", nodes))
	}).WithTimeout(30 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
	allReady := time.Since(began)
	t.Logf("all nodes Ready %s after the first create (%.0f nodes/s)", allReady.Round(time.Millisecond), float64(nodes)/allReady.Seconds())

	before := sim.Stats()
	began = time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range min(pods, nodes) {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			pod := upgradePod(specs[i].Name, "job-scale")
			pod.Finalizers = nil
			g.Expect(k8s.Create(ctx, pod)).To(Succeed())
		})
	}
	wg.Wait()
	t.Logf("created %d pods in %s", pods, time.Since(began).Round(time.Millisecond))
	g.Eventually(func(g Gomega) {
		list := &corev1.PodList{}
		g.Expect(k8s.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{fleetsim.LabelJob: "job-scale"})).To(Succeed())
		done := 0
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodSucceeded {
				done++
			}
		}
		g.Expect(done).To(Equal(min(pods, nodes)))
	}).WithTimeout(30 * time.Minute).WithPolling(time.Second).Should(Succeed())
	took := time.Since(began)
	after := sim.Stats()
	writes := after.StatusWrites - before.StatusWrites
	t.Logf("%d pods of %s each done in %s: %d status writes (%.0f/s), %d node writes, %d errors",
		pods, d, took.Round(time.Millisecond), writes, float64(writes)/took.Seconds(),
		after.NodeWrites-before.NodeWrites, after.Errors-before.Errors)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
