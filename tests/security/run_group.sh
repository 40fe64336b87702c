#!/bin/sh
# Runs the gtest cases of one SECURITY.md item: pairs of BINARY FILTER.
# Fails when a binary fails, or when a filter selects no test at all (a group
# whose tests were renamed away must not pass by running nothing).
set -u
while [ $# -ge 2 ]; do
  bin=$1 filter=$2
  shift 2
  out=$("$bin" --gtest_brief=1 "--gtest_filter=$filter" 2>&1)
  rc=$?
  printf '%s\n' "$out"
  [ "$rc" -eq 0 ] || exit "$rc"
  ran=$(printf '%s\n' "$out" | sed -n 's/^\[==========\] \([0-9]*\) tests\{0,1\} from .* ran\..*/\1/p' | tail -1)
  if [ -z "$ran" ] || [ "$ran" -eq 0 ]; then
    echo "run_group.sh: $filter selects no test in $(basename "$bin")" >&2
    exit 1
  fi
  echo "run_group.sh: $ran tests of $(basename "$bin") for $filter"
done
