#!/usr/bin/env bash
# Real log shippers written by others, for the ingest tests (ingest/tests/shippers.rs): the
# OpenTelemetry Python SDK with its OTLP/HTTP protobuf exporter, the official Elasticsearch
# Python client (helpers.bulk), python-logging-loki (Loki's JSON push) in a venv, and
# winston-loki (Loki's snappy-compressed protobuf push) from the npm registry.
# Idempotent: installs only what is missing, then prints the directory that holds both
# (venv/ and node/), so callers need not know where it is.
#
# Usage: scripts/log-shippers.sh [up]
# Env:   XDG_STATE_HOME (the state lives under ${XDG_STATE_HOME:-$HOME/.local/state}/ordo/shippers)
set -euo pipefail

DIR="${XDG_STATE_HOME:-$HOME/.local/state}/ordo/shippers"
VENV="$DIR/venv"
NODE="$DIR/node"
# Pinned, so every machine tests against the same clients. elasticsearch 8.x: the clients of
# the Elasticsearch major version the /es API answers as.
PYTHON_PACKAGES=(
  "opentelemetry-sdk==1.45.2"
  "opentelemetry-exporter-otlp-proto-http==1.45.2"
  "elasticsearch>=8.17,<9"
  "python-logging-loki==0.3.1"
)
NODE_PACKAGES=("winston@3.19.0" "winston-loki@6.1.7")

log() { printf 'log-shippers: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

python_ready() {
  "$VENV/bin/python" -c 'import opentelemetry.exporter.otlp.proto.http, elasticsearch, logging_loki' 2>/dev/null
}

node_ready() {
  [[ -f $NODE/node_modules/winston-loki/package.json && -f $NODE/node_modules/winston/package.json ]]
}

mkdir -p "$DIR"
if ! python_ready; then
  log "installing ${PYTHON_PACKAGES[*]} into $VENV"
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV" || die "python3 -m venv failed (apt install python3-venv)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PYTHON_PACKAGES[@]}" >&2
  python_ready || die "the Python shippers do not import after installing them"
fi
if ! node_ready; then
  command -v npm >/dev/null || die "npm is needed for winston-loki (apt install nodejs npm)"
  log "installing ${NODE_PACKAGES[*]} into $NODE"
  mkdir -p "$NODE"
  [[ -f $NODE/package.json ]] || printf '{"name": "ordo-log-shippers", "private": true}\n' >"$NODE/package.json"
  npm install --prefix "$NODE" --no-audit --no-fund --silent "${NODE_PACKAGES[@]}" >&2
  node_ready || die "winston-loki is not installed after npm install"
fi
echo "$DIR"
