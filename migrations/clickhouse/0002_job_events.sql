-- Every job event, as the outbox published it (topic outbox.event.job): job history and
-- analytics. A contract (README, "Log and history schema"); change it only with a new
-- migration. ${database} is substituted by the migration runner; every statement must be
-- safe to run again.
CREATE TABLE IF NOT EXISTS ${database}.job_events
(
    -- The envelope: tenant, job id, the event's number within its job (1, 2, …), its own
    -- id, type (JobSubmitted, JobStarted, …) and payload version, when it happened, who
    -- caused it and the request it came from.
    tenant LowCardinality(String),
    job_id UUID,
    sequence UInt64,
    event_id UUID,
    event_type LowCardinality(String),
    event_version UInt32,
    occurred_at DateTime64(6, 'UTC') CODEC(ZSTD(1)),
    actor String CODEC(ZSTD(1)),
    correlation_id String CODEC(ZSTD(1)),
    -- The job's type and queue on every row, not only on JobSubmitted, so that analytics
    -- group any event by them without a join. The sink knows them: a job's events share a
    -- partition and arrive in order, JobSubmitted first.
    job_type LowCardinality(String),
    queue LowCardinality(String),
    -- Fields some events carry, empty (0, '') on the others: the attempt (JobStarted,
    -- JobCompleted, JobFailed, JobLeaseExtended, JobLeaseExpired, JobReleased; the next one
    -- for JobRetryScheduled), the worker (JobStarted), the error (JobFailed) and the reason
    -- (JobDeadLettered, JobCancelled, JobReleased).
    attempt UInt32,
    worker_id LowCardinality(String),
    error String CODEC(ZSTD(1)),
    reason String CODEC(ZSTD(1)),
    -- The event's own fields as the envelope's `data` JSON: nothing is lost that the
    -- columns above do not carry (JSONExtract* reads it).
    data String CODEC(ZSTD(1)),

    -- Everything one request did (X-Correlation-Id): random ids, so a bloom filter.
    INDEX idx_correlation_id correlation_id TYPE bloom_filter(0.001) GRANULARITY 1
)
-- Delivery is at least once: a redelivered event has the same (tenant, job_id, sequence)
-- and the same occurred_at (so the same partition), and merges keep one copy. Until a merge
-- ran, read with FINAL (cheap when filtered by tenant and job) or LIMIT 1 BY.
ENGINE = ReplacingMergeTree
-- Months: history is kept (no TTL; the event store is the source of truth and `ordo replay`
-- can rebuild this table), and partitions stay few.
PARTITION BY toYYYYMM(occurred_at)
-- One job's history is one contiguous range, read in sequence order. (ClickHouse orders
-- UUIDs by their second half first, so UUIDv7 job ids do not make this time-ordered:
-- time-window analytics prune by month partition, then scan the tenant's range.)
ORDER BY (tenant, job_id, sequence);
