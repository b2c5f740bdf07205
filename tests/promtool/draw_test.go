package promtool

// Draws the dashboard (docs/dashboard.svg) from deploy/grafana/traffic-mirror-operator.json and two
// /metrics scrapes of a real run: the scrapes are loaded into a Prometheus TSDB, each panel's
// queries are evaluated by Prometheus' own PromQL engine at the time of the second scrape, and each
// panel is drawn where its gridPos puts it, with its series' values (stat panels as a number, the
// others as one bar per series, since two scrapes hold no history). tests/observability.rs runs it
// with TMO_METRICS_SCRAPES ("<earlier>,<later>", each file starting with `# scraped-at-ms <ms>`)
// and TMO_DASHBOARD_SVG (where to write); without them it is skipped.

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/teststorage"
)

type panelDef struct {
	Title   string                   `json:"title"`
	Type    string                   `json:"type"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

// series is one drawn value: its legend and value.
type series struct {
	legend string
	value  float64
}

// loadScrape appends one scrape file to the storage at its scraped-at time; returns that time.
func loadScrape(t *testing.T, st *teststorage.TestStorage, path string) int64 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	ts, err := strconv.ParseInt(strings.TrimPrefix(lines[0], "# scraped-at-ms "), 10, 64)
	if err != nil {
		t.Fatalf("%s: first line %q: %v", path, lines[0], err)
	}
	p := parser.NewParser(parser.Options{})
	app := st.Appender(context.Background())
	for _, line := range lines[1:] {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cut := strings.LastIndex(line, " ")
		ls, err := p.ParseMetric(line[:cut])
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		v, err := strconv.ParseFloat(line[cut+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if _, err := app.Append(0, ls, ts, v); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return ts
}

var legendVar = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// evaluate runs one panel query at `at`, with $__rate_interval covering both scrapes.
func evaluate(t *testing.T, eng *promql.Engine, st *teststorage.TestStorage, expr, legend string, window time.Duration, at time.Time) []series {
	t.Helper()
	e := strings.ReplaceAll(expr, "$__rate_interval", fmt.Sprintf("%ds", int(window.Seconds())))
	q, err := eng.NewInstantQuery(context.Background(), st, nil, e, at)
	if err != nil {
		t.Fatalf("%s: %v", e, err)
	}
	vec, err := q.Exec(context.Background()).Vector()
	if err != nil {
		t.Fatalf("%s: %v", e, err)
	}
	out := make([]series, 0, len(vec))
	for _, s := range vec {
		name := legendVar.ReplaceAllStringFunc(legend, func(m string) string {
			return s.Metric.Get(legendVar.FindStringSubmatch(m)[1])
		})
		if name == "" {
			name = s.Metric.String()
		}
		out = append(out, series{name, s.F})
	}
	return out
}

func format(v float64, unit string) string {
	switch unit {
	case "bytes":
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case "s":
		return fmt.Sprintf("%.3g s", v)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

const cell, row = 50, 30 // pixels per grid column and grid row

// drawPanel writes one panel's SVG group.
func drawPanel(b *strings.Builder, p panelDef, data []series) {
	x, y, w, h := p.GridPos.X*cell, p.GridPos.Y*row+40, p.GridPos.W*cell-6, p.GridPos.H*row-6
	fmt.Fprintf(b, `<g transform="translate(%d,%d)"><rect width="%d" height="%d" rx="4" fill="#181b1f" stroke="#2c3235"/>`, x, y, w, h)
	fmt.Fprintf(b, `<text x="8" y="18" fill="#ccccdc" font-size="13" font-weight="bold">%s</text>`, html.EscapeString(p.Title))
	if len(data) == 0 {
		fmt.Fprintf(b, `<text x="%d" y="%d" fill="#8e8e8e" font-size="13" text-anchor="middle">No data</text></g>`, w/2, h/2+10)
		return
	}
	if p.Type == "stat" {
		total := 0.0
		for _, s := range data {
			total += s.value
		}
		fmt.Fprintf(b, `<text x="%d" y="%d" fill="#73bf69" font-size="30" text-anchor="middle">%s</text></g>`, w/2, h/2+18, format(total, p.FieldConfig.Defaults.Unit))
		return
	}
	maxV := 0.0
	for _, s := range data {
		if s.value > maxV {
			maxV = s.value
		}
	}
	lineH := 14
	room := (h - 30) / lineH
	for i, s := range data {
		if i >= room {
			fmt.Fprintf(b, `<text x="8" y="%d" fill="#8e8e8e" font-size="10">… %d more series</text>`, 30+i*lineH+8, len(data)-i)
			break
		}
		barW := 0
		if maxV > 0 {
			barW = int(float64(w/2-20) * s.value / maxV)
		}
		yy := 26 + i*lineH
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="10" fill="#5794f2"/>`, w/2, yy, barW)
		fmt.Fprintf(b, `<text x="8" y="%d" fill="#ccccdc" font-size="10">%s</text>`, yy+9, html.EscapeString(s.legend))
		fmt.Fprintf(b, `<text x="%d" y="%d" fill="#ccccdc" font-size="10">%s</text>`, w/2+barW+4, yy+9, format(s.value, p.FieldConfig.Defaults.Unit))
	}
	b.WriteString(`</g>`)
}

func TestDrawDashboard(t *testing.T) {
	scrapes, out := os.Getenv("TMO_METRICS_SCRAPES"), os.Getenv("TMO_DASHBOARD_SVG")
	if scrapes == "" || out == "" {
		t.Skip("TMO_METRICS_SCRAPES / TMO_DASHBOARD_SVG not set: tests/observability.rs runs this after a run")
	}
	paths := strings.Split(scrapes, ",")
	if len(paths) != 2 {
		t.Fatalf("TMO_METRICS_SCRAPES: want two files, got %q", scrapes)
	}
	st := teststorage.New(t)
	t0, t1 := loadScrape(t, st, paths[0]), loadScrape(t, st, paths[1])
	if t1 <= t0 {
		t.Fatalf("the second scrape (%d) is not later than the first (%d)", t1, t0)
	}
	window := time.Duration(t1-t0+1000) * time.Millisecond
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string     `json:"title"`
		Panels []panelDef `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">`, 24*cell, 36*row+50)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#111217"/><text x="8" y="26" fill="#ccccdc" font-size="18">%s</text>`, html.EscapeString(d.Title))
	fmt.Fprintf(&b, `<text x="%d" y="26" fill="#8e8e8e" font-size="11" text-anchor="end">values at the end of a test run (tests/observability.rs), over %s; drawn by tests/promtool/draw_test.go</text>`, 24*cell-10, window.Round(time.Second))
	withData := map[string]bool{}
	at := time.UnixMilli(t1)
	for _, p := range d.Panels {
		var data []series
		for _, tg := range p.Targets {
			data = append(data, evaluate(t, eng, st, tg.Expr, tg.LegendFormat, window, at)...)
		}
		sort.Slice(data, func(i, j int) bool { return data[i].legend < data[j].legend })
		withData[p.Title] = len(data) > 0
		drawPanel(&b, p, data)
	}
	b.WriteString("</svg>\n")
	// The run had a leader, objects, reconciles and cloud calls: those panels must show data.
	for _, title := range []string{"Leader", "Objects by kind and Ready state", "Reconcile rate", "Cloud calls by operation and outcome", "Memory"} {
		if !withData[title] {
			t.Errorf("panel %q drew no data", title)
		}
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
