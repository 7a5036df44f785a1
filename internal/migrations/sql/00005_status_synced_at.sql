-- status_synced_at is when the sink wrote the row's current status: it moves
-- when the status changes, not when a later version leaves the status as it
-- was (a duplicate counted, an error text). For a final row it is when the
-- final status became visible in PostgreSQL, which `herald loadtest`
-- compares with the provider's answer. It is the clock of the row's write
-- (clock_timestamp() as the sink's upsert reaches the row), a few
-- milliseconds to one batch's upsert before its commit. Not indexed, so
-- status changes stay HOT updates (see 00001). NULL for rows written before
-- this migration until their status next changes.

-- +goose Up
ALTER TABLE dispatch_status ADD COLUMN status_synced_at timestamptz;

-- +goose Down
ALTER TABLE dispatch_status DROP COLUMN status_synced_at;
