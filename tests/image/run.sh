#!/usr/bin/env bash
# The image test (`make image-test`): builds the image with deploy/image/build.sh, then checks
#  - the committed image's config (buildah inspect): entrypoint, cmd, user 65532:65532, port, the
#    org.opencontainers.image.* labels (version = the crate's, revision = HEAD);
#  - the OCI archive users get: its config says the same, and its layers hold exactly the binary and
#    the CA bundle (so no shell, no libc);
#  - the binary from the archive runs (`--version` prints the crate version) and is static (no
#    PT_INTERP program header; the detector is first checked against a dynamic binary);
#  - deploy/Dockerfile declares the same layout (entrypoint, cmd, user, port, file paths, label keys,
#    version default, musl build, empty base).
# Needs what build.sh installs (buildah, jq, binutils) plus tar and gzip.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

fail() { echo "image-test: FAIL: $*" >&2; exit 1; }
ok() { echo "image-test: ok: $*" >&2; }
# Fails unless $2 (actual) equals $3 (expected); $1 names the check.
expect_eq() { [[ "$2" == "$3" ]] || fail "$1: got '$2', want '$3'"; ok "$1 = $3"; }

archive="$(bash deploy/image/build.sh | tail -n 1)"
[[ -f "$archive" ]] || fail "build.sh printed '$archive', which is not a file"
version="$(cargo metadata --no-deps --format-version 1 --offline \
  | jq -r '.packages[] | select(.name == "traffic-mirror-operator") | .version')"
ref="${IMAGE:-ghcr.io/traffic-mirror-operator/traffic-mirror-operator}:$version"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Checks an image config ($2, the OCI `config` object as JSON) from $1 (where it came from).
check_config() {
  local from="$1" config="$2" key
  expect_eq "$from entrypoint" "$(jq -c '.Entrypoint' <<<"$config")" '["/traffic-mirror-operator"]'
  expect_eq "$from cmd" "$(jq -c '.Cmd' <<<"$config")" '["run"]'
  expect_eq "$from user" "$(jq -r '.User' <<<"$config")" "65532:65532"
  expect_eq "$from ports" "$(jq -c '.ExposedPorts | keys' <<<"$config")" '["8080/tcp"]'
  expect_eq "$from env (empty)" "$(jq -c '.Env // []' <<<"$config")" '[]'
  for key in title description version revision source licenses; do
    [[ -n "$(jq -r --arg k "org.opencontainers.image.$key" '.Labels[$k] // empty' <<<"$config")" ]] \
      || fail "$from: label org.opencontainers.image.$key is missing or empty"
  done
  expect_eq "$from title label" "$(jq -r '.Labels["org.opencontainers.image.title"]' <<<"$config")" \
    traffic-mirror-operator
  expect_eq "$from version label" "$(jq -r '.Labels["org.opencontainers.image.version"]' <<<"$config")" \
    "$version"
  expect_eq "$from revision label" "$(jq -r '.Labels["org.opencontainers.image.revision"]' <<<"$config")" \
    "$(git rev-parse HEAD)"
}

# The image as buildah committed it (build.sh's private store under target/image).
inspect_committed() {
  local json
  json="$(buildah --root target/image/storage --runroot target/image/run \
    --storage-driver "${STORAGE_DRIVER:-vfs}" inspect --type image "$ref")"
  check_config "buildah inspect" "$(jq -c '.OCIv1.config' <<<"$json")"
}

# Prints the path of the blob a digest (sha256:...) names inside the unpacked archive $1.
blob() { echo "$1/blobs/${2%%:*}/${2#*:}"; }

# Unpacks the OCI archive into $work/oci, checks its config (kept as $work/config.json), and
# unpacks its layers into $work/rootfs.
unpack_archive() {
  local oci="$work/oci" manifest config layer media
  mkdir -p "$oci" "$work/rootfs"
  tar -xf "$archive" -C "$oci"
  expect_eq "archive manifests" "$(jq '.manifests | length' "$oci/index.json")" 1
  manifest="$(blob "$oci" "$(jq -r '.manifests[0].digest' "$oci/index.json")")"
  config="$(blob "$oci" "$(jq -r '.config.digest' "$manifest")")"
  cp "$config" "$work/config.json"
  check_config "archive" "$(jq -c '.config' "$config")"
  expect_eq "archive os/arch" "$(jq -r '.os + "/" + .architecture' "$config")" linux/amd64
  while read -r media layer; do
    case "$media" in
      *tar+gzip) tar -xzf "$(blob "$oci" "$layer")" -C "$work/rootfs" ;;
      *tar) tar -xf "$(blob "$oci" "$layer")" -C "$work/rootfs" ;;
      *) fail "layer $layer has an unexpected media type $media" ;;
    esac
  done < <(jq -r '.layers[] | .mediaType + " " + .digest' "$manifest")
}

# Checks the unpacked file tree: exactly the binary and the CA bundle, no shell.
check_files() {
  local files
  files="$(cd "$work/rootfs" && find . \( -type f -o -type l \) | sort | tr '\n' ' ')"
  expect_eq "files in the image" "$files" "./etc/ssl/certs/ca-certificates.crt ./traffic-mirror-operator "
  grep -q "BEGIN CERTIFICATE" "$work/rootfs/etc/ssl/certs/ca-certificates.crt" \
    || fail "the CA bundle holds no certificate"
  ok "no shell: /bin/sh absent"
}

# True when the ELF file $1 has a PT_INTERP header (a dynamic loader), i.e. is not static.
has_interp() { readelf -lW "$1" | grep -q '^ *INTERP '; }

# Runs the binary from the archive and checks it is static (after proving the check can fail).
check_binary() {
  local bin="$work/rootfs/traffic-mirror-operator" dynamic
  dynamic="$(readlink -f "$(command -v bash)")"
  has_interp "$dynamic" || fail "the static-link check does not see $dynamic's PT_INTERP"
  if has_interp "$bin"; then fail "the binary has a PT_INTERP header (dynamically linked)"; fi
  ok "binary is static (no PT_INTERP; file says: $(file -b "$bin" 2>/dev/null | grep -oE '[a-z-]+ linked' || true))"
  expect_eq "--version" "$(env -i "$bin" --version)" "traffic-mirror-operator $version"
}

# Checks deploy/Dockerfile declares the same layout as the image (the lines, not a Docker build).
check_dockerfile() {
  local df=deploy/Dockerfile keys image_keys
  grep -qxF 'ENTRYPOINT ["/traffic-mirror-operator"]' "$df" || fail "$df: ENTRYPOINT differs"
  grep -qxF 'CMD ["run"]' "$df" || fail "$df: CMD differs"
  grep -qxF 'USER 65532:65532' "$df" || fail "$df: USER differs"
  grep -qxF 'EXPOSE 8080' "$df" || fail "$df: EXPOSE differs"
  grep -qxF 'FROM scratch' "$df" || fail "$df: the final stage is not FROM scratch"
  grep -qE '^COPY --from=builder \S+ /traffic-mirror-operator$' "$df" || fail "$df: binary path differs"
  grep -qE '^COPY --from=builder \S+ /etc/ssl/certs/ca-certificates.crt$' "$df" \
    || fail "$df: CA bundle path differs"
  grep -qF -- '--target x86_64-unknown-linux-musl --bin traffic-mirror-operator' "$df" \
    || fail "$df: does not build the musl binary"
  grep -qxF "ARG VERSION=$version" "$df" || fail "$df: ARG VERSION default is not the crate version $version"
  keys="$(grep -oE 'org\.opencontainers\.image\.[a-z]+=' "$df" | sort -u | tr '\n' ' ')"
  # Only the OCI keys: buildah adds io.buildah.version on its own.
  image_keys="$(jq -r '.config.Labels | keys[] | select(startswith("org.opencontainers.image.")) | . + "="' \
    "$work/config.json" | sort -u | tr '\n' ' ')"
  expect_eq "Dockerfile label keys" "$keys" "$image_keys"
  ok "$df declares the same entrypoint, cmd, user, port, paths and base"
}

inspect_committed
unpack_archive
check_files
check_binary
check_dockerfile
echo "image-test: all checks passed ($(du -h "$archive" | cut -f1) archive, $ref)" >&2
