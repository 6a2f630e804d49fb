#!/usr/bin/env bash
# Spark needs a Java 17+ runtime. Use the one on PATH or JAVA_HOME; install Debian's
# openjdk-17-jre-headless when there is none (needs root, as on the CI and dev machines).
set -euo pipefail

java_major() {
  "$1" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}'
}

for candidate in "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && [ "$(java_major "$candidate")" -ge 17 ]; then
    exit 0
  fi
done

echo "ensure-java: no Java 17+ found; installing openjdk-17-jre-headless" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-java: run as root or install Java 17+ yourself (Spark needs it)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq openjdk-17-jre-headless >/dev/null
java -version
