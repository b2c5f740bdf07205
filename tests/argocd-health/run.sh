#!/usr/bin/env bash
# Runs the Argo CD health-check tests (go test in this module: deploy/argocd/health.lua and its
# copies in gopher-lua over fixtures/). The module is pinned by go.mod + go.sum; the first run on a
# machine downloads gopher-lua, yaml.v3 and cli-utils (kstatus) with its k8s.io deps into the Go module cache (~/go/pkg/mod), later runs reuse
# it and Go's build and test caches.
# Environment: GOTOOLCHAIN (passed through to go; as in tests/control-plane/build.sh, a local Go
# older than this module's go line takes the approved newer toolchain from the module proxy).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v go >/dev/null || { echo "argocd-health: 'go' not found on PATH (Go >= the go line of go.mod)" >&2; exit 1; }
export GOWORK=off # a go.work further up must not change what gets built
if [[ -z "${GOTOOLCHAIN:-}" ]]; then
  go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  need_minor="$(sed -nE 's/^go 1\.([0-9]+).*/\1/p' go.mod)"
  if [[ "$go_minor" =~ ^[0-9]+$ && "$need_minor" =~ ^[0-9]+$ ]] && (( go_minor < need_minor )); then
    export GOTOOLCHAIN=go1.27.3
  fi
fi
exec go test "$@" ./...
