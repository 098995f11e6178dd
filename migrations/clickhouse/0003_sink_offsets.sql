-- Where each Kafka sink that keeps its offsets with its data stands, per (sink, topic,
-- partition): the clickhouse-logs sink writes a row after every batch it stored whole, and
-- reads them when it is assigned partitions (see the sink's module docs in
-- projectors/src/sinks/clickhouse/logs.rs for the exactly-once design). ${database} is
-- substituted by the migration runner; every statement must be safe to run again.
--
-- Why a table of its own rather than max(kafka_offset) of `logs`: an INSERT whose rows span
-- several days becomes one part per day, committed one by one, so after a crash mid-insert
-- the highest stored offset may belong to a batch that is only partly there. This table says
-- which batches are whole; rows of `logs` beyond it are a crashed batch's, and are removed
-- before the partition resumes.
CREATE TABLE IF NOT EXISTS ${database}.sink_offsets
(
    -- The sink (`clickhouse-logs`), the topic and partition it consumes.
    sink LowCardinality(String),
    topic LowCardinality(String),
    partition Int32,
    -- The next offset to read: every record below it is stored whole. -1 when not known
    -- (nothing stored yet, or the broker lost the log): the consumer group's offset applies.
    next_offset Int64,
    -- Rows of this partition at or below this offset were in the table before the sink's
    -- records of this log began (another topic fed it, or the broker lost records and
    -- numbers them again from 0): they are never taken for a crashed batch. -1: none.
    floor Int64,
    -- The server's clock, not the writer's: after a rebalance the new owner's rows must win
    -- over the old owner's whatever their clocks say.
    updated_at DateTime64(6, 'UTC') DEFAULT now64(6)
)
-- One row per key after merges, the latest write winning; readers take argMax(…, updated_at)
-- (or FINAL) so that they do not depend on merges having run.
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (sink, topic, partition);
