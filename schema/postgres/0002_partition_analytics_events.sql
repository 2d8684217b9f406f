-- v2: analytics_events range-partitioned on occurred_at, keyed (org_id, occurred_at, event_id).
-- `trackevent migrate` runs this file first, under the temporary name analytics_events_v2, then
-- creates the partitions, copies the v1 rows over in chunks while a trigger on the v1 table copies
-- new ones, and swaps the names in one short transaction (lib/src/schema/pg_convert.cpp). The
-- interval (day, week or month) is recorded in trackevent_partitioning at that time.
CREATE TABLE IF NOT EXISTS trackevent_partitioning (
    parent_table       text PRIMARY KEY,
    partition_interval text NOT NULL CHECK (partition_interval IN ('day', 'week', 'month')),
    managed_by         text NOT NULL DEFAULT 'trackevent'
                       CHECK (managed_by IN ('trackevent', 'pg_partman'))
);

CREATE TABLE IF NOT EXISTS analytics_events_v2 (
    event_id    uuid        NOT NULL,
    org_id      bigint      NOT NULL,
    user_id     bigint,
    event_name  text        NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    -- Renamed analytics_events_pkey by the swap. It serves WHERE org_id = ? AND occurred_at
    -- BETWEEN ..., so there is no second index.
    CONSTRAINT analytics_events_v2_pkey PRIMARY KEY (org_id, occurred_at, event_id),
    CONSTRAINT analytics_events_org_id_positive CHECK (org_id >= 1),
    CONSTRAINT analytics_events_user_id_positive CHECK (user_id IS NULL OR user_id >= 1),
    CONSTRAINT analytics_events_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
) PARTITION BY RANGE (occurred_at);

-- Catches what no partition holds, so no event is refused; `trackevent partitions` moves its rows
-- into partitions.
CREATE TABLE IF NOT EXISTS analytics_events_default PARTITION OF analytics_events_v2 DEFAULT;
