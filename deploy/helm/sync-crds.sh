#!/usr/bin/env bash
# Copies the generated CRDs (crds/*.yaml at the repository root, written by `make crds`) into the
# Helm chart's crds/ directory, which Helm installs before the templates. The chart must ship real
# files (Helm cannot reference files outside the chart), so this script is the only way they are
# updated: never edit deploy/helm/traffic-mirror-operator/crds/ by hand.
#
# Usage: deploy/helm/sync-crds.sh           copy (and delete chart CRDs that no longer exist)
#        deploy/helm/sync-crds.sh --check   exit 1 and list the differences if the chart is stale
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../.." && pwd)/crds"
dst="$here/traffic-mirror-operator/crds"

mode=sync
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  -h|--help) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "sync-crds.sh: unknown argument: $1 (use --check or nothing)" >&2; exit 2 ;;
esac

shopt -s nullglob
src_files=("$src"/*.yaml)
if (( ${#src_files[@]} == 0 )); then
  echo "sync-crds.sh: no CRDs in $src (run \`make crds\`)" >&2
  exit 1
fi

if [[ $mode == check ]]; then
  stale=0
  for f in "${src_files[@]}"; do
    name="$(basename "$f")"
    if [[ ! -f "$dst/$name" ]]; then
      echo "missing in chart: crds/$name" >&2; stale=1
    elif ! cmp -s "$f" "$dst/$name"; then
      echo "differs from crds/$name: $dst/$name" >&2; stale=1
    fi
  done
  for f in "$dst"/*.yaml; do
    [[ -f "$src/$(basename "$f")" ]] || { echo "not in crds/ any more: $f" >&2; stale=1; }
  done
  if (( stale )); then
    echo "the chart's CRDs are stale; run deploy/helm/sync-crds.sh" >&2
    exit 1
  fi
  echo "chart CRDs are in sync with crds/ (${#src_files[@]} files)"
  exit 0
fi

mkdir -p "$dst"
for f in "$dst"/*.yaml; do
  [[ -f "$src/$(basename "$f")" ]] || { rm -f -- "$f"; echo "removed $f"; }
done
for f in "${src_files[@]}"; do
  name="$(basename "$f")"
  if ! cmp -s "$f" "$dst/$name" 2>/dev/null; then
    cp -- "$f" "$dst/$name"
    echo "updated $dst/$name"
  fi
done
echo "chart CRDs synced from crds/ (${#src_files[@]} files)"
