#!/usr/bin/env bash
# TLS at the edge: Outpost against nginx proxy_cache on the same ECDSA
# P-256 certificate (made here with openssl), TLS 1.3, one run.
#
#   benches/load/tls.sh [--duration SECS] [--rounds N] [--connections N]
#                       [--bin PATH]
#
# Scenarios:
#   tls-hit1k      keep-alive hits of a cached 1 KiB object over TLS;
#   tls-handshake  a new connection (full handshake) per request
#                  (`Connection: close`).
# Pinned as run.sh: each proxy on CPU 0, wrk and the origin on CPU 1. Each
# round runs both proxies back to back, in rotating order; the table gives
# the median req/s (handshakes/s for tls-handshake), p99 and the proxy's CPU
# µs per request (utime + stime of its processes over the requests).
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
setup_run "$BASE/www" "$BASE/tls"
guard 1200

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
  -keyout "$RUN/bench.key" -out "$RUN/bench.crt" -subj /CN=bench.test \
  -addext "subjectAltName=DNS:bench.test" 2> /dev/null
cat > "$RUN/nginx-tls.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 65536;
pid $RUN/nginx-tls.pid;
error_log $RUN/nginx-tls.error.log warn;
daemon off;
events { worker_connections 16384; multi_accept on; }
http {
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    proxy_cache_path $RUN/nginx-cache levels=1:2 keys_zone=edge:64m max_size=1g inactive=1d use_temp_path=off;
    upstream origin { server 127.0.0.1:18080; keepalive 128; }
    server {
        listen 127.0.0.1:18091 ssl http2 reuseport backlog=4096;
        ssl_certificate $RUN/bench.crt;
        ssl_certificate_key $RUN/bench.key;
        ssl_protocols TLSv1.3 TLSv1.2;
        ssl_session_cache shared:SSL:10m;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_cache edge;
            proxy_cache_key \$scheme\$host\$request_uri;
        }
    }
}
EOF
cat > "$RUN/outpost-tls.toml" <<EOF
[listen]
proxy = "127.0.0.1:18093"
admin = "127.0.0.1:19093"
tls = "127.0.0.1:18092"
[storage]
path = "$RUN/outpost-cache"
memory = "256MiB"
disk = "1GiB"
[log]
level = "warn"
access_log = false
[[tls.certificates]]
cert = "$RUN/bench.crt"
key = "$RUN/bench.key"
[[site]]
origins = ["http://127.0.0.1:18080"]
EOF
"${LOAD_CPU[@]}" nginx -p "$RUN" -c "$RUN/origin.conf" &
PIDS+=($!)
wait_port 18080
"${PROXY_CPU[@]}" nginx -p "$RUN" -c "$RUN/nginx-tls.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
"${PROXY_CPU[@]}" "$BIN" serve --config "$RUN/outpost-tls.toml" > "$RUN/outpost.log" 2>&1 &
OUTPOST_PID=$!
PIDS+=($OUTPOST_PID)
wait_port 18091
wait_port 18092
declare -A PORT=([outpost]=18092 [nginx]=18091)
TCK=$(getconf CLK_TCK)
# CPU ticks of a process and its children (nginx's workers).
ticks() {
  local p total=0
  for p in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) printf "%.3f", v/1000; else if (v ~ /ms$/) printf "%.3f", v+0; else if (v ~ /s$/) printf "%.3f", v*1000; else print v }'; }

# Warm both caches.
for px in outpost nginx; do
  curl -sk -o /dev/null --resolve "bench.test:${PORT[$px]}:127.0.0.1" "https://bench.test:${PORT[$px]}/1k.bin"
  curl -sk -o /dev/null --resolve "bench.test:${PORT[$px]}:127.0.0.1" "https://bench.test:${PORT[$px]}/1k.bin"
done
declare -A RPS CPU P99
run() { # scenario proxy round
  local scen=$1 px=$2 r=$3 pid args out c0 c1 reqs
  [ "$px" = outpost ] && pid=$OUTPOST_PID || pid=$NGINX_PID
  args=(-t1 -c"$CONNS" -d"${DUR}s" --latency -H "Host: bench.test")
  [ "$scen" = tls-handshake ] && args+=(-H "Connection: close")
  c0=$(ticks "$pid")
  out=$("${LOAD_CPU[@]}" wrk "${args[@]}" "https://127.0.0.1:${PORT[$px]}/1k.bin")
  c1=$(ticks "$pid")
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local rps p99 cpu errs
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  p99=$(to_ms "$(echo "$out" | awk '$1=="99%"{print $2}')")
  cpu=$(awk -v t=$((c1 - c0)) -v k="$TCK" -v n="$reqs" 'BEGIN{ printf "%.1f", t/k*1e6/n }')
  errs=$(echo "$out" | awk '/Non-2xx/{print "non-2xx " $5} /Socket errors/{print $0}' | tr '\n' ' ')
  printf '  %-14s %-8s r%s %10s req/s  p99 %8s ms  cpu %6s us/req %s\n' "$scen" "$px" "$r" "$rps" "$p99" "$cpu" "$errs"
  RPS[$scen,$px]="${RPS[$scen,$px]:-} $rps"
  CPU[$scen,$px]="${CPU[$scen,$px]:-} $cpu"
  P99[$scen,$px]="${P99[$scen,$px]:-} $p99"
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{ print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2) }'; }
PROXIES=(outpost nginx)
for scen in tls-hit1k tls-handshake; do
  for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1; do
      run "$scen" "${PROXIES[$(( (i + r - 1) % 2 ))]}" "$r"
    done
  done
done
echo
echo "Commit $(cd "$ROOT" && git rev-parse --short HEAD), $(date -u +%F), $(nginx -v 2>&1 | sed 's/.*nginx\//nginx /'), wrk -t1 -c$CONNS -d${DUR}s, $ROUNDS rounds; proxies on CPU 0, wrk and origin on CPU 1; ECDSA P-256, TLS 1.3."
echo
echo "| scenario | proxy | req/s (median) | p99 ms | CPU µs/req | vs nginx |"
echo "|---|---|---:|---:|---:|---:|"
for scen in tls-hit1k tls-handshake; do
  n=$(echo "${RPS[$scen,nginx]}" | median)
  for px in outpost nginx; do
    v=$(echo "${RPS[$scen,$px]}" | median)
    printf '| %s | %s | %s | %s | %s | %s× |\n' "$scen" "$px" "$v" \
      "$(echo "${P99[$scen,$px]}" | median)" "$(echo "${CPU[$scen,$px]}" | median)" \
      "$(awk -v a="$v" -v b="$n" 'BEGIN{ printf "%.2f", a/b }')"
  done
done
