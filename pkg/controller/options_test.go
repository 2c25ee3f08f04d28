package controller

import (
	"context"
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func validOptions() Options {
	o := DefaultOptions()
	o.RunnerImage = "ghcr.io/nodeupgrade/nodeupgrade:v0.1.0"
	o.AllowedImageRepositories = []string{"kubeedge/"}
	return o
}

func TestValidate(t *testing.T) {
	g := NewWithT(t)
	got, err := validOptions().Validate()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.AllowedImageRepositories).To(Equal([]string{"docker.io/kubeedge/"}), "normalised as job images are")

	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"zero value", func(o *Options) { *o = Options{} }, "--pod-workers must be at least 1, got 0"},
		{"pod workers", func(o *Options) { o.PodWorkers = -1 }, "--pod-workers must be at least 1, got -1"},
		{"reconcilers", func(o *Options) { o.MaxConcurrentReconciles = 0 }, "--max-concurrent-reconciles must be at least 1, got 0"},
		{"memory threshold", func(o *Options) { o.Thresholds.Mem = 0 }, "--check-mem-threshold must be within 1..100, got 0"},
		{"namespace", func(o *Options) { o.Namespace = "Not_A_Namespace" }, `--namespace "Not_A_Namespace"`},
		{"edge label", func(o *Options) { o.EdgeNodeLabel = "" }, `--edge-node-label ""`},
		{"runner image", func(o *Options) { o.RunnerImage = "" }, "--runner-image is empty"},
		{"runner image grammar", func(o *Options) { o.RunnerImage = "x y" }, "--runner-image: "},
		{"no allow-list", func(o *Options) { o.AllowedImageRepositories = nil }, "--allow-any-image-repository to let every job name any image on purpose"},
		{"both", func(o *Options) { o.AllowAnyImageRepository = true }, "pass one"},
		{"allow-list entry", func(o *Options) { o.AllowedImageRepositories = []string{"kubeedge/x@sha256:1"} }, "--allowed-image-repositories: "},
		{"write interval", func(o *Options) { o.StatusWriteInterval = -1 }, "--status-write-interval must not be negative"},
		{"sweep interval", func(o *Options) { o.OrphanSweepInterval = 0 }, "--orphan-sweep-interval must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			o := validOptions()
			tc.change(&o)
			_, err := o.Validate()
			g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}

	o := validOptions()
	o.AllowedImageRepositories, o.AllowAnyImageRepository = nil, true
	_, err = o.Validate()
	g.Expect(err).NotTo(HaveOccurred(), "allow-any, on purpose")
}

// A Reconciler cannot be built wrong: NewReconciler checks its options
// (PodWorkers 0 would block the first pod create forever in
// errgroup.SetLimit(0)), and a zero Reconciler refuses to work rather than
// panic or hang.
func TestReconcilerCannotBeBuiltWrong(t *testing.T) {
	g := NewWithT(t)
	c := fake.NewClientBuilder().WithScheme(testScheme).Build()
	zeroWorkers := validOptions()
	zeroWorkers.PodWorkers = 0
	_, err := NewReconciler(Deps{Client: c, APIReader: c}, zeroWorkers)
	g.Expect(err).To(MatchError(ContainSubstring("--pod-workers")))
	_, err = NewReconciler(Deps{Client: c}, validOptions())
	g.Expect(err).To(MatchError(ContainSubstring("APIReader")))

	r, err := NewReconciler(Deps{Client: c, APIReader: c}, validOptions())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.clock).NotTo(BeNil(), "the real clock by default")
	_, err = r.Reconcile(context.Background(), ctrl.Request{})
	g.Expect(err).NotTo(HaveOccurred(), "no such job: nothing to do")

	var zero Reconciler
	_, err = zero.Reconcile(context.Background(), ctrl.Request{})
	g.Expect(err).To(MatchError(ContainSubstring("without NewReconciler")))
	g.Expect(errors.Is(err, reconcile.TerminalError(nil))).To(BeTrue(), "retrying cannot help")
	g.Expect(zero.SetupWithManager(nil)).To(MatchError(ContainSubstring("without NewReconciler")))
}
