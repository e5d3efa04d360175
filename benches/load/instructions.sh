#!/usr/bin/env bash
# Instructions per request: Outpost runs under callgrind (valgrind) and
# serves one path through the load benchmark's origin while wrk sends it
# requests; the user-space instructions it executed, divided by the
# requests, come out the same from run to run (within ~1 %), unlike req/s
# on a shared VM (±10 % and more). Use it to compare two builds of the
# request path; confirm a gain with run.sh, since instructions are not
# time (the kernel's share is not counted at all).
#
#   benches/load/instructions.sh [--binary BIN] [--config FILE] [--seconds N]
#                                [--top N] [--nginx] [--unpinned] [--cache-sim]
#                                [--connections N] PATH...
#   benches/load/instructions.sh /pass/1k.bin /1k.bin
#
# --nginx counts nginx instead, configured as in run.sh (nginx-cache.conf, one
# worker, its master process off so that callgrind sees the worker): the
# same figure for the peer, to compare the two request paths.
#
# --config serves with another config (its proxy on 127.0.0.1:18083, its
# one site in front of 127.0.0.1:18080), e.g. security.sh's guarded.toml;
# its storage directory is emptied before each path.
#
# --unpinned leaves Outpost unpinned: it then runs its multi-thread runtime
# (one worker per CPU; callgrind runs one thread at a time), which counts
# what that scheduler adds per request.
#
# --cache-sim has callgrind simulate the caches and branch predictors too
# (a model, not this CPU: this VM has no hardware counters) and prints the
# misses per request: instruction and data L1 misses (32 KiB each),
# misses of a 512 KiB second level (a core's L2 on this host; callgrind's
# "last level"), and mispredicted conditional and indirect branches.
# --connections sets wrk's connections (16 by default; run.sh uses 64):
# more connections, more state that does not stay in the caches.
#
# PATH is served from the load benchmark's content (1k.bin, 100k.bin,
# pass/1k.bin); keys:PATH:N asks for one of N keys of PATH at random
# (keys:/pass/1k.bin:10000 is run.sh's pass-keys), keys:PATH:0 for a new
# key every time (miss-keys). Prints, per path: requests, instructions per
# request, and the functions with the most instructions of their own per
# request. Uses the ports of run.sh (18080, 18083): not while run.sh runs.
# Installs valgrind from Debian's packages when missing; stops what it
# started.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN="$ROOT/target/release/outpost"
SECS=10
TOP=25
CONF=
NGINX=
UNPINNED=
SIM=()
CONNS=16
PATHS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BIN=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --top) TOP=$2; shift ;;
    --config) CONF=$2; shift ;;
    --nginx) NGINX=1 ;;
    --unpinned) UNPINNED=1 ;;
    --cache-sim) SIM=(--cache-sim=yes --branch-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=524288,8,64) ;;
    --connections) CONNS=$2; shift ;;
    -*) echo "unknown argument $1" >&2; exit 2 ;;
    *) PATHS+=("$1") ;;
  esac
  shift
done
[ ${#PATHS[@]} -gt 0 ] || PATHS=(/pass/1k.bin /1k.bin)

"$HERE/install.sh" >/dev/null
if ! command -v valgrind >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind
fi
. "$HERE/lib.sh"
[ -z "$UNPINNED" ] || PROXY_CPU=()
[ -n "$NGINX" ] || build_outpost
setup_run "${LOAD_BASE:-/tmp/outpost-load}/instructions/www" "${LOAD_BASE:-/tmp/outpost-load}/instructions/run"
guard 1800
[ -n "$CONF" ] || CONF="$RUN/outpost.toml"
CACHE_DIR=$(awk -F'"' '/^path *=/{print $2; exit}' "$CONF")

PORT=18083
if [ -n "$NGINX" ]; then
  PORT=18081
  sed "s|@RUN@|$RUN|g; s|@WWW@|$WWW|g; s|@WORKERS@|1|g; s|^daemon off;|daemon off;\nmaster_process off;|" \
    "$HERE/nginx-cache.conf" > "$RUN/nginx-cache.conf"
fi

fetch() { # one request, answer discarded
  exec 3<>/dev/tcp/127.0.0.1/$PORT
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$1" "$PORT" >&3
  cat <&3 >/dev/null
  exec 3<&-
}

start_origin

for path in "${PATHS[@]}"; do
  rm -rf "${CACHE_DIR:-$RUN/outpost-cache}" "$RUN/nginx-cache" "$RUN"/callgrind.*
  if [ -n "$NGINX" ]; then
    "${PROXY_CPU[@]}" valgrind --tool=callgrind "${SIM[@]}" --callgrind-out-file="$RUN/callgrind.%p" \
      nginx -p "$RUN" -c "$RUN/nginx-cache.conf" > "$RUN/nginx.log" 2>&1 &
  else
    "${PROXY_CPU[@]}" valgrind --tool=callgrind "${SIM[@]}" --callgrind-out-file="$RUN/callgrind.%p" \
      "$BIN" serve --config "$CONF" > "$RUN/outpost.log" 2>&1 &
  fi
  P=$!
  PIDS+=($P)
  wait_port $PORT
  # keys:PATH:N asks for PATH?k=<one of N> at random (run.sh's pass-keys,
  # hot-10k), keys:PATH:0 for a new key every time (miss-keys).
  LOAD=("http://127.0.0.1:$PORT$path")
  base=$path
  unset LOAD_PATH LOAD_KEYS
  if [[ $path == keys:* ]]; then
    rest=${path#keys:}
    base=${rest%:*}
    export LOAD_PATH=$base LOAD_KEYS=${rest##*:}
    LOAD=(-s "$HERE/keys.lua" "http://127.0.0.1:$PORT/")
  fi
  for _ in 1 2 3 4 5; do fetch "$base"; done
  if [ "${LOAD_KEYS:-0}" -gt 0 ]; then
    # Every key asked for once before counting: under callgrind wrk's rate
    # is low enough that first requests for a URL (a store lookup, the
    # origin's answer stored or marked hit-for-pass) would otherwise be a
    # large share of those counted, where run.sh's rounds see few.
    urls=()
    for ((k = 0; k < LOAD_KEYS; k++)); do urls+=("http://127.0.0.1:$PORT$base?k=$k"); done
    curl -s -o /dev/null "${urls[@]}" > /dev/null
  fi
  callgrind_control -z "$P" >/dev/null
  out=$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" "${LOAD[@]}")
  n=$(echo "$out" | awk '/requests in/{print $1}')
  callgrind_control -d "$P" >/dev/null
  kill -TERM "$P" 2>/dev/null || true
  wait "$P" 2>/dev/null || true
  dump="$RUN/callgrind.$P.1"
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
  echo "$path  requests=$n  instructions/request=$(awk -v t="$total" -v n="$n" 'BEGIN{printf "%.0f", t/n}')"
  if [ ${#SIM[@]} -gt 0 ]; then
    # Every event callgrind counted, per request (Ir instructions; I1mr,
    # D1mr, D1mw L1 misses; ILmr, DLmr, DLmw last-level misses; Bc, Bi
    # conditional and indirect branches, Bcm, Bim their mispredictions).
    callgrind_annotate "$dump" 2>/dev/null | awk -v n="$n" '
      /^Events shown:/ { for (i = 3; i <= NF; i++) ev[i - 2] = $i; k = NF - 2 }
      /PROGRAM TOTALS/ { line = "  per request:"
        # Each count is followed by its share, "(100.0%)".
        for (i = 1; i <= k; i++) { v = $(2 * i - 1); gsub(",", "", v); line = line sprintf(" %s %.1f", ev[i], v / n) }
        print line }'
  fi
  [ "$TOP" -gt 0 ] || continue
  # Own instructions per request, largest first (entries above 20,000 are
  # whole call trees callgrind charges to the frames open at the dump).
  callgrind_annotate --threshold=100 --auto=no "$dump" 2>/dev/null \
    | sed -n '/file:function/,$p' \
    | awk -v n="$n" '{x=$1; gsub(",","",x); if (x+0 > 0 && x/n < 20000) {$1=""; $2=""; $3=""; printf "  %7.0f %s\n", x/n, $0}}' \
    | sed 's|/root/.cargo/registry/src/[^/]*/||; s|/rustc/[0-9a-f]*/library/||' \
    | head -"$TOP" | cut -c1-160 || true
done
