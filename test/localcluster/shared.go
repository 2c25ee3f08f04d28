package localcluster

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Shared is one world for every test of a test binary: the first test
// that asks starts it, and Main stops it after the last. Starting a world
// costs seconds of a 2-core machine; tests that leave it as they found it
// (fleets of their own names, their controllers stopped) need only one.
type Shared struct {
	// Options are the world's; read once, at the first Get.
	Options Options

	once sync.Once
	cl   *Cluster
	err  error
}

// Get returns the world, starting it on first use (within 5 minutes). In
// -short mode it skips the test; a world that did not start fails it.
func (s *Shared) Get(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	s.once.Do(func() {
		// Bounded by its own timeout: the first test's context ends with it.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		s.cl, s.err = Start(ctx, s.Options)
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.cl
}

// Main is TestMain's body: it runs the tests, stops the world if one was
// started, and exits (1 when Stop fails).
func (s *Shared) Main(m *testing.M) {
	code := m.Run()
	if s.cl != nil {
		if err := s.cl.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "localcluster: stop the shared world:", err)
			code = max(code, 1)
		}
	}
	os.Exit(code)
}
