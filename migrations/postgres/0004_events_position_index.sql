-- Replay reads the event store in global append order, in keyset pages
-- (`WHERE position > $1 ORDER BY position LIMIT n`): without an index every page is a full
-- scan with a top-N sort, which grows with the store.
CREATE INDEX events_position ON events (position);
