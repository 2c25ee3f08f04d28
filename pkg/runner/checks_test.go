package runner

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
)

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
