// Package projectimage builds the project's own image, the one
// config/manager deploys, without docker: the same two static binaries and
// the same user and entrypoint as the Dockerfile, plus busybox for the
// runner's nsenter. `make image` writes it as a docker-archive tarball that
// `ctr images import` loads; test/kubeedge's TestInCluster (make
// test-incluster) runs it on a real kubelet.
//
// The Dockerfile stays for users with docker; projectimage_test.go checks
// that the two describe the same image.
package projectimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/nodeupgrade/nodeupgrade/pkg/manager"
	"github.com/nodeupgrade/nodeupgrade/pkg/upgradepod"
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

// Spec is the image holding the given controller and runner binaries.
func Spec(ref, controller, runner string) (imagebuild.Image, error) {
	bb, err := imagebuild.Busybox(map[string]string{NsenterPath: "/bin/busybox"})
	if err != nil {
		return imagebuild.Image{}, err
	}
	return imagebuild.Image{
		Ref: ref,
		Entries: append([]imagebuild.Entry{
			{Path: ControllerPath, Source: controller, Mode: 0o755},
			{Path: RunnerPath, Source: runner, Mode: 0o755},
		}, bb...),
		Entrypoint: []string{ControllerPath},
		User:       User,
	}, nil
}

// LDFlags are the linker flags of the image ref's binaries: trimmed, as
// the Dockerfile's, and with the tag linked into the controller, so its
// runner image defaults to this very image (pkg/manager.Version). The
// runner links no such variable, and the linker ignores it there.
func LDFlags(ref string) string {
	return "-s -w -X " + manager.VersionVariable + "=" + ref[strings.LastIndexByte(ref, ':')+1:]
}

// Build compiles both binaries as the Dockerfile does (static, trimmed)
// into dir and writes the image there, unless the tarball is current. It
// returns the tarball's path and the image's reference.
func Build(ctx context.Context, dir string) (string, string, error) {
	ref, err := Ref()
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	controller, runner := filepath.Join(dir, "nodeupgrade-controller"), filepath.Join(dir, "nodeupgrade-runner")
	ldflags := LDFlags(ref)
	for out, pkg := range map[string]string{controller: "./cmd/nodeupgrade-controller", runner: "./cmd/nodeupgrade-runner"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags="+ldflags, "-o", out, pkg)
		cmd.Dir = testenv.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
		}
	}
	img, err := Spec(ref, controller, runner)
	if err != nil {
		return "", "", err
	}
	out := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
	if err := imagebuild.WriteCached(out, img); err != nil {
		return "", "", err
	}
	return out, ref, nil
}
