package kubeedgeworld

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld/imagebuild"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// Images the world builds and imports into every node's containerd.
const (
	// InstallPackageRepo is KubeEdge's installation-package repository, as
	// keadm's --image default names it (keadm appends ":" + version).
	InstallPackageRepo = "docker.io/kubeedge/installation-package"
	// BrokenVersion is an installation package holding keadm v1.22.0 and an
	// edgecore that exits 1 at once: an upgrade to it must be rolled back.
	BrokenVersion = "v1.22.1"
	// LateCrashVersion is an installation package holding keadm of the
	// newest version built and an edgecore that runs for 20 s, then exits
	// 1: an upgrade that looks good at first and must still be rolled back
	// by the node itself, its pod long gone. (Not a KubeEdge release.)
	LateCrashVersion = "v1.22.9"
	// RunnerImage holds the project's nodeupgrade-runner and busybox.
	RunnerImage = "docker.io/nodeupgrade/nodeupgrade-runner:kubeedge-test"
	// PauseImage is the nodes' sandbox_image: busybox sleeping.
	PauseImage = "docker.io/nodeupgrade/pause:kubeedge-test"
)

// brokenEdgecore is the edgecore of the BrokenVersion package.
const brokenEdgecore = `#!/bin/sh
echo "edgecore: deliberately broken test build (kubeedgeworld ` + BrokenVersion + `), exiting 1" >&2
exit 1
`

// lateCrashEdgecore is the edgecore of the LateCrashVersion package.
const lateCrashEdgecore = `#!/bin/sh
echo "edgecore: test build (kubeedgeworld ` + LateCrashVersion + `) that fails after 20 s" >&2
sleep 20
echo "edgecore: failing now" >&2
exit 1
`

// imageSpec is one image to build: its file name and content.
type imageSpec struct {
	file  string
	image imagebuild.Image
}

// buildRunner builds the static runner binary the runner image holds.
func buildRunner(ctx context.Context, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/nodeupgrade-runner")
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/nodeupgrade-runner: %w\n%s", err, msg)
	}
	return nil
}

// imagesMu serialises buildImages: worlds started side by side in one test
// process write the same cached files.
var imagesMu sync.Mutex

// buildImages writes the world's image tarballs into bin/kubeedge-images/
// (cached by their source files' sizes and times, imagebuild.WriteCached) and returns their paths.
func buildImages(ctx context.Context, versions []string) ([]string, error) {
	imagesMu.Lock()
	defer imagesMu.Unlock()
	root := testenv.RepoRoot()
	dir := filepath.Join(root, "bin", "kubeedge-images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	runner := filepath.Join(dir, "nodeupgrade-runner")
	if err := buildRunner(ctx, runner); err != nil {
		return nil, err
	}
	broken := filepath.Join(dir, "edgecore-broken")
	if err := os.WriteFile(broken, []byte(brokenEdgecore), 0o755); err != nil {
		return nil, err
	}
	lateCrash := filepath.Join(dir, "edgecore-late-crash")
	if err := os.WriteFile(lateCrash, []byte(lateCrashEdgecore), 0o755); err != nil {
		return nil, err
	}
	bb, err := imagebuild.Busybox(nil)
	if err != nil {
		return nil, err
	}
	bbNsenter, err := imagebuild.Busybox(map[string]string{"/usr/bin/nsenter": "/bin/busybox"})
	if err != nil {
		return nil, err
	}
	pkg := func(version, keadm, edgecore string) imageSpec {
		entries := append([]imagebuild.Entry{
			{Path: "/usr/local/bin/keadm", Source: keadm, Mode: 0o755},
			{Path: "/usr/local/bin/edgecore", Source: edgecore, Mode: 0o755},
		}, bb...)
		return imageSpec{
			file:  "installation-package-" + version + ".tar",
			image: imagebuild.Image{Ref: InstallPackageRepo + ":" + version, Entries: entries, Cmd: []string{"/bin/sh"}},
		}
	}
	var specs []imageSpec
	for _, v := range versions {
		specs = append(specs, pkg(v, BinaryPath(v, "keadm"), BinaryPath(v, "edgecore")))
	}
	// The broken package carries a working keadm of the newest version built.
	specs = append(specs, pkg(BrokenVersion, BinaryPath(versions[len(versions)-1], "keadm"), broken),
		pkg(LateCrashVersion, BinaryPath(versions[len(versions)-1], "keadm"), lateCrash))
	specs = append(specs,
		imageSpec{
			file: "nodeupgrade-runner.tar",
			image: imagebuild.Image{Ref: RunnerImage, Entries: append([]imagebuild.Entry{
				{Path: "/usr/local/bin/nodeupgrade-runner", Source: runner, Mode: 0o755},
			}, bbNsenter...), Entrypoint: []string{"/usr/local/bin/nodeupgrade-runner"}},
		},
		imageSpec{
			file: "pause.tar",
			image: imagebuild.Image{Ref: PauseImage, Entries: bb,
				Entrypoint: []string{"/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"}},
		},
	)
	var paths []string
	for _, s := range specs {
		out := filepath.Join(dir, s.file)
		if err := imagebuild.WriteCached(out, s.image); err != nil {
			return nil, err
		}
		paths = append(paths, out)
	}
	return paths, nil
}

// BinaryPath is where hack/build-kubeedge.sh puts a KubeEdge binary.
func BinaryPath(version, name string) string {
	return filepath.Join(testenv.RepoRoot(), "bin", "kubeedge-"+version, name)
}
