package runner

import (
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"
)

// Every code the runner exits with, bar success, has words for the
// controller to show when a container left no readable report, and the
// words tell the codes apart.
func TestExitMeaningNamesEveryFailureCode(t *testing.T) {
	g := NewWithT(t)
	codes := []int{ExitCheckFailed, ExitBackupFailed, ExitRolledBack, ExitNeedsAttention, ExitDeadline,
		ExitBadArgs, ExitUnsupported, ExitUpgradeFailedUntouched, ExitNotRun, ExitDetached}
	seen := map[string]int{}
	for _, code := range codes {
		meaning := ExitMeaning(code)
		g.Expect(meaning).NotTo(BeEmpty(), "exit code %d", code)
		g.Expect(seen).NotTo(HaveKey(meaning), "exit code %d means what %d means", code, seen[meaning])
		seen[meaning] = code
	}
	g.Expect(ExitMeaning(ExitOK)).To(BeEmpty())
	g.Expect(ExitMeaning(ExitDetached+1)).To(BeEmpty(), "a code the runner does not use")
}

func TestContainersAreNamedAfterTheirSteps(t *testing.T) {
	g := NewWithT(t)
	g.Expect([]string{ContainerCheck, ContainerBackup, ContainerUpgrade}).To(Equal([]string{"check", "backup", "upgrade"}),
		"the names are an API: kubectl logs -c and the plugin's logs command use them")
	g.Expect(JobDir("uid")).To(Equal("/var/lib/nodeupgrade/jobs/uid"))
	g.Expect(KeadmPath("uid")).To(Equal("/var/lib/nodeupgrade/jobs/uid/bin/keadm"))
	g.Expect(HostRunnerPath("uid")).To(Equal("/var/lib/nodeupgrade/jobs/uid/bin/nodeupgrade-runner"))
	g.Expect(UnitPath("uid")).To(Equal("/etc/systemd/system/nodeupgrade-uid.service"))
	g.Expect(StepRecordFile(StepBackup)).To(Equal("backup.json"))
}

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
