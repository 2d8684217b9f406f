#!/usr/bin/env bash
# Issue 16's bench: how the analytics_events layouts behave when the table grows for years.
#
#   bench/scale.sh [--events N] [--base-rows N] [--quick] [--layouts LIST] [--durable]
#                  [--no-build] [--keep-data] [--report-only]
#
# One disposable PostgreSQL (scripts/pg-test-server), one schema per layout, in one run:
#   growth     `trackevent ingest` of N events (default 1M, random v4 ids) into the empty table,
#              then into the table holding the base rows (default 30M, made server-side with
#              INSERT ... SELECT generate_series, spanning the 3 months before the corpus's
#              month), then N more events spread over a month that already holds ~1/3 of them;
#   anchor     `psql \copy` of the same events (CSV) into the same empty layout;
#   retention  DETACH + DROP of the oldest month's partition vs DELETE of the same rows in v1;
#   query      EXPLAIN (ANALYZE, BUFFERS) of "one org, 7 days" (partition pruning);
#   PK order   the partitioned layout with each candidate primary-key column order.
# Writes bench/results/scale.md. --quick is 100k events on 1M base rows (a dry run).
# LIST is a comma list of v1,part_org_time_id,part_time_org_id,part_org_id_time (default: all).
# full_page_writes is on (PostgreSQL's default: the growth effect is partly whole-page WAL
# images); fsync and synchronous_commit stay off as in bench/run.sh unless --durable.
# --report-only rewrites bench/results/scale.md from the last run's raw material (scale-work/).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench=$root/bench
BUILD_DIR=${BUILD_DIR:-$root/build-bench}
JOBS=${JOBS:-2}

events=1000000
base_rows=30000000
layouts_arg=v1,part_org_time_id,part_time_org_id,part_org_id_time
build=1
keep_data=0
durable=0
report_only=0

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
need_int() { [[ ${2:-} =~ ^[0-9]+$ && $2 -gt 0 ]] || { echo "scale.sh: $1 needs a positive integer" >&2; exit 64; }; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --events) need_int "$1" "${2:-}"; events=$2; shift ;;
    --base-rows) need_int "$1" "${2:-}"; base_rows=$2; shift ;;
    --quick) events=100000; base_rows=1000000 ;;
    --layouts) [[ -n ${2:-} ]] || { echo "scale.sh: --layouts needs a list" >&2; exit 64; }
      layouts_arg=$2; shift ;;
    --durable) durable=1 ;;
    --no-build) build=0 ;;
    --report-only) report_only=1; build=0 ;;
    --keep-data) keep_data=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "scale.sh: unknown option $1" >&2; usage >&2; exit 64 ;;
  esac
  shift
done

# Candidate layouts: v1 (schema/postgres/0001) and the partitioned layout of docs issue 16 with
# each primary-key column order worth comparing.
declare -A pk_cols=(
  [part_org_time_id]="org_id, occurred_at, event_id"
  [part_time_org_id]="occurred_at, org_id, event_id"
  [part_org_id_time]="org_id, event_id, occurred_at"
)
IFS=, read -r -a layouts <<<"$layouts_arg"
for l in "${layouts[@]}"; do
  [[ $l == v1 || -n ${pk_cols[$l]:-} ]] || { echo "scale.sh: unknown layout $l" >&2; exit 64; }
done

log() { printf '[scale %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

for t in psql jq; do command -v $t >/dev/null || die "$t is needed (bench/run.sh installs it)"; done

# --- build ------------------------------------------------------------------------------------
if [[ $build -eq 1 ]]; then
  log "building (Release) in $BUILD_DIR"
  cmake -S "$root" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DTRACKEVENT_BUILD_BENCH=ON \
    -DTRACKEVENT_BUILD_TESTS=OFF >/dev/null
  cmake --build "$BUILD_DIR" -j"$JOBS" --target trackevent_gen_events trackevent_cli >/dev/null
fi
GEN=$BUILD_DIR/bench/trackevent_gen_events
TE=$BUILD_DIR/cli/trackevent
[[ -x $GEN ]] || die "no generator at $GEN (build first, or drop --no-build)"
[[ -x $TE ]] || die "no trackevent CLI at $TE (build first, or drop --no-build)"

work=$BUILD_DIR/scale-work
data=$work/data
mkdir -p "$work" "$data"
[[ $report_only -eq 1 ]] || rm -f "$work"/*.log "$work"/*.txt "$work"/*.tsv
results=$work/results.tsv  # key <TAB> value, everything the report prints
[[ $report_only -eq 1 ]] || : >"$results"
put() { printf '%s\t%s\n' "$1" "$2" >>"$results"; }
get() { awk -F'\t' -v k="$1" '$1 == k {v = $2} END {print v}' "$results"; }
notes=$work/notes.txt
[[ $report_only -eq 1 ]] || : >"$notes"
note() { log "$*"; echo "- $*" >>"$notes"; }

fresh_spool() {
  rm -rf "$work/spool"
  mkdir -p "$work/spool/state" "$work/spool/data"
}
te() {  # the trackevent CLI with an isolated spool and data directory
  TRACKEVENT_SPOOL_DIR=$work/spool/state XDG_STATE_HOME=$work/spool/state \
    XDG_DATA_HOME=$work/spool/data "$TE" "$@"
}

if [[ $report_only -eq 0 ]]; then  # (--report-only: no server, no data, no run)
# --- one disposable PostgreSQL ----------------------------------------------------------------
pgdir=$(mktemp -d /tmp/trackevent-scale-pg.XXXXXX)
cleanup() {
  "$root/scripts/pg-test-server" stop "$pgdir" || true
  rm -rf "$pgdir" "$work/spool"
  [[ $keep_data -eq 1 ]] || rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# full_page_writes back to PostgreSQL's default: after each checkpoint, the first change to a
# page writes the whole page to the WAL, which is what makes random btree inserts expensive.
# (Given on the server's command line: pg-test-server's own -c settings beat ALTER SYSTEM.)
PG_TEST_SERVER_OPTIONS="-c full_page_writes=on"
[[ $durable -eq 1 ]] && PG_TEST_SERVER_OPTIONS+=" -c fsync=on -c synchronous_commit=on"
export PG_TEST_SERVER_OPTIONS
eval "$("$root/scripts/pg-test-server" start "$pgdir")"
PSQL=(psql -X -q -v ON_ERROR_STOP=1)
export PGOPTIONS="-c client_min_messages=warning"
# Autovacuum would wake up during a measurement after the big loads; it is off for the whole
# server, and the bench vacuums explicitly where a real table would have been vacuumed.
"${PSQL[@]}" -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1  # the reload is asynchronous
server_settings=$("${PSQL[@]}" -At -c "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name)
  FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','shared_buffers',
  'max_wal_size','autovacuum','maintenance_work_mem')")
log "PostgreSQL at $PGHOST:$PGPORT ($server_settings)"
put date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
put nproc "$(nproc)"
put mem "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
put load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
put postgres "$("${PSQL[@]}" -At -c 'SHOW server_version')"
put fs "$(findmnt -no FSTYPE,OPTIONS --target "$pgdir" 2>/dev/null | awk '{print $1 ", mounted " $2}')"
put settings "$server_settings"
put commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
  git -C "$root" diff --quiet HEAD -- lib cli schema 2>/dev/null || echo ' (+ uncommitted changes)')"
put events "$events"
put base_rows "$base_rows"

# --- data -------------------------------------------------------------------------------------
# The corpus: random v4 ids (issue 16's table), occurred_at over November 2026 (UTC).
gen() {  # gen FORMAT -> path
  local f=$data/events-$events-v4.$1
  if [[ ! -s $f ]]; then
    log "generating $events events ($1)"
    "$GEN" --count "$events" --format "$1" --uuid 4 >"$f.tmp"
    mv "$f.tmp" "$f"
  fi
  echo "$f"
}
jsonl=$(gen jsonl)
csv=$(gen csv)
# The same events moved to October (a month the base rows fill) with other ids: ingest into a
# partition that already holds ~1/3 of the base rows, where the primary key's column order
# matters. The first hex digit of each id is XORed with 8, so no id equals its November twin
# (v1's key is event_id alone). Lines whose local time reads 2026-10-31 (a -05:00 offset just
# after midnight UTC) stay in November.
jsonl_oct=$data/events-$events-v4-october.jsonl
if [[ ! -s $jsonl_oct ]]; then
  perl -pe 's/"event_id":"([0-9a-f])/sprintf(q("event_id":"%x), hex($1) ^ 8)/e;
    s/"occurred_at":"2026-11-/"occurred_at":"2026-10-/' "$jsonl" >"$jsonl_oct.tmp"
  mv "$jsonl_oct.tmp" "$jsonl_oct"
fi
fi  # report_only

# Months: the corpus's (November 2026), the three before it (the base rows) and the one after.
months=(2026-08-01 2026-09-01 2026-10-01 2026-11-01 2026-12-01)
base_from=2026-08-01
base_to=2026-11-01
drop_month=2026-08-01
drop_partition=analytics_events_p2026_08

# --- helpers ----------------------------------------------------------------------------------
# One database; each layout lives in a schema of its own (named after it), so all of them can
# copy the same staged base rows. Every client (psql and trackevent, through libpq's PGOPTIONS)
# gets that schema as its search_path.
url="host=${PGHOST:-} port=${PGPORT:-} user=postgres dbname=scale"
sql() {  # sql SCHEMA ARGS...: psql with search_path=SCHEMA
  local schema=$1
  shift
  PGOPTIONS="-c search_path=$schema -c client_min_messages=warning" "${PSQL[@]}" -d scale "$@"
}
te_in() {  # te_in SCHEMA ARGS...: trackevent with search_path=SCHEMA
  local schema=$1
  shift
  PGOPTIONS="-c search_path=$schema" te --db "$url" "$@"
}
settle() {  # CHECKPOINT + sync: no run pays for its predecessor's writeback (fsync is off)
  sql "$1" -c "CHECKPOINT" >/dev/null
  sync
}
now_ns() { date +%s%N; }
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN {printf "%.3f", (b - a) / 1e9}'; }
# timed_sql DB KEY SQL: runs SQL alone with \timing; stores its server-reported seconds as KEY.
timed_sql() {
  local db=$1 key=$2 stmt=$3 out ms lsn
  lsn=$(sql "$db" -At -c "SELECT pg_current_wal_lsn()")
  out=$(sql "$db" -c '\timing on' -c "$stmt" 2>&1) || { echo "$out" >&2; return 1; }
  put "$key.wal_mb" "$(wal_mb_since "$lsn")"
  ms=$(grep -m1 -o 'Time: [0-9.]*' <<<"$out" | awk '{print $2}')
  put "$key" "$(awk -v m="$ms" 'BEGIN {printf "%.3f", m / 1000}')"
  log "$key: ${ms} ms"
}
wal_mb_since() {  # wal_mb_since LSN: MB of WAL written since LSN
  sql public -At -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$1') / 1048576.0, 1)"
}
rows_since() {  # rows_since DB TIMESTAMP: rows recorded at or after TIMESTAMP (the base rows are older)
  sql "$1" -At -c "SELECT count(*) FROM analytics_events WHERE recorded_at >= '$2'"
}

# ingest DB KEY FILE: times `trackevent ingest FILE` (defaults) and checks every event was stored.
ingest() {
  local db=$1 key=$2 file=$3 since lsn t0 rc=0 n
  settle "$db"
  fresh_spool
  since=$(sql "$db" -At -c "SELECT now()")
  lsn=$(sql "$db" -At -c "SELECT pg_current_wal_lsn()")
  t0=$(now_ns)
  te_in "$db" ingest "$file" >"$work/$key.log" 2>&1 || rc=$?
  put "$key" "$(secs_since "$t0")"
  put "$key.wal_mb" "$(wal_mb_since "$lsn")"
  n=$(rows_since "$db" "$since")
  if [[ $rc -ne 0 || $n -ne $events ]]; then
    put "$key" "FAILED"
    note "$key: trackevent ingest exit $rc, stored $n of $events: $(tail -c 300 "$work/$key.log" | tr '\n' ' ')"
    return 0
  fi
  log "$key: $(get "$key") s ($n rows)"
}

copy_csv() {  # copy_csv DB KEY: times `psql \copy` of the corpus's CSV
  local db=$1 key=$2 t0 n
  settle "$db"
  t0=$(now_ns)
  if ! sql "$db" -c "\\copy analytics_events(event_id,org_id,user_id,event_name,metadata,occurred_at) from '$csv' (format csv)" \
      >"$work/$key.log" 2>&1; then
    put "$key" FAILED
    note "$key: psql \\copy failed: $(tail -c 300 "$work/$key.log" | tr '\n' ' ')"
    return 0
  fi
  put "$key" "$(secs_since "$t0")"
  n=$(sql "$db" -At -c "SELECT count(*) FROM analytics_events")
  [[ $n -eq $events ]] || { put "$key" FAILED; note "$key: count(*) = $n after \\copy, expected $events"; }
  log "$key: $(get "$key") s"
}

# The partitioned layout comes from the product's own migration when it has one
# (`trackevent migrate --partition-interval`), else from the SQL of docs issue 16's contract.
te_partitions=0
if te migrate --help 2>/dev/null | grep -q -- '--partition-interval'; then
  te_partitions=1
fi
[[ $report_only -eq 1 ]] || put partitioned_source "$([[ $te_partitions -eq 1 ]] && echo 'trackevent migrate --partition-interval month' || echo 'SQL in bench/scale.sh (the layout contract of issue 16)')"

create_partitioned_sql() {
  cat <<'SQL'
CREATE TABLE analytics_events (
    event_id    uuid        NOT NULL,
    org_id      bigint      NOT NULL,
    user_id     bigint,
    event_name  text        NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT analytics_events_pkey PRIMARY KEY (org_id, occurred_at, event_id),
    CONSTRAINT analytics_events_org_id_positive CHECK (org_id >= 1),
    CONSTRAINT analytics_events_user_id_positive CHECK (user_id IS NULL OR user_id >= 1),
    CONSTRAINT analytics_events_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
) PARTITION BY RANGE (occurred_at);
CREATE TABLE analytics_events_default PARTITION OF analytics_events DEFAULT;
SQL
}

# make_layout SCHEMA LAYOUT: a fresh schema holding LAYOUT, empty.
make_layout() {
  local db=$1 l=$2 m next name
  sql public -c "DROP SCHEMA IF EXISTS $db CASCADE" -c "CREATE SCHEMA $db" >/dev/null
  if [[ $l == v1 ]]; then
    sql "$db" -f "$root/schema/postgres/0001_create_analytics_events.sql" >/dev/null
    return
  fi
  if [[ $te_partitions -eq 1 ]]; then
    fresh_spool
    te_in "$db" migrate --partition-interval month >"$work/migrate-$db.log" 2>&1 ||
      die "trackevent migrate --partition-interval month failed: $(tail -c 300 "$work/migrate-$db.log")"
  else
    create_partitioned_sql | sql "$db" >/dev/null
  fi
  # Monthly partitions for the base rows' months, the corpus's and the next (pg_partman names).
  for m in "${months[@]}"; do
    next=$(date -u -d "$m +1 month" +%Y-%m-%d)
    name=analytics_events_p$(date -u -d "$m" +%Y_%m)
    sql "$db" -c "CREATE TABLE IF NOT EXISTS $name PARTITION OF analytics_events
      FOR VALUES FROM ('$m 00:00:00+00') TO ('$next 00:00:00+00')" >/dev/null
  done
  # The key under test (the migration's own may differ: it is replaced, not added to).
  local want="PRIMARY KEY (${pk_cols[$l]})" have
  have=$(sql "$db" -At -c "SELECT pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = 'analytics_events'::regclass AND contype = 'p'")
  if [[ $have != "$want" ]]; then
    sql "$db" -c "ALTER TABLE analytics_events DROP CONSTRAINT analytics_events_pkey" \
      -c "ALTER TABLE analytics_events ADD CONSTRAINT analytics_events_pkey $want" >/dev/null
  fi
}

# stage_base: the base rows, made once, server-side, by one INSERT ... SELECT over
# generate_series into an unlogged table without indexes (public.base_rows); every layout copies
# them. Deterministic (setseed; ids from md5 of the row number, with v4's version and variant
# bits, so as random as the corpus's), evenly spread over the 3 months before the corpus's month,
# orgs skewed like the corpus's (the largest ~20%), metadata of ~40-120 bytes.
stage_base() {
  local t0
  log "staging $base_rows base rows ($base_from .. $base_to)"
  sql public -c "DROP TABLE IF EXISTS base_rows" -c "CREATE UNLOGGED TABLE base_rows (
    event_id uuid, org_id bigint, user_id bigint, event_name text, metadata jsonb,
    occurred_at timestamptz, recorded_at timestamptz) WITH (autovacuum_enabled = false)" >/dev/null
  t0=$(now_ns)
  sql public -c "SELECT setseed(0.16)" -c "
INSERT INTO base_rows
SELECT overlay(overlay(md5(g::text || ':base') PLACING '4' FROM 13) PLACING '8' FROM 17)::uuid,
       1000 + 7 * least(99, floor(100 * random() ^ 3))::int,
       CASE WHEN random() < 0.03 THEN NULL ELSE 1 + floor(random() * 10000)::bigint END,
       (ARRAY['user.signed_in','user.signed_out','user.created','user.deleted','dataset.uploaded',
              'dataset.deleted','backup.started','backup.completed','backup.failed','invoice.created',
              'invoice.paid','invoice.payment_failed','org.plan_changed','api_key.created',
              'api_key.revoked','export.started','export.completed','alert.triggered',
              'query.executed','report.generated'])[1 + floor(random() * 20)::int],
       jsonb_build_object('seq', g, 'bytes', floor(random() * 1e6)::int, 'host', 'db' || (g % 50),
                          'ok', random() < 0.9, 'note', repeat('x', floor(random() * 80)::int)),
       ts, ts + interval '2 seconds'
FROM (SELECT g, timestamptz '$base_from 00:00:00+00'
                + (g - 1) * ((timestamptz '$base_to 00:00:00+00' - timestamptz '$base_from 00:00:00+00') / $base_rows) AS ts
      FROM generate_series(1, $base_rows) AS g) AS s" >/dev/null
  put stage_s "$(secs_since "$t0")"
  put stage_size "$(sql public -At -c "SELECT pg_size_pretty(pg_total_relation_size('base_rows'))")"
  log "staged in $(get stage_s) s ($(get stage_size))"
}

# load_base SCHEMA: the base rows into an empty layout, the quick way: the key and indexes are
# dropped, the staged rows copied by one INSERT ... SELECT, the indexes rebuilt (a sort, not 30M
# random insertions into a btree), then VACUUM (ANALYZE), as autovacuum would have done on an
# old table.
load_base() {
  local db=$1 t0 pk idx
  pk=$(sql "$db" -At -c "SELECT pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = 'analytics_events'::regclass AND contype = 'p'")
  # Other indexes of the parent (v1's (org_id, occurred_at)); ON ONLY would skip the partitions.
  idx=$(sql "$db" -At -c "SELECT pg_get_indexdef(i.indexrelid) || ';' FROM pg_index i
    WHERE i.indrelid = 'analytics_events'::regclass AND NOT i.indisprimary" | sed 's/ ON ONLY / ON /')
  local drops rebuild=()
  drops=$(sql "$db" -At -c "SELECT 'DROP INDEX ' || i.indexrelid::regclass || ';' FROM pg_index i
    WHERE i.indrelid = 'analytics_events'::regclass AND NOT i.indisprimary")
  sql "$db" -c "ALTER TABLE analytics_events DROP CONSTRAINT analytics_events_pkey" >/dev/null
  [[ -z $drops ]] || sql "$db" -c "$drops" >/dev/null
  [[ -z $idx ]] || rebuild=(-c "$idx")
  log "$db: copying the $base_rows staged base rows"
  t0=$(now_ns)
  sql "$db" -c "INSERT INTO analytics_events (event_id, org_id, user_id, event_name, metadata,
    occurred_at, recorded_at) SELECT * FROM public.base_rows" >/dev/null
  put "$db.base_insert_s" "$(secs_since "$t0")"
  t0=$(now_ns)
  sql "$db" -c "SET maintenance_work_mem = '1GB'" \
    -c "ALTER TABLE analytics_events ADD CONSTRAINT analytics_events_pkey $pk" \
    "${rebuild[@]}" >/dev/null
  put "$db.base_index_s" "$(secs_since "$t0")"
  t0=$(now_ns)
  sql "$db" -c "VACUUM (ANALYZE) analytics_events" >/dev/null
  put "$db.base_vacuum_s" "$(secs_since "$t0")"
  put "$db.base_size" "$(sql "$db" -At -c "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid)))
    FROM pg_class c WHERE c.relnamespace = '$db'::regnamespace AND c.relkind = 'r' AND (c.relname = 'analytics_events' OR c.relname LIKE 'analytics_events\\_p%')")"
  put "$db.base_pk_size" "$(sql "$db" -At -c "SELECT pg_size_pretty(sum(pg_relation_size(c.oid)))
    FROM pg_class c WHERE c.relnamespace = '$db'::regnamespace AND c.relkind = 'i' AND c.relname LIKE 'analytics_events%pkey'")"
  log "$db: base rows in $(get "$db.base_insert_s") s + indexes $(get "$db.base_index_s") s + vacuum $(get "$db.base_vacuum_s") s ($(get "$db.base_size"))"
}

# The query: one org, 7 days. Two windows: the corpus's last 7 days (November, the newest
# partition) and the last 7 days of October (a partition of ~1/3 of the base rows plus the
# October ingest). Two orgs: the largest (~20% of the rows) and a small one (~0.1%).
query_sql() {  # query_sql ORG FROM TO
  echo "SELECT event_name, count(*) FROM analytics_events
WHERE org_id = $1 AND occurred_at >= '$2 00:00:00+00' AND occurred_at < '$3 00:00:00+00'
GROUP BY event_name ORDER BY count(*) DESC"
}
declare -A windows=([nov]="2026-11-24 2026-12-01" [oct]="2026-10-25 2026-11-01")
orgs=(1000 1350)
run_queries() {
  local db=$1 w org from to f
  sql "$db" -c "ANALYZE analytics_events" >/dev/null  # autovacuum is off; it would have run
  for w in nov oct; do
    read -r from to <<<"${windows[$w]}"
    for org in "${orgs[@]}"; do
      f=$work/explain-$db-$w-$org.txt
      for _ in 1 2 3; do  # the third run is reported: shared buffers warm, as for a dashboard
        sql "$db" -At -c "EXPLAIN (ANALYZE, BUFFERS) $(query_sql "$org" "$from" "$to")" >"$f"
      done
      put "$db.q.$w.$org.ms" "$(grep -m1 -o 'Execution Time: [0-9.]*' "$f" | awk '{print $3}')"
      put "$db.q.$w.$org.buffers" "$(grep -m1 -o 'Buffers: shared [a-z=0-9 ]*' "$f" |
        awk '{for (i = 3; i <= NF; i++) {split($i, a, "="); if (a[1] == "hit" || a[1] == "read") s += a[2]}} END {print s + 0}')"
      put "$db.q.$w.$org.rows" "$(sql "$db" -At -c "SELECT sum(c) FROM ($(query_sql "$org" "$from" "$to")) AS q(n, c)")"
    done
  done
}

retention_partitioned() {
  local db=$1
  settle "$db"
  put "$db.drop_rows" "$(sql "$db" -At -c "SELECT count(*) FROM $drop_partition")"
  timed_sql "$db" "$db.detach_s" "ALTER TABLE analytics_events DETACH PARTITION $drop_partition"
  timed_sql "$db" "$db.drop_s" "DROP TABLE $drop_partition"
}
retention_v1() {
  local db=$1 next
  next=$(date -u -d "$drop_month +1 month" +%Y-%m-%d)
  settle "$db"
  put "$db.drop_rows" "$(sql "$db" -At -c "SELECT count(*) FROM analytics_events
    WHERE occurred_at >= '$drop_month 00:00:00+00' AND occurred_at < '$next 00:00:00+00'")"
  timed_sql "$db" "$db.delete_s" "DELETE FROM analytics_events
    WHERE occurred_at >= '$drop_month 00:00:00+00' AND occurred_at < '$next 00:00:00+00'"
  timed_sql "$db" "$db.vacuum_after_delete_s" "VACUUM analytics_events"
}

# --- report -----------------------------------------------------------------------------------
ratio() {  # ratio A B: A / B with 2 decimals, or — when either is missing or FAILED
  awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "—"}'
}
# Thousands separators by hand (the C locale has none).
commas() { printf '%s' "$1" | rev | sed -E 's/([0-9]{3})/\1,/g; s/,$//' | rev; echo; }
eps() { awk -v s="$1" -v n="$events" 'BEGIN {if (s + 0 > 0) printf "%d", n / s; else printf "0"}' | { read -r v; [[ $v == 0 ]] && echo "—" || commas "$v"; }; }
label() {
  case $1 in
    v1) echo "v1: PK (event_id) + index (org_id, occurred_at)" ;;
    *) echo "partitioned by month, PK (${pk_cols[$1]})" ;;
  esac
}
fmt_n() { commas "$1"; }
has() { [[ " ${layouts[*]} " == *" $1 "* ]]; }
write_report() {
out=$bench/results/scale.md
mkdir -p "$bench/results"
{
  echo "# Scale bench (bench/scale.sh)"
  echo
  echo "Written by \`bench/scale.sh\` from its own measurements; do not edit by hand. One run, one"
  echo "disposable PostgreSQL at default settings apart from the test server's durability switches."
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date (UTC) | $(get date) |"
  echo "| CPU | $(get cpu), $(get nproc) cores, $(get mem) |"
  echo "| load average at start / end | $(get load_start) / $(get load_end) |"
  echo "| PostgreSQL | $(get postgres) |"
  echo "| server settings | $(get settings) |"
  [[ -z $(get fs) ]] || echo "| data directory's filesystem | $(get fs) |"
  echo "| trackevent commit | $(get commit) |"
  echo "| corpus | $(fmt_n "$events") events of \`trackevent_gen_events --uuid 4\` (random v4 ids), November 2026 |"
  echo "| base rows | $(fmt_n "$base_rows"), $base_from .. $base_to (the 3 months before the corpus), one INSERT … SELECT generate_series |"
  echo "| partitioned layout made by | $(get partitioned_source) |"
  echo
  echo "The machine is shared: other jobs (compilers) ran during the measurement, so absolute"
  echo "times are noisy; ratios between runs of one layout, taken minutes apart, are what count."
  echo
  echo "## Growth: \`trackevent ingest\` (defaults) into an empty and into a full table"
  echo
  echo "*empty*: the layout with no rows. *full, new month*: the same $(fmt_n "$events") events after the"
  echo "$(fmt_n "$base_rows") base rows were loaded; for the partitioned layouts the events go to a partition"
  echo "of their own (November) while the base rows sit in August–October, as in a table that grows"
  echo "month by month. *full, same month*: another $(fmt_n "$events") events (the corpus moved to October, other ids)"
  echo "into the partition that already holds October's ~$(fmt_n $((base_rows * 31 / 92))) base rows, spread over the"
  echo "whole month: a backfill, or late events, landing between rows already there (whose index"
  echo "leaves the sorted build left 90% full, so inserts split pages). That is harsher than live"
  echo "ingest late in a month, which adds at the end of each org's (or the month's) key range."
  echo "Target: full ≥ 0.9× the empty rate (issue 16 measured v1 at 0.51× with 31M rows, and a"
  echo "hand-made partitioned table at 1.0×)."
  echo
  echo "The empty case runs twice, before the base rows are loaded and again (in a second schema)"
  echo "right after the full runs; the ratios use the mean of the two, so a drift in the machine's load"
  echo "between them shows instead of landing in the ratio."
  echo
  echo "| layout | empty s (before / after) | full, new month s | rate vs empty | full, same month s | rate vs empty | events/s empty |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for l in "${layouts[@]}"; do
    e1=$(get "$l.ingest_empty_s"); e2=$(get "$l.ingest_empty2_s")
    e=$(awk -v a="$e1" -v b="$e2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.3f", (a + b) / 2; else if (a + 0 > 0) print a; else print b}')
    f=$(get "$l.ingest_full_s"); o=$(get "$l.ingest_full_oct_s")
    echo "| $(label "$l") | $e1 / $e2 | $f | $(ratio "$e" "$f")× | $o | $(ratio "$e" "$o")× | $(eps "$e") |"
  done
  echo
  echo "WAL written by each of those ingests (MB; whole-page images after a checkpoint are most of the"
  echo "difference between a btree that takes its inserts at a few right-hand edges and one that takes"
  echo "them at random pages):"
  echo
  echo "| layout | empty (before) | full, new month | full, same month |"
  echo "|---|---:|---:|---:|"
  for l in "${layouts[@]}"; do
    echo "| $(label "$l") | $(get "$l.ingest_empty_s.wal_mb") | $(get "$l.ingest_full_s.wal_mb") | $(get "$l.ingest_full_oct_s.wal_mb") |"
  done
  echo
  echo "Base rows: made once by one \`INSERT … SELECT … FROM generate_series(1, $(fmt_n "$base_rows"))\` into a"
  echo "plain table without indexes ($(get stage_s) s, $(get stage_size)), then copied into each layout"
  echo "with its primary key and indexes dropped, which are then rebuilt by sorting"
  echo "(maintenance_work_mem = 1GB for that session):"
  echo
  echo "| layout | INSERT … SELECT (copy) s | index build s | VACUUM (ANALYZE) s | size (heap + indexes) | PK size |"
  echo "|---|---:|---:|---:|---:|---:|"
  for l in "${layouts[@]}"; do
    echo "| $(label "$l") | $(get "$l.base_insert_s") | $(get "$l.base_index_s") | $(get "$l.base_vacuum_s") | $(get "$l.base_size") | $(get "$l.base_pk_size") |"
  done
  echo
  echo "## Anchor: \`trackevent ingest\` vs \`psql \\copy\` of the same events (CSV), empty table"
  echo
  echo "| layout | trackevent ingest s | psql \\copy s | ratio (target ≥ 1.5× on the partitioned layout) |"
  echo "|---|---:|---:|---:|"
  for l in v1 "$primary"; do
    has "$l" || continue
    echo "| $(label "$l") | $(get "$l.ingest_empty_s") | $(get "$l.copy_empty_s") | $(ratio "$(get "$l.copy_empty_s")" "$(get "$l.ingest_empty_s")")× |"
  done
  echo
  echo "## Retention: one month (August 2026) of base rows"
  echo
  echo "| layout | rows | statement | seconds | WAL MB |"
  echo "|---|---:|---|---:|---:|"
  if has "$primary"; then
    echo "| $(label "$primary") | $(fmt_n "$(get "$primary.drop_rows")") | \`ALTER TABLE analytics_events DETACH PARTITION $drop_partition\` | $(get "$primary.detach_s") | $(get "$primary.detach_s.wal_mb") |"
    echo "| | | \`DROP TABLE $drop_partition\` | $(get "$primary.drop_s") | $(get "$primary.drop_s.wal_mb") |"
  fi
  if has v1; then
    echo "| $(label v1) | $(fmt_n "$(get v1.drop_rows)") | \`DELETE … WHERE occurred_at >= '$drop_month' AND occurred_at < …\` | $(get v1.delete_s) | $(get v1.delete_s.wal_mb) |"
    echo "| | | then \`VACUUM analytics_events\` (the space is reusable only after it) | $(get v1.vacuum_after_delete_s) | $(get v1.vacuum_after_delete_s.wal_mb) |"
  fi
  echo
  echo "Seconds are the server's (psql \\timing), target for DROP < 1 s. DETACH is what takes the month"
  echo "out of the table (it alone locks the parent); DROP of the detached table locks only that table"
  echo "and is mostly file removal, so its time depends on the filesystem$(
    [[ -n $(get fs) ]] && echo " (here: $(get fs))"), and on whether the files are still in the OS"
  echo "page cache (here they are: written minutes before). See docs/scale.md."
  echo
  echo "## Query: one org, 7 days"
  echo
  echo '```sql'
  query_sql 1000 2026-11-24 2026-12-01
  echo '```'
  echo
  echo "Execution time (ms, the third of 3 runs) and shared buffers touched (hit + read) per layout,"
  echo "for the largest org (1000, ~20% of rows) and a small one (1350), over the corpus's last 7"
  echo "days (November partition) and the last 7 days of October (the partition with ~1/3 of the base rows):"
  echo
  echo "| layout | Nov, org 1000 | Nov, org 1350 | Oct, org 1000 | Oct, org 1350 |"
  echo "|---|---:|---:|---:|---:|"
  for l in "${layouts[@]}"; do
    row="| $(label "$l") "
    for w in nov oct; do
      for org in "${orgs[@]}"; do
        row+="| $(get "$l.q.$w.$org.ms") ms, $(get "$l.q.$w.$org.buffers") buf "
      done
    done
    echo "$row|"
  done
  echo
  echo -n "Rows counted: "
  for w in nov oct; do
    for org in "${orgs[@]}"; do
      echo -n "$w org $org: $(get "${layouts[0]}.q.$w.$org.rows"); "
    done
  done
  echo
  if [[ -s $work/plan-primary.txt ]]; then
    echo
    echo "The plan on $(label "$primary") (org 1000, November window): only the November"
    echo "partition is scanned; the others are pruned at plan time (the bounds are constants)."
    echo
    echo '```'
    cat "$work/plan-primary-noanalyze.txt"
    echo
    cat "$work/plan-primary.txt"
    echo '```'
  fi
  if [[ -s $work/plan-primary-now.txt ]]; then
    echo
    echo "With the window relative to \`now()\` ($(get date)), the partitions are pruned when the"
    echo "executor starts, and EXPLAIN says how many were removed:"
    echo
    echo '```'
    echo "EXPLAIN SELECT event_name, count(*) FROM analytics_events"
    echo "  WHERE org_id = 1000 AND occurred_at >= now() - interval '7 days' GROUP BY event_name"
    echo
    cat "$work/plan-primary-now.txt"
    echo '```'
  fi
  if [[ -s $work/plan-v1.txt ]]; then
    echo
    echo "The same query on v1:"
    echo
    echo '```'
    cat "$work/plan-v1.txt"
    echo '```'
  fi
  if [[ -s $notes ]]; then
    echo
    echo "## Notes from the run"
    echo
    cat "$notes"
  fi
} >"$out"
}

# --- the run: one layout at a time, its schema dropped afterwards (disk) ------ --------------------
primary=part_org_time_id
if [[ $report_only -eq 0 ]]; then
"${PSQL[@]}" -c "DROP DATABASE IF EXISTS scale" -c "CREATE DATABASE scale" >/dev/null
stage_base
for l in "${layouts[@]}"; do
  log "=== $l"
  make_layout "$l" "$l"
  put "$l.pk" "$(sql "$l" -At -c "SELECT pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = 'analytics_events'::regclass AND contype = 'p'")"
  ingest "$l" "$l.ingest_empty_s" "$jsonl"
  if [[ $l == v1 || $l == "$primary" ]]; then
    sql "$l" -c "TRUNCATE analytics_events" >/dev/null
    copy_csv "$l" "$l.copy_empty_s"
  fi
  sql "$l" -c "TRUNCATE analytics_events" >/dev/null
  load_base "$l"
  ingest "$l" "$l.ingest_full_s" "$jsonl"
  ingest "$l" "$l.ingest_full_oct_s" "$jsonl_oct"
  # The empty case once more, now, in a second schema: the machine's load drifts over the
  # minutes between the first empty run and the full ones; the ratio uses the mean of both.
  make_layout "${l}_empty" "$l"
  ingest "${l}_empty" "$l.ingest_empty2_s" "$jsonl"
  sql public -c "DROP SCHEMA ${l}_empty CASCADE" >/dev/null
  run_queries "$l"
  if [[ $l == "$primary" ]]; then
    cp "$work/explain-$l-nov-1000.txt" "$work/plan-primary.txt"
    sql "$l" -At -c "EXPLAIN $(query_sql 1000 2026-11-24 2026-12-01)" >"$work/plan-primary-noanalyze.txt"
    # Relative to now(): pruned when the executor starts (the plan says "Subplans Removed").
    sql "$l" -At -c "EXPLAIN SELECT event_name, count(*) FROM analytics_events
      WHERE org_id = 1000 AND occurred_at >= now() - interval '7 days' GROUP BY event_name" \
      >"$work/plan-primary-now.txt"
    retention_partitioned "$l"
  elif [[ $l == v1 ]]; then
    cp "$work/explain-$l-nov-1000.txt" "$work/plan-v1.txt"
    retention_v1 "$l"
  fi
  sql public -c "DROP SCHEMA $l CASCADE" >/dev/null
  put load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
  write_report  # after every layout, so a run cut short still leaves its figures
done
fi

if [[ $report_only -eq 1 ]]; then
  events=$(get events)
  base_rows=$(get base_rows)
  primary=part_org_time_id
  write_report
fi
cat "$out"
log "wrote bench/results/scale.md (raw material in $work)"
