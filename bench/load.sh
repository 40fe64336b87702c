#!/usr/bin/env bash
# HTTP load benchmark of otpd (figures, not pass/fail), compared with nginx
# serving a fixed JSON answer on the same machine in the same run.
#
#   bench/load.sh                    # after `make build` (release binaries)
#   DURATION=30s CONNECTIONS=128 bench/load.sh
#
# Measures with wrk:
#   1. nginx `return 200 '{"status":"ok"}'`      the ceiling
#   2. otpd GET /healthz                         target >= 0.6x nginx
#   3. otpd POST /v1/verifications/{id}/check    wrong codes, spread over enough
#                                                pending verifications that none
#                                                reaches max_checks; target >= 0.25x
#                                                nginx and p99 < 10 ms at 64 conns
#   4. otpd POST /v1/users/{user}/verify         right, fresh TOTP codes, each user
#                                                once (bench/totp_users.py enrolls
#                                                them first); target >= 0.25x nginx
# Every otpd run sits between two nginx runs (nginx, healthz, nginx, check,
# nginx, check, ..., nginx; later nginx, verify, nginx) and is compared with
# the mean of the two: the speed of this shared machine drifts by 20 % within
# a minute, and a ceiling measured on one side only moved the ratio with the
# drift (docs/benchmarks.md). The check runs ROUNDS times, and its verdict is
# on the median round (its ratio and p99); every round is printed.
# otpd runs from the release build with SQLite and a `log` provider in a temp
# dir, on a free loopback port; everything talks to 127.0.0.1 only.
#
# Environment (defaults in brackets):
#   DURATION [10s]  CONNECTIONS [64]  THREADS [2]   wrk settings for every run
#   ROUNDS [3]                                       check runs (odd: a median round)
#   OTPD_THREADS [0 = one per core]                  [server] threads
#   OTPD_LOG_LEVEL [info]                            otpd --log-level (info logs each request)
#   OTPD, OTPCTL [build/release/apps/...]            binaries to measure
#   PROBE_DURATION [2s]                              short check run that sizes the pool
#   PROBE_FLOOR [25000]                              checks/s the pools are sized for at least
#   CHECK_POOL [sized by the probe]                  fixed number of verifications for the check
#                                                    rounds (to compare runs on one pool size)
#   MAX_VERIFICATIONS [200000]                       upper bound on verifications created
#   MAX_TOTP_USERS [400000]                          upper bound on TOTP users enrolled
#   CREATE_PARALLEL [8]                              parallel curl processes creating them
#   KEEP_TMP [0]                                     1 = keep the temp dir (logs, db)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
OTPD_THREADS=${OTPD_THREADS:-0}
OTPD_LOG_LEVEL=${OTPD_LOG_LEVEL:-info}
OTPD=${OTPD:-$ROOT/build/release/apps/otpd}
OTPCTL=${OTPCTL:-$ROOT/build/release/apps/otpctl}
PROBE_DURATION=${PROBE_DURATION:-2s}
PROBE_FLOOR=${PROBE_FLOOR:-25000}
CHECK_POOL=${CHECK_POOL:-}
MAX_VERIFICATIONS=${MAX_VERIFICATIONS:-200000}
MAX_TOTP_USERS=${MAX_TOTP_USERS:-400000}
CREATE_PARALLEL=${CREATE_PARALLEL:-8}
KEEP_TMP=${KEEP_TMP:-0}
MAX_CHECKS=20        # the app's max_checks (the most otpd allows)
CHECK_BUDGET=12      # plan at most this many wrong checks per verification
# Verifications spent by the probe run: enough for 50k checks/s over 2 s at 16
# checks each. 2000 ran out at 20k/s (2026-11-28 19:35), and the script then
# sized the pool for twice the probe's lower bound.
PROBE_POOL=6500

die() { echo "load.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

for tool in wrk nginx curl awk; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/install-deps installs it)"
done
[[ -x "$OTPD" && -x "$OTPCTL" ]] || die "no release build at $OTPD / $OTPCTL: run 'make build' first"
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$THREADS" =~ ^[0-9]+$ && "$THREADS" -ge 1 ]] ||
  die "CONNECTIONS and THREADS must be positive integers"
[[ -z "$CHECK_POOL" || "$CHECK_POOL" =~ ^[1-9][0-9]*$ ]] || die "CHECK_POOL must be a positive integer"
[[ "$CONNECTIONS" -ge "$THREADS" ]] || die "CONNECTIONS must be >= THREADS"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ && $((ROUNDS % 2)) -eq 1 ]] ||
  die "ROUNDS must be an odd positive integer (the verdict is on the median round)"

# wrk duration ("10s", "2m", "1h", or plain seconds) in seconds.
seconds_of() {
  local d=$1
  case "$d" in
    *s) echo "${d%s}" ;;
    *m) echo $((${d%m} * 60)) ;;
    *h) echo $((${d%h} * 3600)) ;;
    *) echo "$d" ;;
  esac
}
DURATION_S=$(seconds_of "$DURATION")
PROBE_S=$(seconds_of "$PROBE_DURATION")
[[ "$DURATION_S" =~ ^[0-9]+$ && "$DURATION_S" -ge 1 && "$PROBE_S" =~ ^[0-9]+$ && "$PROBE_S" -ge 1 ]] ||
  die "DURATION and PROBE_DURATION must be whole seconds, minutes or hours (e.g. 10s)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/otpd-bench.XXXXXX")
OTPD_PID=""
NGINX_PID=""
cleanup() {
  local pid
  for pid in $OTPD_PID $NGINX_PID; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $OTPD_PID $NGINX_PID; do
    # bounded wait, then force
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ "$KEEP_TMP" == 1 ]]; then
    echo "load.sh: kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU seconds (user+system) used so far by a process and its children threads;
# for nginx, master plus workers.
cpu_ticks() {
  local total=0 pid t
  for pid in "$@"; do
    [[ -r /proc/$pid/stat ]] || continue
    t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    total=$((total + t))
  done
  echo "$total"
}

# thread_stats PID...: one line per thread of these processes, "name ticks
# reads": its name (otpd names its threads otpd-io, otpd-writer, ...), the CPU
# ticks (user+system) and read() calls it has made so far. The store's writer
# reads the database file only for pages its cache does not hold, so its reads
# per check show whether the pages the checks touch still fit in that cache.
thread_stats() {
  local task
  for task in $(printf '/proc/%s/task/* ' "$@"); do
    [[ -r $task/stat ]] || continue
    echo "$(<"$task/comm") $(awk '{ print $14 + $15 }' "$task/stat") $(
      awk '/^syscr:/ { print $2 }' "$task/io" 2>/dev/null || echo 0)"
  done
}

# thread_delta BEFORE AFTER REQUESTS: from two thread_stats snapshots, the
# fields "reads=<the writer's read() calls>" and "threads=name:us,..." (CPU
# microseconds per request by thread name, threads of one name summed).
thread_delta() {
  awk -v n="$3" -v t="$TICKS" '
    FNR == NR { t0[$1] += $2; r0[$1] += $3; next }
    { t1[$1] += $2; r1[$1] += $3 }
    END {
      out = ""
      for (k in t1) if (t1[k] - t0[k] > 0)
        out = out sprintf("%s%s:%.1f", out == "" ? "" : ",", k, (t1[k] - t0[k]) / t * 1e6 / n)
      printf "reads=%d threads=%s", r1["otpd-writer"] - r0["otpd-writer"], out == "" ? "-" : out
    }' "$1" "$2"
}
TICKS=$(getconf CLK_TCK)

# wait_quiet: waits (up to 30 s) until otpd uses under 2 % of a core over half
# a second, so that no run shares the machine with the end of the work before
# it (after enrolling 400,000 TOTP users, otpd's checkpoint ran into the next
# nginx run: 1.67 cores busy instead of 2.00, 2026-11-29 09:45).
wait_quiet() {
  local a b
  for _ in $(seq 1 60); do
    a=$(cpu_ticks "$OTPD_PID")
    sleep 0.5
    b=$(cpu_ticks "$OTPD_PID")
    awk -v d=$((b - a)) -v t="$TICKS" 'BEGIN { exit !(d / t < 0.01) }' && return 0
  done
  log "otpd still busy after 30 s; measuring anyway"
}

# Runs wrk against URL with SCRIPT; prints the RESULT fields plus cpu=<cores used
# by the server pids in $SERVER_PIDS>.
run_wrk() {
  local name=$1 url=$2 script=$3 duration=$4 out before after
  out="$TMP/wrk-$name.txt"
  wait_quiet
  before=$(cpu_ticks $SERVER_PIDS)
  thread_stats $SERVER_PIDS >"$TMP/threads-$name.before"
  BENCH_LIB="$BENCH/wrk_report.lua" BENCH_THREADS="$THREADS" \
    wrk -t "$THREADS" -c "$CONNECTIONS" -d "$duration" --timeout 5s -s "$script" "$url" \
    >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed for $name"; }
  after=$(cpu_ticks $SERVER_PIDS)
  thread_stats $SERVER_PIDS >"$TMP/threads-$name.after"
  local line
  line=$(grep '^RESULT ' "$out") || { cat "$out" >&2; die "wrk printed no RESULT for $name"; }
  local secs
  secs=$(field "$line" seconds)
  echo "${line#RESULT } cpu=$(awk -v a="$before" -v b="$after" -v t="$TICKS" -v s="$secs" \
    'BEGIN { printf "%.2f", (b - a) / t / s }') busy=$(awk -v b="$(field "$line" busy_ticks)" \
    -v t="$TICKS" -v s="$secs" 'BEGIN { if (b < 0) print "-"; else printf "%.2f", b / t / s }')" \
    "$(thread_delta "$TMP/threads-$name.before" "$TMP/threads-$name.after" \
      "$(field "$line" requests)")"
}

field() { sed -E "s/.*(^| )$2=([^ ]*).*/\2/" <<<"$1"; }

# ---------------------------------------------------------------- otpd setup
CONF="$TMP/otpd.toml"
cat >"$CONF" <<EOF
[server]
listen = "127.0.0.1:0"
threads = $OTPD_THREADS

[store]
url = "sqlite://$TMP/otpd.db"

[security]
master_key_file = "$TMP/master.key"

[[provider]]
name = "bench-log"
type = "log"
channels = ["sms"]
path = "$TMP/messages.jsonl"
EOF

"$OTPCTL" --config "$CONF" migrate >"$TMP/otpctl.out" 2>&1 ||
  { cat "$TMP/otpctl.out" >&2; die "otpctl migrate failed"; }
# The benchmark measures otpd's own cost, not its abuse limits: the per-app
# request rate (default 100/s) would cap every run, and the pumping guard would
# refuse the pool's sequential numbers (10000 unconfirmed starts per prefix).
# Both are switched off for this one app (and said so in the output below).
BENCH_LIMITS="--request-rate 0 --fraud-mode off"
# shellcheck disable=SC2086
"$OTPCTL" --config "$CONF" app create bench --max-checks "$MAX_CHECKS" --ttl 3600 $BENCH_LIMITS \
  >"$TMP/app.json" 2>>"$TMP/otpctl.out" || { cat "$TMP/otpctl.out" >&2; die "otpctl app create failed"; }
API_KEY=$(grep -o '"api_key":"[^"]*"' "$TMP/app.json" | cut -d'"' -f4)
[[ -n "$API_KEY" ]] || die "no api_key in $(cat "$TMP/app.json")"

"$OTPD" --config "$CONF" --log-level "$OTPD_LOG_LEVEL" >"$TMP/otpd.out" 2>"$TMP/otpd.log" &
OTPD_PID=$!
OTPD_PORT=""
for _ in $(seq 1 100); do
  OTPD_PORT=$(sed -nE 's#^otpd listening on http://127\.0\.0\.1:([0-9]+)$#\1#p' "$TMP/otpd.out")
  [[ -n "$OTPD_PORT" ]] && break
  kill -0 "$OTPD_PID" 2>/dev/null || { cat "$TMP/otpd.out" "$TMP/otpd.log" >&2; die "otpd exited"; }
  sleep 0.1
done
[[ -n "$OTPD_PORT" ]] || die "otpd did not report its port within 10 s"
OTPD_URL="http://127.0.0.1:$OTPD_PORT"
curl -sf "$OTPD_URL/healthz" >/dev/null || die "otpd does not answer /healthz"
log "otpd $("$OTPD" --version 2>/dev/null || true) pid $OTPD_PID on $OTPD_URL (SQLite in $TMP)"

# --------------------------------------------------------------- nginx setup
NGINX_DIR="$TMP/nginx"
mkdir -p "$NGINX_DIR"
NGINX_PORT=""
for _ in $(seq 1 20); do
  port=$((20000 + RANDOM % 40000))
  # skip a port something already listens on
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
  sed -e "s#@DIR@#$NGINX_DIR#g" -e "s#@PORT@#$port#g" "$BENCH/nginx.conf.in" >"$NGINX_DIR/nginx.conf"
  nginx -e "$NGINX_DIR/error.log" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" \
    >"$NGINX_DIR/stdout" 2>&1 &
  NGINX_PID=$!
  for _ in $(seq 1 50); do
    if curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1; then NGINX_PORT=$port; break; fi
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n "$NGINX_PORT" ]] && break
  kill -TERM "$NGINX_PID" 2>/dev/null || true
  wait "$NGINX_PID" 2>/dev/null || true
  NGINX_PID=""
done
[[ -n "$NGINX_PORT" ]] || { cat "$NGINX_DIR/error.log" >&2 2>/dev/null; die "nginx did not start"; }
NGINX_URL="http://127.0.0.1:$NGINX_PORT/"
sleep 0.3  # let the workers come up
NGINX_PIDS="$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"
log "nginx $(nginx -v 2>&1 | sed 's#.*/##') pids $NGINX_PIDS on $NGINX_URL"

# ------------------------------------------------------ pending verifications
CREATED=0   # numbers used so far: +30691 followed by 7 digits, one per verification

# create_verifications COUNT FILE: starts COUNT verifications with distinct
# numbers (the per-recipient start limit is 5 per 10 min) and appends their ids
# to FILE. Batches of 250 per curl process (keep-alive), CREATE_PARALLEL at once.
create_verifications() {
  local count=$1 file=$2 dir
  dir=$(mktemp -d "$TMP/create.XXXXXX")
  awk -v from="$CREATED" -v n="$count" -v url="$OTPD_URL/v1/verifications" -v key="$API_KEY" \
      -v dir="$dir" 'BEGIN {
    for (i = 0; i < n; i++) {
      f = sprintf("%s/batch-%05d.curl", dir, int(i / 250))
      printf "url = \"%s\"\nheader = \"Authorization: Bearer %s\"\n", url, key > f
      printf "header = \"Content-Type: application/json\"\n" > f
      printf "data = \"{\\\"to\\\":\\\"+30691%07d\\\",\\\"ttl_s\\\":3600}\"\n", from + i > f
      printf "write-out = \"\\nHTTP %%{http_code}\\n\"\nnext\n" > f
    }
  }'
  CREATED=$((CREATED + count))
  find "$dir" -name 'batch-*.curl' -print0 |
    xargs -0 -P "$CREATE_PARALLEL" -I{} sh -c 'curl -s -K "$1" >"$1.out" 2>&1 || true' _ {}
  grep -ho '"id":"ver_[0-9a-f]*"' "$dir"/*.out | cut -d'"' -f4 >>"$file"
  local bad
  bad=$(cat "$dir"/*.out | awk '/^HTTP / && $2 != 201 { n[$2]++ } END { for (c in n) printf "%s:%d ", c, n[c] }')
  [[ -z "$bad" ]] || log "creating verifications: non-201 answers $bad"
}

# wait_dispatched N: the dispatcher writes one line per message to the log
# provider's file; wait (bounded) until all N are out, so that no background
# sending competes with the measured runs.
wait_dispatched() {
  local want=$1 have=0
  for _ in $(seq 1 600); do
    have=$(wc -l <"$TMP/messages.jsonl" 2>/dev/null || echo 0)
    [[ "$have" -ge "$want" ]] && return 0
    sleep 0.1
  done
  log "only $have of $want messages dispatched after 60 s; measuring anyway"
}

# with_wrong_codes IDS: rewrites IDS as "id code" lines, the code one that is
# certainly wrong (the verification's own code, read from the log provider's
# file, with its last digit changed), so that no check approves one by luck.
with_wrong_codes() {
  local ids=$1
  awk 'FNR == NR {
         if (match($0, /"verification_id":"ver_[0-9a-f]*"/)) {
           id = substr($0, RSTART + 19, RLENGTH - 20)
           if (match($0, /"code":"[0-9]+"/)) code[id] = substr($0, RSTART + 8, RLENGTH - 9)
         }
         next
       }
       $1 in code {
         c = code[$1]
         print $1, substr(c, 1, length(c) - 1) ((substr(c, length(c)) + 1) % 10)
       }' "$TMP/messages.jsonl" "$ids" >"$ids.wrong"
  [[ "$(wc -l <"$ids.wrong")" -eq "$(wc -l <"$ids")" ]] ||
    log "only $(wc -l <"$ids.wrong") of $(wc -l <"$ids") verifications have a code in the log"
  mv "$ids.wrong" "$ids"
}

SERVER_PIDS="$OTPD_PID"
log "probe: $PROBE_POOL verifications, ${PROBE_DURATION} of wrong-code checks to size the pool"
t0=$(date +%s.%N)
create_verifications "$PROBE_POOL" "$TMP/probe-ids.txt"
t1=$(date +%s.%N)
PROBE_IDS=$(wc -l <"$TMP/probe-ids.txt")
[[ "$PROBE_IDS" -gt 0 ]] || die "could not create any verification (see $TMP/otpd.log)"
CREATE_RATE=$(awk -v n="$PROBE_IDS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
wait_dispatched "$PROBE_IDS"
with_wrong_codes "$TMP/probe-ids.txt"
probe=$(BENCH_KEY="$API_KEY" BENCH_IDS="$TMP/probe-ids.txt" \
  run_wrk probe "$OTPD_URL" "$BENCH/wrk_check.lua" "$PROBE_DURATION")
probe_rps=$(field "$probe" rps)
log "probe: $probe_rps checks/s ($(field "$probe" answers)); creation ran at $CREATE_RATE/s"
# If the probe pool ran out (409s), its rate is a lower bound: double it.
if [[ "$(field "$probe" http_errors)" != 0 ]]; then
  probe_rps=$(awk -v r="$probe_rps" 'BEGIN { print r * 2 }')
fi
# A probe caught in a slow moment of the machine would size the pools for it
# (2026-11-27 16:59: 10k/s, then 23k checks/s ran over a pool sized for 10k,
# up to 20 checks each, at max_checks): size them for PROBE_FLOOR at least.
if awk -v r="$probe_rps" -v f="$PROBE_FLOOR" 'BEGIN { exit !(r < f) }'; then
  log "probe: sizing the pools for PROBE_FLOOR=$PROBE_FLOOR checks/s instead"
  probe_rps=$PROBE_FLOOR
fi
# Size: 1.5x the probe rate for every round, at most CHECK_BUDGET checks each
# in all (each round adds up to one check per verification to the even share).
NEED=$(awk -v r="$probe_rps" -v d="$DURATION_S" -v b="$CHECK_BUDGET" -v t="$THREADS" \
  -v k="$ROUNDS" 'BEGIN { n = int(r * 1.5 * d * k / (b - k)) + 100 * t; print n }')
if [[ -n "$CHECK_POOL" ]]; then
  log "CHECK_POOL=$CHECK_POOL fixes the pool (the probe wanted $NEED)"
  NEED=$CHECK_POOL
elif [[ "$NEED" -gt "$MAX_VERIFICATIONS" ]]; then
  log "capping the pool at MAX_VERIFICATIONS=$MAX_VERIFICATIONS (wanted $NEED): expect 409s"
  NEED=$MAX_VERIFICATIONS
fi
log "creating $NEED pending verifications (max_checks $MAX_CHECKS, ttl 3600 s) ..."
t0=$(date +%s.%N)
create_verifications "$NEED" "$TMP/ids.txt"
t1=$(date +%s.%N)
POOL=$(wc -l <"$TMP/ids.txt")
CREATE_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
log "created $POOL in $CREATE_SECS s"
wait_dispatched $((PROBE_IDS + POOL))
with_wrong_codes "$TMP/ids.txt"

# ------------------------------------------------------------------ the runs
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# nginx_run NAME: one nginx run (a ceiling for the otpd runs beside it);
# run_wrk measures nginx's CPU through the local SERVER_PIDS.
nginx_run() {
  log "nginx: wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
  local SERVER_PIDS="$NGINX_PIDS"
  run_wrk "$1" "$NGINX_URL" "$BENCH/wrk_report.lua" "$DURATION"
}
R_NGINX_HEALTH=$(nginx_run nginx-healthz)
log "otpd GET /healthz"
R_HEALTH=$(run_wrk healthz "$OTPD_URL/healthz" "$BENCH/wrk_report.lua" "$DURATION")
# check_run NAME: one run of wrong-code checks over the pool; adds to the RESULT
# fields "stored=<checks the store counted>" and "approved=<verifications
# approved>" during the run (bench/store_counts.py), read after a pause in
# which the requests still in flight when wrk stopped are answered.
check_run() {
  local before after result
  before=$(python3 "$BENCH/store_counts.py" checks "$TMP/otpd.db")
  result=$(BENCH_KEY="$API_KEY" BENCH_IDS="$TMP/ids.txt" \
    run_wrk "$1" "$OTPD_URL" "$BENCH/wrk_check.lua" "$DURATION")
  sleep 0.5
  after=$(python3 "$BENCH/store_counts.py" checks "$TMP/otpd.db")
  echo "$result stored=$(($(field "$after" checks) - $(field "$before" checks)))" \
    "approved=$(($(field "$after" approved) - $(field "$before" approved)))"
}
# R_NGINXS[i] runs before check round i+1 and after round i (index 0: after
# healthz too), so there is one more nginx run than check rounds.
R_NGINXS=()
R_CHECKS=()
for round in $(seq 1 "$ROUNDS"); do
  R_NGINXS+=("$(nginx_run "nginx-$round")")
  log "round $round/$ROUNDS: otpd POST /v1/verifications/{id}/check (wrong code) over $POOL verifications"
  R_CHECKS+=("$(check_run "check-$round")")
done
R_NGINXS+=("$(nginx_run "nginx-$((ROUNDS + 1))")")
# ------------------------------------------------- TOTP users, then verify
# Enrolled after the check run, so that the check run measures the store as it
# was (150k more factors and their audit rows make every table larger).
# Each user verifies once (a time step is accepted once per factor): enough
# users for 1.6x the check probe's rate (a verify now runs as fast as a check).
# Each wrk thread owns 1/THREADS of them, and the threads do not run equally
# fast (one did 9% more than the average on 2026-11-27 and ran out of its
# 150,000 users: 305 replays), hence the cap of 400,000 and not 300,000.
USERS_NEED=$(awk -v r="$probe_rps" -v d="$DURATION_S" 'BEGIN { print int(1.6 * r * d) + 1000 }')
[[ "$USERS_NEED" -le "$MAX_TOTP_USERS" ]] || USERS_NEED=$MAX_TOTP_USERS
log "enrolling $USERS_NEED TOTP users ..."
t0=$(date +%s.%N)
python3 "$BENCH/totp_users.py" create "$OTPD_URL" "$API_KEY" "$USERS_NEED" "$TMP/totp-secrets.txt" \
  "$CREATE_PARALLEL" || die "enrolling TOTP users failed (see $TMP/otpd.log)"
t1=$(date +%s.%N)
USERS=$(wc -l <"$TMP/totp-secrets.txt")
log "enrolled $USERS in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"

R_NGINX_VERIFY=$(nginx_run nginx-verify)
# Codes of the current time step, computed just before the run (a code stays
# acceptable for one step either side, and the run is shorter than a step).
python3 "$BENCH/totp_users.py" codes "$TMP/totp-secrets.txt" "$TMP/totp-codes.txt"
log "otpd POST /v1/users/{user}/verify (right TOTP codes) over $USERS users"
python3 "$BENCH/store_counts.py" steps "$TMP/otpd.db" "$TMP/steps-before.txt"
R_VERIFY=$(BENCH_KEY="$API_KEY" BENCH_CODES="$TMP/totp-codes.txt" \
  run_wrk verify "$OTPD_URL" "$BENCH/wrk_verify.lua" "$DURATION")
sleep 0.5
R_VERIFY="$R_VERIFY stored=$(python3 "$BENCH/store_counts.py" steps "$TMP/otpd.db" \
  "$TMP/steps-after.txt" --since "$TMP/steps-before.txt" | sed 's/^accepted=//')"
R_NGINX_VERIFY_AFTER=$(nginx_run nginx-verify-after)
kill -0 "$OTPD_PID" 2>/dev/null || die "otpd died during the runs (see $TMP/otpd.log)"

# ------------------------------------------------------------------- report
# ratio RPS BASE [DIGITS]: RPS / BASE (a ceiling); the verdicts use 6 digits
# (2 rounded 0.2457 up to 0.25)
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-3}" 'BEGIN { printf "%.*f", d, a / b }'; }
# ceiling BEFORE AFTER: the mean req/s of the two nginx runs beside an otpd run.
ceiling() { awk -v a="$(field "$1" rps)" -v b="$(field "$2" rps)" 'BEGIN { printf "%.1f", (a + b) / 2 }'; }
ok() {  # ok CONDITION-AWK-EXPR
  awk "BEGIN { exit !($1) }" && echo "met" || echo "MISSED"
}
row() {  # row NAME RESULT CEILING TARGET VERDICT (CEILING: req/s, or "" for an nginx run)
  local r=$2 ratio_text="-"
  [[ -n "$3" ]] && ratio_text=$(ratio "$(field "$r" rps)" "$3")
  printf "%-38s %10s %8s %8s %9s %6s  %-28s %-7s %5s %5s %7s %7s %s\n" "$1" "$(field "$r" rps)" \
    "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" "${3:--}" "$ratio_text" "$4" "$5" \
    "$(field "$r" cpu)" "$(field "$r" busy)" "$(awk -v c="$(field "$r" cpu)" -v r="$(field "$r" rps)" \
      'BEGIN { printf "%.1f", c * 1e6 / r }')" "$(awk -v d="$(field "$r" reads)" \
      -v n="$(field "$r" requests)" 'BEGIN { if (d == 0) print "-"; else printf "%.3f", d / n }')" \
    "$(field "$r" answers)$(
      e=$(field "$r" errors); [[ "$e" == 0 ]] || echo " socket-errors:$e")$(
      [[ "$r" != *" stored="* ]] || echo " stored:$(field "$r" stored)")"
}
all_ok() { [[ "$(field "$1" http_errors)" == 0 && "$(field "$1" errors)" == 0 ]]; }
# stored_ok RESULT: the store changed by what the answers claim: at least one
# write per answer, and at most CONNECTIONS more (requests still in flight when
# wrk stopped are answered, and written, after it counted).
stored_ok() {
  awk -v s="$(field "$1" stored)" -v n="$(field "$1" requests)" -v c="$CONNECTIONS" \
    'BEGIN { exit !(s >= n && s <= n + c) }'
}
median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

H_CEILING=$(ceiling "$R_NGINX_HEALTH" "${R_NGINXS[0]}")
h_ratio=$(ratio "$(field "$R_HEALTH" rps)" "$H_CEILING" 6)
health_ok=$(ok "$h_ratio >= 0.6")
all_ok "$R_HEALTH" || health_ok="INVALID"

# The check: a verdict per round, and the one that counts on the medians.
c_ratios=""
c_p99s=""
ROUND_OK=()
C_CEILINGS=()
for i in "${!R_CHECKS[@]}"; do
  r=${R_CHECKS[$i]}
  C_CEILINGS+=("$(ceiling "${R_NGINXS[$i]}" "${R_NGINXS[$((i + 1))]}")")
  c_ratio=$(ratio "$(field "$r" rps)" "${C_CEILINGS[$i]}" 6)
  c_ratios="$c_ratios $c_ratio"
  c_p99s="$c_p99s $(field "$r" p99_ms)"
  verdict=$(ok "$c_ratio >= 0.25 && $(field "$r" p99_ms) < 10")
  all_ok "$r" || verdict="INVALID"
  [[ "$(field "$r" approved)" == 0 ]] || {
    verdict="INVALID"
    log "round $((i + 1)): $(field "$r" approved) verifications were approved by wrong codes"
  }
  stored_ok "$r" || {
    verdict="INVALID"
    log "round $((i + 1)): the store counted $(field "$r" stored) checks for $(field "$r" requests) answers"
  }
  ROUND_OK+=("$verdict")
done
c_ratio=$(median <<<"${c_ratios# }")
c_p99=$(median <<<"${c_p99s# }")
check_ok=$(ok "$c_ratio >= 0.25 && $c_p99 < 10")
# One invalid round makes the whole check invalid.
[[ " ${ROUND_OK[*]} " != *" INVALID "* ]] || check_ok="INVALID"

V_CEILING=$(ceiling "$R_NGINX_VERIFY" "$R_NGINX_VERIFY_AFTER")
verify_ok=$(ok "$(ratio "$(field "$R_VERIFY" rps)" "$V_CEILING" 6) >= 0.25")
all_ok "$R_VERIFY" || verify_ok="INVALID"
# Every verify must have been a right, fresh code, accepted: a factor moved to
# a new time step in the store per answer. Fewer mean the user pool ran out
# (replays) and the run measured refusals.
stored_ok "$R_VERIFY" || {
  verify_ok="INVALID"
  log "the store accepted $(field "$R_VERIFY" stored) codes for $(field "$R_VERIFY" requests) verifies (pool of $USERS users too small?)"
}

# The disk's fsync latency sets the floor of a durable check's latency (each
# answer waits for an fdatasync that began after its commit): measure it here,
# where the store lives, right after the runs.
FSYNC=$(python3 - "$TMP" <<'PY' 2>/dev/null || echo "not measured"
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
samples = []
for _ in range(50):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter()
    os.fdatasync(fd)
    samples.append((time.perf_counter() - t) * 1e3)
os.close(fd)
os.unlink(path)
samples.sort()
print("p50 %.2f ms, p90 %.2f ms" % (samples[25], samples[45]))
PY
)

echo
echo "otpd load benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores," \
  "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, otpd threads=$OTPD_THREADS log-level=$OTPD_LOG_LEVEL"
echo "check pool: $POOL pending verifications (+$PROBE_IDS probed), created at ~$CREATE_RATE/s;" \
  "at most $(for r in "${R_CHECKS[@]}"; do field "$r" requests; done |
    awk -v p="$POOL" -v t="$THREADS" '{ n += int(($1 / t) / int(p / t)) + 2 } END { print n }'
  ) checks each over the $ROUNDS rounds (max_checks $MAX_CHECKS)"
echo "verify pool: $USERS users with an active TOTP factor, each verified once with its current code"
echo "app limits: $BENCH_LIMITS (per-app request rate and SMS-pumping guard off for the bench app;" \
  "per-recipient start limit and max_checks as configured)"
echo
printf "%-38s %10s %8s %8s %9s %6s  %-28s %-7s %5s %5s %7s %7s %s\n" "run" "req/s" "p50 ms" \
  "p99 ms" "ceiling" "ratio" "target" "verdict" "cpu" "busy" "us/req" "rd/req" "answers"
row "nginx return 200" "$R_NGINX_HEALTH" "" "-" "-"
row "otpd GET /healthz" "$R_HEALTH" "$H_CEILING" ">= 0.60x nginx" "$health_ok"
for i in "${!R_CHECKS[@]}"; do
  row "nginx return 200" "${R_NGINXS[$i]}" "" "-" "-"
  row "otpd POST .../check (round $((i + 1)))" "${R_CHECKS[$i]}" "${C_CEILINGS[$i]}" \
    ">= 0.25x nginx, p99 < 10 ms" "${ROUND_OK[$i]}"
done
row "nginx return 200" "${R_NGINXS[$ROUNDS]}" "" "-" "-"
printf "%-38s %10s %8s %8s %9s %6s  %-28s %-7s\n" "otpd POST /v1/verifications/{id}/check" \
  "median" "-" "$c_p99" "-" "$(awk -v r="$c_ratio" 'BEGIN { printf "%.3f", r }')" \
  ">= 0.25x nginx, p99 < 10 ms" "$check_ok"
row "nginx return 200" "$R_NGINX_VERIFY" "" "-" "-"
row "otpd POST /v1/users/{user}/verify" "$R_VERIFY" "$V_CEILING" ">= 0.25x nginx" "$verify_ok"
row "nginx return 200" "$R_NGINX_VERIFY_AFTER" "" "-" "-"
echo
echo "otpd CPU by thread, microseconds per request:"
by_thread() { printf "  %-36s %s\n" "$1" "$(field "$2" threads | tr ',' '\n' | sort | paste -sd' ')"; }
by_thread "GET /healthz" "$R_HEALTH"
for i in "${!R_CHECKS[@]}"; do by_thread "POST .../check (round $((i + 1)))" "${R_CHECKS[$i]}"; done
by_thread "POST /v1/users/{user}/verify" "$R_VERIFY"
echo
echo "ceiling = mean req/s of the nginx runs just before and just after an otpd run; ratio = req/s /" \
  "ceiling; the check's verdict is on the median of its $ROUNDS rounds' ratios and p99s;"
echo "cpu = cores the server used (user+sys) during its run;"
echo "busy = cores the whole machine used during the run (server, wrk and anything else, of" \
  "$(nproc)), from /proc/stat;"
echo "us/req = server CPU microseconds per request; rd/req = read() calls per request by otpd's" \
  "store writer (pages its cache did not hold; - = none);"
echo "answers = ok:count of answers below 400 (error:count of the rest); stored = checks counted" \
  "(verify: codes accepted) in the store during the run, read from the database;"
echo "INVALID = not all answers ok, a wrong code approved, or stored not between the answers and" \
  "answers + connections (those still in flight when wrk stopped)"
echo "load average before/after the runs: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
echo "fdatasync of 4 KiB appends in the store's directory (50 samples, after the runs): $FSYNC"
