#!/usr/bin/env bash
# make image: the platform's image (deploy/Containerfile) and the services' image
# (deploy/services.Containerfile: PostgreSQL and Redis), tagged $SHOPSMART_IMAGE
# (localhost/shopsmart:latest) and $SHOPSMART_SERVICES_IMAGE (localhost/shopsmart-services:latest).
#
# The base is $SHOPSMART_BASE_IMAGE when set (any Debian bookworm image, such as
# docker.io/library/debian:bookworm-slim); without it, and without a registry, a minimal
# Debian bookworm is made here once with debootstrap from the mirror apt already uses and
# imported as localhost/shopsmart-base:bookworm (root, about a minute).
#
# What goes in: the project's wheel and, as constraints, the exact versions of this checkout's
# virtualenv (what the test suite ran on). pip in the build gets this host's index settings
# and CA bundle as build secrets, never stored in a layer.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/deploy/podman.sh"
VENV_PYTHON=${VENV_PYTHON:-$ROOT/.venv/bin/python}
IMAGE=${SHOPSMART_IMAGE:-localhost/shopsmart:latest}
SERVICES_IMAGE=${SHOPSMART_SERVICES_IMAGE:-localhost/shopsmart-services:latest}
BASE=${SHOPSMART_BASE_IMAGE:-localhost/shopsmart-base:bookworm}

say() { echo "build-image: $*" >&2; }

debian_mirror() {  # the first Debian mirror apt is configured with
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.list 2>/dev/null | grep -v security | head -1 \
        | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' \
        | awk '{print $1}')
  echo "${uri:-http://deb.debian.org/debian}"
}

if [[ -z ${SHOPSMART_BASE_IMAGE:-} ]] && ! $ENGINE image inspect "$BASE" >/dev/null 2>&1; then
  [[ $(id -u) == 0 ]] || { say "no base image: set SHOPSMART_BASE_IMAGE (a Debian bookworm image) or run as root"; exit 1; }
  command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null
  rootfs=$(mktemp -d)
  mirror=$(debian_mirror)
  say "making the base image $BASE: debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; exit 1; }
  tar -C "$rootfs" -c . | $ENGINE import - "$BASE" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
# the wheel, built from a copy of the project (no build/ left in the checkout)
mkdir -p "$context/src" "$context/dist"
cp "$ROOT"/pyproject.toml "$ROOT"/setup.py "$ROOT"/README.md "$context/src/"
cp -r "$ROOT/shopsmart_assets" "$context/src/"
find "$context/src" -name __pycache__ -prune -exec rm -rf {} +
"$VENV_PYTHON" -m pip wheel --quiet --no-deps --disable-pip-version-check \
  -w "$context/dist" "$context/src" >/dev/null
"$VENV_PYTHON" -m pip freeze --exclude-editable --disable-pip-version-check \
  | grep -v '^shopsmart' >"$context/dist/constraints.txt"
cp "$ROOT"/deploy/instance-storage.yaml "$ROOT"/deploy/workspace.yaml \
  "$ROOT"/deploy/entrypoint.sh "$ROOT"/deploy/postgres-entrypoint.sh "$context/"

# pip's settings for the build: this host's index (and extra index, trusted hosts, timeout),
# and the CA bundle it trusts, as build secrets
pip_value() { "$VENV_PYTHON" -m pip config list 2>/dev/null | sed -nE "s/^[^.]*\.$1='(.*)'$/\1/p" | head -1; }
{
  echo "[global]"
  for key in index-url extra-index-url trusted-host timeout default-timeout; do
    value=$(pip_value "$key")
    [[ -n $value ]] && echo "$key = $value"
  done
  for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST; do
    key=$(echo "${var#PIP_}" | tr 'A-Z_' 'a-z-')
    [[ -n ${!var:-} ]] && echo "$key = ${!var}"
  done
} >"$context/pip.conf"
ca=${PIP_CERT:-$(pip_value cert)}
ca=${ca:-${SSL_CERT_FILE:-}}
[[ -n $ca && -f $ca ]] && cp "$ca" "$context/ca.crt" || : >"$context/ca.crt"
secrets=(--secret "id=pip.conf,src=$context/pip.conf" --secret "id=ca.crt,src=$context/ca.crt")

LOGS=${SHOPSMART_DEPLOY_STATE:-$ROOT/.compose}/logs
mkdir -p "$LOGS"
build() {  # image, Containerfile, extra arguments...
  local image=$1 file=$2 log="$LOGS/build-${1##*/}.log"
  shift 2
  log=${log//:/-}
  if ! $ENGINE build --build-arg "BASE=$BASE" "$@" -t "$image" -f "$ROOT/deploy/$file" \
      "$context" >"$log" 2>&1; then
    tail -25 "$log" >&2
    say "building $image failed (log: $log)"
    exit 1
  fi
}
started=$SECONDS
say "building $SERVICES_IMAGE on $BASE"
build "$SERVICES_IMAGE" services.Containerfile
say "building $IMAGE on $BASE (the wheel, Java 17, the venv: minutes the first time)"
build "$IMAGE" Containerfile "${secrets[@]}"
say "built $IMAGE and $SERVICES_IMAGE in $((SECONDS - started))s"
