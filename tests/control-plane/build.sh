#!/usr/bin/env bash
# Builds (or reuses) etcd, kube-apiserver and kubectl from the pinned Go modules in this directory.
# The binaries land in a cache directory outside the clone, keyed by the hash of go.mod + go.sum, so
# only the first build on a machine pays. The last line printed is the directory holding the binaries.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${TMO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/traffic-mirror-operator}"
key="$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-16)"
out="$cache_root/control-plane/$key"
if [[ -x "$out/etcd" && -x "$out/kube-apiserver" && -x "$out/kubectl" ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out.tmp"
cd "$here"
export CGO_ENABLED=0
# -trimpath and no debug info keep the binaries small; tests need no symbols.
flags=(-trimpath -ldflags=-s\ -w)
echo "building control plane into $out (first build on this machine takes several minutes)" >&2
go build "${flags[@]}" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
go build "${flags[@]}" -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build "${flags[@]}" -o "$out.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
