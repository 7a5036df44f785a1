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

-- Counts per campaign, channel and status (campaign_status_counts).
CREATE INDEX dispatch_status_campaign_status ON dispatch_status (campaign, status, channel);
-- Delivery-time spread of a campaign (campaign_delivery_spread).
CREATE INDEX dispatch_status_campaign_sent ON dispatch_status (campaign, sent_at) WHERE sent_at IS NOT NULL;
-- What is waiting, and until when.
CREATE INDEX dispatch_status_next_attempt ON dispatch_status (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

-- +goose Down
DROP TABLE dispatch_status;
