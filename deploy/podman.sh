# Sourced by the deploy scripts: the container engine and its settings. Podman (with buildah and
# podman-compose) from Debian's packages, installed when missing (as root, like the other
# scripts/ensure-*.sh); SHOPSMART_CONTAINER_ENGINE=docker uses Docker and `docker compose`.
ENGINE=${SHOPSMART_CONTAINER_ENGINE:-podman}
DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ $ENGINE == podman ]]; then
  if ! command -v podman >/dev/null || ! command -v podman-compose >/dev/null \
      || ! command -v runc >/dev/null; then
    if [[ $(id -u) != 0 ]]; then
      echo "deploy: podman, podman-compose and runc are needed (apt-get install buildah podman runc fuse-overlayfs debootstrap podman-compose)" >&2
      exit 1
    fi
    echo "deploy: installing podman, buildah, podman-compose and runc with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah podman runc fuse-overlayfs \
      debootstrap podman-compose >/dev/null 2>&1 || {
      DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah podman runc fuse-overlayfs \
        debootstrap podman-compose >/dev/null
    }
  fi
  # runc and ulimits this host can grant (containers.conf says why), unless the user has own
  export CONTAINERS_CONF=${CONTAINERS_CONF:-$DEPLOY/containers.conf}
  COMPOSE=(podman-compose)
else
  COMPOSE=(docker compose)
fi
