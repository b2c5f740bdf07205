#!/usr/bin/env bash
# Create (or reuse) a Python venv with the pinned official Huawei Cloud SDK (requirements.txt).
# The venv lives under ${TMO_CACHE_DIR:-$HOME/.cache/traffic-mirror-operator}/sdk-venv-<hash>,
# <hash> being that of requirements.txt, so a changed pin gets a fresh venv and an unchanged one
# is reused across runs. Concurrent callers are serialised with flock. Progress goes to stderr;
# the last stdout line is the venv path.
#
# Environment: PYTHON (interpreter to build the venv with, default python3), TMO_CACHE_DIR.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
cache="${TMO_CACHE_DIR:-$HOME/.cache/traffic-mirror-operator}"
python="${PYTHON:-python3}"
hash="$(sha256sum "$req" | cut -c1-16)"
venv="$cache/sdk-venv-$hash"

mkdir -p "$cache"
exec 9>"$cache/sdk-venv.lock"
flock 9

usable() {
    [ -f "$venv/.complete" ] &&
        "$venv/bin/python" -c 'import huaweicloudsdkvpc.v3, huaweicloudsdkcore' >/dev/null 2>&1
}

if ! usable; then
    echo "setup-venv: creating $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
        --requirement "$req" >&2
    "$venv/bin/python" -c 'import huaweicloudsdkvpc.v3, huaweicloudsdkcore' >&2
    touch "$venv/.complete"
fi

echo "$venv"
