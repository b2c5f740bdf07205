package promtool

// Checks the Grafana dashboard (deploy/grafana) and the alert rules (deploy/prometheus) against
// what a running operator exports: every expression parses with Prometheus' own PromQL parser, every
// metric a selector names has samples in a /metrics scrape, and every label a selector matches on or
// an aggregation groups by is on those samples. The scrape comes from tests/observability.rs
// (metric_labels_and_values_match_the_docs), which scrapes a real operator after a run, writes the
// text to a file and runs this test with TMO_METRICS_SCRAPE naming it; without it the test is
// skipped (`go test` alone has no operator to scrape).

import (
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

const (
	dashboardPath = "../../deploy/grafana/traffic-mirror-operator.json"
	rulesPath     = "../../deploy/prometheus/alerts.yaml"
)

// Labels Prometheus adds to every scraped series (target labels), so an expression may group by
// them although /metrics does not carry them.
var targetLabels = map[string]bool{"instance": true, "job": true, "namespace": true, "pod": true, "service": true}

// grafanaVariables are the Grafana variables the dashboard's expressions use, with a value of the
// same PromQL type, so the parser sees what Prometheus receives.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m")

// dashboardExprs returns "panel title: expr" -> expr for every target of the dashboard.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out["panel "+p.Title+": "+tg.Expr] = grafanaVariables.Replace(tg.Expr)
		}
	}
	return out
}

// ruleExprs returns "alert name" -> expr for every rule of the rule file.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", rulesPath, err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	return out
}

// scraped maps each sample name of a /metrics text to the union of its label names.
func scraped(t *testing.T, text string) map[string]map[string]bool {
	t.Helper()
	p := parser.NewParser(parser.Options{})
	out := map[string]map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series := line[:strings.LastIndex(line, " ")]
		ls, err := p.ParseMetric(series)
		if err != nil {
			t.Fatalf("scrape line %q: %v", line, err)
		}
		name := ls.Get(labels.MetricName)
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		ls.Range(func(l labels.Label) {
			if l.Name != labels.MetricName {
				out[name][l.Name] = true
			}
		})
	}
	return out
}

// problems lists what in expr does not match the scrape.
func problems(expr parser.Expr, metrics map[string]map[string]bool) []string {
	var out []string
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			out = append(out, selectorProblems(n, metrics)...)
		case *parser.AggregateExpr:
			out = append(out, groupingProblems(n, metrics)...)
		}
		return nil
	})
	return out
}

func selectorProblems(vs *parser.VectorSelector, metrics map[string]map[string]bool) []string {
	have, ok := metrics[vs.Name]
	if !ok {
		return []string{"metric " + vs.Name + " is not in /metrics"}
	}
	var out []string
	for _, m := range vs.LabelMatchers {
		if m.Name != labels.MetricName && !have[m.Name] {
			out = append(out, "label "+m.Name+" is not on "+vs.Name)
		}
	}
	return out
}

// groupingProblems: a `by (...)` label must be on some series the aggregation reads (or be a
// target label).
func groupingProblems(agg *parser.AggregateExpr, metrics map[string]map[string]bool) []string {
	if agg.Without {
		return nil
	}
	available := map[string]bool{}
	parser.Inspect(agg.Expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			for l := range metrics[vs.Name] {
				available[l] = true
			}
		}
		return nil
	})
	var out []string
	for _, l := range agg.Grouping {
		if !available[l] && !targetLabels[l] {
			out = append(out, "grouping label "+l+" is on none of the series of "+agg.String())
		}
	}
	return out
}

// Every expression parses (this runs without a scrape too: `make promtool-test`).
func TestExpressionsParse(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	all := dashboardExprs(t)
	for k, v := range ruleExprs(t) {
		all[k] = v
	}
	if len(all) < 10 {
		t.Fatalf("only %d expressions found", len(all))
	}
	for where, e := range all {
		if _, err := p.ParseExpr(e); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
}

func TestExpressionsMatchALiveScrape(t *testing.T) {
	path := os.Getenv("TMO_METRICS_SCRAPE")
	if path == "" {
		t.Skip("TMO_METRICS_SCRAPE not set: tests/observability.rs runs this with a live scrape")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	metrics := scraped(t, string(raw))
	p := parser.NewParser(parser.Options{})
	all := dashboardExprs(t)
	for k, v := range ruleExprs(t) {
		all[k] = v
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, where := range keys {
		expr, err := p.ParseExpr(all[where])
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		for _, pr := range problems(expr, metrics) {
			t.Errorf("%s: %s", where, pr)
		}
	}
}
