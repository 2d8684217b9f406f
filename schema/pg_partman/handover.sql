-- Hands the partition upkeep of analytics_events over from `trackevent partitions` to pg_partman
-- 4.x (Debian's postgresql-15-partman), for hosts or managed services that already run it.
--
--   trackevent partitions                  # first: empties the DEFAULT partition
--   psql -v ON_ERROR_STOP=1 [-v premake=4] -f handover.sql "$DATABASE_URL"
--
-- Needs: `CREATE EXTENSION pg_partman SCHEMA partman` done by a superuser, and the table's owner
-- running this script. One transaction: it changes everything or nothing. While it runs it holds
-- an ACCESS EXCLUSIVE lock on analytics_events (waits at most 5 s for it, then fails); writers
-- wait for the commit, a few milliseconds, and trackevent's writers retry or spool if it fails.
--
-- pg_partman names native children exactly as trackevent does (analytics_events_p2026_12,
-- _p2026w49, _p2026_12_06) and keeps the ones that exist. It insists on creating the DEFAULT
-- partition itself, so the old one is detached, its rows (none, unless writes for a range without
-- a partition came in since `trackevent partitions`: then this script refuses) moved, and it is
-- dropped. Afterwards `trackevent partitions` only lists, and pg_partman's run_maintenance_proc()
-- (cron, or its background worker) creates partitions ahead and applies retention, set in
-- partman.part_config; see docs/scale.md.
\set ON_ERROR_STOP on
\if :{?premake}
\else
\set premake 4
\endif
BEGIN;
SET LOCAL lock_timeout = '5s';
SELECT set_config('trackevent.premake', :'premake', true) AS premake_set \gset
DO $handover$
DECLARE
  interval_name text;
  managed text;
  stray bigint;
BEGIN
  SELECT partition_interval, managed_by INTO interval_name, managed
    FROM trackevent_partitioning WHERE parent_table = 'analytics_events' FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'analytics_events is not partitioned by trackevent: run trackevent migrate first';
  END IF;
  IF managed = 'pg_partman' THEN
    RAISE NOTICE 'analytics_events is already managed by pg_partman; nothing to do';
    RETURN;
  END IF;
  LOCK TABLE analytics_events IN ACCESS EXCLUSIVE MODE;
  SELECT count(*) INTO stray FROM analytics_events_default;
  IF stray > 0 THEN
    RAISE EXCEPTION 'analytics_events_default holds % rows: run trackevent partitions first, so they move to partitions of their own', stray;
  END IF;
  ALTER TABLE analytics_events DETACH PARTITION analytics_events_default;
  ALTER TABLE analytics_events_default RENAME TO analytics_events_default_handover;
  PERFORM partman.create_parent(
    p_parent_table => 'public.analytics_events',
    p_control => 'occurred_at',
    p_type => 'native',
    p_interval => CASE interval_name WHEN 'day' THEN 'daily' WHEN 'week' THEN 'weekly' ELSE 'monthly' END,
    p_premake => current_setting('trackevent.premake')::integer);
  DROP TABLE analytics_events_default_handover;
  UPDATE trackevent_partitioning SET managed_by = 'pg_partman' WHERE parent_table = 'analytics_events';
END
$handover$;
COMMIT;
