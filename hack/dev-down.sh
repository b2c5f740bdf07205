#!/usr/bin/env bash
# Stops everything make dev-up / make demo started and removes .dev/.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dev="$root/.dev"
[[ -d "$dev" ]] || { echo "dev-down: nothing running"; exit 0; }
for name in operator emulator kube-controller-manager kube-apiserver etcd; do
  pidfile="$dev/$name.pid"
  [[ -f "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    echo "dev-down: stopped $name ($pid)"
  fi
done
rm -rf "$dev"
echo "dev-down: done"
