#!/usr/bin/env bash
# Builds (or reuses) the `helm` binary the chart tests run (make helm-test), from the Go module
# pinned by this directory's go.mod + go.sum (helm.sh/helm/v3). The binary lands in a cache
# directory outside the clone, keyed by the hash of go.mod + go.sum + this script (its flags shape
# the binary), so only the first build on a machine pays. Concurrent callers are serialised with
# flock. Progress goes to stderr; the last stdout line is the directory holding `helm`.
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
out="$cache_root/helm/$key"

if $dir_only; then # where the binary is (or would be), without building
  echo "$out"
  exit 0
fi

complete() { [[ -x "$out/helm" ]]; }

if complete; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache_root/helm"
exec 9>"$cache_root/helm/build.lock"
flock 9
if complete; then # another caller finished the build while we waited for the lock
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: 'go' not found on PATH (Go >= the go line of $here/go.mod)" >&2; exit 1; }
cd "$here"
export CGO_ENABLED=0
export GOWORK=off # a go.work further up must not change what gets built
# A local Go older than the module's go line takes the approved newer toolchain from the module
# proxy (as tests/control-plane/build.sh does); a newer one is used as it is.
if [[ -z "${GOTOOLCHAIN:-}" ]]; then
  go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  need_minor="$(sed -nE 's/^go 1\.([0-9]+).*/\1/p' go.mod)"
  if [[ "$go_minor" =~ ^[0-9]+$ && "$need_minor" =~ ^[0-9]+$ ]] && (( go_minor < need_minor )); then
    export GOTOOLCHAIN=go1.27.3
  fi
fi

# The ldflags helm's own Makefile sets: `helm version` reports the module version, and the default
# Kubernetes version (`helm template` without --kube-version, the lint deprecation rules) follows
# the client-go it is built with (v0.X.Y -> 1.X). Without them helm assumes Kubernetes 1.20, which
# the chart's `kubeVersion: >=1.30.0-0` rejects.
helm_version="$(go list -m -f '{{.Version}}' helm.sh/helm/v3)"    # e.g. v3.22.0
client_go="$(go list -m -f '{{.Version}}' k8s.io/client-go)"      # e.g. v0.37.0
k8s_minor="${client_go#v0.}"; k8s_minor="${k8s_minor%%.*}"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

# -trimpath and no debug info keep the binary small; tests need no symbols.
echo "building helm $helm_version (client-go $client_go) into $out (the first build on a machine" \
  "takes a few minutes)" >&2
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
go build -trimpath -ldflags="$ldflags" -o "$out.tmp/helm" helm.sh/helm/v3/cmd/helm
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
