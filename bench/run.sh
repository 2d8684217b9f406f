#!/usr/bin/env bash
# The trackevent benchmark harness: one command reproduces every figure in bench/README.md.
#
#   bench/run.sh [--events N] [--runs R] [--rss-10m] [--insert-sample N] [--send-runs N]
#                [--durable] [--tcp] [--profile] [--no-build] [--no-gbench] [--keep-data]
#
# It builds (Release, $BUILD_DIR, default build-bench), starts one disposable PostgreSQL
# (scripts/pg-test-server), generates the data once per size, runs `trackevent migrate`, then times
# each loading method R times (TRUNCATE + CHECKPOINT before each run; median reported), checks
# count(*) after every run (a failed load is reported as FAILED, never as fast), measures peak RSS
# with /usr/bin/time -v, compares `trackevent send` with `psql -c INSERT`, runs the Google
# Benchmark programs, and writes bench/results/latest.md and the results section of
# bench/README.md from what it measured.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench=$root/bench
BUILD_DIR=${BUILD_DIR:-$root/build-bench}
JOBS=${JOBS:-2}

events=1000000
runs=5
rss_10m=0
insert_sample=20000
send_runs=20
durable=0
tcp=0
profile=0
build=1
gbench=1
keep_data=0

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
need_int() { [[ ${2:-} =~ ^[0-9]+$ && $2 -gt 0 ]] || { echo "run.sh: $1 needs a positive integer" >&2; exit 64; }; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --events) need_int "$1" "${2:-}"; events=$2; shift ;;
    --runs) need_int "$1" "${2:-}"; runs=$2; shift ;;
    --rss-10m) rss_10m=1 ;;
    --insert-sample) need_int "$1" "${2:-}"; insert_sample=$2; shift ;;
    --send-runs) need_int "$1" "${2:-}"; send_runs=$2; shift ;;
    --durable) durable=1 ;;
    --tcp) tcp=1 ;;
    --profile) profile=1 ;;
    --no-build) build=0 ;;
    --no-gbench) gbench=0 ;;
    --keep-data) keep_data=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 64 ;;
  esac
  shift
done

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- setup: the tools the methods need --------------------------------------------------------
missing=()
command -v jq >/dev/null || missing+=(jq)
command -v hyperfine >/dev/null || missing+=(hyperfine)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v psql >/dev/null || missing+=(postgresql-client postgresql)
command -v python3 >/dev/null || missing+=(python3)
[[ $profile -eq 1 ]] && ! command -v valgrind >/dev/null && missing+=(valgrind)
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- build ------------------------------------------------------------------------------------
if [[ $build -eq 1 ]]; then
  log "building (Release) in $BUILD_DIR"
  cmake -S "$root" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DTRACKEVENT_BUILD_BENCH=ON \
    -DTRACKEVENT_BUILD_TESTS=OFF >/dev/null
  cmake --build "$BUILD_DIR" -j"$JOBS" --target trackevent_gen_events >/dev/null
  cmake --build "$BUILD_DIR" -j"$JOBS" --target trackevent_cli >"$BUILD_DIR/build-cli.log" 2>&1 ||
    log "warning: the trackevent CLI did not build (see $BUILD_DIR/build-cli.log)"
  if [[ $gbench -eq 1 ]] &&
     ! cmake --build "$BUILD_DIR" -j"$JOBS" --target bench_track bench_parse >/dev/null; then
    log "warning: the Google Benchmark programs did not build; skipping them"
    gbench=0
  fi
fi
GEN=$BUILD_DIR/bench/trackevent_gen_events
TE=$BUILD_DIR/cli/trackevent
[[ -x $GEN ]] || die "no generator at $GEN (build first, or drop --no-build)"

work=$BUILD_DIR/bench-work
data=$work/data
mkdir -p "$work" "$data"
rm -f "$work"/*.tsv "$work"/*.json "$work"/*.log "$work"/time-*.txt "$work"/notes.txt \
  "$work"/machine.env
notes=$work/notes.txt
: >"$notes"
note() { log "$*"; echo "$*" >>"$notes"; }
have_te=1
[[ -x $TE ]] || { have_te=0; note "no trackevent CLI at $TE: the trackevent methods are skipped"; }

fresh_spool() {  # each trackevent run starts with an empty spool, so no earlier leftovers drain
  rm -rf "$work/spool"
  mkdir -p "$work/spool/state" "$work/spool/data"
}
te() {  # the trackevent CLI with an isolated spool and data directory
  TRACKEVENT_SPOOL_DIR=$work/spool/state XDG_STATE_HOME=$work/spool/state \
    XDG_DATA_HOME=$work/spool/data "$TE" "$@"
}

# --- one disposable PostgreSQL ----------------------------------------------------------------
pgdir=$(mktemp -d /tmp/trackevent-bench-pg.XXXXXX)
cleanup() {
  "$root/scripts/pg-test-server" stop "$pgdir" || true
  rm -rf "$pgdir" "$work/spool"
  [[ $keep_data -eq 1 ]] || rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
eval "$("$root/scripts/pg-test-server" start "$pgdir")"
if [[ $tcp -eq 1 ]]; then
  export PGHOST=127.0.0.1
fi
# Every client (trackevent and psql) uses the same transport: the unix socket by default.
DB_URL="host=$PGHOST port=$PGPORT user=postgres dbname=postgres"
export PGOPTIONS=""
PSQL=(psql -X -q -v ON_ERROR_STOP=1)
if [[ $durable -eq 1 ]]; then
  "${PSQL[@]}" -c "ALTER SYSTEM SET fsync = on" -c "ALTER SYSTEM SET synchronous_commit = on" \
    -c "ALTER SYSTEM SET full_page_writes = on" -c "SELECT pg_reload_conf()" >/dev/null
fi
server_settings=$("${PSQL[@]}" -At -c "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name)
  FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','shared_buffers',
  'max_wal_size','wal_level')")
log "PostgreSQL at $PGHOST:$PGPORT ($server_settings)"

# --- machine ----------------------------------------------------------------------------------
{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -r)"
  echo "postgres=$("${PSQL[@]}" -At -c 'SHOW server_version')"
  echo "server_settings=$server_settings"
  echo "commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
    git -C "$root" diff --quiet HEAD -- lib cli 2>/dev/null || echo ' (+ uncommitted changes in lib/ cli/)')"
  echo "events=$events"
  echo "runs=$runs"
  echo "transport=$([[ $tcp -eq 1 ]] && echo 'TCP 127.0.0.1' || echo 'unix socket')"
  echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$work/machine.env"

# --- data -------------------------------------------------------------------------------------
gen() {  # gen COUNT FORMAT -> path (generated once, reused)
  local f=$data/events-$1.$2
  if [[ ! -s $f ]]; then
    log "generating $1 events ($2)"
    "$GEN" --count "$1" --format "$2" >"$f.tmp"
    mv "$f.tmp" "$f"
  fi
  echo "$f"
}
jsonl=$(gen "$events" jsonl)
csv=$(gen "$events" csv)
sample_sql=$(gen "$insert_sample" sql)

# --- schema -----------------------------------------------------------------------------------
rc=0
fresh_spool
if [[ $have_te -eq 1 ]]; then
  te --db "$DB_URL" migrate >"$work/migrate.log" 2>&1 || rc=$?
else
  rc=127
fi
has_table=$("${PSQL[@]}" -At -c "SELECT to_regclass('analytics_events') IS NOT NULL")
if [[ $rc -ne 0 || $has_table != t ]]; then
  note "trackevent migrate did not create the schema (exit $rc); applied schema/postgres/*.sql with psql instead"
  for f in "$root"/schema/postgres/*.sql; do "${PSQL[@]}" -f "$f" >/dev/null; done
fi

# On the partitioned layout (migration 0002) the corpus's month (November 2026, see
# bench/event_gen.hpp) gets its partition, as `trackevent partitions` makes one for rows that
# arrive; migrate creates only the current month and 3 ahead, and rows in DEFAULT are not the
# case to measure.
if [[ $("${PSQL[@]}" -At -c "SELECT relkind FROM pg_class WHERE oid = 'analytics_events'::regclass") == p ]]; then
  "${PSQL[@]}" -c "CREATE TABLE IF NOT EXISTS analytics_events_p2026_11 PARTITION OF analytics_events
    FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')" >/dev/null
fi

# Autovacuum would start on its own schedule after a load and run into the next method's
# measurement; it is off for the table (each partition: a partitioned table has no storage
# parameters), for every method alike.
for t in $("${PSQL[@]}" -At -c "SELECT oid::regclass FROM pg_class
    WHERE oid = 'analytics_events'::regclass AND relkind = 'r'
    UNION ALL SELECT inhrelid::regclass FROM pg_inherits
    WHERE inhparent = 'analytics_events'::regclass"); do
  "${PSQL[@]}" -c "ALTER TABLE $t SET (autovacuum_enabled = false)" >/dev/null
done

# --- measuring --------------------------------------------------------------------------------
COLS="event_id,org_id,user_id,event_name,metadata,occurred_at"
# fsync is off, so a run leaves its heap, index and WAL writes dirty in the page cache; `sync`
# writes them out before the next run starts, so no run pays for its predecessor's writeback.
reset_table() { "${PSQL[@]}" -c "TRUNCATE analytics_events" -c "CHECKPOINT" >/dev/null && sync; }
row_count() { "${PSQL[@]}" -At -c "SELECT count(*) FROM analytics_events"; }
now_ns() { date +%s%N; }
postmaster=$(head -1 "$pgdir/data/postmaster.pid")
clk_tck=$(getconf CLK_TCK)
server_cpu() {  # CPU seconds the server has used: postmaster (incl. reaped backends) + live children
  # Waits (up to 5 s) for client backends to exit and be reaped, so a finished run is counted whole.
  local i
  for i in $(seq 1 50); do
    ps --ppid "$postmaster" -o args= | grep -q -E '\[local\]|127\.0\.0\.1' || break
    sleep 0.1
  done
  { awk '{print $14 + $15 + $16 + $17}' "/proc/$postmaster/stat"
    for c in $(ps --ppid "$postmaster" -o pid=); do
      awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || true
    done; } | awk -v hz="$clk_tck" '{t += $1} END {printf "%.2f", t / hz}'
}
rss_kb() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1" 2>/dev/null || echo 0; }
cpu_s() {  # user + system seconds of the measured process, from a /usr/bin/time -v report
  awk -F': ' '/User time \(seconds\)|System time \(seconds\)/ {t += $2} END {printf "%.2f", t}' \
    "$1" 2>/dev/null || echo 0
}

# run_once METHOD EVENTS EXPECTED_ROWS COMMAND... ; COMMAND is a bash snippet; it must put the
# /usr/bin/time -v report of the measured process in $TIMEF. Appends a row to methods.tsv.
run_once() {
  local method=$1 n=$2 expect=$3 cmd=$4 run=$5
  local timef=$work/time-$method-$run.txt errf=$work/stderr-$method-$run.log
  rm -f "$timef" "$timef.jq"
  reset_table
  fresh_spool
  local t0 t1 rc=0 s0 s1
  s0=$(server_cpu)
  t0=$(now_ns)
  TIMEF=$timef TE_BIN=$TE WORK=$work bash -c "$cmd" >/dev/null 2>"$errf" || rc=$?
  t1=$(now_ns)
  s1=$(server_cpu)
  local secs rows status=ok
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
  rows=$(row_count)
  if [[ $rc -ne 0 ]]; then
    status="FAILED: exit $rc"
  elif [[ $rows -ne $expect ]]; then
    status="FAILED: count(*)=$rows, expected $expect"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$method" "$n" "$run" "$secs" "$(rss_kb "$timef")" \
    "$status" "$(cat <(cpu_s "$timef") <(echo) <(cpu_s "$timef.jq" 2>/dev/null) |
      awk '{t += $1} END {printf "%.2f", t}')" "$(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.2f", b - a}')" \
    >>"$work/methods.tsv"
  log "$method run $run: ${secs}s, rows $rows/$expect, peak RSS $(rss_kb "$timef") kB $status"
  [[ $status == ok ]]
}

T="/usr/bin/time -v -o \"\$TIMEF\""
declare -A cmd
cmd[trackevent_ingest]="$T env TRACKEVENT_SPOOL_DIR=\$WORK/spool/state XDG_STATE_HOME=\$WORK/spool/state XDG_DATA_HOME=\$WORK/spool/data \"\$TE_BIN\" --db '$DB_URL' ingest '$jsonl'"
cmd[trackevent_ingest_c1]="${cmd[trackevent_ingest]} --connections 1"
# The tracking plan's cost: every line checked against bench/catalog50.json (50 events, each with a
# metadata schema; the corpus's 20 names describe every key it writes), --catalog-mode reject.
cmd[trackevent_ingest_catalog]="$T env TRACKEVENT_SPOOL_DIR=\$WORK/spool/state XDG_STATE_HOME=\$WORK/spool/state XDG_DATA_HOME=\$WORK/spool/data \"\$TE_BIN\" --db '$DB_URL' --catalog '$bench/catalog50.json' ingest '$jsonl'"
cmd[psql_copy]="$T psql -X -q -v ON_ERROR_STOP=1 -c \"\\copy analytics_events($COLS) from '$csv' (format csv)\""
cmd[jq_psql_copy]="set -o pipefail; /usr/bin/time -v -o \"\$TIMEF.jq\" jq -r '[.event_id,.org_id,.user_id,.event_name,(.metadata|tojson),.occurred_at] | @csv' '$jsonl' | $T psql -X -q -v ON_ERROR_STOP=1 -c \"\\copy analytics_events($COLS) from stdin (format csv)\""
cmd[psql_insert]="$T psql -X -q -v ON_ERROR_STOP=1 -f '$sample_sql'"

methods=()
if [[ $have_te -eq 1 ]]; then
  methods+=(trackevent_ingest)
  if te ingest --help 2>/dev/null | grep -q -- '--connections'; then
    methods+=(trackevent_ingest_c1)
  else
    note "trackevent ingest --help lists no --connections option; the 1-connection variant is skipped"
  fi
  if te --help 2>/dev/null | grep -q -- '--catalog-mode'; then
    methods+=(trackevent_ingest_catalog)
  else
    note "trackevent --help lists no --catalog-mode option; the catalog variant is skipped"
  fi
fi
methods+=(psql_copy jq_psql_copy psql_insert)

# Round-robin (run 1 of every method, then run 2, ...), so that a change in the machine's load
# during the measurement hits every method alike instead of one method's runs.
for run in $(seq 1 "$runs"); do
  for method in "${methods[@]}"; do
    n=$events
    [[ $method == psql_insert ]] && n=$insert_sample
    if ! run_once "$method" "$n" "$n" "${cmd[$method]}" "$run"; then
      note "$method run $run failed; see $work/stderr-$method-$run.log: $(tail -c 300 "$work/stderr-$method-$run.log" | tr '\n' ' ')"
    fi
  done
done

# --- peak RSS of trackevent ingest as the input grows -----------------------------------------
rss_sizes=(100000 "$events")
[[ $rss_10m -eq 1 ]] && rss_sizes+=(10000000)
for n in $(printf '%s\n' "${rss_sizes[@]}" | sort -n -u); do
  if [[ $n -eq $events || $have_te -eq 0 ]]; then
    continue  # the ingest runs above already measured this size
  fi
  f=$(gen "$n" jsonl)
  c="$T env TRACKEVENT_SPOOL_DIR=\$WORK/spool/state XDG_STATE_HOME=\$WORK/spool/state XDG_DATA_HOME=\$WORK/spool/data \"\$TE_BIN\" --db '$DB_URL' ingest '$f'"
  run_once "rss_trackevent_ingest" "$n" "$n" "$c" 1 || note "trackevent ingest of $n events failed"
  [[ $keep_data -eq 1 || $n -eq 100000 ]] || rm -f "$f"
done

# --- one event: trackevent send vs psql -c INSERT ---------------------------------------------
# The bulk loads leave gigabytes of dirty pages for the kernel to write back; a process start or
# an fsync timed meanwhile would measure that instead. Let it finish first.
settle() {
  "${PSQL[@]}" -c "CHECKPOINT" >/dev/null
  sync
  sleep 3
}
settle
send_json='{"org_id":1,"user_id":2,"event_name":"backup.completed","metadata":{"bytes":123456,"host":"db1"}}'
insert_sql="INSERT INTO analytics_events($COLS) VALUES (gen_random_uuid(), 1, 2, 'backup.completed', '{\"bytes\":123456,\"host\":\"db1\"}', now())"
# Invocations are this far apart (untimed), as cron jobs are: the detached deliverer that one
# `send --background` starts has finished before the next invocation is timed.
send_gap=0.3
# time_invocations NAME COMMAND...: runs COMMAND $send_runs times, appending each wall time (ms)
# to the caller's `ms` array and the user + system CPU (ms) of the runs to `cpu`; a failure sets
# `status`. With hyperfine (installed above) the timer forks nothing but the command itself;
# the fallback reads bash's EPOCHREALTIME, also without a fork (a `$(date)` would add a few ms
# of fork + exec to every invocation, more to the fast commands' ratios than to psql's).
time_invocations() {
  local name=$1 i t0 t1 rc
  shift
  if command -v hyperfine >/dev/null; then
    hyperfine -N --runs "$send_runs" --prepare "sleep $send_gap" \
      --export-json "$work/hyperfine-$name.json" "$(printf '%q ' "$@")" \
      >/dev/null 2>>"$work/stderr-$name.log" || status="FAILED: hyperfine"
    mapfile -t ms < <(python3 -c 'import json,sys; [print(t*1000) for t in json.load(open(sys.argv[1]))["results"][0]["times"]]' "$work/hyperfine-$name.json")
    mapfile -t cpu < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(round((r["user"]+r["system"])*1000))' "$work/hyperfine-$name.json")
    return
  fi
  for i in $(seq 1 "$send_runs"); do
    sleep "$send_gap"
    t0=$EPOCHREALTIME
    "$@" >/dev/null 2>>"$work/stderr-$name.log"
    rc=$?
    t1=$EPOCHREALTIME
    [[ $rc -eq 0 ]] || status="FAILED: exit $rc"
    ms+=("$(awk -v a="${t0/,/.}" -v b="${t1/,/.}" 'BEGIN {printf "%.3f", (b - a) * 1000}')")
  done
  # CPU from separate, untimed runs, so /usr/bin/time is not inside the wall-clock figure.
  for i in 1 2 3; do
    /usr/bin/time -f '%U %S' -o "$work/time-$name.txt" "$@" >/dev/null 2>>"$work/stderr-$name.log"
    cpu+=("$(awk '{printf "%.0f", ($1 + $2) * 1000}' "$work/time-$name.txt")")
  done
}
record_invocations() {  # record_invocations NAME: one send.tsv row from `ms`, `status`, `cpu`
  printf '%s\t%s\t%s\t%s\n' "$1" "$(printf '%s\n' "${ms[@]}" | sort -g | tr '\n' ' ')" "$status" \
    "${cpu[*]:-}" >>"$work/send.tsv"
}
one_event() {  # one_event NAME COMMAND...: wall ms of $send_runs invocations (after 2 warm-ups)
  # Checks that every invocation stored its row, waiting up to 30 s for background deliveries.
  local name=$1 ms=() cpu=() i before after status=ok
  shift
  reset_table
  fresh_spool
  before=$(row_count)
  for i in 1 2; do "$@" >/dev/null 2>>"$work/stderr-$name.log" || status="FAILED: exit $?"; done
  time_invocations "$name" "$@"
  after=$(row_count)
  for i in $(seq 1 150); do
    [[ $((after - before)) -ge $((send_runs + 2)) ]] && break
    sleep 0.2
    after=$(row_count)
  done
  if [[ $status == ok && $((after - before)) -ne $((send_runs + 2)) ]]; then
    status="FAILED: stored $((after - before)) of $((send_runs + 2))"
  fi
  record_invocations "$name"
  log "$name: median $(printf '%s\n' "${ms[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms $status"
}
[[ $have_te -eq 1 ]] && one_event trackevent_send env TRACKEVENT_SPOOL_DIR="$work/spool/state" \
  XDG_STATE_HOME="$work/spool/state" XDG_DATA_HOME="$work/spool/data" "$TE" --db "$DB_URL" send "$send_json"
[[ $have_te -eq 1 ]] && one_event trackevent_send_background env \
  TRACKEVENT_SPOOL_DIR="$work/spool/state" XDG_STATE_HOME="$work/spool/state" \
  XDG_DATA_HOME="$work/spool/data" "$TE" --db "$DB_URL" send --background "$send_json"
one_event psql_insert_one psql -X -q -v ON_ERROR_STOP=1 -c "$insert_sql"

# What the invocations are made of: process start alone, and psql's start + connect.
startup_only() {  # startup_only NAME COMMAND...: like one_event, for commands that store nothing
  local name=$1 ms=() cpu=() i status=ok
  shift
  for i in 1 2; do "$@" >/dev/null 2>>"$work/stderr-$name.log" || status="FAILED: exit $?"; done
  time_invocations "$name" "$@"
  record_invocations "$name"
}
[[ $have_te -eq 1 ]] && startup_only trackevent_version "$TE" --version
startup_only psql_version psql --version
startup_only psql_select_one psql -X -q -c "SELECT 1"

# --- Google Benchmark -------------------------------------------------------------------------
if [[ $gbench -eq 1 ]]; then
  settle
  for b in bench_track bench_parse; do
    if [[ ! -x $BUILD_DIR/bench/$b ]]; then
      note "$b is not built; skipped"
      continue
    fi
    log "running $b"
    if ! "$BUILD_DIR/bench/$b" --benchmark_out="$work/$b.json" --benchmark_out_format=json \
         >"$work/$b.txt" 2>&1; then
      note "$b failed: $(tail -c 300 "$work/$b.txt" | tr '\n' ' ')"
    fi
  done
else
  note "Google Benchmark programs not run"
fi

# --- profile (optional) -----------------------------------------------------------------------
# Client: perf with hardware counters when the machine has them, else callgrind, on a 50k-event
# ingest. Server and client together: perf's cpu-clock sampling (no hardware counters needed)
# over the whole machine during a 100k-event ingest, split by command, then the hottest
# PostgreSQL functions: that is where the time goes when the client is not the bottleneck.
if [[ $profile -eq 1 && $have_te -eq 1 ]]; then
  # Reports are cut with head: a closed pipe or an empty grep is not an error here.
  set +e +o pipefail
  prof=$bench/results/profile.txt
  f50=$(gen 50000 jsonl)
  f100=$(gen 100000 jsonl)
  te_env=(env TRACKEVENT_SPOOL_DIR="$work/spool/state" XDG_STATE_HOME="$work/spool/state"
          XDG_DATA_HOME="$work/spool/data")
  {
    echo "# Profile of trackevent ingest ($(date -u +%Y-%m-%dT%H:%M:%SZ), written by bench/run.sh --profile)"
    echo
  } >"$prof"
  reset_table
  fresh_spool
  if perf stat -e instructions true 2>&1 | grep -q 'not supported' || ! perf stat -e instructions true >/dev/null 2>&1; then
    log "profiling the client on a 50k-event ingest with callgrind (no hardware counters for perf)"
    "${te_env[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
      "$TE" --db "$DB_URL" -q ingest "$f50" >/dev/null 2>"$work/callgrind.log" || true
    {
      echo "## Client: callgrind, 50k events, exclusive cost (top functions)"
      echo
      callgrind_annotate --inclusive=no "$work/callgrind.out" 2>/dev/null | sed -n '1,45p'
      echo
      echo "## Client: callgrind, inclusive cost"
      echo
      callgrind_annotate --inclusive=yes "$work/callgrind.out" 2>/dev/null | sed -n '1,45p'
    } >>"$prof"
  else
    log "profiling the client on a 50k-event ingest with perf"
    perf record -g -o "$work/perf-client.data" -- "${te_env[@]}" "$TE" --db "$DB_URL" -q ingest "$f50" \
      >/dev/null 2>&1 || true
    { echo "## Client: perf, 50k events"; echo
      perf report -i "$work/perf-client.data" --no-children --stdio -g none 2>/dev/null |
        grep -v '^#' | grep '%' | head -40; } >>"$prof"
  fi
  reset_table
  fresh_spool
  if perf record -e cpu-clock -F 999 -a -o "$work/perf-all.data" -- "${te_env[@]}" "$TE" \
       --db "$DB_URL" -q ingest "$f100" >/dev/null 2>"$work/perf-all.log"; then
    {
      echo
      echo "## Whole machine during a 100k-event ingest: perf cpu-clock samples by command"
      echo
      perf report -i "$work/perf-all.data" --no-children --sort comm --stdio 2>/dev/null |
        grep -v '^#' | grep '%' | head -12
      echo
      echo "## PostgreSQL server processes: hottest functions"
      echo
      perf report -i "$work/perf-all.data" --no-children --comm postgres --sort sym --stdio --percentage relative \
        2>/dev/null | grep -v '^#' | grep '%' | head -30
      echo
      echo "## trackevent process: hottest functions"
      echo
      perf report -i "$work/perf-all.data" --no-children --comm trackevent --sort dso,sym --stdio --percentage relative \
        2>/dev/null | grep -v '^#' | grep '%' | head -30
    } >>"$prof"
  else
    note "perf record -e cpu-clock failed: $(tail -c 200 "$work/perf-all.log" | tr '\n' ' ')"
  fi
  if [[ -x $BUILD_DIR/bench/bench_track ]] &&
     perf record -e cpu-clock -F 4999 -o "$work/perf-track.data" -- "$BUILD_DIR/bench/bench_track" \
       --benchmark_filter='BM_track_no_metadata/real_time/threads:1$' --benchmark_min_time=2 \
       >/dev/null 2>"$work/perf-track.log"; then
    {
      echo
      echo "## bench_track (track() without metadata, 1 thread): hottest functions, perf cpu-clock"
      echo
      perf report -i "$work/perf-track.data" --no-children --comm bench_track --sort sym --stdio \
        --percentage relative 2>/dev/null | grep -v '^#' | grep '%' | head -30
    } >>"$prof"
  fi
  log "profile written to $prof"
  set -e -o pipefail
fi

# --- report -----------------------------------------------------------------------------------
mkdir -p "$bench/results"
python3 "$bench/report.py" "$work" >"$bench/results/latest.md"
python3 "$bench/report.py" --update-readme "$bench/README.md" "$bench/results/latest.md"
cat "$bench/results/latest.md"
log "wrote bench/results/latest.md and the results section of bench/README.md"
