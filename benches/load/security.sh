#!/usr/bin/env bash
# What the edge controls cost on the hit path: hit-1k req/s and CPU per
# request of Outpost with none of them, and with a 100,000-entry deny file,
# twenty request rules (none matching, so every matcher runs) and a rate
# limit (high enough never to refuse), in one run.
#
#   benches/load/security.sh [--duration SECS] [--rounds N]
#                            [--connections N] [--bin PATH]
#
# Outpost on CPU 0, wrk and the origin on CPU 1 (a hit never reaches the
# origin). Each round starts Outpost with each config in turn (the order
# rotating), warms the object, then measures; the table gives medians.
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
setup_run "$BASE/www" "$BASE/security"
guard 1200
start_origin

# 100,000 deny entries: single addresses and /24s, none of them loopback.
python3 - "$RUN/deny.txt" <<'PY'
import random, sys
r = random.Random(7)
with open(sys.argv[1], "w") as f:
    f.write("# generated deny list\n")
    for i in range(100_000):
        a = r.randrange(1 << 24, 0x7F000000)  # 1.0.0.0 .. 126.255.255.255
        ip = ".".join(str((a >> s) & 255) for s in (24, 16, 8, 0))
        f.write(f"{ip}/24\n" if i % 10 == 0 else f"{ip}\n")
PY

base_config() {
  cat <<EOF
[listen]
proxy = "127.0.0.1:18083"
admin = "127.0.0.1:19083"
[storage]
path = "$RUN/outpost-cache-$1"
memory = "64MiB"
disk = "256MiB"
[log]
level = "warn"
access_log = false
EOF
}
base_config plain > "$RUN/plain.toml"
printf '[[site]]\nname = "bench"\norigins = ["http://127.0.0.1:18080"]\n' >> "$RUN/plain.toml"
{
  base_config guarded
  printf '[access]\ndeny_file = "%s"\n' "$RUN/deny.txt"
  printf '[[site]]\nname = "bench"\norigins = ["http://127.0.0.1:18080"]\n'
  printf '[site.rate_limit]\nrequests = 10000000\nperiod = "1s"\n'
  for i in $(seq 0 19); do
    printf '[[site.rules]]\nname = "rule-%s"\naction = "deny"\n' "$i"
    case $((i % 5)) in
      0) printf 'path_prefix = "/private-%s/"\n' "$i" ;;
      1) printf 'path_regex = "^/(wp-admin|phpmyadmin|cgi-bin)/%s\\\\.php$"\n' "$i" ;;
      2) printf 'header = { name = "User-Agent", regex = "(?i)(sqlmap|nikto|scanner-%s)" }\n' "$i" ;;
      3) printf 'client = ["198.51.%s.0/24"]\n' "$i" ;;
      4) printf 'query_regex = "(^|&)debug%s=1(&|$)"\n' "$i" ;;
    esac
  done
} > "$RUN/guarded.toml"
"$BIN" check --config "$RUN/guarded.toml" > /dev/null

TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
VARIANTS=(plain guarded)
declare -A CPU RPS
for r in $(seq 1 "$ROUNDS"); do
  for i in 0 1; do
    v=${VARIANTS[$(( (i + r - 1) % 2 ))]}
    rm -rf "$RUN/outpost-cache-$v"
    "${PROXY_CPU[@]}" "$BIN" serve --config "$RUN/$v.toml" > "$RUN/outpost-$v.log" 2>&1 &
    pid=$!
    wait_port 18083
    "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d2s http://127.0.0.1:18083/1k.bin > /dev/null
    c0=$(ticks "$pid")
    out=$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DUR}s" http://127.0.0.1:18083/1k.bin)
    c1=$(ticks "$pid")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/{print $5}')
    cpu=$(awk -v t=$((c1 - c0)) -v k="$TCK" -v n="$reqs" 'BEGIN{ printf "%.2f", t/k*1e6/n }')
    printf '  %-8s r%s %10s req/s  cpu %6s us/req %s\n' "$v" "$r" "$rps" "$cpu" "${non2xx:+non-2xx $non2xx}"
    CPU[$v]="${CPU[$v]:-} $cpu"
    RPS[$v]="${RPS[$v]:-} $rps"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{ print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2) }'; }
p_rps=$(echo "${RPS[plain]}" | median)
p_cpu=$(echo "${CPU[plain]}" | median)
echo
echo "Commit $(cd "$ROOT" && git rev-parse --short HEAD), $(date -u +%F), wrk -t1 -c$CONNS -d${DUR}s, $ROUNDS rounds, Outpost on CPU 0, wrk on CPU 1."
echo
echo "| config | hit-1k req/s (median) | vs none | CPU µs/req (median) | vs none |"
echo "|---|---:|---:|---:|---:|"
for v in "${VARIANTS[@]}"; do
  rps=$(echo "${RPS[$v]}" | median)
  cpu=$(echo "${CPU[$v]}" | median)
  name=$([ "$v" = plain ] && echo "no controls" || echo "100k deny file, 20 rules, rate limit")
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$rps" \
    "$(awk -v a="$rps" -v b="$p_rps" 'BEGIN{ printf "%+.1f %%", (a/b-1)*100 }')" "$cpu" \
    "$(awk -v a="$cpu" -v b="$p_cpu" 'BEGIN{ printf "%+.1f %%", (a/b-1)*100 }')"
done
