-- Reporting views. Filter them by campaign: the filter is pushed down to the
-- indexes of dispatch_status.

-- +goose Up

-- campaign_status_counts: notifications per campaign, channel and status.
-- channel is the channel in use, or the one that succeeded once sent.
CREATE VIEW campaign_status_counts AS
SELECT campaign,
       channel,
       status,
       count(*)        AS notifications,
       sum(attempts)   AS attempts,
       sum(duplicates) AS duplicates,
       max(updated_at) AS last_update
FROM dispatch_status
GROUP BY campaign, channel, status;

-- campaign_delivery_spread: how long sent notifications took from the
-- dispatcher first seeing them to the provider accepting them (sent_at -
-- created_at), in seconds. It includes blackout holds and retries.
CREATE VIEW campaign_delivery_spread AS
SELECT campaign,
       count(*) AS sent,
       min(extract(epoch FROM sent_at - created_at))::double precision AS min_seconds,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at))::double precision AS p50_seconds,
       percentile_cont(0.90) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at))::double precision AS p90_seconds,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at))::double precision AS p99_seconds,
       max(extract(epoch FROM sent_at - created_at))::double precision AS max_seconds,
       min(sent_at) AS first_sent,
       max(sent_at) AS last_sent
FROM dispatch_status
WHERE sent_at IS NOT NULL
GROUP BY campaign;

-- campaign_failures: why notifications ended without being sent.
CREATE VIEW campaign_failures AS
SELECT campaign,
       status,
       channel,
       last_error,
       count(*) AS notifications
FROM dispatch_status
WHERE status IN ('failed', 'expired', 'rejected', 'canceled')
GROUP BY campaign, status, channel, last_error;

-- +goose Down
DROP VIEW campaign_failures;
DROP VIEW campaign_delivery_spread;
DROP VIEW campaign_status_counts;
