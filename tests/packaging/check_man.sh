#!/usr/bin/env bash
# check_man.sh PAGE: the page renders under groff's man macros with every warning on and none
# emitted (groff exits 0 even when it warns, so stderr is what counts).
set -euo pipefail
page=$1
out=$(groff -man -ww -z "$page" 2>&1) || { echo "$out"; exit 1; }
if [[ -n $out ]]; then
  echo "$out"
  exit 1
fi
echo "$page: no warnings"
