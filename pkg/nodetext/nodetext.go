// Package nodetext makes text that comes from edge nodes safe to show: a
// node (or whoever controls it) writes its upgrade pod's termination
// messages, waiting messages and logs, and that text travels into the job's
// status, Events, the controller's logs and `kubectl nodeupgrade`'s output,
// that is, into operators' terminals. Clean is the one function every such
// path calls.
package nodetext

import (
	"unicode"
	"unicode/utf8"
)

// Clean returns s with everything a terminal could act on written out as
// visible, inert escapes, and everything else unchanged:
//
//   - C0 controls but newline and tab, DEL and C1 controls: ESC ("\x1b"),
//     which starts every terminal escape sequence, CSI ("\u009b"), carriage
//     return ("\r", which would let a line overwrite itself), BEL, ...
//   - Unicode format characters and line or paragraph separators: the bidi
//     overrides and isolates that reorder what a reader sees ("\u202e"),
//     zero-width characters, U+2028.
//   - Bytes that are not UTF-8 ("\xff").
//
// Escapes are Go's: \xNN for a byte or an ASCII control, \uNNNN and
// \UNNNNNNNN for other runes, \r for a carriage return. The result is valid
// UTF-8, at most four times as long as s, and Clean of it is itself. Text
// with nothing to escape comes back as it is, without a copy. Newlines and
// tabs stay: reasons carry the last lines of keadm's output.
func Clean(s string) string {
	i := firstToEscape(s)
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s)+16)
	b = append(b, s[:i]...)
	for j := i; j < len(s); {
		r, size := utf8.DecodeRuneInString(s[j:])
		switch {
		case r == utf8.RuneError && size <= 1:
			b = appendEscape(b, `\x`, rune(s[j]), 2)
		case r == '\r':
			b = append(b, `\r`...)
		case !unsafe(r):
			b = append(b, s[j:j+size]...)
		case r < utf8.RuneSelf:
			b = appendEscape(b, `\x`, r, 2)
		case r <= 0xffff:
			b = appendEscape(b, `\u`, r, 4)
		default:
			b = appendEscape(b, `\U`, r, 8)
		}
		j += size
	}
	return string(b)
}

// appendEscape appends prefix and r in digits lower-case hex digits.
func appendEscape(b []byte, prefix string, r rune, digits int) []byte {
	const hex = "0123456789abcdef"
	b = append(b, prefix...)
	for shift := 4 * (digits - 1); shift >= 0; shift -= 4 {
		b = append(b, hex[(r>>shift)&0xf])
	}
	return b
}

// firstToEscape is the offset of the first rune or byte Clean escapes,
// len(s) when there is none.
func firstToEscape(s string) int {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 || unsafe(r) {
			return i
		}
		i += size
	}
	return len(s)
}

// unsafe is true for the runes Clean escapes. U+FFFD itself is text; an
// invalid byte, which also decodes to it, is told apart by its size.
func unsafe(r rune) bool {
	if r == '\n' || r == '\t' {
		return false
	}
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}
