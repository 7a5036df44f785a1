-- Indexes for the API's lists (GET /v1/messages, newest first, optionally
-- by campaign, with a (created_at, id) cursor). Both hold only columns that
-- never change after a row's first write, so the sink's status updates
-- stay HOT updates (see 00001): an index on status or updated_at would
-- make every status change add index entries. A status, channel or hold
-- filter is applied to the rows in this order. The campaign index replaces
-- dispatch_status_campaign, whose work (reports by campaign) it does as
-- its prefix.

-- +goose Up
CREATE INDEX dispatch_status_campaign_created ON dispatch_status (campaign, created_at, id);
CREATE INDEX dispatch_status_created ON dispatch_status (created_at, id);
DROP INDEX dispatch_status_campaign;

-- +goose Down
CREATE INDEX dispatch_status_campaign ON dispatch_status (campaign);
DROP INDEX dispatch_status_created;
DROP INDEX dispatch_status_campaign_created;
