#!/bin/sh
# `npm run bench [-- --quick] [-- <bench files>]`: builds snapfork, then runs issue 15's suite
# (scripts/bench/suite.bench.ts; --quick: smaller data and fewer runs, under 10 minutes) or,
# given bench files, those (e.g. scripts/bench/vm.bench.ts), through vitest one at a time.
set -e
files=
for arg in "$@"; do
  case "$arg" in
    --quick) export BENCH_QUICK=1 ;;
    *) files="$files $arg" ;;
  esac
done
npm run --silent build
# shellcheck disable=SC2086 # the file names are split on purpose
exec npx vitest run --config scripts/bench/vitest.config.ts ${files:-scripts/bench/suite.bench.ts}
