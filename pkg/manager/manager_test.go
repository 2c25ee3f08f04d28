package manager

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"

	"github.com/nodeupgrade/nodeupgrade/pkg/controller"
)

// parse is the controller's command line through BindFlags.
func parse(t *testing.T, args ...string) *Config {
	t.Helper()
	fs := flag.NewFlagSet("nodeupgrade-controller", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("flags %q: %v", args, err)
	}
	return c
}

// withVersion runs the test as a build linked with version v.
func withVersion(t *testing.T, v string) {
	old := Version
	Version = v
	t.Cleanup(func() { Version = old })
}

// The reconciler's flags default to controller.DefaultOptions, and the
// runner image to the controller's own image when the build has a version.
func TestFlagDefaults(t *testing.T) {
	g := NewWithT(t)
	withVersion(t, "v1.2.3")
	want := controller.DefaultOptions()
	want.RunnerImage = "ghcr.io/nodeupgrade/nodeupgrade:v1.2.3"
	g.Expect(parse(t).Controller).To(Equal(want))

	withVersion(t, "")
	g.Expect(parse(t).Controller.RunnerImage).To(BeEmpty(), "no version, no guess at an image")
}

// unreachable is a rest.Config for New's tests: nothing may connect before
// the manager starts, and these tests never start it.
var unreachable = &rest.Config{Host: "https://127.0.0.1:1"}

// Issue 29 item 2: the binary refuses to start with permissive or broken
// flags, naming each flag, before it connects anywhere.
func TestNewRefusesUnsafeFlags(t *testing.T) {
	withVersion(t, "v0.1.0")
	allow := "--allowed-image-repositories=docker.io/kubeedge/installation-package"
	for _, tc := range []struct {
		name    string
		version string
		args    []string
		want    []string
	}{
		{"no allow-list", "v0.1.0", nil, []string{"--allowed-image-repositories is empty", "--allow-any-image-repository"}},
		{"an allow-list and allow-any", "v0.1.0", []string{allow, "--allow-any-image-repository"}, []string{"both set"}},
		{"an allow-list entry with a tag", "v0.1.0", []string{"--allowed-image-repositories=kubeedge/x:v1"}, []string{"--allowed-image-repositories:"}},
		{"no version and no --runner-image", "", []string{allow}, []string{"--runner-image is empty"}},
		{"a runner image that does not parse", "v0.1.0", []string{allow, "--runner-image=Registry/X;reboot"}, []string{"--runner-image:"}},
		{"zero pod workers (errgroup.SetLimit(0) blocks forever)", "v0.1.0", []string{allow, "--pod-workers=0"}, []string{"--pod-workers must be at least 1, got 0"}},
		{"zero reconcilers", "v0.1.0", []string{allow, "--max-concurrent-reconciles=0"}, []string{"--max-concurrent-reconciles"}},
		{"a threshold of 0 and one of 101", "v0.1.0", []string{allow, "--check-cpu-threshold=0", "--check-disk-threshold=101"}, []string{"--check-cpu-threshold must be within 1..100, got 0", "--check-disk-threshold must be within 1..100, got 101"}},
		{"no namespace", "v0.1.0", []string{allow, "--namespace="}, []string{"--namespace"}},
		{"a bad edge label", "v0.1.0", []string{allow, "--edge-node-label=not a label"}, []string{"--edge-node-label"}},
		{"a negative write interval", "v0.1.0", []string{allow, "--status-write-interval=-1s"}, []string{"--status-write-interval"}},
		{"no orphan sweep interval", "v0.1.0", []string{allow, "--orphan-sweep-interval=0"}, []string{"--orphan-sweep-interval"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			withVersion(t, tc.version)
			mgr, err := New(unreachable, parse(t, tc.args...))
			g.Expect(mgr).To(BeNil())
			g.Expect(err).To(HaveOccurred())
			for _, w := range tc.want {
				g.Expect(err.Error()).To(ContainSubstring(w))
			}
		})
	}
}

// What the shipped Deployment passes, and allow-any asked for on purpose,
// pass the checks New makes before it builds anything. (New itself needs
// an API server from there on: test/integration starts it for real.)
func TestSafeFlagsPass(t *testing.T) {
	withVersion(t, "v0.1.0")
	for _, args := range [][]string{
		{"--allowed-image-repositories=docker.io/kubeedge/installation-package", "--leader-elect"},
		{"--allow-any-image-repository", "--runner-image=registry.example.com/nodeupgrade@sha256:" + strings.Repeat("a", 64)},
	} {
		_, err := parse(t, args...).Controller.Validate()
		NewWithT(t).Expect(err).NotTo(HaveOccurred(), "%q", args)
	}
}

func TestWarnPermissive(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     func(*controller.Options)
		warnings []string
	}{
		{"the Deployment's flags", func(*controller.Options) {}, nil},
		{"allow any", func(o *controller.Options) { o.AllowAnyImageRepository = true }, []string{"--allow-any-image-repository is set"}},
		{"latest", func(o *controller.Options) { o.RunnerImage = "ghcr.io/nodeupgrade/nodeupgrade:latest" }, []string{"not pinned"}},
		{"no tag", func(o *controller.Options) { o.RunnerImage = "registry:5000/nodeupgrade" }, []string{"not pinned"}},
		{"a digest", func(o *controller.Options) {
			o.RunnerImage = "registry:5000/nodeupgrade@sha256:" + strings.Repeat("a", 64)
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			opts := controller.DefaultOptions()
			opts.RunnerImage = "ghcr.io/nodeupgrade/nodeupgrade:v0.1.0"
			tc.opts(&opts)
			var lines []string
			warnPermissive(funcr.New(func(_, args string) { lines = append(lines, args) }, funcr.Options{}), opts)
			g.Expect(lines).To(HaveLen(len(tc.warnings)))
			for i, w := range tc.warnings {
				g.Expect(lines[i]).To(ContainSubstring(w))
			}
		})
	}
}
