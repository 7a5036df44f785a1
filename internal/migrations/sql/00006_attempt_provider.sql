-- provider and provider_message_id: which provider of a channel's failover
-- chain (or which template provider) answered an attempt, and the id it
-- gave the message; NULL for a channel with one plain provider, and for
-- rows written before this migration. Not indexed: attempts are looked up
-- by id.

-- +goose Up
ALTER TABLE dispatch_attempts ADD COLUMN provider text, ADD COLUMN provider_message_id text;

-- +goose Down
ALTER TABLE dispatch_attempts DROP COLUMN provider, DROP COLUMN provider_message_id;
