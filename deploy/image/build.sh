#!/usr/bin/env bash
# Builds the operator's OCI image without a Docker daemon: a static (musl) release binary of
# traffic-mirror-operator on an empty base (`buildah from scratch`), with buildah's copy / config /
# commit only (no RUN step, so no container runtime is needed). Writes the image to an OCI archive,
# target/image/traffic-mirror-operator.oci.tar, which podman, skopeo or buildah can load anywhere.
#
# The layout MUST match deploy/Dockerfile (for people who build with Docker): binary at
# /traffic-mirror-operator, CA bundle at /etc/ssl/certs/ca-certificates.crt, USER 65532:65532,
# ENTRYPOINT ["/traffic-mirror-operator"], CMD ["run"], the same label keys. tests/image/run.sh
# checks both.
#
# Nothing in the image is written at run time, so it runs with readOnlyRootFilesystem. The CA bundle
# is the build host's (Debian ca-certificates): the operator's HTTPS client (rustls with the
# platform verifier) reads the system roots to reach the Huawei Cloud API.
#
# Installs what is missing on a fresh Debian/Ubuntu machine (as root, or through `sudo -n`):
# buildah, musl-tools (musl-gcc, for the C code of aws-lc-sys), binutils (strip), jq, git,
# ca-certificates, and the x86_64-unknown-linux-musl Rust target via rustup.
#
# Usage: build.sh          (progress on stderr; the last stdout line is the OCI archive's path)
# Environment:
#   IMAGE            image name (default ghcr.io/traffic-mirror-operator/traffic-mirror-operator,
#                    the name deploy/kustomize and the Helm chart use); the tag is the crate version
#   IMAGE_SOURCE     org.opencontainers.image.source (default: Cargo.toml `repository`, else the
#                    git remote `origin`, else NOASSERTION)
#   IMAGE_LICENSES   org.opencontainers.image.licenses (default: Cargo.toml `license`, else
#                    NOASSERTION, the SPDX word for "not stated")
#   STORAGE_DRIVER   buildah storage driver (default vfs: works everywhere, no overlay mounts)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

readonly target=x86_64-unknown-linux-musl
readonly bin=traffic-mirror-operator
out="$repo/target/image"
archive="$out/$bin.oci.tar"

log() { echo "image: $*" >&2; }

# Runs a command as root: directly when we are root, else through passwordless sudo.
as_root() {
  if (( EUID == 0 )); then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    log "need root (or passwordless sudo) to run: $*"
    return 1
  fi
}

# Installs the Debian packages whose commands are missing (apt-get update only when the first
# install attempt fails, e.g. on a fresh machine with empty package lists).
ensure_packages() {
  local missing=() pair
  for pair in buildah:buildah musl-gcc:musl-tools strip:binutils jq:jq git:git; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
  (( ${#missing[@]} == 0 )) && return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing ${missing[*]} (apt-get)"
  command -v apt-get >/dev/null || { log "no apt-get: install ${missing[*]} yourself"; return 1; }
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
  as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2 \
    || { as_root "${apt[@]}" update >&2 && as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2; }
}

# Adds the musl target to the active toolchain when it is not there yet.
ensure_rust_target() {
  if rustc --print target-libdir --target "$target" 2>/dev/null | xargs -I{} test -d {}; then
    return 0
  fi
  command -v rustup >/dev/null || { log "the $target target is missing and there is no rustup"; return 1; }
  log "rustup target add $target"
  rustup target add "$target" >&2
}

# Builds the static binary (cargo reuses target/$target, or $CARGO_TARGET_DIR/$target, between
# runs) and prints its path.
build_binary() {
  log "cargo build --release --target $target (the first build takes several minutes)"
  CARGO_INCREMENTAL=0 CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}" \
    AWS_LC_SYS_USE_SYSTEM=0 \
    cargo build --release --locked --target "$target" --bin "$bin" >&2
  local target_dir
  target_dir="$(cargo metadata --no-deps --format-version 1 --offline | jq -r .target_directory)"
  echo "$target_dir/$target/release/$bin"
}

# Prints one field of this package's `cargo metadata` (empty when null).
crate_field() {
  cargo metadata --no-deps --format-version 1 --offline 2>/dev/null \
    | jq -r --arg name "$bin" --arg f "$1" '.packages[] | select(.name == $name) | .[$f] // empty'
}

# The image's source URL: Cargo.toml `repository`, else the origin remote, else NOASSERTION.
image_source() {
  local source="${IMAGE_SOURCE:-$(crate_field repository)}"
  [[ -n "$source" ]] || source="$(git remote get-url origin 2>/dev/null || true)"
  echo "${source:-NOASSERTION}"
}

# The image's SPDX license expression: Cargo.toml `license`, else NOASSERTION.
image_licenses() {
  local licenses="${IMAGE_LICENSES:-$(crate_field license)}"
  echo "${licenses:-NOASSERTION}"
}

# Lays out the image's file tree (binary stripped, CA bundle) under $1.
make_rootfs() {
  local rootfs="$1" binary="$2"
  rm -rf "$rootfs"
  install -D -m 0755 "$binary" "$rootfs/$bin"
  strip --strip-all "$rootfs/$bin"
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
}

# Assembles and commits the image from scratch into a private store under target/image, then writes
# the OCI archive. $1: rootfs directory, $2: image name with tag.
assemble() {
  local rootfs="$1" ref="$2" version="$3" revision
  revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  # A private store, rebuilt every time: nothing is pulled, so there is nothing to cache, and the
  # machine's own container store (whatever its driver) is left alone.
  local store="$out/storage"
  rm -rf "$store" "$out/run"
  local b=(buildah --root "$store" --runroot "$out/run" --storage-driver "${STORAGE_DRIVER:-vfs}")
  local ctr
  ctr="$("${b[@]}" from --quiet scratch)"
  "${b[@]}" copy --quiet --chown 0:0 "$ctr" "$rootfs/" / >&2
  "${b[@]}" config \
    --entrypoint '["/traffic-mirror-operator"]' --cmd run \
    --user 65532:65532 --port 8080/tcp \
    --label org.opencontainers.image.title="$bin" \
    --label org.opencontainers.image.description="Kubernetes operator for Huawei Cloud VPC traffic mirroring" \
    --label org.opencontainers.image.version="$version" \
    --label org.opencontainers.image.revision="$revision" \
    --label org.opencontainers.image.source="$(image_source)" \
    --label org.opencontainers.image.licenses="$(image_licenses)" \
    "$ctr" >&2
  "${b[@]}" commit --quiet --format oci --rm "$ctr" "$ref" >&2
  rm -f "$archive"
  "${b[@]}" push --quiet "$ref" "oci-archive:$archive:$ref" >&2
}

main() {
  ensure_packages
  ensure_rust_target
  local binary version ref
  binary="$(build_binary)"
  version="$(crate_field version)"
  ref="${IMAGE:-ghcr.io/traffic-mirror-operator/traffic-mirror-operator}:$version"
  mkdir -p "$out"
  exec 9>"$out/build.lock" # two builds in one clone would share the rootfs and the store
  flock 9
  make_rootfs "$out/rootfs" "$binary"
  assemble "$out/rootfs" "$ref" "$version"
  log "built $ref ($(du -h "$archive" | cut -f1) archive): load it with 'podman load -i $archive'"
  echo "$archive"
}

main "$@"
