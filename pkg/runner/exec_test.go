package runner

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

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
