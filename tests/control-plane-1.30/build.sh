#!/usr/bin/env bash
# The oldest supported Kubernetes (1.30): the same build as tests/control-plane, from this
# directory's go.mod + go.sum. Usage: build.sh [--dir] (see tests/control-plane/build.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../control-plane/build.sh" "$@" "$here"
