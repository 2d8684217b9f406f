#!/usr/bin/env bash
# A producer | trackevent ingest --tee | consumer pipeline. The events pass through unchanged and
# are recorded on the side; the producer never waits on the database.
#
# Runs as is against the embedded store (no server needed). By default it uses a throw-away
# store and spool under a temporary directory; set KEEP_STORE=1 to use your usual
# $XDG_DATA_HOME/trackevent/events.db, or set TRACKEVENT_DATABASE_URL to use PostgreSQL
# (run `trackevent migrate` first).
# TRACKEVENT: the binary (default: trackevent on PATH).
set -euo pipefail
trackevent=${TRACKEVENT:-trackevent}

if [[ -z ${KEEP_STORE:-} && -z ${TRACKEVENT_DATABASE_URL:-} ]]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  export XDG_DATA_HOME=$scratch/data XDG_STATE_HOME=$scratch/state
fi

# The producer: a job that reports what it does as JSON lines, one every few milliseconds.
producer() {
  local i
  for ((i = 1; i <= 200; i++)); do
    printf '{"org_id":1,"user_id":%d,"event_name":"dataset.uploaded","metadata":{"rows":%d}}\n' \
      $((i % 7 + 1)) $((i * 100))
    sleep 0.005
  done
}

# The consumer: whatever reads the stream anyway; here it adds up the rows.
consumer() {
  local total=0 n=0 line rows
  while IFS= read -r line; do
    rows=${line##*\"rows\":}
    rows=${rows%%\}*}
    total=$((total + rows))
    n=$((n + 1))
  done
  echo "consumer: $n events, $total rows"
}

# Logs (and the summary line) go to stderr as text; stdout carries the events on.
producer | "$trackevent" --log-format text ingest --tee | consumer
