package bench

import (
	"encoding/json"
	"html"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
)

// hostile are the strings a crafted report.json puts in every field.
var hostile = []string{
	`<script>alert(1)</script>`,
	`"><script>alert(2)</script><a href="`,
	`' onmouseover='alert(3)' x='`,
	`</svg><script>alert(4)</script><svg>`,
	`</title><script>alert(5)</script>`,
	`</style></textarea></pre><img src=x onerror=alert(6)>`,
	`<svg onload=alert(7)><foreignObject><iframe src="javascript:alert(8)"></iframe>`,
	`javascript:alert(9)`,
	`data:text/html;base64,PHNjcmlwdD5hbGVydCgxMCk8L3NjcmlwdD4=`,
	`//evil.example/x`,
	`<!-- x --><![CDATA[ ]]>&lt;script&gt;&#60;`,
	"nul\x00 esc\x1b[31m bell\x07 cr\r lf\n tab\t del\x7f c1\u0085 rlo\u202e lri\u2066 bad\xff end",
	"a|b\n| --- | --- |\n[click](javascript:alert(11)) ![i](x) `code` *em* _u_ <b>raw</b> # h\n```\nfence",
	strings.Repeat(`<script>"'&`, 20_000), // 220 kB in every field
}

// hostileLinks are profile paths that must never become links.
var hostileLinks = []string{
	"javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)", "java\tscript:alert(1)", "\x01javascript:alert(1)",
	"data:text/html,<script>alert(1)</script>", "vbscript:x", "https://evil.example/p", "//evil.example/p", "///evil",
	`\\evil.example\p`, `/\evil.example`, "/etc/passwd", "prof/../../x:y", "\u202eprof/cpu.pprof",
}

// poison sets every string reachable from v to p, and renames every map
// key to p plus the key: whatever field a report grows, the test covers it.
func poison(v reflect.Value, p string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(p)
	case reflect.Pointer:
		if !v.IsNil() {
			poison(v.Elem(), p)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			return
		}
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				poison(f, p)
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			poison(v.Index(i), p)
		}
	case reflect.Map:
		if v.IsNil() || v.Type().Key().Kind() != reflect.String {
			return
		}
		m := reflect.MakeMap(v.Type())
		for it := v.MapRange(); it.Next(); {
			val := reflect.New(v.Type().Elem()).Elem()
			val.Set(it.Value())
			if val.Kind() != reflect.Pointer {
				poison(val, p)
			} else if !val.IsNil() {
				cp := reflect.New(val.Elem().Type())
				cp.Elem().Set(val.Elem())
				poison(cp, p)
				val = cp
			}
			m.SetMapIndex(reflect.ValueOf(p+it.Key().String()), val)
		}
		v.Set(m)
	}
}

// hostileReport is the benign fakeReport with payload p in every string
// field of the report and of copies of three results (between them every
// map a result has), saved as report.json and read back as `ffbench report
// --in` reads it.
func hostileReport(t *testing.T, p string) *Report {
	t.Helper()
	rep := fakeReport()
	var bad []*Result
	raw, _ := json.Marshal([]*Result{rep.Results[0], rep.Find(ScenarioE2E + "/open/P=16"), rep.Find(ScenarioClaimPath + "/fused/P=16")})
	if err := json.Unmarshal(raw, &bad); err != nil {
		t.Fatal(err)
	}
	for _, r := range bad {
		poison(reflect.ValueOf(r), p)
		r.Lost = 1
	}
	results := rep.Results
	rep.Results = nil
	rep.Failures = []string{"f"}
	rep.Notes = []string{"n"}
	rep.Calibration = &Calibration{Tolerance: 0.1, Rows: []CalibrationRow{{Command: "c", Mode: "m", Conns: 1, Depth: 1, FFBench: 1, ValkeyBenchmark: 1}}}
	poison(reflect.ValueOf(rep), p)
	rep.Schema, rep.SchemaVersion = SchemaName, SchemaVersion
	rep.Results = append(results, bad...)
	rep.Profiles = map[string]string{"cpu": "prof/cpu.pprof", "heap": "prof dir/heap (1)#?.pprof", p: p}
	for i, l := range hostileLinks {
		rep.Profiles[string(rune('a'+i))+"-bad"] = l
	}
	back, _ := roundTrip(t, rep)
	return back
}

// The page's whole vocabulary: any other element or attribute is injected.
var (
	pageTags = set("html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "span", "p", "code", "b", "div",
		"ul", "li", "figure", "figcaption", "svg", "text", "line", "rect", "polyline", "circle", "table", "thead", "tbody",
		"tr", "th", "td", "pre", "a", "details", "summary", "footer")
	pageAttrs = set("lang", "charset", "name", "content", "class", "xmlns", "viewBox", "role", "aria-label", "x", "y", "x1",
		"x2", "y1", "y2", "width", "height", "fill", "stroke", "stroke-width", "stroke-dasharray", "points", "cx", "cy", "r",
		"text-anchor", "transform", "href")
	tagRE  = regexp.MustCompile(`^<(/?)([a-zA-Z][a-zA-Z0-9]*)((?:\s+[a-zA-Z][a-zA-Z0-9:-]*="[^"<>]*")*)\s*(/?)>`)
	attrRE = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9:-]*)="([^"<>]*)"`)
)

func set(xs ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// checkPage fails unless every "<" of page opens or closes an element the
// page is made of, with only its attributes, properly nested (no </svg> or
// </title> from data closes anything), no script, no event handler, no
// style attribute, only relative links, and no control character.
func checkPage(t *testing.T, page string, wantLinks map[string]bool) {
	t.Helper()
	rest, ok := strings.CutPrefix(page, "<!doctype html>")
	if !ok {
		t.Fatal("page does not start with <!doctype html>")
	}
	var stack []string
	inStyle := false
	for {
		i := strings.IndexByte(rest, '<')
		if i < 0 {
			break
		}
		rest = rest[i:]
		m := tagRE.FindStringSubmatch(rest)
		if m == nil {
			t.Fatalf("a '<' that opens no page element: %.120q", rest)
		}
		closing, tag, attrs, selfClosing := m[1] == "/", m[2], m[3], m[4] == "/"
		if !pageTags[tag] {
			t.Fatalf("injected element <%s>: %.120q", tag, rest)
		}
		for _, a := range attrRE.FindAllStringSubmatch(attrs, -1) {
			name, val := a[1], html.UnescapeString(a[2])
			if !pageAttrs[name] {
				t.Fatalf("injected attribute %s=%q on <%s>", name, val, tag)
			}
			if name == "href" && !wantLinks[val] {
				t.Fatalf("link %q is not one of the relative links the report names", val)
			}
		}
		switch {
		case closing:
			if len(stack) == 0 || stack[len(stack)-1] != tag {
				t.Fatalf("</%s> closes %v: data broke the structure", tag, stack)
			}
			stack = stack[:len(stack)-1]
			inStyle = false
		case selfClosing || tag == "meta":
		default:
			stack = append(stack, tag)
			inStyle = tag == "style"
		}
		rest = rest[len(m[0]):]
		if inStyle && strings.ContainsAny(rest[:strings.Index(rest, "</style>")], "<>") {
			t.Fatal("markup inside <style>")
		}
	}
	if len(stack) != 0 {
		t.Fatalf("unclosed elements %v", stack)
	}
	checkPrintable(t, "page", page)
}

// checkPrintable fails on a control character other than newline and tab
// (Go benchmark lines are tab-separated), or a bidirectional override.
func checkPrintable(t *testing.T, what, s string) {
	t.Helper()
	for i, r := range s {
		if (unicode.IsControl(r) && r != '\n' && r != '\t') || isBidiControl(r) {
			t.Fatalf("%s has control character %U at %d: %.80q", what, r, i, s[max(0, i-40):])
		}
	}
}

var (
	mdLinkRE    = regexp.MustCompile(`(^|[^\\])\]\(`) // an unescaped ]( ends a link's text
	cellRE      = regexp.MustCompile(`(^|[^\\])\|`)   // an unescaped | ends a cell
	benchLineRE = regexp.MustCompile(`^Benchmark\S+\t\d+(\t[-+0-9.e]+ \S+)+$`)
)

// checkMarkdown fails unless every table row has its header's cells, no
// text is raw HTML, code or a link (only the relative profile links are),
// and each code block ends at its own fence.
func checkMarkdown(t *testing.T, doc string, wantLinks int) {
	t.Helper()
	checkPrintable(t, "markdown", doc)
	cells, links := -1, 0
	fence := "" // the open code block's fence
	for _, line := range strings.Split(doc, "\n") {
		if fence != "" {
			if l := strings.TrimLeft(line, " "); len(line)-len(l) <= 3 && strings.HasPrefix(l, fence) && strings.Trim(l, "` \t") == "" {
				if line != fence {
					t.Fatalf("data closes a code block: %.80q", line)
				}
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(line, "```") {
			if strings.Trim(line, "`") != "" {
				t.Fatalf("a code fence from data: %.80q", line)
			}
			fence = line
			continue
		}
		if !strings.HasPrefix(line, "|") {
			cells = -1
			if strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "# ffbench report: ") && !strings.HasPrefix(line, "## ") {
				t.Fatalf("a heading from data: %.80q", line)
			}
		} else {
			n := len(cellRE.FindAllString(line, -1))
			if cells == -1 {
				cells = n
			} else if n != cells {
				t.Fatalf("row has %d cell boundaries, header %d: %.120q", n, cells, line)
			}
		}
		for i := 0; i < len(line); i++ {
			switch line[i] {
			case '<', '`':
				if i == 0 || line[i-1] != '\\' {
					t.Fatalf("unescaped %q outside code: %.120q", line[i], line[max(0, i-40):])
				}
			}
		}
		links += len(mdLinkRE.FindAllString(line, -1))
	}
	if fence != "" {
		t.Fatal("unterminated code block")
	}
	if links != wantLinks {
		t.Fatalf("%d links, want the %d relative profile links", links, wantLinks)
	}
}

// TestHostileReport renders a report.json whose every string is hostile
// (script tags, quotes that end attributes, </svg> and </title>, event
// handlers, javascript:/data:/ //host links, control characters, table
// breakers, 1.6 MB strings): the page has no element, attribute or link
// but its own, still shows the benign results and the hostile text as
// text, and the Markdown keeps its tables and has no markup from data.
func TestHostileReport(t *testing.T) {
	t.Parallel()
	for i, p := range hostile {
		t.Logf("payload %d: %.60q", i, p)
		rep := hostileReport(t, p)
		page := HTML(rep)
		links := map[string]bool{"prof/cpu.pprof": true, "prof%20dir/heap%20%281%29%23%3F.pprof": true}
		if href, ok := relLink(p); ok {
			links[href] = true // a plain relative path, percent-encoded: names a file, nothing else
		}
		checkPage(t, page, links)
		for _, want := range []string{"Renew throughput vs partitions", "<td>claim-latency</td>", `<a href="prof/cpu.pprof">prof/cpu.pprof</a>`,
			`<a href="prof%20dir/heap%20%281%29%23%3F.pprof">`, "Correctness FAILED"} {
			if !strings.Contains(page, want) {
				t.Errorf("payload %d: the page lost benign content %q", i, want)
			}
		}
		if strings.Contains(page, "no data in this run") {
			t.Errorf("payload %d: a chart lost its data", i)
		}
		shown := html.EscapeString(string([]rune(clean(p, maxNameRunes))[:min(20, len([]rune(clean(p, maxNameRunes))))]))
		if !strings.Contains(strings.ReplaceAll(page, "&#43;", "+"), shown) {
			t.Errorf("payload %d: its text %q is not shown escaped", i, shown)
		}
		if len(page) > 4<<20 {
			t.Errorf("payload %d: page is %d bytes: strings are not bounded", i, len(page))
		}
		checkMarkdown(t, Markdown(rep), len(links))
		checkPrintable(t, "summary", SummaryTable(rep))
		for _, l := range strings.Split(strings.TrimSpace(BenchLines(rep)), "\n") {
			if strings.HasPrefix(l, "Benchmark") && !benchLineRE.MatchString(l) {
				t.Fatalf("payload %d: not a benchmark line: %.120q", i, l)
			}
		}
	}
}

func TestRelLink(t *testing.T) {
	t.Parallel()
	for _, l := range hostileLinks {
		if href, ok := relLink(l); ok {
			t.Errorf("relLink(%q) = %q, a link", l, href)
		}
	}
	for in, want := range map[string]string{"prof/cpu.pprof": "prof/cpu.pprof", "../p/heap.pprof": "../p/heap.pprof",
		"a b/c(1)#?.pprof": "a%20b/c%281%29%23%3F.pprof", "é.pprof": "%C3%A9.pprof", "50%.pprof": "50%25.pprof"} {
		if got, ok := relLink(in); !ok || got != want {
			t.Errorf("relLink(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestCleanAndMarkdownEscape(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"claim-latency", 13, "claim-latency"},
		{"a\nb\tc\x00d\u202e", 10, "a\uFFFDb\uFFFDc\uFFFDd\uFFFD"},
		{"bad\xffutf8", 10, "bad\uFFFDutf8"},
		{"abcdef", 4, "abcd…"},
		{"µs×→", 3, "µs×…"},
	} {
		if got := clean(c.in, c.max); got != c.want {
			t.Errorf("clean(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
	}
	for in, want := range map[string]string{
		"claim_call":         "claim_call",
		"_x_ *y* `z`":        `\_x\_ \*y\* \` + "`z\\`",
		"a|b":                `a\|b`,
		"[l](javascript:x)":  `\[l\](javascript:x)`,
		"<b>&amp;</b> # ~~s": `\<b\>\&amp;\</b\> \# \~\~s`,
	} {
		if got := md(in, maxTextRunes); got != want {
			t.Errorf("md(%q) = %q, want %q", in, got, want)
		}
	}
}
