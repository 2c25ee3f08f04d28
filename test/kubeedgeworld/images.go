package kubeedgeworld

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld/imagebuild"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// Images the world builds. The runner image and the installation packages
// are pushed to the world's registries (registry.go), from which the nodes
// pull them; the pause image (containerd's sandbox_image) is imported into
// every node before edgecore starts.
const (
	// InstallPackageRepo is the installation-package repository in the
	// world's registry with basic auth, a private mirror of KubeEdge's
	// docker.io/kubeedge/installation-package (keadm appends ":" + version).
	InstallPackageRepo = AuthRegistry + "/kubeedge/installation-package"
	// BrokenVersion is an installation package holding the keadm of the
	// newest version the world builds (DefaultTargetVersion by default) and
	// an edgecore that exits 1 at once: an upgrade to it must be rolled back.
	BrokenVersion = "v1.23.2"
	// LateCrashVersion is an installation package holding the keadm of the
	// newest version the world builds and an edgecore that runs for 20 s,
	// then exits 1: an upgrade that looks good at first and must still be
	// rolled back by the node itself, its pod long gone. (Not a KubeEdge
	// release.)
	LateCrashVersion = "v1.23.9"
	// RunnerImage holds the project's nodeupgrade-runner and busybox, for
	// every platform of RunnerPlatforms, in the open registry.
	RunnerImage = OpenRegistry + "/nodeupgrade/nodeupgrade-runner:kubeedge-test"
	// PauseImage is the nodes' sandbox_image: busybox sleeping.
	PauseImage = "docker.io/nodeupgrade/pause:kubeedge-test"
)

// RunnerPlatforms are the platforms of the runner and pause images: those
// of `make image` (test/projectimage).
var RunnerPlatforms = []imagebuild.Platform{imagebuild.LinuxAMD64, imagebuild.LinuxARM64, imagebuild.LinuxARMv7}

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

// worldImage is one image the world builds: an OCI layout tarball, pushed
// to a registry or imported into the nodes.
type worldImage struct {
	file     string
	index    imagebuild.Index
	imported bool
}

// GoBuild cross-compiles a pure-Go package of this repository, static,
// for a platform into out, with extra go build flags.
func GoBuild(ctx context.Context, pkg, out string, p imagebuild.Platform, flags ...string) error {
	args := append(append([]string{"build", "-trimpath"}, flags...), "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Architecture == "arm" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", pkg, p, err, msg)
	}
	return nil
}

// imagesMu serialises buildImages: worlds started side by side in one test
// process write the same cached files.
var imagesMu sync.Mutex

// platformDir names a platform in file names: linux-arm-v7.
func platformDir(p imagebuild.Platform) string { return strings.ReplaceAll(p.String(), "/", "-") }

// buildImages writes the world's images into bin/kubeedge-images/ (cached
// by their source files' sizes and times, imagebuild.WriteOCICached).
func buildImages(ctx context.Context, versions []string) ([]worldImage, error) {
	imagesMu.Lock()
	defer imagesMu.Unlock()
	root := testenv.RepoRoot()
	binDir := filepath.Join(root, "bin")
	dir := filepath.Join(binDir, "kubeedge-images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
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
	var runnerImages, pauseImages []imagebuild.Image
	for _, p := range RunnerPlatforms {
		runner := filepath.Join(dir, "nodeupgrade-runner-"+platformDir(p))
		if err := GoBuild(ctx, "./cmd/nodeupgrade-runner", runner, p); err != nil {
			return nil, err
		}
		bbBinary := imagebuild.BusyboxBinary(binDir, p)
		bb, err := imagebuild.BusyboxFrom(bbBinary, nil)
		if err != nil {
			return nil, err
		}
		bbNsenter, err := imagebuild.BusyboxFrom(bbBinary, map[string]string{"/usr/bin/nsenter": "/bin/busybox"})
		if err != nil {
			return nil, err
		}
		runnerImages = append(runnerImages, imagebuild.Image{Platform: p, Entries: append([]imagebuild.Entry{
			{Path: "/usr/local/bin/nodeupgrade-runner", Source: runner, Mode: 0o755},
		}, bbNsenter...), Entrypoint: []string{"/usr/local/bin/nodeupgrade-runner"}})
		pauseImages = append(pauseImages, imagebuild.Image{Platform: p, Entries: bb,
			Entrypoint: []string{"/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"}})
	}
	// An installation package for each platform its KubeEdge binaries
	// were built for, as KubeEdge's own are: the build machine's always,
	// linux/arm64 when hack/build-kubeedge.sh VERSION@arm64 built them.
	pkg := func(version, keadmVersion, edgecore string) (worldImage, error) {
		var images []imagebuild.Image
		for _, p := range []imagebuild.Platform{imagebuild.LinuxAMD64, imagebuild.LinuxARM64} {
			keadm, ec := BinaryPathArch(keadmVersion, p.Architecture, "keadm"), edgecore
			if ec == "" {
				ec = BinaryPathArch(version, p.Architecture, "edgecore")
			}
			if p != imagebuild.LinuxAMD64 && (!exists(keadm) || !exists(ec)) {
				continue
			}
			bb, err := imagebuild.BusyboxFrom(imagebuild.BusyboxBinary(binDir, p), nil)
			if err != nil {
				return worldImage{}, err
			}
			images = append(images, imagebuild.Image{Platform: p, Entries: append([]imagebuild.Entry{
				{Path: "/usr/local/bin/keadm", Source: keadm, Mode: 0o755},
				{Path: "/usr/local/bin/edgecore", Source: ec, Mode: 0o755},
			}, bb...), Cmd: []string{"/bin/sh"}})
		}
		return worldImage{file: "installation-package-" + version + ".oci.tar",
			index: imagebuild.Index{Ref: InstallPackageRepo + ":" + version, Images: images}}, nil
	}
	var out []worldImage
	for _, v := range versions {
		img, err := pkg(v, v, "")
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	// The broken packages carry a working keadm of the newest version built.
	img, err := pkg(BrokenVersion, versions[len(versions)-1], broken)
	if err != nil {
		return nil, err
	}
	late, err := pkg(LateCrashVersion, versions[len(versions)-1], lateCrash)
	if err != nil {
		return nil, err
	}
	out = append(out, img, late,
		worldImage{file: "nodeupgrade-runner.oci.tar", index: imagebuild.Index{Ref: RunnerImage, Images: runnerImages}},
		worldImage{file: "pause.oci.tar", index: imagebuild.Index{Ref: PauseImage, Images: pauseImages}, imported: true},
	)
	for i := range out {
		out[i].file = filepath.Join(dir, out[i].file)
		if err := imagebuild.WriteOCICached(out[i].file, out[i].index); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// BinaryPath is where hack/build-kubeedge.sh puts a KubeEdge binary.
func BinaryPath(version, name string) string {
	return filepath.Join(testenv.RepoRoot(), "bin", "kubeedge-"+version, name)
}
