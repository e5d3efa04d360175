#!/usr/bin/env bash
# Where Outpost's CPU goes under load: perf samples (user and kernel, with
# call graphs) of Outpost serving one scenario of the load benchmark, as a
# text report of the hottest functions and, when inferno is available, a
# flamegraph (SVG). The profiles behind benches/load/README.md were taken
# this way.
#
#   benches/load/profile.sh [--binary BIN] [--seconds N] [--top N] [--no-svg]
#                           [--unpinned] SCENARIO...
#   benches/load/profile.sh hit-100k pass-1k
#
# SCENARIO is one of hit-1k, hit-100k, hit-1m, pass-1k, hot-10k and
# disk-set (2 GiB of 100 KiB objects behind a 256 MiB memory tier; its
# warm-up writes the set through Outpost first, ~1 minute). Pinned as in
# run.sh: Outpost on CPU 0, the origin and wrk (-t1 -c64) on CPU 1;
# --unpinned pins nothing (Outpost then runs its multi-thread runtime, as
# in run.sh's unpinned mode).
# Results go to $LOAD_BASE/profile/out (default /tmp/outpost-load):
# SCENARIO.txt (report) and SCENARIO.svg (flamegraph). Uses the ports of
# run.sh (18080, 18083): not while run.sh runs. Installs perf from Debian's
# packages and inferno (`cargo install`, into $LOAD_BASE/tools) when
# missing; stops everything it started by PID and gives up after 30 min.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN="$ROOT/target/release/outpost"
SECS=10
TOP=40
SVG=1
UNPINNED=0
SCENARIOS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BIN=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --top) TOP=$2; shift ;;
    --no-svg) SVG=0 ;;
    --unpinned) UNPINNED=1 ;;
    -*) echo "unknown argument $1" >&2; exit 2 ;;
    *) SCENARIOS+=("$1") ;;
  esac
  shift
done
[ ${#SCENARIOS[@]} -gt 0 ] || { echo "usage: $0 [options] SCENARIO..." >&2; exit 2; }
for s in "${SCENARIOS[@]}"; do
  case "$s" in
    hit-1k | hit-100k | hit-1m | pass-1k | hot-10k | disk-set) ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
done

# Installs perf too.
"$HERE/install.sh" >/dev/null
BASE=${LOAD_BASE:-/tmp/outpost-load}
TOOLS=$BASE/tools
if [ "$SVG" = 1 ] && ! command -v inferno-flamegraph >/dev/null 2>&1 \
  && [ ! -x "$TOOLS/bin/inferno-flamegraph" ]; then
  echo "== installing inferno (flamegraphs) into $TOOLS"
  cargo install -q --locked --root "$TOOLS" inferno
fi
export PATH="$TOOLS/bin:$PATH"
. "$HERE/lib.sh"
if [ "$UNPINNED" = 1 ]; then
  PROXY_CPU=()
  LOAD_CPU=()
fi
MODE=$([ "$UNPINNED" = 1 ] && echo unpinned || echo pinned)
build_outpost
setup_run "$BASE/www" "$BASE/profile/run"
OUT=$BASE/profile/out
mkdir -p "$OUT"
TOOL="$HERE/loadtool.py"
HOT_N=10000
DISK_N=$(( 2048 * 1024 / 100 ))
guard 1800
start_origin

for s in "${SCENARIOS[@]}"; do
  # What wrk asks for, and how the cache is warmed first.
  WRK_ARGS=()
  case "$s" in
    hit-1k) path=/1k.bin ;;
    hit-100k) path=/100k.bin ;;
    hit-1m) path=/1m.bin ;;
    pass-1k) path=/pass/1k.bin ;;
    hot-10k) dir=hot; n=$HOT_N; size=1024 ;;
    disk-set) dir=disk; n=$DISK_N; size=102400 ;;
  esac
  case "$s" in
    hot-10k | disk-set)
      python3 "$TOOL" genset "$WWW/$dir" "$n" "$size"
      path=/
      WRK_ARGS=(-s "$HERE/random.lua")
      export LOAD_DIR=$dir LOAD_N=$n ;;
  esac
  rm -rf "$RUN/outpost-cache"
  "${PROXY_CPU[@]}" "$BIN" serve --config "$RUN/outpost.toml" > "$RUN/outpost.log" 2>&1 &
  P=$!
  PIDS+=($P)
  wait_port 18083
  case "$s" in
    hot-10k | disk-set) python3 "$TOOL" warm "127.0.0.1:18083" "/$dir/" "$n" 16 >/dev/null ;;
    *) for _ in 1 2 3; do python3 "$TOOL" warm "127.0.0.1:18083" "$path" 0 1 >/dev/null; done ;;
  esac
  # An unmeasured run first, as run.sh does (connections, first allocations).
  "${LOAD_CPU[@]}" wrk -t1 -c64 -d2s "${WRK_ARGS[@]}" "http://127.0.0.1:18083$path" >/dev/null
  data="$RUN/$s.perf.data"
  perf record -q -F 1999 -g -p "$P" -o "$data" -- sleep "$SECS" >/dev/null 2>&1 &
  REC=$!
  PIDS+=($REC)
  out=$("${LOAD_CPU[@]}" wrk -t1 -c64 -d"${SECS}s" "${WRK_ARGS[@]}" "http://127.0.0.1:18083$path")
  wait "$REC" || true
  kill -TERM "$P" 2>/dev/null || true
  wait "$P" 2>/dev/null || true
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  {
    echo "# $s: $rps req/s under perf ($MODE, wrk -t1 -c64 -d${SECS}s), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "# self time per binary"
    perf report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null \
      | grep -v '^#' | grep '%' | head -8 || true
    echo "# self time per function, user and kernel"
    perf report -i "$data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
      | grep -v '^#' | grep '%' | head -"$TOP" || true # head closing the pipe early
  } > "$OUT/$s.txt"
  echo "== $s: $rps req/s under perf; report $OUT/$s.txt"
  head -"$(( TOP < 15 ? TOP + 2 : 17 ))" "$OUT/$s.txt" || true
  if [ "$SVG" = 1 ]; then
    perf script -i "$data" 2>/dev/null | inferno-collapse-perf 2>/dev/null \
      | inferno-flamegraph --title "Outpost $s ($rps req/s under perf)" > "$OUT/$s.svg"
    echo "   flamegraph $OUT/$s.svg"
  fi
  rm -f "$data"
  unset LOAD_DIR LOAD_N
done
