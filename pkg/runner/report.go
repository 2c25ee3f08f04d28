package runner

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// failed is r as the report of a step that failed for reason, with the
// exit code that says how.
func (r Report) failed(code int, reason string) (Report, int) {
	r.Result, r.Reason = ResultFailed, reason
	return r, code
}

// truncationMark replaces the part of a too-long reason that was cut.
const truncationMark = "\n[... truncated ...]\n"

// headKeep is how much of a reason's start survives truncation: the summary
// line comes first, the most recent output last, and both matter.
const headKeep = 512

// Marshal encodes r as JSON of at most MaxTerminationMessageBytes, cutting
// the middle of Reason (keeping its summary head and its output tail) when
// needed.
func (r Report) Marshal() []byte {
	data := encode(r)
	if len(data) <= MaxTerminationMessageBytes {
		return data
	}
	reason := r.Reason
	head := runeStart(reason, min(headKeep, len(reason)))
	// JSON escaping makes the encoded size of a cut hard to predict (a
	// control character takes six bytes), so binary-search the longest tail
	// that fits.
	withTail := func(n int) []byte {
		cut := r
		cut.Reason = reason[:head] + truncationMark + reason[runeStart(reason, len(reason)-n):]
		return encode(cut)
	}
	lo, hi := 0, len(reason)-head // lo always fits, or nothing does
	best := withTail(0)
	if len(best) > MaxTerminationMessageBytes {
		// Only reachable with absurdly long versions; keep the flags.
		cut := r
		cut.Reason = strings.TrimSpace(truncationMark)
		return encode(cut)
	}
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if d := withTail(mid); len(d) <= MaxTerminationMessageBytes {
			lo, best = mid, d
		} else {
			hi = mid - 1
		}
	}
	return best
}

func encode(r Report) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Output holds <, > and & often; escaping them would waste the budget.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		// Report has only strings and bools: Encode cannot fail.
		panic(err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// runeStart moves i back to the start of the rune containing it, so cutting
// at i never splits a UTF-8 sequence.
func runeStart(s string, i int) int {
	if i >= len(s) {
		return len(s)
	}
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}
