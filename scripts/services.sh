#!/usr/bin/env bash
# Starts and stops the real servers the tests use, on private ports under one
# temp dir, and never touches system-wide instances.
#
#   scripts/services.sh start DIR   # starts ClickHouse, MariaDB, Redis; writes DIR/env
#   scripts/services.sh stop DIR    # stops what `start` started, by PID
#
# Ports can be moved with VIGIL_TEST_CH_HTTP_PORT, VIGIL_TEST_CH_TCP_PORT,
# VIGIL_TEST_MYSQL_PORT and VIGIL_TEST_REDIS_PORT.
set -euo pipefail

CH_HTTP_PORT=${VIGIL_TEST_CH_HTTP_PORT:-18123}
CH_TCP_PORT=${VIGIL_TEST_CH_TCP_PORT:-19000}
CH_INTERSERVER_PORT=${VIGIL_TEST_CH_INTERSERVER_PORT:-19009}
MYSQL_PORT=${VIGIL_TEST_MYSQL_PORT:-13306}
REDIS_PORT=${VIGIL_TEST_REDIS_PORT:-16379}

die() { echo "services.sh: $*" >&2; exit 1; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq 1 $((seconds * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "$what did not come up within ${seconds}s"
}

start_clickhouse() {
  local dir=$1/clickhouse
  mkdir -p "$dir/tmp" "$dir/data"
  # Debian's package runs the server as user clickhouse; as root we run it as
  # root with our own paths, so the data dir must be ours.
  clickhouse-server --config-file=/etc/clickhouse-server/config.xml -- \
    --path="$dir/data/" --tmp_path="$dir/tmp/" \
    --logger.log="$dir/server.log" --logger.errorlog="$dir/error.log" \
    --http_port="$CH_HTTP_PORT" --tcp_port="$CH_TCP_PORT" \
    --interserver_http_port="$CH_INTERSERVER_PORT" \
    --listen_host=127.0.0.1 >"$dir/stdout.log" 2>&1 &
  echo $! >"$1/clickhouse.pid"
  wait_for 60 "ClickHouse on :$CH_HTTP_PORT" curl -fsS "http://127.0.0.1:$CH_HTTP_PORT/ping"
}

start_redis() {
  local dir=$1/redis
  mkdir -p "$dir"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" --save '' \
    --appendonly no --enable-debug-command local --daemonize no >"$dir/redis.log" 2>&1 &
  echo $! >"$1/redis.pid"
  wait_for 20 "Redis on :$REDIS_PORT" redis-cli -p "$REDIS_PORT" ping
}

start_mariadb() {
  local dir=$1/mariadb
  mkdir -p "$dir/data"
  mariadb-install-db --no-defaults --datadir="$dir/data" --user=root \
    --auth-root-authentication-method=normal >"$dir/install.log" 2>&1 \
    || die "mariadb-install-db failed; see $dir/install.log"
  mariadbd --no-defaults --datadir="$dir/data" --user=root --port="$MYSQL_PORT" \
    --bind-address=127.0.0.1 --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
    --skip-log-bin --log-error="$dir/error.log" >"$dir/stdout.log" 2>&1 &
  echo $! >"$1/mariadb.pid"
  wait_for 60 "MariaDB on :$MYSQL_PORT" mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot ping
  mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot -e \
    "CREATE USER IF NOT EXISTS 'vigil'@'127.0.0.1' IDENTIFIED BY 'vigil'; GRANT ALL ON *.* TO 'vigil'@'127.0.0.1'; CREATE DATABASE IF NOT EXISTS vigil_test;"
}

stop_all() {
  local dir=$1
  for name in clickhouse redis mariadb; do
    local pidfile=$dir/$name.pid
    [ -f "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: services.sh start|stop DIR"
case "$cmd" in
  start)
    mkdir -p "$dir"
    start_clickhouse "$dir"
    start_redis "$dir"
    start_mariadb "$dir"
    cat >"$dir/env" <<ENV
export VIGIL_TEST_CLICKHOUSE_URL=http://127.0.0.1:$CH_HTTP_PORT
export VIGIL_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export VIGIL_TEST_REDIS_PORT=$REDIS_PORT
export VIGIL_TEST_MYSQL_URL=mysql://vigil:vigil@127.0.0.1:$MYSQL_PORT/vigil_test
export VIGIL_TEST_MYSQL_PORT=$MYSQL_PORT
ENV
    ;;
  stop) stop_all "$dir" ;;
  *) die "unknown command $cmd" ;;
esac
