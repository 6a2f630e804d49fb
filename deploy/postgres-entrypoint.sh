#!/bin/sh
# PostgreSQL for the compose deployment: on first start, a cluster in $PGDATA whose superuser
# $POSTGRES_USER has the password in $POSTGRES_PASSWORD_FILE (or $POSTGRES_PASSWORD), with the
# databases in $POSTGRES_DATABASES; then the server in the foreground, listening on the
# deployment's network with password authentication.
set -eu
BIN=/usr/lib/postgresql/15/bin
PGDATA=${PGDATA:-/var/lib/postgresql/data}
USER_NAME=${POSTGRES_USER:-shopsmart}
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
  PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
else
  PASSWORD=${POSTGRES_PASSWORD:?POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE is required}
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  umask 077
  printf '%s\n' "$PASSWORD" > /tmp/pwfile
  "$BIN/initdb" -D "$PGDATA" -U "$USER_NAME" --pwfile=/tmp/pwfile --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f /tmp/pwfile
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  for db in ${POSTGRES_DATABASES:-dagster}; do
    PGPASSWORD=$PASSWORD "$BIN/createdb" -h /run/postgresql -U "$USER_NAME" "$db"
  done
  "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres-entrypoint: initialized $PGDATA with databases ${POSTGRES_DATABASES:-dagster}"
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c max_connections=200
