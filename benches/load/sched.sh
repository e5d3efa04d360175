#!/usr/bin/env bash
# What the scheduler does per request on every core: Outpost (its
# multi-thread runtime, a worker per CPU) and nginx (a worker per CPU)
# serve one scenario with nothing pinned, as in run.sh's unpinned mode,
# while `perf stat` counts, over every thread of the proxy: context
# switches (a worker parking), migrations between CPUs, wake-ups the proxy
# makes (of its own threads, the origin and the load generator), futex and
# epoll_wait calls, all system calls, and CPU time. Each figure is divided
# by the requests wrk completed in the same window.
#
#   benches/load/sched.sh [--binary BIN] [--seconds N] [--rounds N]
#                         [--origin-with-proxy] SCENARIO...
#   benches/load/sched.sh pass-1k hit-1k
#
# --origin-with-proxy: run.sh's mode of that name instead (one worker per
# proxy, the proxy and the origin on CPU 0, wrk on CPU 1). The origin's
# CPU time and context switches per request are counted too.
#
# SCENARIO is hit-1k or pass-1k. Rounds alternate the two proxies; the
# table gives each figure's median. Uses the ports of run.sh (18080, 18081,
# 18083): not while run.sh runs. Installs perf from Debian's packages when
# missing; stops everything it started by PID and gives up after 30 min.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN="$ROOT/target/release/outpost"
SECS=8
ROUNDS=3
SCENARIOS=()
WITH_PROXY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BIN=$2; shift ;;
    --origin-with-proxy) WITH_PROXY=1 ;;
    --seconds) SECS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    -*) echo "unknown argument $1" >&2; exit 2 ;;
    *) SCENARIOS+=("$1") ;;
  esac
  shift
done
[ ${#SCENARIOS[@]} -gt 0 ] || { echo "usage: $0 [options] SCENARIO..." >&2; exit 2; }
for s in "${SCENARIOS[@]}"; do
  case "$s" in
    hit-1k | pass-1k) ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
done

# Installs perf too.
"$HERE/install.sh" >/dev/null
ulimit -n 65536 2>/dev/null || true
. "$HERE/lib.sh"
build_outpost
BASE=${LOAD_BASE:-/tmp/outpost-load}
setup_run "$BASE/www" "$BASE/sched/run"
if [ "$WITH_PROXY" = 1 ]; then
  # The proxy and the origin on CPU 0, the load on CPU 1, a worker each.
  MODE="pinned, the origin on the proxy's CPU"
  WORKERS=1
  ORIGIN_CPU=("${PROXY_CPU[@]}")
else
  # Nothing pinned: every process may use every CPU.
  MODE=unpinned
  WORKERS=$(nproc)
  PROXY_CPU=()
  LOAD_CPU=()
  ORIGIN_CPU=()
fi
sed "s|@RUN@|$RUN|g; s|@WWW@|$WWW|g; s|@WORKERS@|$WORKERS|g" "$HERE/nginx-cache.conf" \
  > "$RUN/nginx-cache.conf"
guard 1800
"${ORIGIN_CPU[@]}" nginx -p "$RUN" -c "$RUN/origin.conf" &
ORIGIN_PID=$!
PIDS+=($ORIGIN_PID)
wait_port 18080
TOOL="$HERE/loadtool.py"
EVENTS=task-clock,context-switches,cpu-migrations,sched:sched_wakeup,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,raw_syscalls:sys_enter
COLS=(task-clock context-switches cpu-migrations sched:sched_wakeup syscalls:sys_enter_futex syscalls:sys_enter_epoll_wait raw_syscalls:sys_enter)
RAW="$RUN/rows"
: > "$RAW"

# per_request STAT EVENT REQUESTS: perf stat's figure for EVENT divided by
# the requests: task-clock (ms) as µs, the rest as counts.
per_request() {
  local v
  v=$(awk -F, -v e="$2" '$3 == e {print $1}' "$1")
  if [ "$2" = task-clock ]; then
    awk -v v="$v" -v n="$3" 'BEGIN{printf "%.1f", v * 1000 / n}'
  else
    awk -v v="$v" -v n="$3" 'BEGIN{printf "%.3f", v / n}'
  fi
}

# measure PROXY SCENARIO: one round; appends "proxy scenario req/s figures..."
measure() {
  local proxy=$1 s=$2 path
  case "$s" in
    hit-1k) path=/1k.bin ;;
    pass-1k) path=/pass/1k.bin ;;
  esac
  start_peer "$proxy" "$RUN/outpost.toml" "$RUN/nginx-cache.conf"
  for _ in 1 2 3; do python3 "$TOOL" warm "127.0.0.1:$PORT" "$path" 0 1 >/dev/null; done
  wrk -t1 -c64 -d2s "http://127.0.0.1:$PORT$path" >/dev/null
  local pids
  pids=$(echo "$PID" $(pgrep -P "$PID" || true) | tr ' ' ',')
  perf stat -x, -e "$EVENTS" -p "$pids" -o "$RUN/stat" -- sleep "$SECS" &
  local st=$!
  local opids
  opids=$(echo "$ORIGIN_PID" $(pgrep -P "$ORIGIN_PID" || true) | tr ' ' ',')
  perf stat -x, -e task-clock,context-switches -p "$opids" -o "$RUN/ostat" -- sleep "$SECS" &
  local ost=$!
  local out
  out=$("${LOAD_CPU[@]}" wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:$PORT$path")
  wait "$st" || true
  wait "$ost" || true
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  local reqs
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local row="$proxy $s $(echo "$out" | awk '/Requests\/sec/{print $2}')"
  local c
  for c in "${COLS[@]}"; do row="$row $(per_request "$RUN/stat" "$c" "$reqs")"; done
  for c in task-clock context-switches; do
    row="$row $(per_request "$RUN/ostat" "$c" "$reqs")"
  done
  echo "$row" >> "$RAW"
  echo "   $row"
}

for s in "${SCENARIOS[@]}"; do
  for r in $(seq 1 "$ROUNDS"); do
    echo "== $s round $r"
    measure outpost "$s"
    measure nginx "$s"
  done
done

echo
echo "# Per request, $MODE, wrk -t1 -c64 -d${SECS}s, medians of $ROUNDS rounds, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
echo "| scenario | proxy | req/s | CPU µs | context switches | migrations | wake-ups made | futex | epoll_wait | syscalls | origin CPU µs | origin context switches |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for s in "${SCENARIOS[@]}"; do
  for p in outpost nginx; do
    awk -v p="$p" -v s="$s" '$1 == p && $2 == s' "$RAW" | python3 -c '
import sys, statistics
rows = [l.split() for l in sys.stdin if l.strip()]
cols = list(zip(*rows))
med = [statistics.median(float(x) for x in c) for c in cols[2:]]
fmt = ["{:,.0f}", "{:.1f}"] + ["{:.3f}"] * 6 + ["{:.1f}", "{:.3f}"]
print("| " + rows[0][1] + " | " + rows[0][0] + " | " + " | ".join(f.format(m) for f, m in zip(fmt, med)) + " |")
'
  done
done
