#!/usr/bin/env bash
# Spark services from the installed pyspark (its own jars, scripts and version), on 127.0.0.1:
#
#   scripts/spark.sh connect-up [PORT [MASTER [KEY=VALUE ...]]]
#                                                 Spark Connect server (default port 15002,
#                                                 master local[*], then Spark settings of the
#                                                 server); SHOPSMART_SPARK_REMOTE=sc://127.0.0.1:PORT
#   scripts/spark.sh connect-down
#   scripts/spark.sh cluster-up [PORT [WEBUI_PORT [WORKER_WEBUI_PORT]]]
#                                                 standalone master (default 7077, UI 8080) and one
#                                                 worker (UI 8081); SHOPSMART_SPARK_MASTER=spark://127.0.0.1:PORT
#   scripts/spark.sh cluster-down
#   scripts/spark.sh status
#
# Every "up" waits until the service answers and fails with the log's tail if it does not.
# Logs, pid files and the worker's directory live in $SHOPSMART_SPARK_STATE (default
# ./.spark_services). Knobs: SPARK_CONNECT_DRIVER_MEMORY (2g), SPARK_CONNECT_JAVA_OPTIONS (the
# server JVM's options, default the throughput collector), SPARK_WORKER_CORES (2),
# SPARK_WORKER_MEMORY (2g), SPARK_START_TIMEOUT seconds (120), VENV_PYTHON (./.venv/bin/python).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV_PYTHON=${VENV_PYTHON:-$ROOT/.venv/bin/python}
STATE=${SHOPSMART_SPARK_STATE:-$ROOT/.spark_services}
TIMEOUT=${SPARK_START_TIMEOUT:-120}
HOST=127.0.0.1

# Always the pyspark that the platform imports: client and server of the same version.
SPARK_HOME=$("$VENV_PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/conf" "$STATE/work"
export SPARK_HOME
export SPARK_CONF_DIR="$STATE/conf"   # empty: no stray spark-defaults.conf / spark-env.sh
export SPARK_LOG_DIR="$STATE/logs" SPARK_PID_DIR="$STATE/pids" SPARK_IDENT_STRING=shopsmart
export SPARK_WORKER_DIR="$STATE/work"
export SPARK_LOCAL_IP=$HOST SPARK_LOCAL_HOSTNAME=$HOST SPARK_MASTER_HOST=$HOST
export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$VENV_PYTHON}
unset SPARK_MASTER  # spark-daemon.sh would rsync from it

# The Connect server is a Spark application serving Spark Connect through Spark's plugin
# (shopsmart_assets/cli/spark_connect_server.py says why not SparkConnectServer); its pid and
# log files are named after it, as spark-daemon.sh names the other services' files.
CONNECT=org.apache.spark.sql.connect.SparkConnectPlugin
MASTER=org.apache.spark.deploy.master.Master
WORKER=org.apache.spark.deploy.worker.Worker

pid_file() { echo "$SPARK_PID_DIR/spark-$SPARK_IDENT_STRING-$1-1.pid"; }
log_file() { ls -t "$SPARK_LOG_DIR"/spark-"$SPARK_IDENT_STRING-$1"-1-*.out 2>/dev/null | head -1; }

running_pid() {  # prints the pid of a running service, or fails
  local file pid
  file=$(pid_file "$1")
  [[ -f $file ]] || return 1
  pid=$(cat "$file")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

listening() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

fail() {  # service, message
  echo "spark.sh: $2" >&2
  local log
  log=$(log_file "$1")
  if [[ -n $log ]]; then
    echo "--- last lines of $log" >&2
    tail -30 "$log" >&2
  fi
  exit 1
}

require_free_port() {  # port
  if listening "$1"; then
    echo "spark.sh: port $HOST:$1 is already in use" >&2
    exit 1
  fi
}

wait_until() {  # service, description, command...
  local service=$1 what=$2 deadline=$((SECONDS + TIMEOUT))
  shift 2
  until "$@"; do
    running_pid "$service" >/dev/null || fail "$service" "$service exited before $what"
    ((SECONDS < deadline)) || fail "$service" "no $what after ${TIMEOUT}s"
    sleep 0.5
  done
}

start() {  # class, daemon mode (submit|start), args...
  local service=$1 mode=$2
  shift 2
  if pid=$(running_pid "$service"); then
    echo "$service already running as process $pid (stop it first)" >&2
    return 1
  fi
  "$SPARK_HOME/sbin/spark-daemon.sh" "$mode" "$service" 1 "$@" >/dev/null
  running_pid "$service" >/dev/null || fail "$service" "$service did not start"
}

stop() {  # class: SIGTERM, wait for the process (and its executors) to end, SIGKILL if stuck
  local service=$1 pid
  if ! pid=$(running_pid "$service"); then
    rm -f "$(pid_file "$service")"
    echo "no ${service##*.} running"
    return 0
  fi
  kill "$pid"
  for _ in $(seq 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$(pid_file "$service")"
  echo "stopped ${service##*.} (process $pid)"
}

worker_registered() {  # master web UI port
  "$VENV_PYTHON" - "$1" <<'EOF' 2>/dev/null
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=2))
sys.exit(0 if state.get("aliveworkers", 0) >= 1 else 1)
EOF
}

connect_up() {
  local port=${1:-15002} master=${2:-local[*]} pid setting
  local -a settings=()
  shift $(($# < 2 ? $# : 2))
  for setting in "$@"; do settings+=(--conf "$setting"); done
  if pid=$(running_pid "$CONNECT"); then
    if [[ $(cat "$STATE/connect.port" 2>/dev/null) == "$port" ]]; then
      echo "Spark Connect already on sc://$HOST:$port (process $pid)"
      return 0
    fi
    echo "spark.sh: Spark Connect already runs as process $pid on another port" >&2
    exit 1
  fi
  require_free_port "$port"
  echo "$port" >"$STATE/connect.port"
  # the package's own launcher (shopsmart-spark-connect: the server's settings live there),
  # detached, its JVM's pid and log where spark-daemon.sh would keep them
  nohup "$VENV_PYTHON" -m shopsmart_assets.cli.spark_connect --port "$port" --master "$master" \
    --driver-memory "${SPARK_CONNECT_DRIVER_MEMORY:-2g}" "${settings[@]}" \
    >"$SPARK_LOG_DIR/spark-$SPARK_IDENT_STRING-$CONNECT-1-$(hostname).out" 2>&1 </dev/null &
  echo $! >"$(pid_file "$CONNECT")"
  wait_until "$CONNECT" "Spark Connect on $HOST:$port" listening "$port"
  echo "Spark Connect on sc://$HOST:$port (process $(running_pid "$CONNECT"), logs in $SPARK_LOG_DIR)"
}

cluster_up() {
  local port=${1:-7077} webui=${2:-8080} worker_webui=${3:-8081}
  require_free_port "$port"
  require_free_port "$webui"
  require_free_port "$worker_webui"
  # no REST submission server: it would take the fixed port 6066 and accept anyone's jobs
  SPARK_MASTER_OPTS="${SPARK_MASTER_OPTS:-} -Dspark.master.rest.enabled=false" \
    start "$MASTER" start --host $HOST --port "$port" --webui-port "$webui"
  wait_until "$MASTER" "master on $HOST:$port" listening "$port"
  start "$WORKER" start --host $HOST --webui-port "$worker_webui" \
    --cores "${SPARK_WORKER_CORES:-2}" --memory "${SPARK_WORKER_MEMORY:-2g}" \
    --work-dir "$SPARK_WORKER_DIR" "spark://$HOST:$port"
  wait_until "$WORKER" "worker registered with the master" worker_registered "$webui"
  echo "$port" >"$STATE/cluster.port"
  echo "Spark master spark://$HOST:$port (UI http://$HOST:$webui), one worker; logs in $SPARK_LOG_DIR"
}

status() {
  local service pid
  for service in "$CONNECT" "$MASTER" "$WORKER"; do
    if pid=$(running_pid "$service"); then
      echo "${service##*.}: running (process $pid)"
    else
      echo "${service##*.}: stopped"
    fi
  done
}

case ${1:-} in
  connect-up) shift; connect_up "$@" ;;
  connect-down) stop "$CONNECT" ;;
  cluster-up) shift; cluster_up "$@" ;;
  cluster-down) stop "$WORKER"; stop "$MASTER" ;;
  status) status ;;
  *)
    sed -n '2,18p' "$0" >&2
    exit 2
    ;;
esac
