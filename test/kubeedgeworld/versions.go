package kubeedgeworld

// The KubeEdge versions the world runs by default. `make kubeedge-bins`
// (KUBEEDGE_VERSIONS in the Makefile) builds what these need; the version
// matrix (test/kubeedge, `make test-kubeedge-matrix`) adds the others.
const (
	// DefaultNodeVersion is the edgecore the edge nodes start on.
	DefaultNodeVersion = "v1.22.0"
	// DefaultTargetVersion is the installation package the world builds
	// and the version the main scenarios upgrade to: KubeEdge's newest
	// release, with the fix for CVE-2026-62371.
	DefaultTargetVersion = "v1.23.1"
	// CRDVersion is the KubeEdge release whose build/crds the world
	// installs, and whose cloudcore it runs: a cluster is upgraded cloud
	// side first, so the cloud runs the target while the nodes catch up.
	CRDVersion = DefaultTargetVersion
)
