package bench

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// A report.json is input: `ffbench report --in` renders whatever file it is
// given, so every string in it (scenario, variant, unit and latency names,
// versions, notes, failures, profile paths) is untrusted wherever it lands.
// The HTML page escapes through html/template; the helpers here make such a
// string printable and bounded first, and escape it for Markdown.

// Limits on a report string as rendered, in runes; longer is cut with "…".
const (
	maxNameRunes = 120  // a name: scenario, variant, unit, latency, profile kind, a version
	maxTextRunes = 2000 // free text: a note, a failure, a profile path
)

// clean returns s as one printable line of at most limit runes: control
// characters (newlines and tabs included), bidirectional overrides and
// invalid UTF-8 become U+FFFD, so a name can neither break a table or a
// terminal nor reorder what is shown around it.
func clean(s string, limit int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == limit {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError || unicode.IsControl(r) || isBidiControl(r) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// isBidiControl reports the invisible characters that change the direction
// of the text after them (U+202A..U+202E, U+2066..U+2069, marks).
func isBidiControl(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}

// relLink returns the href for a file path the report links to (a profile,
// written relative to the report), or false when p is not a plain relative
// path: a scheme (javascript:, data:, http:), a host (//evil), an absolute
// or backslashed path, a control character, or more than maxTextRunes bytes
// make it text, never a link.
// The href keeps letters, digits and -_.~/ and percent-encodes every other
// byte, so it names the file p names and nothing else.
func relLink(p string) (string, bool) {
	if p == "" || len(p) > maxTextRunes || p != strings.TrimSpace(p) || strings.HasPrefix(p, "/") || strings.ContainsAny(p, `\:`) || !utf8.ValidString(p) {
		return "", false
	}
	for _, r := range p {
		if unicode.IsControl(r) || isBidiControl(r) {
			return "", false
		}
	}
	var b strings.Builder
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-_.~/", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String(), true
}

// md returns s cleaned (clean) and escaped for Markdown text and table
// cells: a backslash before every character that could start markup (code,
// emphasis, links, raw HTML, entities, a cell boundary), so the text shows
// as written. An underscore inside a word stays as it is (claim_call):
// CommonMark does not read it as emphasis.
func md(s string, limit int) string {
	s = clean(s, limit)
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		switch r {
		case '\\', '`', '*', '[', ']', '<', '>', '|', '&', '~', '#':
			b.WriteByte('\\')
		case '_':
			if i == 0 || i == len(rs)-1 || !isWordRune(rs[i-1]) || !isWordRune(rs[i+1]) {
				b.WriteByte('\\')
			}
		}
		b.WriteRune(r)
	}
	return b.String()
}

// codeBlock fences text (ending in a newline) as a Markdown code block
// whose fence is longer than any run of backticks in it, so nothing in it
// closes the block early.
func codeBlock(text string) string {
	longest, run := 0, 0
	for i := 0; i < len(text); i++ {
		if text[i] == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	f := strings.Repeat("`", max(3, longest+1))
	return f + "\n" + text + f + "\n"
}

// token returns s cleaned and with no spaces, for one field of a Go
// benchmark line (a name, a unit), which ends at the first blank.
func token(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || r == utf8.RuneError {
			return '_'
		}
		return r
	}, clean(s, maxNameRunes))
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }
