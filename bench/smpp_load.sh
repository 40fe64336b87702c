#!/usr/bin/env bash
# SMPP delivery throughput of otpd (figures, not pass/fail): verifications
# started through the API until the SMSC peer has received every submit_sm,
# with the smpp provider's window 10 and then 1, in one invocation.
#
#   bench/smpp_load.sh                       # after `make build` and `npm ci`
#   PHASES=10:5000,1:1500 CONNECTIONS=16 bench/smpp_load.sh
#
# Phases (window:N[:how]): no how = N starts as fast as the client's CONNECTIONS
# get answers (closed loop), timed until the SMSC has all N; :R = starts paced at R
# per second (e2e latency without a backlog); :hold = the peer is stopped
# (SIGSTOP) while the N starts are made and released after, so the SMS/s is
# otpd's dispatcher draining a backlog with the API idle.
#
# The measuring is done by bench/smpp_load.py (see its docstring for every
# figure); this wrapper checks the tools and runs it. Everything listens on free
# loopback ports and lives in temp dirs that are removed at the end.
#
# Environment (defaults in brackets):
#   PHASES [10:5000,1:3000,10:5000:hold,1:3000:hold,10:3000:500]
#                             window:N[:starts per second|:hold], comma separated; no
#                             rate = as fast as CONNECTIONS clients go (closed loop)
#   CONNECTIONS [64]          keep-alive connections of the (one-thread) client
#   WARMUP [200]              verifications sent before each phase, not counted
#   OTPD_THREADS [0]          [server] threads (0 = one per core)
#   OTPD_LOG_LEVEL [info]     otpd --log-level (info logs each request and delivery)
#   OTPD, OTPCTL [build/release/apps/...]   binaries to measure
#   STALL_S [15]              give up when the peer receives nothing new this long
#   KEEP_TMP [0]              1 = keep the temp dirs (otpd log, store, config)
#   STACKS [0]                N gdb snapshots of otpd's threads per phase, printed as
#                             "where the threads wait" (perturbs the figures: diagnosis only)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "smpp_load.sh: $*" >&2; exit 1; }

for tool in python3 node; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/install-deps installs it)"
done
OTPD=${OTPD:-$ROOT/build/release/apps/otpd}
OTPCTL=${OTPCTL:-$ROOT/build/release/apps/otpctl}
[[ -x "$OTPD" && -x "$OTPCTL" ]] || die "no release build at $OTPD / $OTPCTL: run 'make build' first"
if [[ ! -d "$ROOT/node_modules/smpp" ]]; then
  command -v npm >/dev/null || die "npm is not installed (scripts/install-deps installs it)"
  echo "== npm ci (the SMSC peer's pinned npm packages)" >&2
  (cd "$ROOT" && npm ci --no-audit --no-fund >/dev/null) || die "npm ci failed in $ROOT"
fi
export OTPD OTPCTL
exec python3 "$ROOT/bench/smpp_load.py"
