-- Service discovery: every (tenant, env, service, component) seen in `logs` is registered by
-- the inserts themselves, through materialized views, with no job to schedule and nothing
-- for the sink to do. A contract (README, "Log and history schema"); change it only with a
-- new migration. ${database} and ${log_retention_days} are substituted by the migration
-- runner; every statement must be safe to run again.
--
-- Times are when Ordo took the lines (`received_at`), not the writers' `ts`: a shipper
-- replaying an old file, or a skewed clock, must not make a live service look retired or a
-- new one look old, and the hour of arrival keeps the hourly table's TTL predictable.
--
-- Both tables are AggregatingMergeTree with SimpleAggregateFunction columns: each insert
-- adds partial rows (one per key and insert block), merges fold them with min, max and
-- sum. SummingMergeTree would sum every column, and the hourly table needs a max too.
-- Merges run when they run: readers aggregate again (GROUP BY with min/max/sum, or FINAL).
--
-- Both take `non_replicated_deduplication_window`: the logs sink retries an insert with the
-- same `insert_deduplication_token`, and with a window on the views' tables too, a retry
-- that `logs` drops as a duplicate is dropped here as well
-- (`deduplicate_blocks_in_dependent_materialized_views`, on by default), so counts stay
-- exact. (The one case they do not: rows of a batch that crashed mid-insert are removed from
-- `logs` before it is stored again, but stay counted here.)

-- One row per service: when it was first and last seen.
CREATE TABLE IF NOT EXISTS ${database}.services
(
    tenant LowCardinality(String),
    env LowCardinality(String),
    service LowCardinality(String),
    component LowCardinality(String),
    first_seen SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
-- Services are few: no partitions. No TTL either: a TTL removes expired partial rows part by
-- part, so a service active today could lose the row that held its first_seen. A service
-- silent for ORDO_SERVICE_RETIRE_DAYS is retired by its readers (`active_services` below);
-- its row costs nothing, and it keeps its first_seen if it comes back.
ORDER BY (tenant, env, service, component)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.services_mv TO ${database}.services AS
SELECT tenant, env, service, component,
       min(received_at) AS first_seen,
       max(received_at) AS last_seen
FROM ${database}.logs
GROUP BY tenant, env, service, component;

-- Per service and hour of arrival: lines, error lines (error and fatal), and the ingestion
-- delay of those lines (the insert's time minus received_at, in milliseconds: the sum for
-- an average over `lines`, and the maximum).
CREATE TABLE IF NOT EXISTS ${database}.service_hourly
(
    tenant LowCardinality(String),
    env LowCardinality(String),
    service LowCardinality(String),
    component LowCardinality(String),
    hour DateTime('UTC'),
    lines SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    delay_ms_sum SimpleAggregateFunction(sum, UInt64),
    delay_ms_max SimpleAggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant, service, env, component, hour)
-- As long as the lines themselves (ORDO_LOG_RETENTION_DAYS; `ordo migrate` applies a change
-- to both tables).
TTL hour + toIntervalDay(${log_retention_days})
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.service_hourly_mv TO ${database}.service_hourly AS
SELECT tenant, env, service, component,
       toStartOfHour(received_at) AS hour,
       count() AS lines,
       countIf(level IN ('error', 'fatal')) AS errors,
       -- now64 is the insert's time; a negative delay (a skewed clock upstream) counts as 0.
       sum(toUInt64(greatest(dateDiff('millisecond', received_at, now64(6)), 0))) AS delay_ms_sum,
       max(toUInt64(greatest(dateDiff('millisecond', received_at, now64(6)), 0))) AS delay_ms_max
FROM ${database}.logs
GROUP BY tenant, env, service, component, hour;

-- The services seen within the last `retire_days` days:
--   SELECT * FROM active_services(retire_days = 7)
-- (`ordo services` reads it with ORDO_SERVICE_RETIRE_DAYS). The inner query aggregates the
-- partial rows; its aliases differ from the columns so that min(first_seen) does not refer
-- to itself.
CREATE VIEW IF NOT EXISTS ${database}.active_services AS
SELECT tenant, env, service, component, seen_first AS first_seen, seen_last AS last_seen
FROM
(
    SELECT tenant, env, service, component,
           min(first_seen) AS seen_first,
           max(last_seen) AS seen_last
    FROM ${database}.services
    GROUP BY tenant, env, service, component
)
WHERE seen_last >= now64(6) - toIntervalDay({retire_days:UInt32});
