// Package projectimage builds the project's own image, the one
// config/manager deploys, without docker: the same two static binaries and
// the same user and entrypoint as the Dockerfile, plus busybox for the
// runner's nsenter, for every platform of Platforms. `make image` writes it
// as a multi-platform OCI image layout tarball (an index naming one image
// per platform) that `ctr images import` loads; test/kubeedge's
// TestInCluster (make test-incluster) runs it on a real kubelet.
//
// The Dockerfile stays for users with docker; projectimage_test.go checks
// that the two describe the same image, platforms included.
package projectimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/nodeupgrade/nodeupgrade/pkg/manager"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld"
	"github.com/nodeupgrade/nodeupgrade/test/kubeedgeworld/imagebuild"
	"github.com/nodeupgrade/nodeupgrade/test/testenv"
)

// Repository is the image config/manager names.
const Repository = manager.ImageRepository

// The image's paths, user and entrypoint: the Dockerfile's.
const (
	ControllerPath = "/nodeupgrade-controller"
	// User is the controller's user; the upgrade pods run the runner as
	// root through their own securityContext.
	User = "65532:65532"
	// NsenterPath is where the runner finds nsenter (on PATH).
	NsenterPath = "/usr/bin/nsenter"
)

// RunnerPath is where the upgrade pods run the runner from.
const RunnerPath = upgradepod.RunnerCommand

// Platforms are the image's platforms: the binaries are pure Go, and
// Debian ships busybox-static for each. Most edge nodes are ARM.
var Platforms = kubeedgeworld.RunnerPlatforms

// Ref is the image reference config/manager deploys: Repository with the
// tag its kustomization sets.
func Ref() (string, error) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "manager", "kustomization.yaml"))
	if err != nil {
		return "", err
	}
	var k struct {
		Images []struct {
			Name   string `json:"name"`
			NewTag string `json:"newTag"`
		} `json:"images"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return "", fmt.Errorf("config/manager/kustomization.yaml: %w", err)
	}
	for _, img := range k.Images {
		if img.Name == Repository && img.NewTag != "" {
			return Repository + ":" + img.NewTag, nil
		}
	}
	return "", fmt.Errorf("config/manager/kustomization.yaml sets no tag for %s", Repository)
}

// Binaries are one platform's controller and runner.
type Binaries struct{ Controller, Runner string }

// Spec is the image: for each platform, its binaries (bins) and its
// busybox-static (from binDir, see imagebuild.BusyboxBinary).
func Spec(ref, binDir string, bins func(imagebuild.Platform) Binaries) (imagebuild.Index, error) {
	idx := imagebuild.Index{Ref: ref}
	for _, p := range Platforms {
		bb, err := imagebuild.BusyboxFrom(imagebuild.BusyboxBinary(binDir, p), map[string]string{NsenterPath: "/bin/busybox"})
		if err != nil {
			return imagebuild.Index{}, err
		}
		b := bins(p)
		idx.Images = append(idx.Images, imagebuild.Image{
			Platform: p,
			Entries: append([]imagebuild.Entry{
				{Path: ControllerPath, Source: b.Controller, Mode: 0o755},
				{Path: RunnerPath, Source: b.Runner, Mode: 0o755},
			}, bb...),
			Entrypoint: []string{ControllerPath},
			User:       User,
		})
	}
	return idx, nil
}

// LDFlags are the linker flags of the image ref's binaries: trimmed, as
// the Dockerfile's, and with the tag linked into the controller, so its
// runner image defaults to this very image (pkg/manager.Version). The
// runner links no such variable, and the linker ignores it there.
func LDFlags(ref string) string {
	return "-s -w -X " + manager.VersionVariable + "=" + ref[strings.LastIndexByte(ref, ':')+1:]
}

// Build compiles both binaries for every platform as the Dockerfile does
// (static, trimmed) into dir and writes the image there, unless the
// tarball is current. It returns the tarball's path and the image's
// reference.
func Build(ctx context.Context, dir string) (string, string, error) {
	ref, err := Ref()
	if err != nil {
		return "", "", err
	}
	binDir := filepath.Join(testenv.RepoRoot(), "bin")
	bins := func(p imagebuild.Platform) Binaries {
		d := filepath.Join(dir, strings.ReplaceAll(p.String(), "/", "-"))
		return Binaries{Controller: filepath.Join(d, "nodeupgrade-controller"), Runner: filepath.Join(d, "nodeupgrade-runner")}
	}
	ldflags := LDFlags(ref)
	for _, p := range Platforms {
		b := bins(p)
		for out, pkg := range map[string]string{b.Controller: "./cmd/nodeupgrade-controller", b.Runner: "./cmd/nodeupgrade-runner"} {
			if err := kubeedgeworld.GoBuild(ctx, pkg, out, p, "-ldflags="+ldflags); err != nil {
				return "", "", err
			}
		}
	}
	idx, err := Spec(ref, binDir, bins)
	if err != nil {
		return "", "", err
	}
	out := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".oci.tar")
	if err := imagebuild.WriteOCICached(out, idx); err != nil {
		return "", "", err
	}
	return out, ref, nil
}
