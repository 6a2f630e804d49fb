#!/bin/sh
# The platform image's entrypoint (under tini, which passes signals on): secrets come in as
# files (compose or Kubernetes secrets), never as values in the container's configuration.
# For each NAME_FILE variable below that names a readable, non-empty file, NAME is set to its
# contents; then the service's command replaces this shell.
set -eu
for name in DAGSTER_PG_PASSWORD SLACK_BOT_TOKEN; do
  eval "file=\${${name}_FILE:-}"
  if [ -n "$file" ] && [ -s "$file" ]; then
    value=$(cat "$file")
    export "$name=$value"
  fi
  unset "${name}_FILE"
done
exec "$@"
