package runner

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	. "github.com/onsi/gomega"
)

func TestParseReport(t *testing.T) {
	tests := []struct {
		name    string
		msg     string
		want    Report
		wantErr string
	}{
		{"full", `{"step":"rollback","result":"failed","reason":"x","fromVersion":"v1.20.0","toVersion":"v1.21.0","rolledBack":true}`,
			Report{Step: StepRollback, Result: ResultFailed, Reason: "x", FromVersion: "v1.20.0", ToVersion: "v1.21.0", RolledBack: true}, ""},
		{"surrounding whitespace", " \n{\"step\":\"check\",\"result\":\"succeeded\"}\n", Report{Step: StepCheck, Result: ResultSucceeded}, ""},
		{"unknown fields ignored", `{"step":"backup","result":"succeeded","extra":1}`, Report{Step: StepBackup, Result: ResultSucceeded}, ""},
		{"empty", "", Report{}, "empty termination message"},
		{"plain text", "Error: keadm not found", Report{}, "not a runner report"},
		{"truncated json", `{"step":"check","res`, Report{}, "not a runner report"},
		{"unknown step", `{"step":"reboot","result":"failed"}`, Report{}, "unknown step"},
		{"missing step", `{"result":"failed"}`, Report{}, "unknown step"},
		{"unknown result", `{"step":"check","result":"maybe"}`, Report{}, "unknown result"},
		{"skipped is no result", `{"step":"upgrade","result":"skipped"}`, Report{}, "unknown result"},
		{"wrong type", `{"step":"check","result":"failed","rolledBack":"yes"}`, Report{}, "not a runner report"},
		{"array", `[]`, Report{}, "not a runner report"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ParseReport(tt.msg)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
		})
	}
}

func TestReportMarshalFits(t *testing.T) {
	head := "upgrade to v1.21.0 failed: keadm upgrade edge: exit status 1"
	tests := []struct {
		name     string
		reason   string
		wantCut  bool
		wantTail string
	}{
		{"small", head, false, head},
		{"ascii", head + "\n" + strings.Repeat("line of output\n", 1000) + "THE END", true, "THE END"},
		{"escapes", head + strings.Repeat("\x01\"\\<>&\t", 2000) + "THE END", true, "THE END"},
		{"multibyte", head + strings.Repeat("ü€😀", 3000) + "THE END", true, "THE END"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			r := Report{Step: StepRollback, Result: ResultFailed, Reason: tt.reason, FromVersion: "v1.20.0", ToVersion: "v1.21.0", RolledBack: true}
			data := r.Marshal()
			g.Expect(len(data)).To(BeNumerically("<=", MaxTerminationMessageBytes))
			g.Expect(utf8.Valid(data)).To(BeTrue())
			got, err := ParseReport(string(data))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.RolledBack).To(BeTrue())
			g.Expect(got.Reason).To(HavePrefix(head))
			g.Expect(got.Reason).To(HaveSuffix(tt.wantTail))
			g.Expect(strings.Contains(got.Reason, "[... truncated ...]")).To(Equal(tt.wantCut))
			if tt.wantCut {
				// The budget is used, not wasted.
				g.Expect(len(data)).To(BeNumerically(">", MaxTerminationMessageBytes-64))
			}
		})
	}
}

func TestArgsRoundTrip(t *testing.T) {
	for _, step := range []Step{StepCheck, StepBackup, StepUpgrade} {
		t.Run(string(step), func(t *testing.T) {
			g := NewWithT(t)
			o := DefaultOptions()
			o.JobUID = "0b6e9f3c-7d2a-4c51-9e8b-1f2a3b4c5d6e"
			o.Keadm = KeadmPath(o.JobUID)
			o.ToVersion = "v1.21.0"
			o.FromVersion = "v1.30.7-kubeedge-v1.20.0"
			o.Image = "myreg:5000/kubeedge/installation-package:v1.21.0"
			o.JobName = "fleet-1.21"
			o.Budget = 7*time.Minute + 3*time.Second
			o.IssuedAt = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			o.UseNsenter = false
			o.HandoffDir = "/handoff"
			if step == StepCheck {
				o.CheckItems = []string{"cpu", "disk"}
				o.CPUThreshold, o.MemThreshold, o.DiskThreshold = 70, 0, 100
				o.CPUSampleInterval = 250 * time.Millisecond
			}
			if step == StepBackup {
				o.EdgecoreSettle = 3 * time.Second
				o.KeepJobRecords = 7
			}
			gotStep, got, err := ParseArgs(o.Args(step), os.Stderr)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(gotStep).To(Equal(step))
			g.Expect(got).To(Equal(o))
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	valid := func() Options {
		o := DefaultOptions()
		o.JobUID = "0b6e9f3c-7d2a-4c51-9e8b-1f2a3b4c5d6e"
		o.Keadm = KeadmPath(o.JobUID)
		o.ToVersion = "v1.21.0"
		o.Image = "docker.io/kubeedge/installation-package:v1.21.0"
		o.Budget = time.Hour
		o.HandoffDir = "/handoff"
		o.CheckItems = []string{"cpu"}
		return o
	}
	tests := []struct {
		name    string
		step    Step
		modify  func(o *Options)
		wantErr string
	}{
		{"valid check", StepCheck, func(*Options) {}, ""},
		{"valid upgrade", StepUpgrade, func(*Options) {}, ""},
		{"valid backup", StepBackup, func(*Options) {}, ""},
		{"image optional outside backup", StepUpgrade, func(o *Options) { o.Image = "" }, ""},
		{"backup needs image", StepBackup, func(o *Options) { o.Image = "" }, "not the normalised image"},
		{"bad version", StepBackup, func(o *Options) { o.ToVersion = "latest" }, "--to-version"},
		{"image with shell", StepBackup, func(o *Options) { o.Image = "docker.io/x/$(reboot):v1.21.0" }, "forbidden character"},
		{"short image", StepBackup, func(o *Options) { o.Image = "kubeedge/installation-package:v1.21.0" }, "not the normalised image"},
		{"bad from version", StepUpgrade, func(o *Options) { o.FromVersion = "v1 ; reboot" }, "--from-version"},
		{"relative host root", StepCheck, func(o *Options) { o.HostRoot = "host" }, "--host-root"},
		{"unclean keadm", StepBackup, func(o *Options) { o.Keadm = "/var/lib/../../bin/sh" }, "--keadm"},
		{"unknown item", StepCheck, func(o *Options) { o.CheckItems = []string{"gpu"} }, `unknown check item "gpu"`},
		{"empty item", StepCheck, func(o *Options) { o.CheckItems = []string{"cpu", ""} }, `unknown check item ""`},
		{"threshold over 100", StepCheck, func(o *Options) { o.MemThreshold = 101 }, "--mem-threshold 101"},
		{"negative threshold", StepCheck, func(o *Options) { o.DiskThreshold = -1 }, "--disk-threshold -1"},
		{"long interval", StepCheck, func(o *Options) { o.CPUSampleInterval = time.Hour }, "--cpu-sample-interval"},
		{"check without a handoff directory", StepCheck, func(o *Options) { o.HandoffDir = "" }, "--handoff-dir"},
		{"relative handoff directory", StepBackup, func(o *Options) { o.HandoffDir = "handoff" }, "--handoff-dir"},
		{"no budget", StepCheck, func(o *Options) { o.Budget = 0 }, "--budget"},
		{"budget beyond two days", StepBackup, func(o *Options) { o.Budget = 49 * time.Hour }, "--budget"},
		{"job name with a newline", StepBackup, func(o *Options) { o.JobName = "a\nExecStartPre=/bin/sh" }, "--job-name"},
		{"job name with a percent", StepBackup, func(o *Options) { o.JobName = "a%n" }, "--job-name"},
		{"no job records kept", StepBackup, func(o *Options) { o.KeepJobRecords = 0 }, "--keep-job-records"},
		{"empty nsenter", StepUpgrade, func(o *Options) { o.Nsenter = "" }, "--nsenter"},
		{"missing job uid", StepCheck, func(o *Options) { o.JobUID = "" }, "--job-uid"},
		{"job uid escaping its directory", StepBackup, func(o *Options) { o.JobUID = "../../etc" }, "--job-uid"},
		{"upper-case job uid", StepBackup, func(o *Options) { o.JobUID = "ABC" }, "--job-uid"},
		{"negative settle", StepBackup, func(o *Options) { o.EdgecoreSettle = -time.Second }, "--edgecore-settle"},
		{"long settle", StepBackup, func(o *Options) { o.EdgecoreSettle = time.Hour }, "--edgecore-settle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o := valid()
			tt.modify(&o)
			step, _, err := ParseArgs(o.Args(tt.step), os.Stderr)
			g.Expect(step).To(Equal(tt.step))
			if tt.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
}

func TestHostArgv(t *testing.T) {
	tests := []struct {
		name  string
		nsent bool
		want  []string
	}{
		{"nsenter uses the host path in the host's namespaces", true,
			[]string{"nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--", KeadmPath("0b6e9f3c"), "upgrade", "edge", "--image", "a;b"}},
		{"direct uses the path under the host root", false,
			[]string{"/host" + KeadmPath("0b6e9f3c"), "upgrade", "edge", "--image", "a;b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			o.Keadm = KeadmPath("0b6e9f3c")
			o.UseNsenter = tt.nsent
			NewWithT(t).Expect(o.hostArgv(o.Keadm, "upgrade", "edge", "--image", "a;b")).To(Equal(tt.want))
		})
	}
}

func TestCPUUsage(t *testing.T) {
	tests := []struct {
		name string
		a, b cpuSample
		want float64
	}{
		{"interval", cpuSample{idle: 100, total: 200}, cpuSample{idle: 150, total: 400}, 75},
		{"all idle", cpuSample{idle: 100, total: 200}, cpuSample{idle: 200, total: 300}, 0},
		{"no ticks falls back to since boot", cpuSample{idle: 100, total: 400}, cpuSample{idle: 100, total: 400}, 75},
		{"counters went back falls back", cpuSample{idle: 500, total: 1000}, cpuSample{idle: 100, total: 400}, 75},
		{"empty", cpuSample{}, cpuSample{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(cpuUsage(tt.a, tt.b)).To(BeNumerically("~", tt.want, 0.001))
		})
	}
}

func TestReadCPUSample(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    cpuSample
		wantErr string
	}{
		{"full line", "cpu  10 1 5 80 4 0 0 0 3 0\ncpu0 1 1 1 1 1 1 1 1 1 1\n", cpuSample{idle: 84, total: 100}, ""},
		{"old kernel, four fields", "cpu 10 0 10 80\n", cpuSample{idle: 80, total: 100}, ""},
		{"not cpu", "intr 1 2 3 4 5\n", cpuSample{}, "not the aggregate cpu line"},
		{"garbage number", "cpu 10 x 10 80\n", cpuSample{}, "cpu field 2"},
		{"empty", "", cpuSample{}, "not the aggregate cpu line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			path := filepath.Join(t.TempDir(), "stat")
			g.Expect(os.WriteFile(path, []byte(tt.content), 0o644)).To(Succeed())
			got, err := readCPUSample(path)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
		})
	}
}

func TestReadMemUsage(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    float64
		wantErr string
	}{
		{"available", "MemTotal: 2000 kB\nMemFree: 100 kB\nMemAvailable: 500 kB\n", 75, ""},
		{"fallback without MemAvailable", "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 100 kB\nCached: 300 kB\n", 50, ""},
		{"available above total", "MemTotal: 1000 kB\nMemAvailable: 5000 kB\n", 0, ""},
		{"no total", "MemFree: 100 kB\n", 0, "no MemTotal"},
		{"zero total", "MemTotal: 0 kB\n", 0, "no MemTotal"},
		{"garbage lines ignored", "junk\nMemTotal: x kB\nMemTotal: 100 kB\nMemAvailable: 10 kB\n:\n", 90, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			root := t.TempDir()
			g.Expect(os.MkdirAll(filepath.Join(root, "proc"), 0o755)).To(Succeed())
			g.Expect(os.WriteFile(filepath.Join(root, "proc", "meminfo"), []byte(tt.content), 0o644)).To(Succeed())
			got, err := readMemUsage(root)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(BeNumerically("~", tt.want, 0.001))
		})
	}
}

func TestTailWriter(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"few lines", []string{"a\nb\n"}, "a\nb"},
		{"split writes", []string{"hel", "lo\nwor", "ld"}, "hello\nworld"},
		{"keeps last 20", []string{strings.Repeat("x\n", 30) + "last\n"}, strings.Repeat("x\n", 19) + "last"},
		{"long line capped", []string{strings.Repeat("y", 2000) + "\n"}, strings.Repeat("y", maxLineBytes)},
		{"crlf and invalid utf8", []string{"a\r\n\xff\n"}, "a\n\\xff"},
		{"terminal escapes made inert", []string{"\x1b[2Jcleared\x07\n"}, "\\x1b[2Jcleared\\x07"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tw := &tailWriter{}
			for _, w := range tt.writes {
				_, _ = tw.Write([]byte(w))
			}
			NewWithT(t).Expect(tw.String()).To(Equal(tt.want))
		})
	}
}

// The exit codes are a contract with the controller: pin them.
func TestExitCodes(t *testing.T) {
	g := NewWithT(t)
	g.Expect([]int{ExitOK, ExitCheckFailed, ExitBackupFailed, ExitRolledBack, ExitNeedsAttention, ExitDeadline, ExitBadArgs,
		ExitUnsupported, ExitUpgradeFailedUntouched, ExitNotRun, ExitDetached}).
		To(Equal([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}))
	data, err := json.Marshal(Report{Step: StepUpgrade, Result: ResultSucceeded})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data)).To(Equal(`{"step":"upgrade","result":"succeeded"}`))
}

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
