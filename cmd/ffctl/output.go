package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
)

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints aligned columns; cells are cleaned of tabs and newlines.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(t.tw, "\t")
		}
		io.WriteString(t.tw, cell(c))
	}
	io.WriteString(t.tw, "\n")
}

func (t *table) flush() error { return t.tw.Flush() }

// cell makes s safe for one table cell: "-" when empty, control bytes
// shown as spaces, at most 80 runes.
func cell(s string) string { return cellN(s, 80) }

// cellN is cell with at most n runes.
func cellN(s string, n int) string {
	if s == "" {
		return "-"
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n-1]) + "…"
	}
	return s
}

// when formats a time for a table ("-" when zero), in UTC to the
// millisecond.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func itoa(n int) string { return strconv.Itoa(n) }

// tagsText shows tags as "k=v" pairs, sorted, space-separated.
func tagsText(tags map[string]string) string {
	kvs := make([]string, 0, len(tags))
	for k, v := range tags {
		kvs = append(kvs, k+"="+v)
	}
	slices.Sort(kvs)
	return strings.Join(kvs, " ")
}

// kv prints "key  value" lines, aligned.
func kv(w io.Writer, pairs ...string) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(tw, "%s\t%s\n", pairs[i], cellN(pairs[i+1], 1000))
	}
	return tw.Flush()
}

// payloadText shows bytes as text when they are printable UTF-8, else as
// "base64:<...>".
func payloadText(b []byte) string {
	if utf8.Valid(b) && !strings.ContainsFunc(string(b), func(r rune) bool {
		return unicode.IsControl(r) && r != '\n' && r != '\t'
	}) {
		return string(b)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

// payloadJSON sets the JSON form of bytes: text in payload when it is
// valid UTF-8, else base64 in payload_base64.
func payloadJSON(b []byte) (text string, b64 string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return "", base64.StdEncoding.EncodeToString(b)
}
