// Package promtool checks the dashboard and alert expressions with Prometheus' PromQL parser
// (promql_test.go); build.sh builds promtool from the same pinned module.
package promtool
