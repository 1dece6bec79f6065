package bench

import (
	"context"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromium returns the headless browser, or skips: .ci/run installs the
// Debian package chromium; elsewhere TestHTMLHasCharts still checks the
// page's structure.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (apt-get install chromium); the HTML report's charts are checked in Go only")
	return ""
}

// TestHTMLRendersInChromium opens the report in headless Chromium and
// checks the rendered page has its charts, then takes a screenshot
// (FF_SCREENSHOT=path keeps it for a person to look at).
func TestHTMLRendersInChromium(t *testing.T) {
	t.Parallel()
	bin := chromium(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte(HTML(fakeReport())), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + filepath.Join(dir, "profile")}
	dom, err := exec.CommandContext(ctx, bin, append(args, "--dump-dom", "file://"+page)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	d := string(dom)
	if n := strings.Count(d, "<svg"); n < 8 {
		t.Fatalf("rendered DOM has %d svg charts, want at least 8", n)
	}
	if !strings.Contains(d, "<polyline") || !strings.Contains(d, "Renew throughput vs partitions") {
		t.Fatal("rendered DOM lacks plotted series")
	}
	// The capacity search leads (its card first, its chart with the SLO
	// line), the targets carry their verdicts, and the results table shows
	// lost and dup beside the result's name.
	cards, chartAt, sweepAt := strings.Index(d, `class="cards"`), strings.Index(d, "Capacity at claim p99 ≤ 5.00ms: claim p99 against the arrival rate"),
		strings.Index(d, "<h2>Partition sweep</h2>")
	if cards < 0 || chartAt < cards || sweepAt < chartAt || !strings.Contains(d[cards:cards+300], "capacity at claim p99") {
		t.Errorf("the capacity is not at the top: cards at %d, its chart at %d, the sweep at %d", cards, chartAt, sweepAt)
	}
	if !strings.Contains(d, `class="slo"`) || !strings.Contains(d, `<b class="good">PASS</b>`) || !strings.Contains(d, `<b class="miss">MISS</b>`) {
		t.Error("rendered DOM lacks the SLO line or the targets' verdicts")
	}
	if !strings.Contains(d, "<th>P</th><th>lost</th><th>dup</th><th>throughput</th>") {
		t.Error("the results table does not lead with lost and dup")
	}
	shot := os.Getenv("FF_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(dir, "report.png")
	}
	cmd := exec.CommandContext(ctx, bin, append(args, "--window-size=1400,2400", "--screenshot="+shot, "file://"+page)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	st, err := os.Stat(shot)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < 50_000 {
		t.Fatalf("screenshot %s is %d bytes: the page did not render", shot, st.Size())
	}
}

// TestHostileReportInChromium opens the page of a report whose every string
// is hostile (TestHostileReport's payloads in one) and checks the DOM the
// browser built: only the page's own elements and attributes (no script,
// image, frame or foreign object, no event handler, no style), every link
// relative, and the charts and the hostile text still shown.
func TestHostileReportInChromium(t *testing.T) {
	t.Parallel()
	bin := chromium(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte(HTML(hostileReport(t, strings.Join(hostile[:len(hostile)-1], " ")))), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom, err := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--dump-dom", "file://"+page).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	// In the serialized DOM a "<" in text is "&lt;": every "<" is an element.
	d := string(dom)
	elems := regexp.MustCompile(`<([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^\s=>]+(?:="[^"]*")?)*)\s*/?>`).FindAllStringSubmatch(d, -1)
	if starts := strings.Count(d, "<") - strings.Count(d, "</") - strings.Count(d, "<!"); len(elems) != starts {
		t.Fatalf("%d elements parsed of %d start tags", len(elems), starts)
	}
	for _, m := range elems {
		if !pageTags[m[1]] {
			t.Errorf("the DOM has a <%s> element", m[1])
		}
		for _, a := range regexp.MustCompile(`([^\s=]+)(?:="([^"]*)")?`).FindAllStringSubmatch(m[2], -1) {
			if !pageAttrs[a[1]] {
				t.Errorf("the DOM has a %s attribute on <%s>", a[1], m[1])
			}
			if _, ok := relLink(html.UnescapeString(a[2])); a[1] == "href" && !ok {
				t.Errorf("the DOM links to %q", a[2])
			}
		}
	}
	if n := strings.Count(d, "<svg"); n < 8 || !strings.Contains(d, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the page lost its charts (%d) or the hostile text", n)
	}
}
