package main

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/nodeupgrade/nodeupgrade/pkg/runner"
)

// A node that failed its health gate after a committed upgrade is rolled
// back by the job's unit, started again by the rollback pod's container:
// keadm rollback edge from the upgrade's backup, once, recorded as the
// rollback step; a container run again reports the record and runs
// nothing; the unit removes itself again.
func TestRunnerHealthGateRollback(t *testing.T) {
	g := NewWithT(t)
	h := newFakeHost(t)
	out := h.runJob(t, nil)
	g.Expect(out.upgrade.code).To(Equal(runner.ExitOK), out.upgrade.output)
	g.Expect(h.edgecoreBinary(t)).To(Equal(toV))
	h.expectClean(t, jobUID)

	// The rollback pod: copy-keadm puts keadm back, then the rollback
	// container asks the unit to roll back and follows it.
	h.installKeadm(t, jobUID)
	rb := h.runStep(t, h.options(runner.StepRollback), runner.StepRollback)
	g.Expect(rb.code).To(Equal(runner.ExitRolledBack), rb.output+"\n"+h.unitLog(jobUID))
	g.Expect(rb.report.Step).To(Equal(runner.StepRollback))
	g.Expect(rb.report.RolledBack).To(BeTrue())
	g.Expect(rb.report.Reason).To(ContainSubstring("rollback succeeded, the node is back on v1.20.0"))
	g.Expect(rb.report.Reason).To(ContainSubstring("health gate failed"))
	g.Expect(h.calls(t)).To(Equal([]string{versionCall, backupCall, upgradeCall, rollbackCall}), h.unitLog(jobUID))
	g.Expect(h.edgecoreBinary(t)).To(Equal(fromV))
	g.Expect(h.edgecoreRunning(t)).To(BeTrue())
	h.waitUnitGone(t, jobUID, 30*time.Second)
	h.expectClean(t, jobUID)

	// Run again (the kubelet after edgecore's restart): the record, nothing run.
	again := h.runStep(t, h.options(runner.StepRollback), runner.StepRollback)
	g.Expect(again.code).To(Equal(runner.ExitRolledBack), again.output)
	g.Expect(again.output).To(ContainSubstring("already ran for this job on this node"))
	g.Expect(h.calls(t)).To(HaveLen(4), "keadm rollback must not run twice")
}

// A rollback pod on a node whose upgrade did not commit (it failed, or was
// rolled back already) runs nothing.
func TestRunnerHealthGateRollbackNeedsACommittedUpgrade(t *testing.T) {
	g := NewWithT(t)
	h := newFakeHost(t)
	h.touch(t, "fail-pull")
	out := h.runJob(t, nil)
	g.Expect(out.upgrade.code).To(Equal(runner.ExitUpgradeFailedUntouched), out.upgrade.output)
	h.installKeadm(t, jobUID)
	rb := h.runStep(t, h.options(runner.StepRollback), runner.StepRollback)
	g.Expect(rb.code).To(Equal(runner.ExitNotRun), rb.output)
	g.Expect(rb.report.Reason).To(ContainSubstring("nothing to roll back"))
	g.Expect(h.calls(t)).To(Equal([]string{versionCall, backupCall, upgradeCall}))
	g.Expect(h.edgecoreBinary(t)).To(Equal(fromV))
}
