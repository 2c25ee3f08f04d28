package nodetext

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestClean(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain text stays", "upgrade to v1.22.0 failed: keadm exited 1", "upgrade to v1.22.0 failed: keadm exited 1"},
		{"newlines and tabs stay", "rollback failed\n\tE0101 keadm: lock held", "rollback failed\n\tE0101 keadm: lock held"},
		{"non-ASCII text stays", "Überprüfung fehlgeschlagen: 磁盘 92% ✓ \uFFFD", "Überprüfung fehlgeschlagen: 磁盘 92% ✓ \uFFFD"},
		{"colour sequence", "\x1b[31mERROR\x1b[0m", `\x1b[31mERROR\x1b[0m`},
		{"window title (OSC) with BEL", "\x1b]0;pwned\x07ok", `\x1b]0;pwned\x07ok`},
		{"clear screen and home", "\x1b[2J\x1b[H", `\x1b[2J\x1b[H`},
		{"8-bit CSI", "a\u009b31mb", `a\u009b31mb`},
		{"carriage return hides a line", "Failed\rSuccess", `Failed\rSuccess`},
		{"NUL, backspace, DEL", "a\x00b\x08c\x7fd", `a\x00b\x08c\x7fd`},
		{"bidi override", "file\u202Etxt.exe", `file\u202etxt.exe`},
		{"bidi isolate and zero width", "a\u2066b\u200Bc", `a\u2066b\u200bc`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"tag character (non-BMP format)", "a\U000E0041b", `a\U000e0041b`},
		{"invalid UTF-8", "a\xffb\xc3", `a\xffb\xc3`},
		{"escapes already written out stay", `\x1b[31m`, `\x1b[31m`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Clean(tc.in); got != tc.want {
				t.Errorf("Clean(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCleanDoesNotCopyCleanText(t *testing.T) {
	s := strings.Repeat("keadm output line\n", 100)
	if allocs := testing.AllocsPerRun(100, func() { _ = Clean(s) }); allocs != 0 {
		t.Errorf("Clean of clean text allocated %v times", allocs)
	}
}

// FuzzClean checks Clean's promises on any input: valid UTF-8 out, no rune
// a terminal acts on but newline and tab, clean text unchanged, Clean of
// its own output unchanged, and at most four bytes out per byte in.
func FuzzClean(f *testing.F) {
	for _, s := range []string{
		"", "ok", "\x1b[31mred\x1b[0m", "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "a\u009bb", "\r\n\t",
		"\u202e\u2066\u200b\u2028\u2029\ufeff", "\xff\xfe\xc3", "\U000E0001", `\x1b`, "日本語 ✓",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Clean(in)
		if !utf8.ValidString(out) {
			t.Fatalf("Clean(%q) = %q: not valid UTF-8", in, out)
		}
		for _, r := range out {
			if r != '\n' && r != '\t' && (unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)) {
				t.Fatalf("Clean(%q) = %q: keeps %U", in, out, r)
			}
		}
		if utf8.ValidString(in) && strings.IndexFunc(in, unsafe) < 0 && out != in {
			t.Fatalf("Clean(%q) = %q: changed clean text", in, out)
		}
		if again := Clean(out); again != out {
			t.Fatalf("Clean(%q) = %q, but Clean of that = %q", in, out, again)
		}
		if len(out) > 4*len(in) {
			t.Fatalf("Clean(%q) is %d bytes long, more than 4 x %d", in, len(out), len(in))
		}
	})
}
