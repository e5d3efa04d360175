#!/usr/bin/env bash
# What balancing costs: Outpost's CPU per pass-through request with one
# origin, and with three behind round_robin and least_conn.
#
#   benches/load/pools.sh [--duration SECS] [--rounds N] [--connections N]
#                         [--bin PATH]
#
# One Outpost with three sites chosen by Host: `one.bench` (one origin),
# `rr3.bench` and `lc3.bench` (three origins, round_robin and least_conn).
# The origins are one nginx listening on three ports. Outpost and the
# origin share CPU 0 (the origin's work is part of a pass-through request's
# cost on a real node's core), wrk runs on CPU 1. Each round runs the three
# sites back to back, in an order that rotates from round to round; the
# table gives the median CPU µs per request of the Outpost process (its
# utime + stime over the requests wrk completed) and req/s.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN="$ROOT/target/release/outpost"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
parse_rounds_args "$@"
"$HERE/install.sh" > /dev/null
build_outpost
BASE=${LOAD_BASE:-/tmp/outpost-load}
setup_run "$BASE/www" "$BASE/pools"
guard 900

# The origin on three ports.
sed -i 's|listen 127.0.0.1:18080 reuseport backlog=4096;|listen 127.0.0.1:18080 reuseport backlog=4096;\n        listen 127.0.0.1:18084 reuseport backlog=4096;\n        listen 127.0.0.1:18085 reuseport backlog=4096;|' "$RUN/origin.conf"
cat > "$RUN/pools.toml" <<EOF
[listen]
proxy = "127.0.0.1:18083"
admin = "127.0.0.1:19083"
[storage]
path = "$RUN/outpost-cache"
memory = "64MiB"
disk = "256MiB"
[log]
level = "warn"
access_log = false
[[site]]
name = "one"
hosts = ["one.bench"]
origins = ["http://127.0.0.1:18080"]
[[site]]
name = "rr3"
hosts = ["rr3.bench"]
origins = ["http://127.0.0.1:18080", "http://127.0.0.1:18084", "http://127.0.0.1:18085"]
balance = "round_robin"
[[site]]
name = "lc3"
hosts = ["lc3.bench"]
origins = ["http://127.0.0.1:18080", "http://127.0.0.1:18084", "http://127.0.0.1:18085"]
balance = "least_conn"
EOF
"${PROXY_CPU[@]}" nginx -p "$RUN" -c "$RUN/origin.conf" &
PIDS+=($!)
wait_port 18080
"${PROXY_CPU[@]}" "$BIN" serve --config "$RUN/pools.toml" > "$RUN/outpost.log" 2>&1 &
OUTPOST_PID=$!
PIDS+=($OUTPOST_PID)
wait_port 18083
TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

SITES=(one rr3 lc3)
declare -A CPU RPS
for s in "${SITES[@]}"; do
  # Warm: origin connections open, buffers allocated.
  "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d2s -H "Host: $s.bench" http://127.0.0.1:18083/pass/1k.bin > /dev/null
done
for r in $(seq 1 "$ROUNDS"); do
  for i in 0 1 2; do
    s=${SITES[$(( (i + r - 1) % 3 ))]}
    c0=$(ticks "$OUTPOST_PID")
    out=$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DUR}s" -H "Host: $s.bench" http://127.0.0.1:18083/pass/1k.bin)
    c1=$(ticks "$OUTPOST_PID")
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/{print $5}')
    cpu=$(awk -v t=$((c1 - c0)) -v k="$TCK" -v n="$reqs" 'BEGIN{ printf "%.2f", t/k*1e6/n }')
    printf '  %-4s r%s %10s req/s  cpu %6s us/req %s\n' "$s" "$r" "$rps" "$cpu" "${non2xx:+non-2xx $non2xx}"
    CPU[$s]="${CPU[$s]:-} $cpu"
    RPS[$s]="${RPS[$s]:-} $rps"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{ print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2) }'; }
one=$(echo "${CPU[one]}" | median)
echo
echo "Commit $(cd "$ROOT" && git rev-parse --short HEAD), $(date -u +%F), wrk -t1 -c$CONNS -d${DUR}s, $ROUNDS rounds, Outpost and origin on CPU 0, wrk on CPU 1."
echo
echo "| site | origins | req/s (median) | CPU µs/req (median) | vs one origin |"
echo "|---|---|---:|---:|---:|"
for s in "${SITES[@]}"; do
  c=$(echo "${CPU[$s]}" | median)
  n=$([ "$s" = one ] && echo "1" || echo "3, ${s/rr3/round_robin}")
  n=${n/lc3/least_conn}
  printf '| %s | %s | %s | %s | %s |\n' "$s" "$n" "$(echo "${RPS[$s]}" | median)" "$c" \
    "$(awk -v a="$c" -v b="$one" 'BEGIN{ printf "%+.1f %%", (a/b-1)*100 }')"
done
