#!/usr/bin/env bash
# A throw-away local PostgreSQL server for the tests and for trying the platform on Postgres.
#
#   scripts/postgres.sh start STATE_DIR [DB ...]   start a server, create the databases
#                                                 (default: crm orders dagster); prints
#                                                 port=… and url=… (no password)
#   scripts/postgres.sh stop STATE_DIR             stop it (pg_ctl stop -m fast), remove its files
#   scripts/postgres.sh status STATE_DIR           exit 0 when it is running
#
# The server listens on 127.0.0.1 only, on a free port, with its unix socket in its own
# temporary directory. The superuser is `shopsmart`; its password is random (or
# $SHOPSMART_PG_PASSWORD) and is written only to STATE_DIR/postgres.env (mode 600), never
# printed. STATE_DIR/postgres.env holds PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATA-style
# details for `stop` and for clients (`set -a; . STATE_DIR/postgres.env`).
#
# The server binaries come from Debian's postgresql package (/usr/lib/postgresql/*/bin),
# installed with apt-get when missing (as root). PostgreSQL refuses to run as root, so as root
# the cluster is owned and run by the unprivileged user $SHOPSMART_PG_OS_USER (default nobody),
# in a directory under TMPDIR or, when TMPDIR is private, its nearest ancestor that user can
# enter.
set -euo pipefail

PG_SUPERUSER=shopsmart

die() {
  echo "postgres.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

find_bindir() {
  local dir
  # the newest installed major version first
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V -r); do
    if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
      echo "$dir"
      return 0
    fi
  done
  if command -v pg_config >/dev/null 2>&1; then
    dir=$(pg_config --bindir)
    [[ -x $dir/initdb && -x $dir/pg_ctl ]] && { echo "$dir"; return 0; }
  fi
  return 1
}

ensure_binaries() {
  local dir
  if dir=$(find_bindir); then
    echo "$dir"
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || die "PostgreSQL server binaries not found; install them with: sudo apt-get install -y postgresql"
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL server binaries not found and apt-get is not available"
  echo "postgres.sh: installing PostgreSQL with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  # policy-rc.d: install the binaries without starting the distribution's own cluster
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
  fi
  apt-get install -y -qq postgresql >&2 || { [[ $created_policy -eq 1 ]] && rm -f "$policy"; die "apt-get install postgresql failed"; }
  [[ $created_policy -eq 1 ]] && rm -f "$policy"
  find_bindir || die "postgresql installed but no server binaries under /usr/lib/postgresql/*/bin"
}

# Run a command as the cluster's owner (root cannot run PostgreSQL).
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    (cd / && runuser -u "$OS_USER" -- "$@")
  else
    "$@"
  fi
}

# Where the cluster's directory goes: TMPDIR (or /tmp) or, as root, its nearest ancestor that
# every user may enter, since the server then runs as $OS_USER (a test run's or a user's
# TMPDIR is often private, mode 0700).
cluster_parent() {
  local dir
  dir=$(cd "${TMPDIR:-/tmp}" && pwd -P)
  if [[ $(id -u) -eq 0 ]]; then
    while [[ $dir != / ]] && (($(stat -c %a "$dir") % 2 == 0)); do # no execute bit for others
      dir=$(dirname "$dir")
    done
  fi
  printf '%s\n' "$dir"
}

free_port() {
  local port
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  die "no free port found"
}

state_file() { echo "$1/postgres.env"; }

load_state() {
  local file
  file=$(state_file "$1")
  [[ -f $file ]] || return 1
  # shellcheck disable=SC1090
  . "$file"
}

cmd_start() {
  local state_dir=$1
  shift
  local databases=("$@")
  [[ ${#databases[@]} -gt 0 ]] || databases=(crm orders dagster)
  mkdir -p "$state_dir"
  state_dir=$(cd "$state_dir" && pwd)
  if load_state "$state_dir" 2>/dev/null && cmd_status "$state_dir" >/dev/null 2>&1; then
    die "a server from $state_dir is already running on port $PGPORT; stop it first"
  fi

  local bindir
  bindir=$(ensure_binaries)
  OS_USER=${SHOPSMART_PG_OS_USER:-nobody}
  if [[ $(id -u) -eq 0 ]]; then
    id "$OS_USER" >/dev/null 2>&1 || die "user $OS_USER does not exist (set SHOPSMART_PG_OS_USER)"
  else
    OS_USER=$(id -un)
  fi

  # The cluster lives in its own directory, which the owner can reach.
  local base
  base=$(mktemp -d "$(cluster_parent)/shopsmart-pg.XXXXXX")
  chmod 755 "$base"
  mkdir -p "$base/data" "$base/socket"
  local password=${SHOPSMART_PG_PASSWORD:-}
  if [[ -z $password ]]; then
    password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  fi
  (umask 077 && printf '%s\n' "$password" >"$base/pwfile")
  [[ $(id -u) -eq 0 ]] && chown -R "$OS_USER" "$base"

  if ! as_owner "$bindir/initdb" -D "$base/data" -U "$PG_SUPERUSER" --pwfile="$base/pwfile" \
    --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C >"$base/initdb.log" 2>&1; then
    cat "$base/initdb.log" >&2
    rm -rf "$base"
    die "initdb failed"
  fi
  rm -f "$base/pwfile"

  local port started=0
  for _ in 1 2 3; do
    port=$(free_port)
    if as_owner "$bindir/pg_ctl" start -D "$base/data" -w -t 60 -l "$base/server.log" \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$base/socket -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200" \
      >/dev/null; then
      started=1
      break
    fi
  done
  if [[ $started -ne 1 ]]; then
    tail -n 30 "$base/server.log" >&2 || true
    rm -rf "$base"
    die "PostgreSQL did not start"
  fi

  local file
  file=$(state_file "$state_dir")
  (
    umask 077
    cat >"$file" <<EOF
PGHOST=127.0.0.1
PGPORT=$port
PGUSER=$PG_SUPERUSER
PGPASSWORD=$(printf %q "$password")
SHOPSMART_PG_BASE=$base
SHOPSMART_PG_BINDIR=$bindir
SHOPSMART_PG_OS_USER=$OS_USER
EOF
  )

  local ready=0
  for _ in $(seq 1 60); do
    if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
      ready=1
      break
    fi
    sleep 0.5
  done
  if [[ $ready -ne 1 ]]; then
    cmd_stop "$state_dir" >/dev/null 2>&1 || true
    die "PostgreSQL on port $port never became ready"
  fi
  local db
  for db in "${databases[@]}"; do
    as_owner "$bindir/createdb" -h "$base/socket" -p "$port" -U "$PG_SUPERUSER" "$db" ||
      { cmd_stop "$state_dir" >/dev/null 2>&1 || true; die "could not create database $db"; }
  done
  echo "port=$port"
  echo "url=postgresql+psycopg://$PG_SUPERUSER@127.0.0.1:$port/"
  echo "env=$file"
}

cmd_stop() {
  local state_dir=$1
  load_state "$state_dir" || { echo "postgres.sh: no server recorded in $state_dir" >&2; return 0; }
  OS_USER=$SHOPSMART_PG_OS_USER
  local status=0
  if [[ -d $SHOPSMART_PG_BASE/data ]]; then
    if as_owner "$SHOPSMART_PG_BINDIR/pg_ctl" status -D "$SHOPSMART_PG_BASE/data" >/dev/null 2>&1; then
      as_owner "$SHOPSMART_PG_BINDIR/pg_ctl" stop -D "$SHOPSMART_PG_BASE/data" -m fast -w -t 60 >/dev/null ||
        status=$?
    fi
  fi
  if [[ $status -ne 0 ]]; then
    die "pg_ctl stop failed; the server in $SHOPSMART_PG_BASE may still be running"
  fi
  case $SHOPSMART_PG_BASE in
    */shopsmart-pg.*) rm -rf "$SHOPSMART_PG_BASE" ;;
  esac
  rm -f "$(state_file "$state_dir")"
  echo "stopped PostgreSQL on port $PGPORT"
}

cmd_status() {
  local state_dir=$1
  load_state "$state_dir" || { echo "not running (no state in $state_dir)"; return 1; }
  OS_USER=$SHOPSMART_PG_OS_USER
  if as_owner "$SHOPSMART_PG_BINDIR/pg_ctl" status -D "$SHOPSMART_PG_BASE/data" >/dev/null 2>&1; then
    echo "running on port $PGPORT"
    return 0
  fi
  echo "not running"
  return 1
}

[[ $# -ge 2 ]] || usage
command=$1
shift
case $command in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$1" ;;
  status) cmd_status "$1" ;;
  *) usage ;;
esac
