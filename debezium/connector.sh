#!/usr/bin/env bash
# Manage the Debezium outbox connector on a running Kafka Connect worker
# (scripts/kafka-connect.sh up, or the docker-compose `connect` service).
#
# Usage: debezium/connector.sh apply|check|delete [CONNECTOR_JSON]
#   apply   create or update the connector (PUT /connectors/NAME/config), then wait
#           until the connector and its task are RUNNING
#   check   print connector, task and replication slot state; non-zero unless RUNNING
#   delete  delete the connector and drop its replication slot, so WAL is not pinned
# Env: KAFKA_CONNECT_URL (default http://127.0.0.1:8083),
#      ORDO_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/ordo),
#      CONNECTOR_WAIT_S (default 60)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONNECT_URL="${KAFKA_CONNECT_URL:-http://127.0.0.1:8083}"
CONNECT_URL="${CONNECT_URL%/}"
DB_URL="${ORDO_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ordo}"
WAIT_S="${CONNECTOR_WAIT_S:-60}"
CONNECTOR_JSON="${2:-$HERE/connector.json}"

log() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ -f $CONNECTOR_JSON ]] || die "no connector config at $CONNECTOR_JSON"
json() { python3 -c "import json, sys; d = json.load(sys.stdin); $1"; }
NAME=$(json 'print(d["name"])' <"$CONNECTOR_JSON")
SLOT=$(json 'print(d["config"].get("slot.name", "debezium"))' <"$CONNECTOR_JSON")

curl_rest() { curl -sS -m 10 -H 'Accept: application/json' "$@"; }

# "CONNECTOR_STATE TASK_STATE..." or "MISSING"; the first failed task's trace goes to stderr.
states() {
  local body code
  body=$(curl_rest -w '\n%{http_code}' "$CONNECT_URL/connectors/$NAME/status") ||
    die "Kafka Connect not reachable at $CONNECT_URL (scripts/kafka-connect.sh up)"
  code=${body##*$'\n'}
  body=${body%$'\n'*}
  if [[ $code == 404 ]]; then
    echo MISSING
    return
  fi
  [[ $code == 200 ]] || die "GET /connectors/$NAME/status answered $code: $body"
  json '
states = [d["connector"]["state"]] + [t["state"] for t in d.get("tasks", [])]
print(" ".join(states))
for t in d.get("tasks", []):
    if t.get("trace"):
        print("task %s trace: %s" % (t["id"], t["trace"][:2000]), file=sys.stderr)
        break
' <<<"$body"
}

slot_active() {
  psql "$DB_URL" -XtAc "SELECT active FROM pg_replication_slots WHERE slot_name = '$SLOT'" 2>/dev/null || true
}

all_running() {
  local s x
  read -r -a s <<<"$1"
  [[ ${#s[@]} -ge 2 ]] || return 1
  for x in "${s[@]}"; do [[ $x == RUNNING ]] || return 1; done
}

apply() {
  local config code out start s i
  config=$(json 'print(json.dumps(d["config"]))' <"$CONNECTOR_JSON")
  start=$(date +%s%N)
  out=$(curl_rest -w '\n%{http_code}' -X PUT -H 'Content-Type: application/json' \
    --data-binary "$config" "$CONNECT_URL/connectors/$NAME/config") ||
    die "Kafka Connect not reachable at $CONNECT_URL (scripts/kafka-connect.sh up)"
  code=${out##*$'\n'}
  case $code in
    201) log "debezium: connector $NAME created" ;;
    200) log "debezium: connector $NAME updated" ;;
    *) die "PUT /connectors/$NAME/config answered $code: ${out%$'\n'*}" ;;
  esac
  for ((i = 0; i < WAIT_S * 4; i++)); do
    s=$(states 2>/dev/null)
    all_running "$s" && break
    [[ $s != *FAILED* ]] || break
    sleep 0.25
  done
  s=$(states)
  all_running "$s" || die "connector $NAME not running after ${WAIT_S}s (states: $s); see make logs-kafka-connect"
  log "debezium: connector $NAME RUNNING (connector and task) $((($(date +%s%N) - start) / 1000000)) ms after the PUT"
  # Streaming has begun once the task holds its replication slot.
  for ((i = 0; i < WAIT_S * 4; i++)); do
    [[ $(slot_active) == t ]] && break
    sleep 0.25
  done
  [[ $(slot_active) == t ]] || die "replication slot $SLOT not active ${WAIT_S}s after the connector started; see make logs-kafka-connect"
  log "debezium: streaming (slot $SLOT active) $((($(date +%s%N) - start) / 1000000)) ms after the PUT"
}

check() {
  local s slot rc=0
  s=$(states)
  if [[ $s == MISSING ]]; then
    log "debezium: connector $NAME does not exist on $CONNECT_URL (make setup-debezium)"
    rc=1
  else
    read -r -a parts <<<"$s"
    log "debezium: connector $NAME: connector ${parts[0]}, tasks ${parts[*]:1}"
    all_running "$s" || rc=1
  fi
  slot=$(psql "$DB_URL" -XtAF' ' -c "SELECT active, confirmed_flush_lsn, pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) FROM pg_replication_slots WHERE slot_name = '$SLOT'" 2>/dev/null || echo '?')
  if [[ -z $slot ]]; then
    log "debezium: replication slot $SLOT: absent"
  else
    read -r -a parts <<<"$slot"
    log "debezium: replication slot $SLOT: active=${parts[0]:-?} confirmed_flush_lsn=${parts[1]:-?} WAL held=${parts[*]:2}"
  fi
  return "$rc"
}

delete() {
  local code i dropped
  # Stop it first so its offsets can be reset (Kafka Connect 3.6+): the slot goes
  # too, so a later `apply` starts clean instead of from a position the new slot lacks.
  code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X PUT "$CONNECT_URL/connectors/$NAME/stop" || echo 000)
  if [[ $code == 204 ]]; then
    for ((i = 0; i < 40; i++)); do
      [[ $(states 2>/dev/null) == STOPPED ]] && break
      sleep 0.25
    done
    code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X DELETE "$CONNECT_URL/connectors/$NAME/offsets" || echo 000)
    if [[ $code == 200 ]]; then
      log "debezium: connector $NAME stopped, its offsets reset"
    else
      log "debezium: connector $NAME stopped; resetting its offsets answered $code"
    fi
  fi
  code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X DELETE "$CONNECT_URL/connectors/$NAME" || echo 000)
  case $code in
    204) log "debezium: connector $NAME deleted" ;;
    404) log "debezium: connector $NAME did not exist" ;;
    000) log "debezium: Kafka Connect not reachable at $CONNECT_URL; dropping the slot only" ;;
    *) die "DELETE /connectors/$NAME answered $code" ;;
  esac
  # The task lets go of the slot a moment after the delete.
  for ((i = 0; i < 60; i++)); do
    dropped=$(psql "$DB_URL" -XtAc "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots WHERE slot_name = '$SLOT' AND NOT active" 2>/dev/null) || die "cannot reach PostgreSQL at $DB_URL"
    if [[ -z $(psql "$DB_URL" -XtAc "SELECT 1 FROM pg_replication_slots WHERE slot_name = '$SLOT'") ]]; then
      if [[ $dropped == 1 ]]; then log "debezium: replication slot $SLOT dropped"; else log "debezium: replication slot $SLOT absent"; fi
      return
    fi
    sleep 0.5
  done
  die "replication slot $SLOT still active after 30s; is another client using it?"
}

case "${1:-}" in
  apply) apply ;;
  check) check ;;
  delete) delete ;;
  *) die "usage: $0 apply|check|delete [CONNECTOR_JSON]" ;;
esac
