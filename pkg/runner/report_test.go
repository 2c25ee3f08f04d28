package runner

import (
	"strings"
	"testing"
	"unicode/utf8"

	. "github.com/onsi/gomega"
)

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
