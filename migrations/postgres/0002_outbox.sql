-- The transactional outbox, in the column layout Debezium's outbox EventRouter expects
-- (id, aggregatetype, aggregateid, type, payload), plus sequence, tenant and created_at that
-- travel as headers or help operators. Rows are written in the same statement as their events.
CREATE TABLE outbox (
    id            uuid        NOT NULL,
    aggregatetype text        NOT NULL,
    aggregateid   text        NOT NULL,
    type          text        NOT NULL,
    payload       jsonb       NOT NULL,
    sequence      bigint      NOT NULL,
    tenant        text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT outbox_pkey PRIMARY KEY (id)
);

-- Change data capture (Debezium or `ordo serve relay`) reads inserts through this publication;
-- deletes (outbox clean-up) are not published.
CREATE PUBLICATION ordo_outbox FOR TABLE outbox WITH (publish = 'insert');
