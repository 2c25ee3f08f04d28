package runner

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
)

// A zombie keadm (killed, not yet reaped) does not count as running: its
// lock is stale.
func TestProcessesSkipsZombies(t *testing.T) {
	root := t.TempDir()
	for pid, state := range map[string]string{"10": "S", "11": "Z", "12": "X"} {
		dir := filepath.Join(root, "proc", pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "comm"), []byte("keadm\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		stat := pid + " (keadm) " + state + " 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0\n"
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := host{root: root}.keadmRunning()
	if len(got) != 1 || got[0].PID != 10 {
		t.Fatalf("keadmRunning() = %+v, want only pid 10", got)
	}
}

// keadm's stale lock is removed only when no keadm can own it, even if one
// starts in the instant between the process scan and the removal.
func TestClearStaleKeadmLockHasNoWindow(t *testing.T) {
	setup := func(t *testing.T) (host, string) {
		root := t.TempDir()
		lock := filepath.Join(root, KeadmLockPath)
		if err := os.MkdirAll(filepath.Dir(lock), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(lock, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
			t.Fatal(err)
		}
		return host{root: root}, lock
	}
	// occupy is keadm's own lock taking (idempotency.Occupy): refuse while
	// the file exists, otherwise create it.
	occupy := func(lock string) bool {
		if _, err := os.Stat(lock); err == nil {
			return false
		}
		f, err := os.Create(lock)
		if err != nil {
			return false
		}
		_ = f.Close()
		return true
	}
	t.Run("a keadm started in the window refuses and owns nothing", func(t *testing.T) {
		g := NewWithT(t)
		h, lock := setup(t)
		owned := false
		beforeLockRemoval = func() { owned = occupy(lock) }
		defer func() { beforeLockRemoval = nil }()
		did, err := h.clearStaleKeadmLock()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(did).To(ContainSubstring("removed keadm's stale lock"))
		g.Expect(owned).To(BeFalse(), "the stale file was there: keadm refused")
	})
	t.Run("a lock replaced in the window is left alone", func(t *testing.T) {
		g := NewWithT(t)
		h, lock := setup(t)
		owned := false
		beforeLockRemoval = func() {
			// Someone else removes the stale file; a keadm then takes the
			// lock for real.
			_ = os.Remove(lock)
			owned = occupy(lock)
		}
		defer func() { beforeLockRemoval = nil }()
		_, err := h.clearStaleKeadmLock()
		g.Expect(owned).To(BeTrue())
		g.Expect(err).To(MatchError(ContainSubstring("was replaced while this runner looked at it")))
		g.Expect(lock).To(BeAnExistingFile(), "the live keadm keeps its lock")
	})
	t.Run("a running keadm keeps its lock", func(t *testing.T) {
		g := NewWithT(t)
		h, lock := setup(t)
		dir := filepath.Join(h.root, "proc", "42")
		g.Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		g.Expect(os.WriteFile(filepath.Join(dir, "comm"), []byte("keadm\n"), 0o644)).To(Succeed())
		g.Expect(os.WriteFile(filepath.Join(dir, "stat"), []byte("42 (keadm) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0\n"), 0o644)).To(Succeed())
		_, err := h.clearStaleKeadmLock()
		g.Expect(err).To(MatchError(ContainSubstring("keadm is already running on this node (pid 42)")))
		g.Expect(lock).To(BeAnExistingFile())
	})
}
