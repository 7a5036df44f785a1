-- dispatch_status: one row per notification, the newest state the sink has
-- seen. The sink is its only writer; every write is guarded by version, so
-- a replayed or reordered change never moves a row backwards.

-- +goose Up
CREATE TABLE dispatch_status (
    id              text        PRIMARY KEY,
    campaign        text        NOT NULL DEFAULT '',
    status          text        NOT NULL,
    channel         text        NOT NULL DEFAULT '',
    attempts        integer     NOT NULL DEFAULT 0,
    duplicates      integer     NOT NULL DEFAULT 0,
    policy_id       text        NOT NULL DEFAULT '',
    policy_version  integer     NOT NULL DEFAULT 0,
    hold_reason     text        NOT NULL DEFAULT '',
    last_error      text        NOT NULL DEFAULT '',
    -- created_at is when the dispatcher first saw the request.
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    next_attempt_at timestamptz,
    -- version is State.Version: one higher with every change.
    version         bigint      NOT NULL,
    -- synced_at is when the sink last wrote the row (Postgres' clock).
    synced_at       timestamptz NOT NULL DEFAULT now()
);

-- Reports filter by campaign. Only columns that never change after the first
-- write (id, campaign) are indexed, and pages are filled only half: a sink
-- batch updates every row of a page at once (rows are written in id order),
-- and with room for a new copy of each of them on the same page every status
-- change is a HOT update (no index entry to add, a fraction of the WAL).
-- Measured: three times faster batches than with fillfactor 80, where only
-- one row in five found room. The price is disk: about twice the table size.
-- A campaign report reads the campaign's rows through the campaign index.
CREATE INDEX dispatch_status_campaign ON dispatch_status (campaign);
ALTER TABLE dispatch_status SET (fillfactor = 50);

-- +goose Down
DROP TABLE dispatch_status;
