package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	_ "time/tzdata" // the zones, whatever the host has

	v1alpha1 "github.com/nodeupgrade/nodeupgrade/api/v1alpha1"
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
	zones := nightZones(time.Now(), gatewayNodes)
	for i := 1; i <= gatewayNodes; i++ {
		specs = append(specs, fleetsim.NodeSpec{
			Name:     fmt.Sprintf("gateway-%02d", i),
			Labels:   map[string]string{zoneLabel: "plant-b", v1alpha1.LabelTimeZone: zones[i-1]},
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

// siteZones are zones a whole hour apart (none with daylight saving in
// the demo's months would matter: only the hour now is read).
var siteZones = []string{
	"Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/Denver", "America/Chicago",
	"America/New_York", "America/Halifax", "America/Sao_Paulo", "Atlantic/South_Georgia", "Atlantic/Azores",
	"Europe/London", "Europe/Berlin", "Europe/Athens", "Europe/Moscow", "Asia/Dubai", "Asia/Karachi",
	"Asia/Dhaka", "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo", "Australia/Brisbane", "Pacific/Noumea",
	"Pacific/Auckland", "Pacific/Tongatapu",
}

// nightZones picks n zones where it is between 22:00 and 03:00 now, well
// inside upgrade-gateways' window (22:00-04:00), as label values (the
// zone's "/" written "."): each gateway is upgraded at its own night,
// whatever the time of the demo.
func nightZones(now time.Time, n int) []string {
	var out []string
	for _, name := range siteZones {
		loc, err := time.LoadLocation(name)
		if err != nil {
			continue
		}
		if h := now.In(loc).Hour(); h >= 22 || h < 3 {
			out = append(out, strings.ReplaceAll(name, "/", "."))
		}
	}
	for i := 0; len(out) < n; i++ { // not with 24 zones an hour apart
		out = append(out, out[i%max(len(out), 1)])
	}
	return out[:n]
}
