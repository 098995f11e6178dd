# Ordo: the two commands are `make dev` (start the platform) and `make test` (the whole suite).
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: dev services services-down status test lint fmt migrate bench build

## Start the local stack (PostgreSQL, Redis) and the platform on http://127.0.0.1:8080, in the foreground.
dev: services
	ORDO_LOG_FORMAT=$${ORDO_LOG_FORMAT:-text} $(CARGO) run --release -p ordo -- dev

## Install (if missing) and start the local stack; reuses what is already running.
services:
	bash scripts/services.sh up

services-down:
	bash scripts/services.sh down

status:
	bash scripts/services.sh status

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
