-- v1: the embedded store; the same columns as PostgreSQL in SQLite's types.
-- event_id: canonical UUID text; occurred_at/recorded_at: RFC 3339 UTC text with microseconds.
CREATE TABLE IF NOT EXISTS analytics_events (
    event_id    TEXT    PRIMARY KEY NOT NULL,
    org_id      INTEGER NOT NULL CHECK (org_id >= 1),
    user_id     INTEGER CHECK (user_id IS NULL OR user_id >= 1),
    event_name  TEXT    NOT NULL,
    metadata    TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    occurred_at TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS analytics_events_org_id_occurred_at_idx
    ON analytics_events (org_id, occurred_at);
