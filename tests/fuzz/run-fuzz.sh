#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in build-fuzz and fuzzes the line parser.
#   tests/fuzz/run-fuzz.sh [SECONDS]   (default 60)
# Exits non-zero when the fuzzer finds a crash or a sanitizer report; the reproducer is left in
# build-fuzz/fuzz-artifacts/.
set -euo pipefail

seconds=${1:-60}
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [SECONDS]" >&2
  exit 64
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${TRACKEVENT_FUZZ_BUILD_DIR:-$root/build-fuzz}

command -v clang++ >/dev/null || { echo "run-fuzz.sh: clang++ not found" >&2; exit 69; }

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTRACKEVENT_BUILD_FUZZ=ON -DTRACKEVENT_BUILD_TESTS=ON >/dev/null
cmake --build "$build" --target fuzz_parse_line -j"${JOBS:-2}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -R "$root/tests/fuzz/corpus/parse_line" "$work/corpus"
mkdir -p "$build/fuzz-artifacts"

# Leak checking needs ptrace, which some containers forbid; it would abort every run there.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# libFuzzer reports every new input; keep that in a log and show its end (and the crash, if any).
log=$build/fuzz.log
status=0
"$build/tests/fuzz/fuzz_parse_line" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
  -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/" "$work/corpus" >"$log" 2>&1 ||
  status=$?
if [[ $status -ne 0 ]]; then
  grep -v -E '^#[0-9]+' "$log" | tail -n 80 >&2
  echo "run-fuzz.sh: the fuzzer failed (exit $status); reproducer in $build/fuzz-artifacts/" >&2
  exit "$status"
fi
grep -E '^(#[0-9]+.*DONE|stat::)' "$log" || tail -n 5 "$log"
echo "run-fuzz.sh: no crash in $seconds s"
