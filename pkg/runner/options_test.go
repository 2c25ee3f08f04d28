package runner

import (
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

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
