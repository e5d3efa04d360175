#!/usr/bin/env bash
# Connections at scale: N idle HTTP/1.1 keep-alive connections (one request
# each, then silent) held against Outpost and against nginx (nginx-cache.conf,
# one worker), and 64 active ones driven by wrk meanwhile. Reports the memory
# the idle connections added to the proxy (RSS, every process of it) and per
# connection, the time from connect to the whole first answer while they
# open (p50/p99/max), the active clients' req/s and p99, and how many idle
# connections were still open at the end.
#
#   benches/load/conns.sh [--idle N[,N...]] [--duration SECS] [--bin PATH] [--h2 | --tls]
#
# --h2: the idle connections speak HTTP/2 with prior knowledge (h2c; nginx gets
# a second listener with `http2` for them, as its 1.22 takes either protocol on
# a cleartext port, not both), the active ones HTTP/1.1 as before.
# --tls: the idle connections speak HTTP/1.1 over TLS 1.3 (ALPN http/1.1, one
# ECDSA P-256 certificate made here with openssl); each proxy gets a TLS
# listener for them, the active ones stay on cleartext HTTP/1.1.
#
# The idle connections come from 127.0.0.2, .3, ... (20,000 per address, so
# ephemeral ports never run out). Each connection is a descriptor in the
# client and one in the proxy: N needs a hard RLIMIT_NOFILE above N on both
# sides (the script says so and skips an N it cannot hold).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN="$ROOT/target/release/outpost"
IDLE="10000,50000"
DUR=10
PROTO=h1
while [ $# -gt 0 ]; do
  case "$1" in
    --idle) IDLE=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --bin) BIN=$2; shift ;;
    --h2) PROTO=h2 ;;
    --tls) PROTO=h1tls ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
# shellcheck source=lib.sh
. "$HERE/lib.sh"
"$HERE/install.sh" > /dev/null
build_outpost
BASE=${LOAD_BASE:-/tmp/outpost-load}
setup_run "$BASE/www" "$BASE/conns"
sed "s|@RUN@|$RUN|g; s|@WORKERS@|1|g" "$HERE/nginx-cache.conf" > "$RUN/nginx-cache.conf"
if [ "$PROTO" = h2 ]; then
  sed -i 's|^\( *\)listen 127.0.0.1:18081 reuseport backlog=4096;|&\n\1listen 127.0.0.1:18084 http2 backlog=4096;|' "$RUN/nginx-cache.conf"
fi
if [ "$PROTO" = h1tls ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -keyout "$RUN/bench.key" -out "$RUN/bench.crt" -subj /CN=bench.test \
    -addext "subjectAltName=DNS:bench.test" 2> /dev/null
  sed -i "s|^\( *\)listen 127.0.0.1:18081 reuseport backlog=4096;|&\n\1listen 127.0.0.1:18085 ssl backlog=4096;\n\1ssl_certificate $RUN/bench.crt;\n\1ssl_certificate_key $RUN/bench.key;|" \
    "$RUN/nginx-cache.conf"
  sed -i 's|^admin = .*|&\ntls = "127.0.0.1:18092"|' "$RUN/outpost.toml"
  printf '\n[[tls.certificates]]\ncert = "%s"\nkey = "%s"\n' "$RUN/bench.crt" "$RUN/bench.key" >> "$RUN/outpost.toml"
fi
guard 3600
start_origin
HARD=$(ulimit -Hn)
ulimit -Sn "$HARD"


ROWS=()
for n in ${IDLE//,/ }; do
  if [ "$HARD" -le $((n + 64)) ]; then
    echo "skipping $n idle connections: the hard open-file limit here is $HARD (a proxy process and the client each need one descriptor per connection)" >&2
    ROWS+=("| $n | — | skipped: hard RLIMIT_NOFILE $HARD | | | | |")
    continue
  fi
  for p in outpost nginx; do
    start_peer "$p" "$RUN/outpost.toml" "$RUN/nginx-cache.conf"
    curl -s -o /dev/null "http://127.0.0.1:$PORT/1k.bin"
    "${LOAD_CPU[@]}" wrk -t1 -c64 -d2s "http://127.0.0.1:$PORT/1k.bin" > /dev/null
    sleep 1
    before=$(tree_rss "$PID")
    IPORT=$PORT
    [ "$PROTO" = h2 ] && [ "$p" = nginx ] && IPORT=18084
    [ "$PROTO" = h1tls ] && IPORT=$([ "$p" = nginx ] && echo 18085 || echo 18092)
    coproc IDLER { "${LOAD_CPU[@]}" python3 "$HERE/loadtool.py" idle "127.0.0.1:$IPORT" /1k.bin "$n" 20000 256 "$PROTO"; }
    read -r opened <&"${IDLER[0]}"
    read -r ready <&"${IDLER[0]}"
    [ "$ready" = ready ] || { echo "$p: idle client: $opened $ready" >&2; exit 1; }
    sleep 2
    after=$(tree_rss "$PID")
    out=$("${LOAD_CPU[@]}" wrk -t1 -c64 -d"${DUR}s" --latency "http://127.0.0.1:$PORT/1k.bin")
    echo >&"${IDLER[1]}"
    read -r alive <&"${IDLER[0]}"
    wait "$IDLER_PID" 2>/dev/null || true
    kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    p99=$(echo "$out" | awk '$1=="99%"{print $2}')
    added=$(( (after - before) * 1024 ))
    per=$(( added / n ))
    first=$(echo "$opened" | sed 's/.*first_p50_ms=\([^ ]*\) first_p99_ms=\([^ ]*\) first_max_ms=\([^ ]*\).*/\1 \/ \2 \/ \3 ms/')
    printf '  %-8s idle=%s %s | added %s MiB, %s B each | wrk %s req/s p99 %s | %s\n' \
      "$p" "$n" "$opened" "$((added >> 20))" "$per" "$rps" "$p99" "$alive"
    ROWS+=("| $n | $p | $((added >> 20)) MiB | $per B | $first | $rps | $p99 | ${alive#alive=} |")
  done
done
echo
echo "Commit $(cd "$ROOT" && git rev-parse --short HEAD), $(date -u +%F): N idle keep-alive $PROTO connections (one GET /1k.bin each), then wrk -t1 -c64 -d${DUR}s on /1k.bin; proxies on CPU 0, clients and origin on CPU 1; nginx with one worker."
echo
echo "| idle | proxy | memory added | per idle connection | connect to first answer p50 / p99 / max | active req/s | active p99 | idle still open |"
echo "|---:|---|---:|---:|---|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
