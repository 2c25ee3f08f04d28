package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nodeupgrade/nodeupgrade/test/fleetsim"
)

// The demo fleet, matched by config/samples/demo/: zone plant-a has 30 edge
// nodes (upgrade-plant-a selects them by label) and 2 cloud nodes the
// selector must leave alone; zone plant-b has 3 gateways (upgrade-gateways
// names them). Everyone starts at v1.30.7-kubeedge-v1.20.0 except one
// node that already runs the target.
const (
	zoneLabel      = "topology.kubernetes.io/zone"
	startVersion   = "v1.20.0"
	targetVersion  = "v1.21.0"
	plantANodes    = 30
	gatewayNodes   = 3
	cloudNodes     = 2
	demoSeed       = 20240601 // fixed, so every run shows the same fleet
	minUpgradeTime = 3 * time.Second
	maxUpgradeTime = 6 * time.Second
)

// Special nodes of plant-a. The offline one comes early in name order, so
// its 60s NotReady timeout starts with the job rather than at its end.
var (
	failingNodes = []string{"edge-node-08", "edge-node-15", "edge-node-23"}
	offlineNode  = "edge-node-04"
	atTargetNode = "edge-node-12"
)

// demoFleet is every node the demo creates.
func demoFleet() []fleetsim.NodeSpec {
	rng := rand.New(rand.NewPCG(demoSeed, 1))
	// Jitter per node, so the window slides unevenly and the view looks alive.
	jitter := func() time.Duration {
		span := int64(maxUpgradeTime - minUpgradeTime)
		return (minUpgradeTime + time.Duration(rng.Int64N(span))).Round(100 * time.Millisecond)
	}
	failing := map[string]bool{}
	for _, n := range failingNodes {
		failing[n] = true
	}
	var specs []fleetsim.NodeSpec
	for i := 1; i <= plantANodes; i++ {
		s := fleetsim.NodeSpec{
			Name:     fmt.Sprintf("edge-node-%02d", i),
			Labels:   map[string]string{zoneLabel: "plant-a"},
			Version:  startVersion,
			Duration: jitter(),
		}
		switch {
		case failing[s.Name]:
			s.Behavior = fleetsim.BehaviorFail
		case s.Name == offlineNode:
			s.Offline = true
		case s.Name == atTargetNode:
			s.Version = targetVersion
		}
		specs = append(specs, s)
	}
	for i := 1; i <= gatewayNodes; i++ {
		specs = append(specs, fleetsim.NodeSpec{
			Name:     fmt.Sprintf("gateway-%02d", i),
			Labels:   map[string]string{zoneLabel: "plant-b"},
			Version:  startVersion,
			Duration: jitter(),
		})
	}
	for i := 1; i <= cloudNodes; i++ {
		specs = append(specs, fleetsim.NodeSpec{
			Name:    fmt.Sprintf("cloud-node-%02d", i),
			Labels:  map[string]string{zoneLabel: "plant-a"},
			Version: startVersion,
			NotEdge: true,
		})
	}
	return specs
}
