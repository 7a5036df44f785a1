-- dispatch_attempts: append-only, one row per provider attempt, from
-- State.History. It grows by about a million rows a month per campaign and
-- is kept for months, so it is range-partitioned by month on "at": an old
-- month is dropped in an instant (DETACH PARTITION, then DROP TABLE) instead
-- of a DELETE that bloats the table. A row whose month has no partition
-- lands in dispatch_attempts_default; herald_attempts_partition() creates a
-- month's partition (moving that month's rows out of the default one), and
-- the sink calls it for every month it is about to write.

-- +goose Up
CREATE TABLE dispatch_attempts (
    id       text        NOT NULL,
    attempt  integer     NOT NULL,
    campaign text        NOT NULL DEFAULT '',
    channel  text        NOT NULL,
    outcome  text        NOT NULL,
    error    text        NOT NULL DEFAULT '',
    -- code is the provider's response code, 0 when none came.
    code     integer     NOT NULL DEFAULT 0,
    at       timestamptz NOT NULL,
    -- A unique key of a partitioned table must hold the partition key. An
    -- attempt's "at" never changes once recorded, so this is (id, attempt).
    PRIMARY KEY (id, attempt, at)
) PARTITION BY RANGE (at);

CREATE TABLE dispatch_attempts_default PARTITION OF dispatch_attempts DEFAULT;

-- No other index: attempts are looked up by id (the primary key's prefix),
-- and every index would be paid for by each of the sink's inserts.

-- herald_attempts_partition creates the partition of the month holding ts
-- (dispatch_attempts_YYYY_MM) unless it exists, and returns its name.
-- +goose StatementBegin
CREATE FUNCTION herald_attempts_partition(ts timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    lo   timestamptz := date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi   timestamptz := (date_trunc('month', ts AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    name text := 'dispatch_attempts_' || to_char(ts AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    -- One creator at a time; the loser finds the table made.
    PERFORM pg_advisory_xact_lock(hashtext('herald_attempts_partition'));
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE dispatch_attempts INCLUDING DEFAULTS)', name);
    -- Rows of that month already in the default partition move over, or
    -- ATTACH would refuse.
    EXECUTE format('WITH moved AS (DELETE FROM dispatch_attempts_default WHERE at >= %L AND at < %L RETURNING *)
                    INSERT INTO %I SELECT * FROM moved', lo, hi, name);
    EXECUTE format('ALTER TABLE dispatch_attempts ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    RETURN name;
END;
$$;
-- +goose StatementEnd

SELECT herald_attempts_partition(now());
SELECT herald_attempts_partition(now() + interval '1 month');

-- +goose Down
DROP FUNCTION herald_attempts_partition(timestamptz);
DROP TABLE dispatch_attempts;
