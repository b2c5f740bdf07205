#!/usr/bin/env bash
# Runs the Go tests of this module (promql_test.go): the dashboard's and the alerts' expressions
# parsed with Prometheus' PromQL parser, and, with TMO_METRICS_SCRAPE naming a /metrics scrape (what
# tests/observability.rs does), checked against it. Arguments go to `go test`.
# Environment: GOTOOLCHAIN (as in tests/argocd-health/run.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v go >/dev/null || { echo "promtool: 'go' not found on PATH (Go >= the go line of go.mod)" >&2; exit 1; }
export GOWORK=off # a go.work further up must not change what gets built
if [[ -z "${GOTOOLCHAIN:-}" ]]; then
  go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  need_minor="$(sed -nE 's/^go 1\.([0-9]+).*/\1/p' go.mod)"
  if [[ "$go_minor" =~ ^[0-9]+$ && "$need_minor" =~ ^[0-9]+$ ]] && (( go_minor < need_minor )); then
    export GOTOOLCHAIN=go1.27.3
  fi
fi
exec go test "$@" ./...
