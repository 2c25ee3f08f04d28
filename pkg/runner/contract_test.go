package runner

import (
	"testing"

	. "github.com/onsi/gomega"
)

// Every code the runner exits with, bar success, has words for the
// controller to show when a container left no readable report, and the
// words tell the codes apart.
func TestExitMeaningNamesEveryFailureCode(t *testing.T) {
	g := NewWithT(t)
	codes := []int{ExitCheckFailed, ExitBackupFailed, ExitRolledBack, ExitNeedsAttention, ExitDeadline,
		ExitBadArgs, ExitUnsupported, ExitUpgradeFailedUntouched, ExitNotRun, ExitDetached, ExitStoppedWaiting}
	seen := map[string]int{}
	for _, code := range codes {
		meaning := ExitMeaning(code)
		g.Expect(meaning).NotTo(BeEmpty(), "exit code %d", code)
		g.Expect(seen).NotTo(HaveKey(meaning), "exit code %d means what %d means", code, seen[meaning])
		seen[meaning] = code
	}
	g.Expect(ExitMeaning(ExitOK)).To(BeEmpty())
	g.Expect(ExitMeaning(ExitStoppedWaiting+1)).To(BeEmpty(), "a code the runner does not use")
}

func TestContainersAreNamedAfterTheirSteps(t *testing.T) {
	g := NewWithT(t)
	g.Expect([]string{ContainerCheck, ContainerConfirm, ContainerBackup, ContainerUpgrade}).To(Equal([]string{"check", "confirm", "backup", "upgrade"}),
		"the names are an API: kubectl logs -c and the plugin's logs command use them")
	g.Expect(JobDir("uid")).To(Equal("/var/lib/nodeupgrade/jobs/uid"))
	g.Expect(KeadmPath("uid")).To(Equal("/var/lib/nodeupgrade/jobs/uid/bin/keadm"))
	g.Expect(HostRunnerPath("uid")).To(Equal("/var/lib/nodeupgrade/jobs/uid/bin/nodeupgrade-runner"))
	g.Expect(UnitPath("uid")).To(Equal("/etc/systemd/system/nodeupgrade-uid.service"))
	g.Expect(StepRecordFile(StepBackup)).To(Equal("backup.json"))
}
