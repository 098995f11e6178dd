#!/usr/bin/env bash
# Local Ordo stack without Docker: PostgreSQL 15 (logical replication), Redis 7,
# a Kafka-protocol broker (Nisshi, in-memory storage) and ClickHouse 26 (chDB behind
# scripts/clickhouse-http.py), all on loopback, for Debian 12. Idempotent: reuses
# what is installed/running, installs what is not.
#
# Usage: scripts/services.sh [up|down|status]   (default: up)
# Env:   ORDO_PG_PORT (default 5432), ORDO_REDIS_PORT (default 6379),
#        ORDO_KAFKA_PORT (default 9092), ORDO_CLICKHOUSE_PORT (default 8123)
set -euo pipefail

PG_VERSION=15
PG_CLUSTER=main
PG_PORT="${ORDO_PG_PORT:-5432}"
PG_DB=ordo
PG_CONF_DIR="/etc/postgresql/${PG_VERSION}/${PG_CLUSTER}"
REDIS_PORT="${ORDO_REDIS_PORT:-6379}"
KAFKA_PORT="${ORDO_KAFKA_PORT:-9092}"
# The newest Nisshi (formerly Tansu) that builds on our toolchain; 0.6's memory
# storage loses records on consumer resume, so the version is pinned.
NISSHI_VERSION=0.7.0-pre.2
STATE_DIR="${XDG_STATE_HOME:-$HOME/.local/state}/ordo"
CLICKHOUSE_PORT="${ORDO_CLICKHOUSE_PORT:-8123}"
# chDB: ClickHouse 26.9 as a Python extension (Debian only has ClickHouse 18.16). Only its
# engine is used, so its pandas/pyarrow dependencies are left out; lz4 is the front's.
CHDB_VERSION=26.9.0
LZ4_SPEC='lz4>=4.3,<5'
CLICKHOUSE_DIR="$STATE_DIR/clickhouse"
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"

# Root runs everything directly; otherwise escalate with sudo (best effort).
if [[ $(id -u) -eq 0 ]]; then
  SUDO=""
  AS_PG=(runuser -u postgres --)
else
  SUDO="sudo"
  AS_PG=(sudo -u postgres --)
fi

APT_UPDATED=0

log() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# apt-get update at most once per run, and only when something must be installed.
apt_install() {
  if [[ $APT_UPDATED -eq 0 ]]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---------------------------------------------------------------- postgres ---

pg_installed() {
  command -v pg_ctlcluster >/dev/null && [[ -x /usr/lib/postgresql/${PG_VERSION}/bin/postgres ]]
}

pg_cluster_exists() {
  pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { f = 1 } END { exit !f }'
}

# pg_ctlcluster status: 0 = running, 3 = stopped.
pg_running() { $SUDO pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null 2>&1; }

# Query over the local socket as the postgres OS user (peer auth), so it works
# before our pg_hba trust lines are active.
pg_local_query() { "${AS_PG[@]}" psql -p "$PG_PORT" -XtAc "$1" 2>/dev/null; }

# Write the drop-in config; returns 0 if the file changed.
pg_write_conf() {
  local dest="$PG_CONF_DIR/conf.d/ordo.conf" tmp
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# Managed by scripts/services.sh (Ordo local stack). Needs a restart to apply.
listen_addresses = '127.0.0.1'
port = ${PG_PORT}
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
max_connections = 200
shared_buffers = 256MB
# Loopback only: TLS would encrypt every query for nobody (it cost ~8 % of the box's CPU in
# ordo bench e2e). A remote PostgreSQL is reached with the sslmode of ORDO_DATABASE_URL.
ssl = off
# A replication slot nobody reads (a relay or connector left stopped) keeps every WAL segment
# from its position on and can fill the disk; past this much it is invalidated instead, and
# its reader has to be re-created from a snapshot.
max_slot_wal_keep_size = 2GB
EOF
  if $SUDO cmp -s "$tmp" "$dest" 2>/dev/null; then
    rm -f "$tmp"
    return 1
  fi
  $SUDO install -D -m 0644 -o postgres -g postgres "$tmp" "$dest"
  rm -f "$tmp"
}

# Prepend loopback trust lines (normal + replication) that are missing; must
# come before Debian's scram lines because pg_hba is first-match.
# Returns 0 if the file changed.
pg_write_hba() {
  local hba="$PG_CONF_DIR/pg_hba.conf" db addr line tmp missing=()
  for db in all replication; do
    for addr in 127.0.0.1/32 ::1/128; do
      if ! $SUDO grep -Eq "^host[[:space:]]+${db}[[:space:]]+all[[:space:]]+${addr//./\\.}[[:space:]]+trust([[:space:]]|$)" "$hba"; then
        printf -v line 'host    %-15s all             %-23s trust' "$db" "$addr"
        missing+=("$line")
      fi
    done
  done
  [[ ${#missing[@]} -gt 0 ]] || return 1
  tmp=$(mktemp)
  {
    echo "# Ordo local dev stack (scripts/services.sh): passwordless loopback access."
    printf '%s\n' "${missing[@]}"
    $SUDO cat "$hba"
  } >"$tmp"
  # cp onto the existing file keeps its owner and mode.
  $SUDO cp "$tmp" "$hba"
  rm -f "$tmp"
}

pg_wait_ready() {
  local i
  for ((i = 0; i < 30; i++)); do
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && return 0
    sleep 1
  done
  die "postgres not accepting connections on 127.0.0.1:${PG_PORT} after 30s (see /var/log/postgresql/postgresql-${PG_VERSION}-${PG_CLUSTER}.log)"
}

ensure_postgres() {
  local how="reused" conf_changed=0 hba_changed=0 wal

  if ! pg_installed; then
    apt_install postgresql postgresql-contrib
    how="installed"
  fi
  if ! pg_cluster_exists; then
    "${AS_PG[@]}" pg_createcluster -p "$PG_PORT" "$PG_VERSION" "$PG_CLUSTER" >/dev/null
    [[ $how == installed ]] || how="created"
  fi

  pg_write_conf && conf_changed=1
  pg_write_hba && hba_changed=1

  if pg_running; then
    wal=$(pg_local_query 'SHOW wal_level' || true)
    if [[ $conf_changed -eq 1 || $hba_changed -eq 1 || $wal != logical ]]; then
      $SUDO pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart
      how="restarted"
    fi
  else
    $SUDO pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
    [[ $how != reused ]] || how="started"
  fi

  pg_wait_ready

  if [[ -z $(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -XtAc "SELECT 1 FROM pg_database WHERE datname='${PG_DB}'") ]]; then
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -Xqc "CREATE DATABASE ${PG_DB}"
  fi

  wal=$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -XtAc 'SHOW wal_level')
  [[ $wal == logical ]] || die "postgres wal_level is '$wal', expected 'logical'"
  log "postgres: ${how}, running on 127.0.0.1:${PG_PORT} (wal_level=${wal}, db=${PG_DB})"
}

stop_postgres() {
  if pg_installed && pg_cluster_exists && pg_running; then
    $SUDO pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop
    log "postgres: stopped"
  else
    log "postgres: not running"
  fi
}

status_postgres() {
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then
    log "postgres: up on 127.0.0.1:${PG_PORT}"
  else
    log "postgres: down"
    return 1
  fi
}

# ------------------------------------------------------------------- redis ---

redis_up() {
  command -v redis-cli >/dev/null &&
    [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

ensure_redis() {
  local how="reused" i

  if ! command -v redis-server >/dev/null; then
    apt_install redis-server
    how="installed"
  fi

  if ! redis_up; then
    mkdir -p "$STATE_DIR"
    # Ephemeral dev cache: no RDB/AOF persistence, loopback only.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
      --save '' --appendonly no --dir "$STATE_DIR" \
      --pidfile "$STATE_DIR/redis.pid" --logfile "$STATE_DIR/redis.log"
    for ((i = 0; i < 30; i++)); do
      redis_up && break
      sleep 0.5
    done
    redis_up || die "redis not answering PING on 127.0.0.1:${REDIS_PORT} after 15s (see $STATE_DIR/redis.log)"
    [[ $how == installed ]] || how="started"
  fi

  log "redis: ${how}, running on 127.0.0.1:${REDIS_PORT} ($(redis-server --version | grep -o 'v=[0-9.]*'))"
}

stop_redis() {
  if redis_up; then
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    log "redis: stopped"
  else
    log "redis: not running"
  fi
}

status_redis() {
  if redis_up; then
    log "redis: up on 127.0.0.1:${REDIS_PORT}"
  else
    log "redis: down"
    return 1
  fi
}

# ------------------------------------------------------------------ broker ---

kafka_up() { (exec 3<>"/dev/tcp/127.0.0.1/${KAFKA_PORT}") 2>/dev/null; }

nisshi_bin() {
  local bin
  bin=$(command -v nisshi 2>/dev/null || echo "$HOME/.cargo/bin/nisshi")
  [[ -x $bin ]] && "$bin" --version 2>/dev/null | grep -qF "$NISSHI_VERSION" && echo "$bin"
}

# Topics are not created here: the memory broker forgets them on restart, so
# every Ordo process creates the topics it uses (admin API) when it starts.
ensure_broker() {
  local how="reused" bin i
  if ! kafka_up; then
    if ! bin=$(nisshi_bin); then
      log "broker: building nisshi ${NISSHI_VERSION} once (cargo install, ~15 min)"
      command -v cc >/dev/null || apt_install build-essential
      cargo install "nisshi@${NISSHI_VERSION}" --locked --features dynostore --quiet
      bin=$(nisshi_bin) || die "nisshi ${NISSHI_VERSION} not found after cargo install"
      how="built"
    fi
    mkdir -p "$STATE_DIR"
    # setsid: the broker must outlive the shell (and make) that started it.
    setsid "$bin" broker --listener-url "tcp://127.0.0.1:${KAFKA_PORT}" \
      --advertised-listener-url "tcp://127.0.0.1:${KAFKA_PORT}" \
      --storage-engine memory://nisshi/ --silent \
      >>"$STATE_DIR/nisshi.log" 2>&1 </dev/null &
    echo $! >"$STATE_DIR/nisshi.pid"
    for ((i = 0; i < 60; i++)); do
      kafka_up && break
      sleep 0.5
    done
    kafka_up || die "broker not listening on 127.0.0.1:${KAFKA_PORT} after 30s (see $STATE_DIR/nisshi.log)"
    [[ $how == built ]] || how="started"
  fi
  log "broker: ${how}, running on 127.0.0.1:${KAFKA_PORT} (nisshi, memory storage)"
}

stop_broker() {
  local pid
  # Waits for the exit: an `up` right after must not find the dying broker's port still
  # open, take it as running, and leave the stack without one.
  if [[ -f $STATE_DIR/nisshi.pid ]] && pid=$(cat "$STATE_DIR/nisshi.pid") && kill -0 "$pid" 2>/dev/null; then
    stop_pid "$pid" 10
    rm -f "$STATE_DIR/nisshi.pid"
    log "broker: stopped"
  else
    log "broker: not running (or not started by this script)"
  fi
}

status_broker() {
  if kafka_up; then
    log "broker: up on 127.0.0.1:${KAFKA_PORT}"
  else
    log "broker: down"
    return 1
  fi
}

# -------------------------------------------------------------- clickhouse ---

clickhouse_up() {
  [[ $(curl -s -m 2 "http://127.0.0.1:${CLICKHOUSE_PORT}/ping" 2>/dev/null) == "Ok." ]]
}

# The front this script started, if it is alive (the pid file may be stale or recycled).
clickhouse_pid() {
  local pid
  [[ -f $CLICKHOUSE_DIR/front.pid ]] && pid=$(cat "$CLICKHOUSE_DIR/front.pid") && [[ -n $pid ]] &&
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'clickhouse-http.py' && echo "$pid"
}

clickhouse_installed() {
  "$CLICKHOUSE_DIR/venv/bin/python" -c \
    "import chdb, lz4.frame; assert chdb.__version__ == '${CHDB_VERSION}', chdb.__version__" 2>/dev/null
}

ensure_clickhouse() {
  local how="reused" pid i start
  if ! clickhouse_up; then
    if ! clickhouse_installed; then
      start=$(date +%s)
      log "clickhouse: installing chdb-core ${CHDB_VERSION} (~565 MB) into $CLICKHOUSE_DIR/venv"
      mkdir -p "$CLICKHOUSE_DIR"
      if ! python3 -m venv "$CLICKHOUSE_DIR/venv" 2>/dev/null; then
        rm -rf "$CLICKHOUSE_DIR/venv"
        apt_install python3-venv
        python3 -m venv "$CLICKHOUSE_DIR/venv"
      fi
      "$CLICKHOUSE_DIR/venv/bin/pip" install -q --disable-pip-version-check --no-deps \
        "chdb-core==${CHDB_VERSION}" "$LZ4_SPEC"
      clickhouse_installed || die "chdb-core ${CHDB_VERSION} does not import from $CLICKHOUSE_DIR/venv"
      how="installed in $(($(date +%s) - start))s"
    fi
    if pid=$(clickhouse_pid); then
      die "the ClickHouse front (pid $pid) runs but does not answer on port ${CLICKHOUSE_PORT}; see $CLICKHOUSE_DIR/front.log, or run '$0 down'"
    fi
    mkdir -p "$CLICKHOUSE_DIR/data"
    # setsid: the front must outlive the shell (and make) that started it.
    setsid "$CLICKHOUSE_DIR/venv/bin/python" "$SCRIPT_DIR/clickhouse-http.py" \
      --port "$CLICKHOUSE_PORT" --path "$CLICKHOUSE_DIR/data" \
      >>"$CLICKHOUSE_DIR/front.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$CLICKHOUSE_DIR/front.pid"
    for ((i = 0; i < 60; i++)); do
      clickhouse_up && break
      kill -0 "$pid" 2>/dev/null || die "the ClickHouse front exited during start-up; see $CLICKHOUSE_DIR/front.log"
      sleep 0.5
    done
    clickhouse_up || die "ClickHouse not answering http://127.0.0.1:${CLICKHOUSE_PORT}/ping after 30s (see $CLICKHOUSE_DIR/front.log)"
    [[ $how != reused ]] || how="started"
  fi
  log "clickhouse: ${how}, running on 127.0.0.1:${CLICKHOUSE_PORT} ($(curl -s -m 2 "http://127.0.0.1:${CLICKHOUSE_PORT}/?query=SELECT+version()") via chDB, data in $CLICKHOUSE_DIR/data)"
}

stop_clickhouse() {
  local pid
  if pid=$(clickhouse_pid); then
    stop_pid "$pid" 10
    rm -f "$CLICKHOUSE_DIR/front.pid"
    log "clickhouse: stopped"
  elif clickhouse_up; then
    log "clickhouse: port ${CLICKHOUSE_PORT} answers but was not started by this script; left alone"
  else
    log "clickhouse: not running"
  fi
}

status_clickhouse() {
  if clickhouse_up; then
    log "clickhouse: up on 127.0.0.1:${CLICKHOUSE_PORT}"
  else
    log "clickhouse: down"
    return 1
  fi
}

# -------------------------------------------------------------------- main ---

main() {
  case "${1:-up}" in
    up)
      ensure_postgres
      ensure_redis
      ensure_broker
      ensure_clickhouse
      ;;
    down)
      stop_clickhouse
      stop_broker
      stop_postgres
      stop_redis
      ;;
    status)
      # Report all, then exit non-zero if any is down.
      local rc=0
      status_postgres || rc=1
      status_redis || rc=1
      status_broker || rc=1
      status_clickhouse || rc=1
      return "$rc"
      ;;
    *)
      die "usage: $0 [up|down|status]"
      ;;
  esac
}

main "$@"
