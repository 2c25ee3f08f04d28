package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// confirmJob is the pod of a job with spec.requireConfirmation: check,
// confirm, backup and upgrade, started together.
type confirmJob struct {
	check, confirm, backup, upgrade *container
}

// podInfo is the fake node's downwardAPI directory of the pod's annotations.
func (h *fakeHost) podInfo() string { return filepath.Join(filepath.Dir(h.root), "podinfo") }

// annotate writes the pod's annotations file as the kubelet does (its
// atomic writer): each version in a directory of its own, the ..data link
// swapped to it, and the file a link through ..data.
func (h *fakeHost) annotate(t *testing.T, content string) {
	t.Helper()
	h.annotations++
	version := fmt.Sprintf("..2026_12_07_22_00_%02d.%d", h.annotations, h.annotations)
	if err := os.MkdirAll(filepath.Join(h.podInfo(), version), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.podInfo(), version, runner.PodInfoAnnotationsFile), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(h.podInfo(), "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(h.podInfo(), "..data")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(h.podInfo(), runner.PodInfoAnnotationsFile)
	if _, err := os.Lstat(link); os.IsNotExist(err) {
		if err := os.Symlink(filepath.Join("..data", runner.PodInfoAnnotationsFile), link); err != nil {
			t.Fatal(err)
		}
	}
}

// confirmOptions are a step's flags in a job that requires confirmation,
// as upgradepod renders them.
func (h *fakeHost) confirmOptions(step runner.Step) runner.Options {
	o := h.options(step)
	o.RequireConfirmation, o.PodInfoDir = true, h.podInfo()
	switch step {
	case runner.StepConfirm:
		o.After = runner.StepCheck
	case runner.StepBackup:
		o.After = runner.StepConfirm
	}
	return o
}

func (h *fakeHost) startConfirmJob(t *testing.T, modify func(o *runner.Options)) *confirmJob {
	t.Helper()
	opts := func(step runner.Step) runner.Options {
		o := h.confirmOptions(step)
		if modify != nil {
			modify(&o)
		}
		return o
	}
	return &confirmJob{
		check:   h.startStep(t, opts(runner.StepCheck), runner.StepCheck),
		confirm: h.startStep(t, opts(runner.StepConfirm), runner.StepConfirm),
		backup:  h.startStep(t, opts(runner.StepBackup), runner.StepBackup),
		upgrade: h.startStep(t, opts(runner.StepUpgrade), runner.StepUpgrade),
	}
}

func (j *confirmJob) stop(sig syscall.Signal) {
	for _, c := range []*container{j.check, j.confirm, j.backup, j.upgrade} {
		c.signal(sig)
	}
}

// expectUntouched checks that nothing on the fake node changed: no keadm
// run, no unit, no budget started, edgecore as it was.
func (h *fakeHost) expectUntouched(t *testing.T) {
	t.Helper()
	g := NewWithT(t)
	g.Expect(h.calls(t)).To(BeEmpty(), "keadm ran")
	g.Expect(filepath.Join(h.root, runner.UnitPath(jobUID))).NotTo(BeAnExistingFile(), "the unit was installed")
	g.Expect(h.jobFile(runner.BudgetFile)).NotTo(BeAnExistingFile(), "the budget started")
	g.Expect(h.jobFile(runner.StepRecordFile(runner.StepBackup))).NotTo(BeAnExistingFile())
	g.Expect(h.edgecoreBinary(t)).To(Equal(fromV))
}

// TestRunnerConfirmation: a job that requires confirmation passes its check
// and then changes nothing on the node, its budget not started, until it is
// confirmed, from the cloud (the pod's annotation) or on the node (a file
// named after the job, consumed). The confirmation is recorded, so the
// backup and upgrade follow as in any job.
func TestRunnerConfirmation(t *testing.T) {
	for _, c := range []struct {
		name    string
		confirm func(t *testing.T, h *fakeHost)
		reason  string
	}{
		{"from the cloud", func(t *testing.T, h *fakeHost) {
			h.annotate(t, "operations.kubeedge.io/deadline=\"2026-12-07T10:00:00Z\"\n"+runner.ApprovedAnnotation+"=\"true\"\n")
		}, "confirmed from the cloud"},
		{"on the node", func(t *testing.T, h *fakeHost) { h.write(t, "var/lib/nodeupgrade/approved/fleet", "") }, "confirmed on the node"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newFakeHost(t)
			h.annotate(t, runner.ApprovedAnnotation+"=\"false\"\n")
			j := h.startConfirmJob(t, nil)
			g.Expect(j.check.wait(t).code).To(Equal(runner.ExitOK))
			time.Sleep(2 * time.Second)
			h.expectUntouched(t)
			g.Expect(j.confirm.out.String()).To(ContainSubstring("touch /var/lib/nodeupgrade/approved/fleet"), "it tells the person at the node how")

			c.confirm(t, h)
			confirmed := j.confirm.wait(t)
			g.Expect(confirmed.code).To(Equal(runner.ExitOK))
			g.Expect(confirmed.report.Step).To(Equal(runner.StepConfirm))
			g.Expect(confirmed.report.Reason).To(ContainSubstring(c.reason))
			g.Expect(j.backup.wait(t).code).To(Equal(runner.ExitOK))
			g.Expect(j.upgrade.wait(t).code).To(Equal(runner.ExitOK))
			h.waitUnitGone(t, jobUID, 30*time.Second)
			g.Expect(h.edgecoreBinary(t)).To(Equal(toV))
			g.Expect(h.calls(t)).To(Equal([]string{versionCall, backupCall, upgradeCall}))
			g.Expect(filepath.Join(h.root, "var/lib/nodeupgrade/approved/fleet")).NotTo(BeAnExistingFile(), "a confirmation on the node is used once")
			h.expectClean(t, jobUID)

			// A container run again reports the recorded confirmation.
			again := h.runStep(t, h.confirmOptions(runner.StepConfirm), runner.StepConfirm)
			g.Expect(again.code).To(Equal(runner.ExitOK))
			g.Expect(again.report.Reason).To(ContainSubstring(c.reason))
		})
	}
}

// TestRunnerConfirmationSurvivesTheWait: the pod stopped (SIGTERM) or
// killed (SIGKILL) while it waits, or the node rebooted, leaves nothing
// recorded and nothing changed; the job's next pod on the node waits again
// and goes on once confirmed. The wait spends none of the budget: a budget
// that a longer wait would have spent still upgrades.
func TestRunnerConfirmationSurvivesTheWait(t *testing.T) {
	g := NewWithT(t)
	h := newFakeHost(t)
	j := h.startConfirmJob(t, nil)
	g.Expect(j.check.wait(t).code).To(Equal(runner.ExitOK))
	time.Sleep(time.Second)
	j.stop(syscall.SIGTERM)
	for _, c := range []*container{j.confirm, j.backup, j.upgrade} {
		res := c.wait(t)
		g.Expect(res.code).To(Equal(runner.ExitStoppedWaiting), res.output)
		g.Expect(res.report.Reason).To(ContainSubstring("nothing on the node changed"))
	}
	h.expectUntouched(t)
	g.Expect(h.jobFile(runner.StepRecordFile(runner.StepConfirm))).NotTo(BeAnExistingFile(), "nothing is recorded while waiting")

	// The next pod, killed outright, then a reboot.
	j = h.startConfirmJob(t, nil)
	g.Expect(j.check.wait(t).code).To(Equal(runner.ExitOK), "the check reports its record")
	time.Sleep(time.Second)
	for _, c := range []*container{j.confirm, j.backup, j.upgrade} {
		c.kill()
	}
	h.write(t, "proc/sys/kernel/random/boot_id", "boot-2\n")
	h.expectUntouched(t)

	// The pod after the reboot: 65 s of budget, less than MinUpgradeBudget
	// once 6 s are spent; the wait spends none.
	j = h.startConfirmJob(t, func(o *runner.Options) { o.Budget = runner.MinUpgradeBudget + 5*time.Second })
	time.Sleep(6 * time.Second)
	h.expectUntouched(t)
	h.annotate(t, runner.ApprovedAnnotation+"=\"true\"\n")
	g.Expect(j.confirm.wait(t).code).To(Equal(runner.ExitOK))
	backup := j.backup.wait(t)
	g.Expect(backup.code).To(Equal(runner.ExitOK), backup.output)
	g.Expect(j.upgrade.wait(t).code).To(Equal(runner.ExitOK))
	h.waitUnitGone(t, jobUID, 30*time.Second)
	g.Expect(h.edgecoreBinary(t)).To(Equal(toV))
	h.expectClean(t, jobUID)
}
