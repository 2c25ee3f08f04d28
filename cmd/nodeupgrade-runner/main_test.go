package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// runnerBin is the nodeupgrade-runner binary built once by TestMain: the
// tests run it as a real process, the way the pod and the job's unit do.
var runnerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nodeupgrade-runner-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	runnerBin = filepath.Join(dir, "nodeupgrade-runner")
	build := exec.Command("go", "build", "-o", runnerBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build runner: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// upgradeCall is how real keadm v1.21+ must be called: --image is the
// repository, keadm appends ":" + toVersion itself.
// pinnedDigest is a job's spec.imageDigestGatter digest, and tagCall how
// the unit names the image the pod pulled by it for keadm.
const (
	pinnedDigest = "sha256:0738039541234567890123456789012345678901234567890123456789012345"
	tagCall      = "ctr --namespace k8s.io images tag --force docker.io/kubeedge/installation-package@" + pinnedDigest +
		" docker.io/kubeedge/installation-package:" + toV
)

const upgradeCall = "keadm upgrade edge --toVersion " + toV + " --image docker.io/kubeedge/installation-package --force"

const (
	versionCall  = "keadm version -o short"
	backupCall   = "keadm backup edge"
	rollbackCall = "keadm rollback edge --historical-version " + fromV
)

// outcome is what the pod's containers reported.
type outcome struct {
	check, backup, upgrade runResult
}

// runJob runs the upgrade pod's containers, started together as the
// kubelet starts them, to their ends, and waits for the job's unit to be
// gone from the node.
func (h *fakeHost) runJob(t *testing.T, modify func(o *runner.Options)) outcome {
	t.Helper()
	j := h.startJob(t, modify)
	var out outcome
	if j.check != nil {
		out.check = j.check.wait(t)
	}
	out.backup = j.backup.wait(t)
	out.upgrade = j.upgrade.wait(t)
	h.waitUnitGone(t, jobUID, 30*time.Second)
	return out
}

// expectClean checks what every job leaves on the node, whatever its
// outcome: keadm's lock gone, no unit file, not enabled, no binaries.
func (h *fakeHost) expectClean(t *testing.T, uid string) {
	t.Helper()
	g := NewWithT(t)
	g.Expect(filepath.Join(h.root, runner.KeadmLockPath)).NotTo(BeAnExistingFile(), "keadm's lock never outlives keadm")
	g.Expect(filepath.Join(h.root, runner.UnitPath(uid))).NotTo(BeAnExistingFile(), "the unit removes itself")
	g.Expect(filepath.Join(h.state, "enabled", runner.UnitName(uid))).NotTo(BeAnExistingFile(), "the unit disables itself")
	g.Expect(filepath.Join(h.root, runner.JobBinDir(uid))).NotTo(BeAnExistingFile(), "the job's keadm and runner copies are removed")
}

func TestRunnerCheck(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(t *testing.T, h *fakeHost)
		modify     func(o *runner.Options)
		wantCode   int
		wantResult runner.Result
		wantReason []string
	}{
		{name: "passes", wantCode: runner.ExitOK, wantResult: runner.ResultSucceeded,
			wantReason: []string{"cpu usage 20.0% < threshold 80%", "mem usage 30.0% < threshold 80%", "disk usage"}},
		{name: "fails on cpu", setup: func(t *testing.T, h *fakeHost) { h.write(t, "proc/stat", "cpu  900 0 50 40 10 0 0 0 0 0\n") },
			wantCode: runner.ExitCheckFailed, wantResult: runner.ResultFailed,
			wantReason: []string{"cpu usage 95.0% >= threshold 80%", "mem usage 30.0% < threshold 80%"}},
		{name: "fails on mem with its own threshold",
			setup: func(t *testing.T, h *fakeHost) {
				h.write(t, "proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: 400 kB\n")
			},
			modify:   func(o *runner.Options) { o.MemThreshold = 60; o.CheckItems = []string{"mem"} },
			wantCode: runner.ExitCheckFailed, wantResult: runner.ResultFailed, wantReason: []string{"mem usage 60.0% >= threshold 60%"}},
		{name: "fails on disk", modify: func(o *runner.Options) { o.DiskThreshold = 0; o.CheckItems = []string{"disk"} },
			wantCode: runner.ExitCheckFailed, wantResult: runner.ResultFailed, wantReason: []string{"disk usage", ">= threshold 0%"}},
		{name: "fails when proc is unreadable",
			setup:    func(t *testing.T, h *fakeHost) { _ = os.Remove(filepath.Join(h.root, "proc", "stat")) },
			modify:   func(o *runner.Options) { o.CheckItems = []string{"cpu"} },
			wantCode: runner.ExitCheckFailed, wantResult: runner.ResultFailed, wantReason: []string{"cpu: read ", "no such file"}},
		{name: "an unknown item is a bad argument", modify: func(o *runner.Options) { o.CheckItems = []string{"cpu", "gpu"} },
			wantCode: runner.ExitBadArgs, wantResult: runner.ResultFailed, wantReason: []string{`unknown check item "gpu"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newFakeHost(t)
			if tt.setup != nil {
				tt.setup(t, h)
			}
			o := h.options(runner.StepCheck)
			if tt.modify != nil {
				tt.modify(&o)
			}
			res := h.runStep(t, o, runner.StepCheck)
			g.Expect(res.code).To(Equal(tt.wantCode), res.output)
			g.Expect(res.report.Step).To(Equal(runner.StepCheck))
			g.Expect(res.report.Result).To(Equal(tt.wantResult))
			for _, want := range tt.wantReason {
				g.Expect(res.report.Reason).To(ContainSubstring(want))
			}
			g.Expect(h.calls(t)).To(BeEmpty(), "a check runs no keadm")
			// It writes nothing on the host: its outcome goes to the
			// handoff directory, for the backup container.
			for _, name := range []string{runner.StepRecordFile(runner.StepCheck), runner.BudgetFile} {
				g.Expect(h.jobFile(name)).NotTo(BeAnExistingFile())
			}
			if res.code != runner.ExitBadArgs {
				g.Expect(filepath.Join(h.handoff, runner.StepRecordFile(runner.StepCheck))).To(BeAnExistingFile())
			}
		})
	}
}

// Each case runs the whole pod (check, backup, upgrade containers started
// together) against the fake node, with the job's unit under the fake
// systemd, and checks what each container reported, what keadm was run
// with, and that the node is left clean.
func TestRunnerJob(t *testing.T) {
	ok := runner.ExitOK
	tests := []struct {
		name   string
		setup  func(t *testing.T, h *fakeHost)
		modify func(o *runner.Options)

		wantBackup, wantUpgrade int
		wantUpgradeStep         runner.Step
		wantCalls               []string
		wantReason              []string // in the upgrade container's report
		wantEdgecore            string
	}{
		{name: "upgrade succeeds", wantBackup: ok, wantUpgrade: ok,
			wantCalls:    []string{versionCall, backupCall, upgradeCall},
			wantReason:   []string{"upgraded edgecore from v1.20.0 to v1.21.0"},
			wantEdgecore: toV},
		{name: "a job pinned by digest names the verified image for keadm before keadm runs",
			modify:     func(o *runner.Options) { o.ImageDigest = pinnedDigest },
			wantBackup: ok, wantUpgrade: ok,
			wantCalls:    []string{versionCall, backupCall, tagCall, upgradeCall},
			wantEdgecore: toV},
		{name: "a pinned image that cannot be named leaves edgecore untouched",
			setup:      func(t *testing.T, h *fakeHost) { h.touch(t, "fail-ctr") },
			modify:     func(o *runner.Options) { o.ImageDigest = pinnedDigest },
			wantBackup: ok, wantUpgrade: runner.ExitUpgradeFailedUntouched,
			wantCalls:    []string{versionCall, backupCall, tagCall},
			wantReason:   []string{"nothing was touched", "could not name the image pulled by digest", "not found"},
			wantEdgecore: fromV},
		{name: "a lock left by a killed keadm is cleared",
			setup:      func(t *testing.T, h *fakeHost) { h.write(t, "etc/kubeedge/idempotency_record", "") },
			wantBackup: ok, wantUpgrade: ok, wantCalls: []string{versionCall, backupCall, upgradeCall}, wantEdgecore: toV},
		{name: "a failed check runs nothing", modify: func(o *runner.Options) { o.DiskThreshold = 0 },
			wantBackup: runner.ExitNotRun, wantUpgrade: runner.ExitNotRun,
			wantReason: []string{"not run: step backup did not run"}, wantEdgecore: fromV},
		{name: "backup fails with keadm's own reason", setup: func(t *testing.T, h *fakeHost) { h.touch(t, "fail-backup") },
			wantBackup: runner.ExitBackupFailed, wantUpgrade: runner.ExitNotRun,
			wantCalls: []string{versionCall, backupCall}, wantReason: []string{"not run: step backup failed"}, wantEdgecore: fromV},
		{name: "keadm before v1.21 is refused", setup: func(t *testing.T, h *fakeHost) { h.writeState(t, "keadm-version", "v1.20.3") },
			wantBackup: runner.ExitUnsupported, wantUpgrade: runner.ExitNotRun,
			wantCalls: []string{versionCall}, wantEdgecore: fromV},
		{name: "a node without systemd is refused before anything runs",
			setup:      func(t *testing.T, h *fakeHost) { h.write(t, "proc/1/comm", "bash\n") },
			wantBackup: runner.ExitUnsupported, wantUpgrade: runner.ExitNotRun, wantEdgecore: fromV},
		{name: "a failed pull leaves edgecore alone: no rollback", setup: func(t *testing.T, h *fakeHost) { h.touch(t, "fail-pull") },
			wantBackup: ok, wantUpgrade: runner.ExitUpgradeFailedUntouched,
			wantCalls:    []string{versionCall, backupCall, upgradeCall},
			wantReason:   []string{"edgecore was not touched", "no rollback was needed", "failed to pull image docker.io/kubeedge/installation-package:v1.21.0"},
			wantEdgecore: fromV},
		{
			// Real keadm's copy sandbox is stopped by edgecore's kubelet
			// as an orphan pod now and then (seen in 2 of 3 real upgrades).
			name: "keadm losing its copy container to the kubelet is retried", setup: func(t *testing.T, h *fakeHost) { h.writeState(t, "copy-races", "2") },
			wantBackup: ok, wantUpgrade: ok, wantCalls: []string{versionCall, backupCall, upgradeCall, upgradeCall, upgradeCall},
			wantEdgecore: toV},
		{name: "keadm losing its copy container every time gives up untouched",
			setup:      func(t *testing.T, h *fakeHost) { h.writeState(t, "copy-races", "3") },
			wantBackup: ok, wantUpgrade: runner.ExitUpgradeFailedUntouched,
			wantCalls:  []string{versionCall, backupCall, upgradeCall, upgradeCall, upgradeCall},
			wantReason: []string{"edgecore was not touched", "failed to copy edgecore from"}, wantEdgecore: fromV},
		{name: "upgrade fails and rolls back to this job's backup", setup: func(t *testing.T, h *fakeHost) { h.touch(t, "fail-upgrade") },
			wantBackup: ok, wantUpgrade: runner.ExitRolledBack, wantUpgradeStep: runner.StepRollback,
			wantCalls:    []string{versionCall, backupCall, upgradeCall, rollbackCall},
			wantReason:   []string{"rollback succeeded, the node is back on v1.20.0", "upgrade to v1.21.0 failed: upgrade exploded"},
			wantEdgecore: fromV},
		{name: "upgrade and rollback fail", setup: func(t *testing.T, h *fakeHost) { h.touch(t, "fail-upgrade"); h.touch(t, "fail-rollback") },
			wantBackup: ok, wantUpgrade: runner.ExitNeedsAttention, wantUpgradeStep: runner.StepRollback,
			wantCalls:  []string{versionCall, backupCall, upgradeCall, rollbackCall},
			wantReason: []string{"rollback failed too, the node needs attention: rollback exploded", "upgrade exploded"}},
		{name: "a new edgecore that does not stay up is rolled back", setup: func(t *testing.T, h *fakeHost) { h.touch(t, "crash-edgecore") },
			wantBackup: ok, wantUpgrade: runner.ExitRolledBack, wantUpgradeStep: runner.StepRollback,
			wantCalls:    []string{versionCall, backupCall, upgradeCall, rollbackCall},
			wantReason:   []string{"edgecore is not running after the upgrade", "rollback succeeded"},
			wantEdgecore: fromV},
		{name: "with less budget than an upgrade needs nothing runs",
			setup:      func(t *testing.T, h *fakeHost) { h.budgetSpent(t, jobUID, 2*time.Minute, 90*time.Second) },
			modify:     func(o *runner.Options) { o.CheckItems = nil },
			wantBackup: runner.ExitDeadline, wantUpgrade: runner.ExitNotRun, wantEdgecore: fromV},
		{name: "a budget started before a reboot is spent",
			setup: func(t *testing.T, h *fakeHost) {
				h.budgetSpent(t, jobUID, time.Hour, time.Second)
				h.write(t, "proc/sys/kernel/random/boot_id", "another-boot\n")
			},
			modify:     func(o *runner.Options) { o.CheckItems = nil },
			wantBackup: runner.ExitDeadline, wantUpgrade: runner.ExitNotRun, wantEdgecore: fromV},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newFakeHost(t)
			if tt.setup != nil {
				tt.setup(t, h)
			}
			out := h.runJob(t, tt.modify)
			g.Expect(out.backup.code).To(Equal(tt.wantBackup), "backup: %s\n%s", out.backup.output, h.unitLog(jobUID))
			g.Expect(out.upgrade.code).To(Equal(tt.wantUpgrade), "upgrade: %s\n%s", out.upgrade.output, h.unitLog(jobUID))
			g.Expect(h.calls(t)).To(Equal(tt.wantCalls), h.unitLog(jobUID))
			wantStep := tt.wantUpgradeStep
			if wantStep == "" {
				wantStep = runner.StepUpgrade
			}
			g.Expect(out.upgrade.report.Step).To(Equal(wantStep))
			g.Expect(out.upgrade.report.FromVersion).To(Equal(fromV))
			g.Expect(out.upgrade.report.ToVersion).To(Equal(toV))
			for _, want := range tt.wantReason {
				g.Expect(out.upgrade.report.Reason).To(ContainSubstring(want))
			}
			if tt.wantEdgecore != "" {
				g.Expect(h.edgecoreBinary(t)).To(Equal(tt.wantEdgecore))
				g.Expect(h.edgecoreRunning(t)).To(BeTrue(), "edgecore runs")
			}
			h.expectClean(t, jobUID)
		})
	}
}

// Bad flags are refused before anything runs, with a report that says so.
func TestRunnerRefusesBadArguments(t *testing.T) {
	tests := []struct {
		name   string
		step   runner.Step
		modify func(o *runner.Options)
		want   string
	}{
		{"image not normalised for the version", runner.StepBackup, func(o *runner.Options) {
			o.Image = "docker.io/kubeedge/installation-package:v1.19.0"
		}, "not the normalised image"},
		{"shell in the image", runner.StepBackup, func(o *runner.Options) { o.Image = "docker.io/kubeedge/x;reboot:v1.21.0" }, "forbidden character"},
		{"shell in the version", runner.StepUpgrade, func(o *runner.Options) { o.ToVersion = "v1.21.0;reboot" }, "--to-version"},
		{"a job name that would write into the unit file", runner.StepBackup, func(o *runner.Options) {
			o.JobName = "x\nExecStartPre=/bin/sh"
		}, "--job-name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newFakeHost(t)
			o := h.options(tt.step)
			tt.modify(&o)
			res := h.runStep(t, o, tt.step)
			g.Expect(res.code).To(Equal(runner.ExitBadArgs), res.output)
			g.Expect(res.report.Reason).To(HavePrefix("bad arguments"))
			g.Expect(res.report.Reason).To(ContainSubstring(tt.want))
			g.Expect(h.calls(t)).To(BeEmpty())
			g.Expect(h.systemctlCalls(t)).To(BeEmpty())
		})
	}
}

func TestRunnerBadInvocation(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"unknown subcommand", []string{"reboot"}},
		{"flags without subcommand", []string{"--to-version=" + toV}},
		{"missing budget", []string{"check", "--to-version=" + toV, "--job-uid=" + jobUID}},
		{"bad issue time", []string{"check", "--to-version=" + toV, "--job-uid=" + jobUID, "--budget=1m", "--issued-at=tomorrow"}},
		{"unknown flag", []string{"check", "--to-version=" + toV, "--job-uid=" + jobUID, "--budget=1m", "--exec=/bin/sh"}},
		{"positional", []string{"check", "--to-version=" + toV, "--job-uid=" + jobUID, "--budget=1m", "extra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			term := filepath.Join(t.TempDir(), "termination-log")
			// The termination path goes right after the subcommand (or first)
			// so it is parsed before whatever is wrong.
			args := []string{tt.args[0], "--termination-message-path=" + term}
			if strings.HasPrefix(tt.args[0], "-") {
				args = []string{"--termination-message-path=" + term, tt.args[0]}
			}
			args = append(args, tt.args[1:]...)
			out, err := exec.Command(runnerBin, args...).CombinedOutput()
			g.Expect(exitCode(err)).To(Equal(runner.ExitBadArgs), string(out))
			data, err := os.ReadFile(term)
			g.Expect(err).NotTo(HaveOccurred())
			rep, err := runner.ParseReport(string(data))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(rep.Result).To(Equal(runner.ResultFailed))
			g.Expect(rep.Reason).To(HavePrefix("bad arguments"))
		})
	}
	t.Run("host subcommand", func(t *testing.T) {
		g := NewWithT(t)
		for _, args := range [][]string{{"host"}, {"host", "--job-uid=../etc"}, {"host", "--job-uid=" + jobUID, "--host-root=rel"}, {"host", "--job-uid=" + jobUID, "x"}} {
			out, err := exec.Command(runnerBin, args...).CombinedOutput()
			g.Expect(exitCode(err)).To(Equal(runner.ExitBadArgs), "%v: %s", args, out)
		}
	})
}

// exitCode is a finished command's exit code; -1 when it did not exit.
func exitCode(err error) int {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

// Without any argument the runner prints usage and writes no report: that
// is a person at a shell, not the pod.
func TestRunnerNoArguments(t *testing.T) {
	g := NewWithT(t)
	out, err := exec.Command(runnerBin).CombinedOutput()
	g.Expect(exitCode(err)).To(Equal(runner.ExitBadArgs))
	g.Expect(string(out)).To(ContainSubstring("usage: nodeupgrade-runner"))
}

// The unit file holds no user input but the validated job name and version
// and the job UID, starts again after a crash and at boot, and lets a
// running keadm finish when it is stopped.
func TestRunnerUnitFile(t *testing.T) {
	g := NewWithT(t)
	h := newFakeHost(t)
	h.touch(t, "pause-backup")
	j := h.startJob(t, nil)
	h.waitPaused(t, "backup")
	data, err := os.ReadFile(filepath.Join(h.root, runner.UnitPath(jobUID)))
	g.Expect(err).NotTo(HaveOccurred())
	unit := string(data)
	for _, want := range []string{
		"ExecStart=" + runner.HostRunnerPath(jobUID) + " host --job-uid=" + jobUID + "\n",
		"Restart=on-failure\n", "KillMode=mixed\n", "WantedBy=multi-user.target\n",
		"After=containerd.service edgecore.service\n", "NodeUpgradeJob fleet",
	} {
		g.Expect(unit).To(ContainSubstring(want))
	}
	g.Expect(filepath.Join(h.state, "enabled", runner.UnitName(jobUID))).To(BeAnExistingFile(), "enabled: a boot starts it")
	g.Expect(filepath.Join(h.root, runner.HostRunnerPath(jobUID))).To(BeAnExistingFile())
	plan, err := os.ReadFile(h.jobFile(runner.PlanFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(plan)).To(ContainSubstring(`"image":"` + image + `"`))
	h.resume(t, "backup")
	g.Expect(j.upgrade.wait(t).code).To(Equal(runner.ExitOK))
	h.waitUnitGone(t, jobUID, 30*time.Second)
	h.expectClean(t, jobUID)
}

// The pod dies while keadm upgrade runs (its containers SIGKILLed, as a
// container runtime kills a hostPID container's processes, or the pod
// force-deleted): the unit on the host is not touched, finishes the
// upgrade, and a container started again reports its record without running
// keadm a second time.
func TestRunnerUpgradeSurvivesThePod(t *testing.T) {
	for _, point := range []string{"backup", "stopped", "copied", "verdict"} {
		t.Run("killed at "+point, func(t *testing.T) {
			g := NewWithT(t)
			h := newFakeHost(t)
			h.touch(t, "pause-"+point)
			j := h.startJob(t, nil)
			h.waitPaused(t, point)
			j.backup.kill()
			j.upgrade.kill()
			if j.check != nil {
				j.check.kill()
			}
			h.resume(t, point)
			h.waitUnitGone(t, jobUID, 30*time.Second)
			g.Expect(h.calls(t)).To(Equal([]string{versionCall, backupCall, upgradeCall}), h.unitLog(jobUID))
			g.Expect(h.edgecoreBinary(t)).To(Equal(toV))
			g.Expect(h.edgecoreRunning(t)).To(BeTrue())
			h.expectClean(t, jobUID)

			// The kubelet starts the containers again (Attempt 1),
			// copy-keadm first, which puts a keadm back.
			h.installKeadm(t, jobUID)
			again := h.runStep(t, h.options(runner.StepUpgrade), runner.StepUpgrade)
			g.Expect(filepath.Join(h.root, runner.JobBinDir(jobUID))).NotTo(BeAnExistingFile(), "removed again")
			g.Expect(again.code).To(Equal(runner.ExitOK), again.output)
			g.Expect(again.report.Reason).To(ContainSubstring("upgraded edgecore from v1.20.0 to v1.21.0"))
			g.Expect(again.output).To(ContainSubstring("already ran for this job on this node"))
			g.Expect(h.calls(t)).To(HaveLen(3), "keadm must not run again")
		})
	}
}

// A power cut (every process of the node gone at once, no clean shutdown)
// at any instant of the upgrade, then a boot: the job's unit, enabled on
// the host, starts again and ends the story with no pod and no link: the
// node runs edgecore on exactly one of the two versions, keadm's lock is
// gone, the unit has removed itself, and a second job then upgrades the
// node.
func TestRunnerPowerCut(t *testing.T) {
	tests := []struct {
		name, point  string
		setup        func(t *testing.T, h *fakeHost)
		wantCode     int
		wantEdgecore string
		wantReason   string
		wantCalls    []string
	}{
		// Backup interrupted: at boot the budget belongs to another boot,
		// so the unit starts nothing new.
		{name: "during backup", point: "backup", wantCode: runner.ExitNotRun, wantEdgecore: fromV, wantReason: "not run: step backup did not run",
			wantCalls: []string{versionCall, backupCall}},
		// keadm had stopped edgecore and not replaced it: the same binary
		// comes up at boot, nothing to roll back.
		{name: "after keadm stopped edgecore", point: "stopped", wantCode: runner.ExitUpgradeFailedUntouched, wantEdgecore: fromV, wantReason: "edgecore was not touched",
			wantCalls: []string{versionCall, backupCall, upgradeCall}},
		// The binary was replaced and keadm never said it was done: the
		// node goes back.
		{name: "after keadm replaced the binary", point: "copied", wantCode: runner.ExitRolledBack, wantEdgecore: fromV, wantReason: "interrupted before keadm reported it done",
			wantCalls: []string{versionCall, backupCall, upgradeCall, rollbackCall}},
		// keadm finished; the new edgecore comes up at boot and settles:
		// committed.
		{name: "after keadm finished", point: "verdict", wantCode: runner.ExitOK, wantEdgecore: toV, wantReason: "finished after the unit was interrupted",
			wantCalls: []string{versionCall, backupCall, upgradeCall}},
		// keadm finished, but the new edgecore does not come up at boot:
		// the node goes back by itself.
		{name: "after keadm finished, the new edgecore broken", point: "verdict", setup: func(t *testing.T, h *fakeHost) { h.touch(t, "crash-edgecore") },
			wantCode: runner.ExitRolledBack, wantEdgecore: fromV, wantReason: "rollback succeeded",
			wantCalls: []string{versionCall, backupCall, upgradeCall, rollbackCall}},
		// keadm finished and the new edgecore was cut off while it
		// rewrote its configuration (seen on a real node): it runs at boot,
		// steadily, but with a truncated configuration, cut off from its
		// cloud; the node goes back.
		{name: "after keadm finished, the new edgecore's configuration torn", point: "verdict",
			setup:    func(t *testing.T, h *fakeHost) { h.touch(t, "truncate-config") },
			wantCode: runner.ExitRolledBack, wantEdgecore: fromV, wantReason: "changed modules.edgeHub.websocket.server",
			wantCalls: []string{versionCall, backupCall, upgradeCall, rollbackCall}},
		// The rollback itself was cut: it runs again.
		{name: "during the rollback", point: "rollback", setup: func(t *testing.T, h *fakeHost) { h.touch(t, "fail-upgrade") },
			wantCode: runner.ExitRolledBack, wantEdgecore: fromV, wantReason: "an earlier rollback was interrupted",
			wantCalls: []string{versionCall, backupCall, upgradeCall, rollbackCall, rollbackCall}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newFakeHost(t)
			if tt.setup != nil {
				tt.setup(t, h)
			}
			h.touch(t, "pause-"+tt.point)
			j := h.startJob(t, nil)
			h.waitPaused(t, tt.point)
			j.backup.kill()
			j.upgrade.kill()
			if j.check != nil {
				j.check.kill()
			}
			h.powerCut(t)
			h.resume(t, tt.point)
			h.boot(t)
			h.waitUnitGone(t, jobUID, 60*time.Second)

			rec, err := os.ReadFile(h.jobFile(runner.StepRecordFile(runner.StepUpgrade)))
			g.Expect(err).NotTo(HaveOccurred(), h.unitLog(jobUID))
			g.Expect(string(rec)).To(ContainSubstring(fmt.Sprintf(`"exitCode":%d`, tt.wantCode)), h.unitLog(jobUID))
			g.Expect(string(rec)).To(ContainSubstring(tt.wantReason))
			g.Expect(h.calls(t)).To(Equal(tt.wantCalls), h.unitLog(jobUID))
			g.Expect(h.edgecoreBinary(t)).To(Equal(tt.wantEdgecore))
			g.Expect(h.edgecoreRunning(t)).To(BeTrue(), "edgecore runs after the boot")
			if tt.wantEdgecore == fromV {
				cfg, err := os.ReadFile(filepath.Join(h.root, runner.EdgecoreConfigPath))
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(string(cfg)).To(Equal(fakeEdgecoreConfig), "the configuration is the backup's")
			}
			h.expectClean(t, jobUID)

			// The follower of the job's pod, started again, reports it.
			again := h.runStep(t, h.options(runner.StepUpgrade), runner.StepUpgrade)
			g.Expect(again.code).To(Equal(tt.wantCode), again.output)

			if tt.wantEdgecore == toV {
				return
			}
			// A second job brings the node to the target.
			for _, flag := range []string{"crash-edgecore", "fail-upgrade", "truncate-config"} {
				_ = os.Remove(filepath.Join(h.state, flag))
			}
			second := "1c7f0a4d-0000-4000-8000-000000000002"
			h.installKeadm(t, second)
			out := h.runJob2(t, second)
			g.Expect(out.code).To(Equal(runner.ExitOK), out.output+h.unitLog(second))
			g.Expect(h.edgecoreBinary(t)).To(Equal(toV))
			h.expectClean(t, second)
		})
	}
}

// runJob2 runs a whole job of another UID (no check) and returns its
// upgrade container's result.
func (h *fakeHost) runJob2(t *testing.T, uid string) runResult {
	t.Helper()
	modify := func(o *runner.Options) {
		o.JobUID, o.Keadm, o.CheckItems = uid, runner.KeadmPath(uid), nil
		o.TerminationMessagePath += "-" + uid
	}
	j := h.startJob(t, modify)
	j.backup.wait(t)
	res := j.upgrade.wait(t)
	h.waitUnitGone(t, uid, 30*time.Second)
	return res
}

// The unit killed (an OOM kill of its process, with keadm in its cgroup)
// while keadm upgrade runs, and systemd does not start it again: the
// follower finds it stopped without a record and starts it; it resumes.
func TestRunnerFollowerStartsAStoppedUnit(t *testing.T) {
	g := NewWithT(t)
	h := newFakeHost(t)
	h.touch(t, "pause-copied")
	j := h.startJob(t, nil)
	h.waitPaused(t, "copied")
	h.killAll()
	h.resume(t, "copied")
	res := j.upgrade.wait(t)
	g.Expect(res.output).To(ContainSubstring("starting it again"))
	g.Expect(res.code).To(Equal(runner.ExitRolledBack), res.output+h.unitLog(jobUID))
	g.Expect(h.edgecoreBinary(t)).To(Equal(fromV))
	g.Expect(h.edgecoreRunning(t)).To(BeTrue())
	h.waitUnitGone(t, jobUID, 30*time.Second)
	h.expectClean(t, jobUID)
}

// The pod is deleted while the unit backs up: the containers ask the unit
// to start nothing new, keep following, and report that the upgrade did not
// start; edgecore is never touched.
func TestRunnerStoppedPodCancelsTheUpgradeBeforeItStarts(t *testing.T) {
	g := NewWithT(t)
	h := newFakeHost(t)
	h.touch(t, "pause-backup")
	j := h.startJob(t, nil)
	h.waitPaused(t, "backup")
	j.backup.signal(syscall.SIGTERM)
	j.upgrade.signal(syscall.SIGTERM)
	g.Eventually(h.jobFile(runner.CancelFile)).WithTimeout(10 * time.Second).Should(BeAnExistingFile())
	h.resume(t, "backup")
	backup := j.backup.wait(t)
	g.Expect(backup.code).To(Equal(runner.ExitOK), backup.output)
	up := j.upgrade.wait(t)
	g.Expect(up.code).To(Equal(runner.ExitDeadline), up.output+h.unitLog(jobUID))
	g.Expect(up.report.Reason).To(ContainSubstring("nothing was touched"))
	g.Expect(up.report.Reason).To(ContainSubstring("the upgrade pod was stopped before it started"))
	g.Expect(up.elapsed).To(BeNumerically("<", runner.FollowAfterStop), "reported as soon as the unit recorded it")
	g.Expect(h.calls(t)).To(Equal([]string{versionCall, backupCall}))
	h.waitUnitGone(t, jobUID, 30*time.Second)
	h.expectClean(t, jobUID)
}

// A stop request after keadm upgraded edgecore changes nothing: the unit
// finishes its settle check and the container, still following, reports the
// success. Seen on a real node: the new edgecore's kubelet stops the upgrade
// container right after it starts, and the first terminated state is the one
// the API server keeps.
func TestRunnerStopAfterTheUpgradeStartedStillReportsIt(t *testing.T) {
	g := NewWithT(t)
	h := newFakeHost(t)
	h.touch(t, "pause-verdict")
	j := h.startJob(t, nil)
	h.waitPaused(t, "verdict")
	j.upgrade.signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	h.resume(t, "verdict")
	res := j.upgrade.wait(t)
	g.Expect(res.code).To(Equal(runner.ExitOK), res.output+h.unitLog(jobUID))
	g.Expect(res.output).To(ContainSubstring("asked to stop"))
	g.Expect(h.calls(t)).To(Equal([]string{versionCall, backupCall, upgradeCall}), "no rollback")
}

// One job's unit runs on a node at a time: a deleted job's unit may still
// roll back after its pod left the API, and the next job's unit waits.
func TestRunnerUnitWaitsForAnotherJobOnTheNode(t *testing.T) {
	g := NewWithT(t)
	h := newFakeHost(t)
	lockPath := filepath.Join(h.root, runner.JobsDir, runner.NodeLockFile)
	g.Expect(os.MkdirAll(filepath.Dir(lockPath), 0o755)).To(Succeed())
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	g.Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	g.Expect(syscall.Flock(int(f.Fd()), syscall.LOCK_EX)).To(Succeed(), "the other job's unit")

	j := h.startJob(t, nil)
	// The unit says it waits once it has started, which a loaded machine
	// can delay past any fixed pause: wait for the words, then check that
	// nothing ran meanwhile.
	g.Eventually(func() string { return h.unitLog(jobUID) }).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).
		Should(ContainSubstring("waiting for another job's upgrade on this node"))
	g.Consistently(j.backup.done).WithTimeout(1500*time.Millisecond).ShouldNot(Receive(), "the unit must wait while another job holds the node")
	g.Expect(h.calls(t)).To(BeEmpty())

	g.Expect(syscall.Flock(int(f.Fd()), syscall.LOCK_UN)).To(Succeed())
	g.Expect(j.upgrade.wait(t).code).To(Equal(runner.ExitOK))
	g.Expect(h.calls(t)).To(Equal([]string{versionCall, backupCall, upgradeCall}))
}

// Containers started again while the unit runs, or a second launch, never
// start a second keadm.
func TestRunnerOneUnitPerJob(t *testing.T) {
	g := NewWithT(t)
	h := newFakeHost(t)
	h.touch(t, "pause-stopped")
	j := h.startJob(t, nil)
	h.waitPaused(t, "stopped")
	// The kubelet runs the containers again (Attempt 1) meanwhile.
	again := h.startJob(t, nil)
	time.Sleep(time.Second)
	h.resume(t, "stopped")
	for _, c := range []*container{j.backup, j.upgrade, again.backup, again.upgrade} {
		g.Expect(c.wait(t).code).To(Equal(runner.ExitOK))
	}
	h.waitUnitGone(t, jobUID, 30*time.Second)
	g.Expect(h.calls(t)).To(Equal([]string{versionCall, backupCall, upgradeCall}))
	starts := 0
	for _, c := range h.systemctlCalls(t) {
		if strings.HasPrefix(c, "systemctl start") {
			starts++
		}
	}
	g.Expect(starts).To(Equal(1), "one start of the unit: %v", h.systemctlCalls(t))
}

// The records are read without following symlinks: a planted link to a
// file that looks like a success is not taken for the job's outcome.
func TestRunnerRecordsDoNotFollowSymlinks(t *testing.T) {
	g := NewWithT(t)
	h := newFakeHost(t)
	h.touch(t, "fail-upgrade")
	h.write(t, "tmp/forged.json", `{"exitCode":0,"report":{"step":"upgrade","result":"succeeded","reason":"forged"}}`)
	dir := filepath.Join(h.root, runner.JobDir(jobUID))
	g.Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
	g.Expect(os.Symlink(filepath.Join(h.root, "tmp/forged.json"), filepath.Join(dir, runner.StepRecordFile(runner.StepUpgrade)))).To(Succeed())
	out := h.runJob(t, nil)
	g.Expect(out.upgrade.code).To(Equal(runner.ExitRolledBack), out.upgrade.output)
	g.Expect(out.upgrade.report.Reason).NotTo(ContainSubstring("forged"))
	info, err := os.Lstat(filepath.Join(dir, runner.StepRecordFile(runner.StepUpgrade)))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.Mode().IsRegular()).To(BeTrue(), "the record replaced the link")
}

// Old jobs' leftovers are collected when a job ends: binaries of a pod
// killed before its unit started, and the directories beyond the kept count;
// a job whose unit is still installed is left alone.
func TestRunnerCollectsOldJobs(t *testing.T) {
	g := NewWithT(t)
	h := newFakeHost(t)
	jobs := filepath.Join(h.root, runner.JobsDir)
	old := func(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }
	for i := range 6 {
		dir := filepath.Join(jobs, old(i))
		g.Expect(os.MkdirAll(filepath.Join(dir, "bin"), 0o755)).To(Succeed())
		g.Expect(os.WriteFile(filepath.Join(dir, "bin", "keadm"), []byte("x"), 0o755)).To(Succeed())
		at := time.Now().Add(-time.Duration(10-i) * time.Hour)
		g.Expect(os.Chtimes(dir, at, at)).To(Succeed())
	}
	// Job 0 is the oldest, but its unit waits for a boot.
	h.write(t, strings.TrimPrefix(runner.UnitPath(old(0)), "/"), "[Unit]\n")
	out := h.runJob(t, func(o *runner.Options) { o.KeepJobRecords = 3 })
	g.Expect(out.upgrade.code).To(Equal(runner.ExitOK))
	entries, err := os.ReadDir(jobs)
	g.Expect(err).NotTo(HaveOccurred())
	var left []string
	for _, e := range entries {
		if e.IsDir() {
			left = append(left, e.Name())
		}
	}
	g.Expect(left).To(ConsistOf(old(0), old(4), old(5), jobUID), "this job and the two newest are kept, and the one with a unit")
	g.Expect(filepath.Join(jobs, old(0), "bin", "keadm")).To(BeAnExistingFile(), "a job with a unit keeps its binaries")
	g.Expect(filepath.Join(jobs, old(5), "bin")).NotTo(BeAnExistingFile())
	g.Expect(h.unitLog(jobUID)).To(ContainSubstring("removed what earlier jobs left on the node"))
}

// The check against this machine's real /proc and root filesystem.
func TestRunnerCheckRealProc(t *testing.T) {
	tests := []struct {
		name       string
		threshold  int
		interval   time.Duration
		wantCode   int
		wantResult runner.Result
		wantReason []string
	}{
		// Averages since boot are never 100%, so a 100% limit always passes.
		{"passes", 100, 0, runner.ExitOK, runner.ResultSucceeded, []string{"cpu usage", "mem usage", "disk usage", "< threshold 100%"}},
		// Any usage is >= 0%.
		{"fails", 0, 100 * time.Millisecond, runner.ExitCheckFailed, runner.ResultFailed, []string{"cpu usage", "mem usage", "disk usage", ">= threshold 0%"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newFakeHost(t)
			// The real /proc and /, read through a fake root that links them,
			// so the job's records go to a temporary folder, not into this
			// machine's /var/lib.
			g.Expect(os.RemoveAll(filepath.Join(h.root, "proc"))).To(Succeed())
			g.Expect(os.Symlink("/proc", filepath.Join(h.root, "proc"))).To(Succeed())
			o := h.options(runner.StepCheck)
			o.CPUThreshold, o.MemThreshold, o.DiskThreshold = tt.threshold, tt.threshold, tt.threshold
			o.CPUSampleInterval = tt.interval
			res := h.runStep(t, o, runner.StepCheck)
			g.Expect(res.code).To(Equal(tt.wantCode), res.output)
			g.Expect(res.report.Result).To(Equal(tt.wantResult))
			for _, want := range tt.wantReason {
				g.Expect(res.report.Reason).To(ContainSubstring(want))
			}
		})
	}
}

// A unit that cannot read its plan (damage: the backup container writes it
// before it starts the unit) records why and removes itself, rather than
// being started again forever by Restart=on-failure.
func TestRunnerUnitWithADamagedPlanGivesUp(t *testing.T) {
	g := NewWithT(t)
	h := newFakeHost(t)
	h.touch(t, "pause-backup")
	j := h.startJob(t, nil)
	h.waitPaused(t, "backup")
	h.killAll()
	h.write(t, strings.TrimPrefix(runner.JobDir(jobUID), "/")+"/"+runner.PlanFile, "{not json")
	_ = os.Remove(filepath.Join(h.state, "pause-backup"))
	res := j.upgrade.wait(t)
	g.Expect(res.code).To(Equal(runner.ExitNotRun), res.output+h.unitLog(jobUID))
	g.Expect(res.report.Reason).To(ContainSubstring("the job's plan or budget on the node cannot be read"))
	h.waitUnitGone(t, jobUID, 30*time.Second)
	h.expectClean(t, jobUID)
}
