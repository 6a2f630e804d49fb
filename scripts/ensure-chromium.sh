#!/usr/bin/env bash
# The browser tests and `make screenshots` drive a headless Chromium through Playwright. They
# use the system's (Debian's `chromium` package): nothing is downloaded at run time. Installs
# it when missing (needs root, as on the CI and dev machines); prints the binary's path.
set -euo pipefail

find_chromium() {
  for candidate in "${SHOPSMART_CHROMIUM:-}" /usr/lib/chromium/chromium \
      "$(command -v chromium || true)" "$(command -v chromium-browser || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if find_chromium; then
  exit 0
fi
echo "ensure-chromium: no Chromium found; installing Debian's chromium" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-chromium: run as root or install chromium yourself (or set SHOPSMART_CHROMIUM)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
find_chromium
