#!/usr/bin/env bash
# A throw-away local Redis server: the Celery broker and result backend of `make cluster` and
# of the Celery tests.
#
#   scripts/redis.sh start STATE_DIR    start a server on 127.0.0.1, on a free port; prints
#                                       port=… and url=redis://127.0.0.1:PORT
#   scripts/redis.sh stop STATE_DIR     stop it (SHUTDOWN NOSAVE, then SIGKILL), remove its files
#   scripts/redis.sh status STATE_DIR   exit 0 when it answers PING
#
# No persistence (no RDB snapshots, no append-only file): a broker's queue lives as long as the
# server does, which is what a local cluster and a test run want. STATE_DIR/redis.env holds
# REDIS_PORT, REDIS_URL and REDIS_PID. The binary is Debian's redis-server, installed with
# apt-get when missing (as root), without starting the distribution's own service.
set -euo pipefail

die() {
  echo "redis.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

ensure_binaries() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || die "redis-server not found; install it with: sudo apt-get install -y redis-server"
  command -v apt-get >/dev/null 2>&1 || die "redis-server not found and apt-get is not available"
  echo "redis.sh: installing redis-server with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d: install the binaries without starting the distribution's own server
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
  fi
  local ok=1
  apt-get update -qq >&2 && apt-get install -y -qq redis-server >&2 || ok=0
  [[ $created_policy -eq 1 ]] && rm -f "$policy"
  [[ $ok -eq 1 ]] || die "apt-get install redis-server failed"
  command -v redis-server >/dev/null 2>&1 || die "redis-server installed but not on PATH"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

state_file() { echo "$1/redis.env"; }

load_state() {
  local file
  file=$(state_file "$1")
  [[ -f $file ]] || return 1
  # shellcheck disable=SC1090
  . "$file"
}

cmd_status() {
  load_state "$1" || { echo "redis.sh: no server recorded in $1" >&2; return 1; }
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG
}

cmd_start() {
  local state_dir=$1
  mkdir -p "$state_dir"
  state_dir=$(cd "$state_dir" && pwd)
  if load_state "$state_dir" 2>/dev/null && cmd_status "$state_dir" >/dev/null 2>&1; then
    die "a server from $state_dir is already running on port $REDIS_PORT; stop it first"
  fi
  ensure_binaries
  local port started=0
  for _ in 1 2 3; do
    port=$(free_port)
    rm -f "$state_dir/redis.pid"
    if redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --protected-mode yes --dir "$state_dir" --pidfile "$state_dir/redis.pid" \
      --logfile "$state_dir/redis.log" --daemonize yes >/dev/null; then
      for _ in $(seq 1 50); do
        if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
          started=1
          break 2
        fi
        sleep 0.1
      done
    fi
  done
  [[ $started -eq 1 ]] || { tail -n 20 "$state_dir/redis.log" >&2 || true; die "Redis did not start"; }
  cat >"$(state_file "$state_dir")" <<EOF
REDIS_PORT=$port
REDIS_URL=redis://127.0.0.1:$port
REDIS_PID=$(cat "$state_dir/redis.pid")
EOF
  echo "port=$port"
  echo "url=redis://127.0.0.1:$port"
}

cmd_stop() {
  local state_dir=$1
  load_state "$state_dir" || return 0
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$REDIS_PID" 2>/dev/null || true
  rm -f "$(state_file "$state_dir")" "$state_dir/redis.pid"
}

[[ $# -ge 2 ]] || usage
case $1 in
  start) cmd_start "$2" ;;
  stop) cmd_stop "$2" ;;
  status) cmd_status "$2" ;;
  *) usage ;;
esac
