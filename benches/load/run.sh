#!/usr/bin/env bash
# The load benchmark: Outpost against nginx proxy_cache and Varnish, each
# in front of the same static origin, on loopback, in one run.
#
#   benches/load/run.sh [--unpinned] [--origin-with-proxy] [--duration SECS] [--connections N]
#                       [--rounds N] [--disk-set-mb MB] [--warmup SECS]
#                       [--steal-max PCT] [--steal-retries N] [--out FILE]
#                       [--client-rcvbuf BYTES] [--scenarios LIST] [--binary BIN]
#
# --scenarios takes a comma-separated subset of hit-1k, hit-100k, hit-1m,
# hot-10k, pass-1k, pass-keys, miss-keys, disk-set and storm (default: all
# but pass-keys and miss-keys, in that order), for looking at one scenario
# without the full run's 20 minutes. pass-keys: 10,000 distinct uncacheable
# URLs (/pass/1k.bin?k=N) at random; miss-keys: a new cacheable URL on every
# request (/1k.bin?k=<tag>-<n>), every request a miss (keys.lua).
# --origin-with-proxy (pinned mode): the origin runs on CPU 0 with the
# proxies, so the origin's share of a pass-through or a miss is on the
# proxy's CPU as it is when nothing is pinned, and wrk alone on CPU 1.
# Pinned mode (default): every proxy on CPU 0, wrk and the origin on CPU 1.
# Each scenario runs --rounds times (3) per proxy, the proxies' order
# rotating from round to round; the table gives each column's median and
# the req/s range, so one slow moment of the VM does not decide a ratio.
# A round during which the host took more than --steal-max percent (5) of
# the VM's CPU for other guests (/proc/stat steal) is run again, up to
# --steal-retries times (2); the last attempt is kept, with its steal.
# Prints one markdown table and writes it (with date and machine) to
# benches/load/RESULTS.md unless --out says otherwise. Stops everything it
# started (by PID) and kills itself after LOAD_TIME_BOUND seconds (1800).
#
# --client-rcvbuf (4 MiB; 0 = the host's setting) is the receive buffer a
# new TCP socket starts with (the middle of net.ipv4.tcp_rmem, restored on
# exit; needs root, else the host's setting is kept and the table says
# so). With the kernel's 128 KiB start, one saturated wrk on loopback left
# the receive windows' autotuning to chance: in some rounds the client's
# window paced every 1 MiB response, whatever the proxy (nginx's hit-1m
# always, Outpost's in 0–4 of 5 rounds; benches/load/README.md, "Method").
#
# --binary runs that Outpost binary instead of building the checkout's (to
# compare two builds, or a build with other runtime settings, run by run).
set -euo pipefail
CMDLINE="benches/load/run.sh${*:+ $*}"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MODE=pinned
ORIGIN_WITH_PROXY=0
DUR=10
CONNS=64
ROUNDS=3
DISK_SET_MB=2048
WARM_DUR=2
STEAL_MAX=5
STEAL_RETRIES=2
CLIENT_RCVBUF=4194304
SCENARIOS=all
OUT="$HERE/RESULTS.md"
OUTPOST_BIN=
while [ $# -gt 0 ]; do
  case "$1" in
    --unpinned) MODE=unpinned ;;
    --pinned) MODE=pinned ;;
    --origin-with-proxy) ORIGIN_WITH_PROXY=1 ;;
    --duration) DUR=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --disk-set-mb) DISK_SET_MB=$2; shift ;;
    --warmup) WARM_DUR=$2; shift ;;
    --steal-max) STEAL_MAX=$2; shift ;;
    --steal-retries) STEAL_RETRIES=$2; shift ;;
    --out) OUT=$2; shift ;;
    --client-rcvbuf) CLIENT_RCVBUF=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --binary) OUTPOST_BIN=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
ALL_SCENARIOS=hit-1k,hit-100k,hit-1m,hot-10k,pass-1k,pass-keys,miss-keys,disk-set,storm
[ "$SCENARIOS" = all ] && SCENARIOS=hit-1k,hit-100k,hit-1m,hot-10k,pass-1k,disk-set,storm
for s in ${SCENARIOS//,/ }; do
  case ",$ALL_SCENARIOS," in
    *",$s,"*) ;;
    *) echo "unknown scenario $s (known: $ALL_SCENARIOS)" >&2; exit 2 ;;
  esac
done
want() { case ",$SCENARIOS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
TIME_BOUND=${LOAD_TIME_BOUND:-1800}
BASE=${LOAD_BASE:-/tmp/outpost-load}
WWW=$BASE/www
RUN=$BASE/run
PY=python3
TOOL="$HERE/loadtool.py"

"$HERE/install.sh"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ -z "$OUTPOST_BIN" ]; then
  echo "== building outpost (release)"
  (cd "$ROOT" && cargo build --release --bin outpost -q)
  OUTPOST_BIN="$ROOT/target/release/outpost"
fi

echo "== generating content under $WWW"
mkdir -p "$WWW/pass" "$WWW/slow"
[ -f "$WWW/1k.bin" ] || $PY "$TOOL" gen "$WWW" 1k.bin 1024
[ -f "$WWW/100k.bin" ] || $PY "$TOOL" gen "$WWW" 100k.bin 102400
[ -f "$WWW/1m.bin" ] || $PY "$TOOL" gen "$WWW" 1m.bin 1048576
[ -f "$WWW/pass/1k.bin" ] || $PY "$TOOL" gen "$WWW/pass" 1k.bin 1024
[ -f "$WWW/slow/10m.bin" ] || $PY "$TOOL" gen "$WWW/slow" 10m.bin 10485760
HOT_N=10000
DISK_N=$(( DISK_SET_MB * 1024 / 100 ))
want hot-10k && $PY "$TOOL" genset "$WWW/hot" $HOT_N 1024
want disk-set && $PY "$TOOL" genset "$WWW/disk" $DISK_N 102400

rm -rf "$RUN"
mkdir -p "$RUN"
if [ "$MODE" = pinned ]; then
  PROXY_CPU=(taskset -c 0)
  LOAD_CPU=(taskset -c 1)
  WORKERS=1
else
  PROXY_CPU=()
  LOAD_CPU=()
  WORKERS=auto
fi
ORIGIN_CPU=("${LOAD_CPU[@]}")
[ "$ORIGIN_WITH_PROXY" = 1 ] && ORIGIN_CPU=("${PROXY_CPU[@]}")
# Varnish's malloc storage holds the largest working set (the disk set).
VARNISH_MEM="$(( DISK_SET_MB + 512 ))m"
render() { sed "s|@RUN@|$RUN|g; s|@WWW@|$WWW|g; s|@WORKERS@|$WORKERS|g" "$HERE/$1" > "$RUN/$1"; }
render origin.conf
render nginx-cache.conf
render varnish.vcl
render outpost.toml

RMEM=/proc/sys/net/ipv4/tcp_rmem
RMEM_SAVED=
RCVBUF_NOTE="the host's \`net.ipv4.tcp_rmem\` ($(tr -s '\t ' ' ' < "$RMEM"))"
if [ "$CLIENT_RCVBUF" != 0 ]; then
  RMEM_OLD=$(cat "$RMEM")
  read -r rmin _ rmax <<< "$RMEM_OLD"
  if { echo "$rmin $CLIENT_RCVBUF $rmax" > "$RMEM"; } 2>/dev/null; then
    RMEM_SAVED=$RMEM_OLD
    RCVBUF_NOTE="new sockets' receive buffers start at $CLIENT_RCVBUF bytes (\`net.ipv4.tcp_rmem\` $rmin $CLIENT_RCVBUF $rmax for the run)"
  else
    echo "warning: cannot write $RMEM (not root?): keeping the host's receive buffers" >&2
  fi
fi

PIDS=()
WATCHDOG=
cleanup() {
  [ -z "$RMEM_SAVED" ] || { echo "$RMEM_SAVED" > "$RMEM"; } 2>/dev/null || true
  # The watchdog's `sleep` too, or it outlives the run.
  [ -z "$WATCHDOG" ] || pkill -TERM -P "$WATCHDOG" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
( sleep "$TIME_BOUND"; echo "time bound of ${TIME_BOUND}s reached" >&2; kill -TERM $$ ) &
WATCHDOG=$!
PIDS+=($WATCHDOG)

echo "== starting the origin and the proxies ($MODE)"
"${ORIGIN_CPU[@]}" nginx -p "$RUN" -c "$RUN/origin.conf" &
PIDS+=($!)
"${PROXY_CPU[@]}" nginx -p "$RUN" -c "$RUN/nginx-cache.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
"${PROXY_CPU[@]}" varnishd -F -j none -n "$RUN/varnish" -a 127.0.0.1:18082 \
  -f "$RUN/varnish.vcl" -s "malloc,$VARNISH_MEM" -p thread_pool_min=50 \
  > "$RUN/varnish.log" 2>&1 &
VARNISH_PID=$!
PIDS+=($VARNISH_PID)
"${PROXY_CPU[@]}" "$OUTPOST_BIN" serve --config "$RUN/outpost.toml" > "$RUN/outpost.log" 2>&1 &
OUTPOST_PID=$!
PIDS+=($OUTPOST_PID)

wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  exit 1
}
for p in 18080 18081 18082 18083; do wait_port $p; done

declare -A PORT=([outpost]=18083 [nginx]=18081 [varnish]=18082)
declare -A ROOTPID=([outpost]=$OUTPOST_PID [nginx]=$NGINX_PID [varnish]=$VARNISH_PID)
PROXIES=(outpost nginx varnish)
TCK=$(getconf CLK_TCK)

tree() { # a process and its descendants
  local p=$1
  echo "$p"
  for c in $(pgrep -P "$p" 2>/dev/null); do tree "$c"; done
}
cpu_ticks() { # "user+system user" clock ticks of a process and its descendants
  local sum=0 usr=0
  for p in $(tree "$1"); do
    if [ -r "/proc/$p/stat" ]; then
      local f
      f=$(sed 's/^.*) //' "/proc/$p/stat")
      set -- $f
      sum=$(( sum + ${12} + ${13} ))
      usr=$(( usr + ${12} ))
    fi
  done
  echo "$sum $usr"
}
hwm_kb() {
  local sum=0
  for p in $(tree "$1"); do
    local v
    v=$(awk '/^VmHWM/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    sum=$(( sum + ${v:-0} ))
  done
  echo $sum
}
reset_hwm() { for p in $(tree "$1"); do echo 5 > "/proc/$p/clear_refs" 2>/dev/null || true; done; }
to_ms() { # wrk latency (e.g. 812.00us, 1.23ms, 1.02s) in ms
  awk -v v="$1" 'BEGIN{
    if (v ~ /us$/) { sub(/us$/,"",v); printf "%.3f", v/1000 }
    else if (v ~ /ms$/) { sub(/ms$/,"",v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/,"",v); printf "%.3f", v*60000 }
    else { sub(/s$/,"",v); printf "%.3f", v*1000 } }'
}

# Two fixed pieces of work on the proxies' CPU before and after each
# round, for the host's slow stretches, which the steal check does not see
# (every proxy's hit-100k at ~23 µs of CPU per request instead of ~17.5,
# steal 0): 20,000 pipe round trips between two threads (`perf
# bench sched pipe`, µs per round trip: scheduler and syscalls), and
# 256 MiB copied in 64 MiB blocks (`perf bench mem memcpy`, GB/s: memory
# bandwidth, which 64 clients reading 100 KiB-1 MiB responses lean on).
probe() {
  if command -v perf >/dev/null 2>&1; then
    "${PROXY_CPU[@]}" perf bench -f simple sched pipe -l 20000 2>/dev/null \
      | awk 'NF==1 && $1+0>0 {printf "%.2f", $1 / 20000 * 1e6; f=1} END{if (!f) print "-"}'
  else
    echo "-"
  fi
}
mem_probe() { # the better of two runs: a process's first copy is sometimes slow
  if command -v perf >/dev/null 2>&1; then
    for _ in 1 2; do
      "${PROXY_CPU[@]}" perf bench -f simple mem memcpy -f default -s 64MB -l 4 2>/dev/null
    done | awk 'NF==1 && $1+0>b {b=$1} END{if (b) printf "%.1f", b / 1e9; else print "-"}'
  else
    echo "-"
  fi
}
min_of() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "-") print b; else if (b == "-" || a + 0 <= b + 0) print a; else print b }'; }
max_of() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "-") print b; else if (b == "-" || a + 0 >= b + 0) print a; else print b }'; }

cpu_busy_ticks() { # "busy total" clock ticks of CPU 0 and of CPU 1 so far (/proc/stat)
  awk '/^cpu[01] /{t=0; for (i=2; i<=NF; i++) t+=$i; printf "%d %d ", t - $5 - $6, t}' /proc/stat
}
steal_ticks() { # "steal total" clock ticks of the whole VM so far (/proc/stat)
  awk '/^cpu /{t=0; for (i=2; i<=NF; i++) t+=$i; print $9, t}' /proc/stat
}

RAW="$RUN/rounds.txt"
: > "$RAW"
# TCP counters per response of each round (not in the table; printed with
# the round and kept in tcp.txt): segments sent on lo, pure ACKs, packets
# taken by the kernel's fast path (header prediction), delayed ACKs,
# zero-window adverts, packets queued to a socket's backlog. A round that
# runs in a different TCP mode from its neighbours shows here.
TCPLOG="$RUN/tcp.txt"
echo "scenario|proxy|round|segs|pure acks|fast path|delayed acks|zero window|backlog" > "$TCPLOG"
export NSTAT_HISTORY="$RUN/nstat.history"
tcp_per_response() { # tcp_per_response REQUESTS: counters since the last call, per response
  { nstat 2>/dev/null || true; } | awk -v n="$1" '{ v[$1] = $2 } END {
    if (n + 0 <= 0) { print "-|-|-|-|-|-"; exit }
    printf "%.2f|%.2f|%.2f|%.2f|%.3f|%.2f\n", v["TcpOutSegs"] / n, v["TcpExtTCPPureAcks"] / n,
      (v["TcpExtTCPHPHits"] + v["TcpExtTCPHPAcks"]) / n, v["TcpExtDelayedACKs"] / n,
      (v["TcpExtTCPToZeroWindowAdv"] + v["TcpExtTCPWantZeroWindowAdv"]) / n, v["TcpExtTCPBacklogCoalesce"] / n }'
}
# The wrk script for a scenario's LUA_DIR: `keys:PATH` takes keys.lua
# (PATH with a varying query), anything else random.lua (a set's files).
lua_script() {
  case $1 in
    keys:*) echo "$HERE/keys.lua" ;;
    *) echo "$HERE/random.lua" ;;
  esac
}
# run_wrk SCENARIO PROXY ROUND URL_PATH [LUA_DIR LUA_N]
run_wrk() {
  local scen=$1 px=$2 round=$3 path=$4 luadir=${5:-} luan=${6:-}
  local pid=${ROOTPID[$px]} port=${PORT[$px]}
  local args=(-t1 -c"$CONNS" -d"${DUR}s" --latency)
  if [ -n "$luadir" ]; then args+=(-s "$(lua_script "$luadir")"); fi
  local c0 c1 out s0 s1 b0 b1 busy steal attempt=0 pr mp tcp
  while :; do
    pr=$(probe)
    mp=$(mem_probe)
    reset_hwm "$pid"
    c0=$(cpu_ticks "$pid")
    s0=$(steal_ticks)
    b0=$(cpu_busy_ticks)
    nstat -n 2>/dev/null || true
    out=$(LOAD_DIR=$luadir LOAD_N=$luan LOAD_PATH=${luadir#keys:} LOAD_KEYS=$luan \
      "${LOAD_CPU[@]}" wrk "${args[@]}" "http://127.0.0.1:$port$path")
    b1=$(cpu_busy_ticks)
    tcp=$(tcp_per_response "$(echo "$out" | awk '/requests in/{print $1}')")
    s1=$(steal_ticks)
    c1=$(cpu_ticks "$pid")
    pr=$(max_of "$pr" "$(probe)")
    mp=$(min_of "$mp" "$(mem_probe)")
    # The share of the VM's CPU time the host took for other guests
    # during the round: a round with a high figure ran on less machine.
    # How busy each CPU was: in pinned mode CPU 0 is the proxy's, CPU 1
    # wrk's and the origin's. A round with CPU 1 at ~100 % measured the
    # client's ceiling more than the proxy.
    busy=$(echo "$b0 $b1" | awk '{ printf "%s/%s", ($2 < $6 ? sprintf("%.0f", 100 * ($5 - $1) / ($6 - $2)) : "-"), ($4 < $8 ? sprintf("%.0f", 100 * ($7 - $3) / ($8 - $4)) : "-") }')
    steal=$(echo "$s0 $s1" | awk '{ if ($4 > $2) printf "%.1f", 100 * ($3 - $1) / ($4 - $2); else print "-" }')
    if [ "$attempt" -ge "$STEAL_RETRIES" ] || awk -v s="$steal" -v m="$STEAL_MAX" 'BEGIN{ exit !(s == "-" || s + 0 <= m + 0) }'; then
      break
    fi
    attempt=$((attempt + 1))
    printf '  %-10s %-8s r%s  steal %s %% > %s %%: round run again\n' "$scen" "$px" "$round" "$steal" "$STEAL_MAX"
  done
  local rps reqs p50 p99 errs mem cpu usr
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  p50=$(to_ms "$(echo "$out" | awk '$1=="50%"{print $2}')")
  p99=$(to_ms "$(echo "$out" | awk '$1=="99%"{print $2}')")
  errs=$(echo "$out" | awk '/Non-2xx/{print $5} /Socket errors/{print "sock"}' | tr '\n' ' ')
  mem=$(( $(hwm_kb "$pid") / 1024 ))
  # CPU (user + system) and its user part, µs per request.
  read -r cpu usr < <(echo "$c0 $c1" | awk -v k="$TCK" -v n="$reqs" '{
    if (n > 0) printf "%.1f %.1f\n", ($3 - $1) / k * 1e6 / n, ($4 - $2) / k * 1e6 / n; else print "- -" }')
  echo "$scen|$px|$round|$rps|$p50|$p99|$cpu|$mem|${errs:-}|$steal|$pr|$busy|$mp|$usr" >> "$RAW"
  echo "$scen|$px|$round|$tcp" >> "$TCPLOG"
  printf '  %-10s %-8s r%s %10s req/s  p50 %8s ms  p99 %8s ms  cpu %6s us/req (user %5s)  peak %5s MiB  steal %4s %%  probe %5s us %5s GB/s  busy %7s %%  tcp %s %s\n' \
    "$scen" "$px" "$round" "$rps" "$p50" "$p99" "$cpu" "$usr" "$mem" "$steal" "$pr" "$mp" "$busy" "$tcp" "${errs:-}"
}
# scenario NAME URL_PATH [LUA_DIR LUA_N]: ROUNDS rounds over the proxies,
# the order rotating so that no proxy always runs first.
scenario() {
  local r i px n=${#PROXIES[@]}
  # An unmeasured wrk run against each proxy first, with the rounds'
  # connections: every proxy starts its rounds with its origin
  # connections open and its buffers allocated.
  if [ "$WARM_DUR" -gt 0 ]; then
    for px in "${PROXIES[@]}"; do
      local wargs=(-t1 -c"$CONNS" -d"${WARM_DUR}s")
      if [ -n "${3:-}" ]; then wargs+=(-s "$(lua_script "$3")"); fi
      local luadir=${3:-}
      LOAD_DIR=$luadir LOAD_N=${4:-} LOAD_PATH=${luadir#keys:} LOAD_KEYS=${4:-} "${LOAD_CPU[@]}" wrk "${wargs[@]}" \
        "http://127.0.0.1:${PORT[$px]}$2" > /dev/null
    done
  fi
  for r in $(seq 1 "$ROUNDS"); do
    for i in $(seq 0 $((n - 1))); do
      run_wrk "$1" "${PROXIES[$(( (i + r - 1) % n ))]}" "$r" "${@:2}"
    done
  done
}
warm() { # warm PROXY PATH_PREFIX COUNT (COUNT 0: PATH_PREFIX is one path)
  $PY "$TOOL" warm "127.0.0.1:${PORT[$1]}" "$2" "$3" 16
}

# After the proxies' start-up, which depresses the copy figure for a
# few seconds.
sleep 3
PROBE0=$(probe); MEM0=$(mem_probe)
for i in 1 2 3 4; do PROBE0=$(min_of "$PROBE0" "$(probe)"); MEM0=$(max_of "$MEM0" "$(mem_probe)"); done
echo "== host probes before the scenarios (best of 5): $PROBE0 µs per pipe round trip, memcpy $MEM0 GB/s"
echo "== scenarios (wrk -t1 -c$CONNS -d${DUR}s, $ROUNDS rounds)"
if want hit-1k; then
  for px in "${PROXIES[@]}"; do warm "$px" /1k.bin 0; warm "$px" /1k.bin 0; done
  scenario hit-1k /1k.bin
fi
if want hit-100k; then
  for px in "${PROXIES[@]}"; do warm "$px" /100k.bin 0; warm "$px" /100k.bin 0; done
  scenario hit-100k /100k.bin
fi
if want hit-1m; then
  for px in "${PROXIES[@]}"; do warm "$px" /1m.bin 0; warm "$px" /1m.bin 0; done
  scenario hit-1m /1m.bin
fi
if want hot-10k; then
  for px in "${PROXIES[@]}"; do warm "$px" /hot/ $HOT_N; done
  scenario hot-10k / hot $HOT_N
fi
if want pass-1k; then
  for px in "${PROXIES[@]}"; do warm "$px" /pass/1k.bin 0; done
  scenario pass-1k /pass/1k.bin
fi
if want pass-keys; then
  scenario pass-keys / keys:/pass/1k.bin 10000
fi
if want miss-keys; then
  scenario miss-keys / keys:/1k.bin 0
fi
if want disk-set; then
  for px in "${PROXIES[@]}"; do warm "$px" /disk/ $DISK_N; done
  scenario disk-set / disk $DISK_N
fi

STORM=()
if want storm; then
  echo "== miss storm: 1000 clients, one cold 10 MiB object"
  for px in "${PROXIES[@]}"; do
    before=$(grep -c "via=$px" "$RUN/origin.slow.log" 2>/dev/null || true)
    # The storm's client runs where wrk does (CPU 1 in pinned mode): left
    # to the scheduler, it sometimes ran on the proxy's CPU and took the
    # time to first byte from ~20 to 60-230 ms.
    res=$("${LOAD_CPU[@]}" $PY "$TOOL" storm "127.0.0.1:${PORT[$px]}" "/slow/10m.bin?via=$px" 1000)
    sleep 1
    after=$(grep -c "via=$px" "$RUN/origin.slow.log" 2>/dev/null || true)
    fetches=$(( ${after:-0} - ${before:-0} ))
    STORM+=("$px|$fetches|$res")
    echo "  $px: origin fetches=$fetches $res"
  done
fi

{
  echo "## Load benchmark — $(date -u +%Y-%m-%d) — $MODE"
  echo
  echo "Machine: $(nproc) CPUs ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)."
  echo "Peers: $(nginx -v 2>&1 | sed 's/.*: //'), $(varnishd -V 2>&1 | head -1 | sed 's/varnishd (//; s/ revision.*//'), wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}')."
  if [ "$MODE" = pinned ]; then PLACEMENT="proxies on CPU 0, wrk and origin on CPU 1"; else PLACEMENT="no CPU pinning"; fi
  [ "$MODE" = pinned ] && [ "$ORIGIN_WITH_PROXY" = 1 ] && PLACEMENT="proxies and origin on CPU 0, wrk on CPU 1"
  [ "$SCENARIOS" = "$ALL_SCENARIOS" ] || echo "Scenarios: $SCENARIOS only."
  echo "Command: \`$CMDLINE\` (wrk -t1 -c$CONNS -d${DUR}s, $ROUNDS rounds; $MODE: $PLACEMENT; $RCVBUF_NOTE)."
  echo
  if [ -s "$RAW" ]; then
    echo "Each row: the median of $ROUNDS rounds of wrk (-t1 -c$CONNS -d${DUR}s); the ratio is of medians; the next column takes it round by round (each round runs the proxies back to back, so it pairs runs seconds apart) and gives the median and range. A round during which the host stole more than $STEAL_MAX % of the VM's CPU was run again (up to $STEAL_RETRIES times, the last attempt kept); the steal column is the most any kept round lost. The probe columns are the worst host probes taken around any of the rounds, on the proxies' CPU: µs per round trip of \`perf bench sched pipe\` ($PROBE0 before the scenarios) and GB/s of \`perf bench mem memcpy\` over 64 MiB blocks ($MEM0 before); a figure well off those marks a round on a slower host. The busy column gives, as medians over the rounds, how busy CPU 0 and CPU 1 were (in pinned mode the proxy's and the client's): where CPU 1 is near 100 %, req/s is the client's ceiling and the CPU µs per request is the proxy's figure to compare."
    echo
    $PY "$TOOL" table "$RAW"
    echo
  fi
  if want storm; then
    echo "Miss storm (1000 concurrent clients, one cold 10 MiB object sent by the origin at ~20 MB/s):"
    echo
    echo "| proxy | origin fetches | result |"
    echo "|---|---:|---|"
    for r in "${STORM[@]}"; do
      IFS='|' read -r px f res <<< "$r"
      echo "| $px | $f | $res |"
    done
    echo
  fi
  echo "<details><summary>Every round (scenario|proxy|round|req/s|p50 ms|p99 ms|CPU µs/req|peak RSS MiB|errors|steal %|probe µs|CPU 0/1 busy %|memcpy GB/s)</summary>"
  echo
  echo '```'
  cat "$RAW"
  echo '```'
  echo "</details>"
} > "$RUN/table.md"
echo
cat "$RUN/table.md"
if [ -n "$OUT" ]; then
  { echo "# Load benchmark results"; echo; echo "Produced by \`benches/load/run.sh\`; see benches/load/README.md for the setup."; echo; cat "$RUN/table.md"; } > "$OUT"
  echo "written to $OUT"
fi
