-- Log lines of jobs and services: what log search, live tail and Grafana read. The columns
-- are a contract (README, "Log and history schema"); change them only with a new migration.
--
-- ${database} and ${log_retention_days} are substituted by the migration runner
-- (ORDO_CLICKHOUSE_DATABASE, ORDO_LOG_RETENTION_DAYS). Every statement must be safe to run
-- again (IF NOT EXISTS): a migration that failed half-way is re-run whole.
--
-- The model is the OpenTelemetry collector's `otel_logs` table (ClickStack / HyperDX). What
-- differs, and why:
-- * The sorting key starts with the tenant: every Ordo query is scoped to one, so a tenant's
--   lines are one contiguous range instead of being spread over every service's range.
-- * The sorting key is (tenant, service, ts) on the nanosecond timestamp itself; otel_logs
--   keeps a second-precision copy for its primary key. The primary index holds one entry per
--   8,192 rows, so the finer key costs no memory worth a duplicate column.
-- * The message is searched through a text index (inverted index, GA since ClickHouse 26.2)
--   instead of otel_logs' tokenbf_v1 bloom filter: a text index answers from its posting
--   lists, never with a false positive, and counts without reading the column at all.
-- * Level is a closed lower-case set with its OTel severity number checked beside it, so a
--   filter on level never has to guess at spellings.
-- * Resource and scope attributes are not separate maps: Ordo's services are few and named
--   by service/env/host/component; everything else is one `attributes` map.
-- * kafka_partition/kafka_offset record where a line came from, so the sink can resume
--   exactly after what it stored (see the crate docs of ordo-clickhouse-store).
CREATE TABLE IF NOT EXISTS ${database}.logs
(
    -- Every query filters on it; few distinct values, so a dictionary per part.
    tenant LowCardinality(String),
    -- When the line was written, by the writer's clock (OTel Timestamp, nanoseconds). In
    -- sorting order consecutive values differ by little: Delta, then ZSTD.
    ts DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    -- Who wrote it: `job` for job log lines, else the service's own name.
    service LowCardinality(String),
    -- Deployment environment (`prod`, `staging`, …); empty when the source does not say.
    env LowCardinality(String),
    -- Node the line came from (host name, pod) and the part of the service that wrote it
    -- (module, tracing target); empty when unknown.
    host LowCardinality(String),
    component LowCardinality(String),
    -- One of trace, debug, info, warn, error, fatal (lower case), and its OTel severity
    -- number: 1-4 trace, 5-8 debug, 9-12 info, 13-16 warn, 17-20 error, 21-24 fatal (the
    -- first of each range unless the source had a finer one). Enforced below.
    level LowCardinality(String),
    severity_number UInt8,
    -- The line as written. ZSTD: log text compresses several-fold.
    message String CODEC(ZSTD(1)),
    -- Structured fields. Strings are stored as they are, other JSON values as their JSON
    -- text, nested objects flattened with dotted keys ({"http": {"status": 500}} becomes
    -- 'http.status' → '500'). Keys repeat on every line: LowCardinality.
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    -- The job and attempt a job log line belongs to; NULL and 0 for other lines.
    job_id Nullable(UUID),
    attempt UInt32,
    -- The worker that ran the attempt; empty for other lines.
    worker_id LowCardinality(String),
    -- W3C trace context as lower-case hex (32 and 16 characters); empty when none.
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    -- When Ordo took the line (the API's clock): ts may be late or skewed, this is not.
    received_at DateTime64(6, 'UTC') CODEC(Delta(8), ZSTD(1)),
    -- The ordo.logs record the line was stored from; -1 when it did not come from Kafka.
    -- Nearly constant along the sorting key, so they compress to almost nothing.
    kafka_partition Int32 DEFAULT -1 CODEC(ZSTD(1)),
    kafka_offset Int64 DEFAULT -1 CODEC(Delta(8), ZSTD(1)),

    CONSTRAINT level_is_known CHECK level IN ('trace', 'debug', 'info', 'warn', 'error', 'fatal'),
    CONSTRAINT severity_matches_level CHECK severity_number BETWEEN
        indexOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal'], level) * 4 - 3
        AND indexOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal'], level) * 4,

    -- Token search, case-insensitive: tokens of the lower-cased message, split at every
    -- character that is not a letter or digit. Query it with the same expression and
    -- lower-case tokens: hasToken(lower(message), 'timeout'), hasAllTokens(lower(message),
    -- 'connection refused'), hasAnyTokens(...). (An index on plain `message` would match
    -- case-sensitively; its `preprocessor = lower(message)` variant gives different answers
    -- when the index is not used.)
    INDEX idx_message lower(message) TYPE text(tokenizer = splitByNonAlpha),
    -- One job's or one trace's lines: the ids are random, so a bloom filter per granule
    -- (8,192 rows) skips nearly every granule; 0.1 % false positives for about 1.8 bytes
    -- per distinct id.
    INDEX idx_job_id job_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    -- attributes['key'] = 'value' and has(mapKeys(attributes), 'key'): as in otel_logs.
    INDEX idx_attribute_keys mapKeys(attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attribute_values mapValues(attributes) TYPE bloom_filter(0.01) GRANULARITY 1,

    -- The sink's resume point: SELECT kafka_partition, max(kafka_offset) ... GROUP BY
    -- kafka_partition reads this aggregate (one row per partition and part) instead of the
    -- whole table.
    PROJECTION kafka_offsets
    (
        SELECT kafka_partition, max(kafka_offset) GROUP BY kafka_partition
    )
)
ENGINE = MergeTree
-- A part per day: retention drops whole days, and a time window prunes whole days.
PARTITION BY toDate(ts)
ORDER BY (tenant, service, ts)
-- ORDO_LOG_RETENTION_DAYS. With ttl_only_drop_parts a day is dropped whole once its newest
-- line has expired, never rewritten row by row. A later change of the setting is applied by
-- `ordo migrate` (and `ordo dev`) as ALTER TABLE ... MODIFY TTL, which with
-- materialize_ttl_recalculate_only only recomputes each part's TTL bounds (no rewrite).
TTL toDateTime(ts) + toIntervalDay(${log_retention_days})
SETTINGS
    ttl_only_drop_parts = 1,
    materialize_ttl_recalculate_only = 1,
    -- A retried insert with the same insert_deduplication_token (or the same data) within
    -- the last 1,000 inserts is dropped, as on replicated tables.
    non_replicated_deduplication_window = 1000;
