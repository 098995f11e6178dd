-- Replication slots of `ordo serve relay` that have published the rows already in the outbox
-- when the slot was created. Logical decoding only sees transactions that commit after a slot
-- exists, so a new slot starts with a sweep of the table (like Debezium's initial snapshot);
-- this row records that the sweep finished, so a restart does not publish those rows again.
CREATE TABLE outbox_relay_slots (
    slot     text        NOT NULL PRIMARY KEY,
    swept_at timestamptz NOT NULL DEFAULT now()
);
