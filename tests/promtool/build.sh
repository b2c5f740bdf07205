#!/usr/bin/env bash
# Builds (or reuses) the `promtool` binary `make promtool-test` runs (`promtool check rules` on
# deploy/prometheus/alerts.yaml), from the Go module pinned by this directory's go.mod + go.sum
# (github.com/prometheus/prometheus). The binary lands in a cache directory outside the clone, keyed
# by the hash of go.mod + go.sum + this script, so only the first build on a machine pays.
# Concurrent callers are serialised with flock. Progress goes to stderr; the last stdout line is the directory holding `promtool`.
#
# Usage: build.sh [--dir]   (--dir only prints the directory, building nothing)
# Environment: TMO_CACHE_DIR (cache root, default $HOME/.cache/traffic-mirror-operator),
# GOTOOLCHAIN (passed through to go; the go line of go.mod decides the minimum).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir_only=false
if [[ "${1:-}" == "--dir" ]]; then
  dir_only=true
  shift
fi
[[ -f "$here/go.mod" && -f "$here/go.sum" ]] || { echo "build.sh: $here has no go.mod + go.sum" >&2; exit 1; }
cache_root="${TMO_CACHE_DIR:-$HOME/.cache/traffic-mirror-operator}"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)"
out="$cache_root/promtool/$key"

if $dir_only; then # where the binary is (or would be), without building
  echo "$out"
  exit 0
fi

complete() { [[ -x "$out/promtool" ]]; }

if complete; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache_root/promtool"
exec 9>"$cache_root/promtool/build.lock"
flock 9
if complete; then # another caller finished the build while we waited for the lock
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: 'go' not found on PATH (Go >= the go line of $here/go.mod)" >&2; exit 1; }
cd "$here"
export CGO_ENABLED=0
export GOWORK=off # a go.work further up must not change what gets built
if [[ -z "${GOTOOLCHAIN:-}" ]]; then
  go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  need_minor="$(sed -nE 's/^go 1\.([0-9]+).*/\1/p' go.mod)"
  if [[ "$go_minor" =~ ^[0-9]+$ && "$need_minor" =~ ^[0-9]+$ ]] && (( go_minor < need_minor )); then
    export GOTOOLCHAIN=go1.27.3
  fi
fi

version="$(go list -m -f '{{.Version}}' github.com/prometheus/prometheus)" # e.g. v0.316.0
echo "building promtool $version into $out (the first build on a machine takes a few minutes)" >&2
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
# -trimpath and no debug info keep the binary small; tests need no symbols. `remove_all_sd` (the tag
# Prometheus' plugins/ files honour) leaves out the service-discovery clients (AWS, Azure, GCE, ...):
# `check rules` needs none of them, and without them the first build takes a fraction of the time.
go build -trimpath -tags remove_all_sd -ldflags="-s -w" -o "$out.tmp/promtool" \
  github.com/prometheus/prometheus/cmd/promtool
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
