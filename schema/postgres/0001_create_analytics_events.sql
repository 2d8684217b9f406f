-- v1: one row per analytics event; event_id is the idempotency key.
CREATE TABLE IF NOT EXISTS analytics_events (
    event_id    uuid        PRIMARY KEY,
    org_id      bigint      NOT NULL,
    user_id     bigint,
    event_name  text        NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT analytics_events_org_id_positive CHECK (org_id >= 1),
    CONSTRAINT analytics_events_user_id_positive CHECK (user_id IS NULL OR user_id >= 1),
    CONSTRAINT analytics_events_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

CREATE INDEX IF NOT EXISTS analytics_events_org_id_occurred_at_idx
    ON analytics_events (org_id, occurred_at);
