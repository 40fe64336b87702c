#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time on its corpus (CTest, make fuzz).
#   run_fuzzer.sh BINARY CORPUS_DIR WORK_DIR [DICT]
# FUZZ_SECONDS (default 10) bounds the run. FUZZ_SEED, when set, fixes libFuzzer's
# seed (`make test` uses 1, so its short run explores the same inputs every time
# and CI cannot fail on a crash nobody has seen yet); unset, each run explores anew. The checked-in CORPUS_DIR is only
# read: new inputs go to WORK_DIR/corpus, a crash's reproducer to WORK_DIR/
# (its path is printed; copy it into CORPUS_DIR with a unit test for the fix).
set -euo pipefail
bin=$1 corpus=$2 work=$3 dict=${4:-}
seconds=${FUZZ_SECONDS:-10}
mkdir -p "$work/corpus"
args=(-max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1
      -artifact_prefix="$work/")
if [ -n "$dict" ]; then args+=(-dict="$dict"); fi
if [ -n "${FUZZ_SEED:-}" ]; then args+=(-seed="$FUZZ_SEED"); fi
# The seed corpus must be there: a target that silently ran on nothing would pass.
if [ -z "$(ls -A "$corpus" 2>/dev/null)" ]; then
  echo "run_fuzzer: no seed corpus in $corpus" >&2
  exit 1
fi
exec "$bin" "${args[@]}" "$work/corpus" "$corpus"
