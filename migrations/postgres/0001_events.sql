-- The event store: one row per job event, appended only. The layout is postgres-es's own
-- (it serves reads); `position` adds a global append order for replay tooling.
CREATE TABLE events (
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL CHECK (sequence >= 1),
    event_type     text   NOT NULL,
    event_version  text   NOT NULL,
    payload        jsonb  NOT NULL,
    metadata       jsonb  NOT NULL,
    position       bigint GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT events_pkey PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- Snapshots are deliberately absent: cqrs-es 0.5 applies events twice before saving one.
