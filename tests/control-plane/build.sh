#!/usr/bin/env bash
# Builds (or reuses) etcd, kube-apiserver, kubectl (and kube-controller-manager) from the pinned Go modules of one control-plane
# module directory: tests/control-plane (the newest supported Kubernetes, the default) or a sibling
# such as tests/control-plane-1.30 (the oldest supported). The binaries land in a cache directory
# outside the clone, keyed by the hash of that module's go.mod + go.sum + this script (its flags
# shape the binaries), so only the first build on a machine pays. Concurrent callers are serialised
# with flock. Progress goes to stderr; the last stdout line is the directory holding the binaries.
#
# Usage: build.sh [--dir] [MODULE_DIR]   (--dir only prints the directory, building nothing;
#        MODULE_DIR defaults to the directory of this script)
# Environment: TMO_CACHE_DIR (cache root, default $HOME/.cache/traffic-mirror-operator),
# GOTOOLCHAIN (passed through to go; the go line of the module's go.mod decides the minimum).
set -euo pipefail
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir_only=false
if [[ "${1:-}" == "--dir" ]]; then
  dir_only=true
  shift
fi
here="$(cd "${1:-$script_dir}" && pwd)"
[[ -f "$here/go.mod" && -f "$here/go.sum" ]] || { echo "build.sh: $here has no go.mod + go.sum" >&2; exit 1; }
cache_root="${TMO_CACHE_DIR:-$HOME/.cache/traffic-mirror-operator}"
key="$(cat "$here/go.mod" "$here/go.sum" "$script_dir/build.sh" | sha256sum | cut -c1-16)"
out="$cache_root/control-plane/$key"

if $dir_only; then # where the binaries are (or would be), without building
  echo "$out"
  exit 0
fi

# kube-controller-manager (namespace deletion, ownerReference garbage collection) is built when the
# module lists it as a tool: the newest module does, the oldest (1.30, API tests only) does not.
wants_kcm() { grep -qE '^[[:space:]]*k8s.io/kubernetes/cmd/kube-controller-manager$' "$here/go.mod"; }
complete() {
  [[ -x "$out/etcd" && -x "$out/kube-apiserver" && -x "$out/kubectl" ]] || return 1
  ! wants_kcm || [[ -x "$out/kube-controller-manager" ]]
}

if complete; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache_root/control-plane"
exec 9>"$cache_root/control-plane/build.lock"
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
# proxy (the Makefile exports the same for the newest module, which needs Go >= 1.26); a newer one
# is used as it is.
if [[ -z "${GOTOOLCHAIN:-}" ]]; then
  go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  need_minor="$(sed -nE 's/^go 1\.([0-9]+).*/\1/p' go.mod)"
  if [[ "$go_minor" =~ ^[0-9]+$ && "$need_minor" =~ ^[0-9]+$ ]] && (( go_minor < need_minor )); then
    export GOTOOLCHAIN=go1.27.3
  fi
fi

# Stamp the versions `kube-apiserver --version`, /version and `kubectl version` report; without it
# they say v0.0.0-master (the build normally gets them from the Kubernetes release scripts).
k8s_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"   # e.g. v1.37.2
etcd_version="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
major="${k8s_version#v}"; major="${major%%.*}"
minor="${k8s_version#v*.}"; minor="${minor%%.*}"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  version_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=go-module-$k8s_version"
done

# -trimpath and no debug info keep the binaries small; tests need no symbols.
echo "building control plane (kubernetes $k8s_version, etcd $etcd_version) into $out" \
  "(the first build on a machine takes several minutes)" >&2
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
go build -trimpath -ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=go-module-$etcd_version" \
  -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
go build -trimpath -ldflags="-s -w$version_ldflags" -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags="-s -w$version_ldflags" -o "$out.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl
if wants_kcm; then
  go build -trimpath -ldflags="-s -w$version_ldflags" -o "$out.tmp/kube-controller-manager" \
    k8s.io/kubernetes/cmd/kube-controller-manager
fi
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
