#!/usr/bin/env bash
# Compressed hits: a 100 KiB HTML page cached and asked for with
# `Accept-Encoding: gzip` (gzip-hit100k) and `br` (br-hit100k), Outpost
# against nginx with proxy_cache and `gzip on` / `brotli on` at the same
# levels (nginx-compress.conf). Outpost compresses each coding once and
# serves it from the store; nginx compresses every response. Also the size of
# each proxy's answer. The default levels are chosen on
# `cargo bench --bench compression` (size and speed of every level).
#
#   benches/load/compression.sh [--duration SECS] [--rounds N]
#                               [--connections N] [--bin PATH]
#
# The proxies on CPU 0, wrk and the origin on CPU 1.
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
setup_run "$BASE/www" "$BASE/compression"
guard 1800
GZIP_LEVEL=6
BR_LEVEL=6

# A 100 KiB page of real text in HTML: the licences Debian ships, marked up.
mkdir -p "$WWW/html"
python3 - "$WWW/html/page.html" <<'PY'
import glob, html, sys
text = ""
for p in sorted(glob.glob("/usr/share/common-licenses/*")):
    try:
        text += open(p, encoding="utf-8", errors="replace").read()
    except (IsADirectoryError, PermissionError):
        pass
out = ['<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Licences</title>'
       '<link rel="stylesheet" href="/s.css"></head><body><main class="content">']
for i, para in enumerate(p for p in text.split("\n\n") if p.strip()):
    out.append(f'<section id="s{i}" class="para"><p>{html.escape(para.strip())}</p>'
               f'<a class="anchor" href="#s{i}">#</a></section>')
    if sum(map(len, out)) > 102400:
        break
page = "\n".join(out)[:102400 - 16] + "</main></body></html>"
open(sys.argv[1], "w").write(page)
PY
sed "s|@RUN@|$RUN|g; s|@WORKERS@|1|g; s|@GZIP_LEVEL@|$GZIP_LEVEL|g; s|@BR_LEVEL@|$BR_LEVEL|g" \
  "$HERE/nginx-compress.conf" > "$RUN/nginx-compress.conf"
cat > "$RUN/outpost-compress.toml" <<TOML
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
[compression]
gzip_level = $GZIP_LEVEL
br_level = $BR_LEVEL
[[site]]
name = "bench"
origins = ["http://127.0.0.1:18080"]
TOML
"$BIN" check --config "$RUN/outpost-compress.toml" > /dev/null
start_origin

URL=/html/page.html
TCK=$(getconf CLK_TCK)
declare -A RPS CPU P99 SIZE
PROXIES=(outpost nginx)
for sc in gzip br; do
  for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1; do
      p=${PROXIES[$(( (i + r - 1) % 2 ))]}
      start_peer "$p" "$RUN/outpost-compress.toml" "$RUN/nginx-compress.conf"
      for _ in 1 2 3; do curl -s -o /dev/null -H "Accept-Encoding: $sc" "http://127.0.0.1:$PORT$URL"; done
      SIZE[$sc,$p]=$(curl -s -H "Accept-Encoding: $sc" "http://127.0.0.1:$PORT$URL" | wc -c)
      enc=$(curl -s -o /dev/null -D - -H "Accept-Encoding: $sc" "http://127.0.0.1:$PORT$URL" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding"{print $2}')
      [ "$enc" = "$sc" ] || { echo "$p answered $sc with content-encoding '$enc'" >&2; exit 1; }
      "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d2s -H "Accept-Encoding: $sc" "http://127.0.0.1:$PORT$URL" > /dev/null
      c0=$(tree_ticks "$PID")
      out=$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -H "Accept-Encoding: $sc" "http://127.0.0.1:$PORT$URL")
      c1=$(tree_ticks "$PID")
      kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
      reqs=$(echo "$out" | awk '/requests in/{print $1}')
      rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
      p99=$(echo "$out" | awk '$1=="99%"{print $2}')
      cpu=$(awk -v t=$((c1 - c0)) -v k="$TCK" -v n="$reqs" 'BEGIN{ printf "%.1f", t/k*1e6/n }')
      printf '  %s-hit100k %-8s r%s %10s req/s  p99 %8s  cpu %7s us/req  %s bytes\n' "$sc" "$p" "$r" "$rps" "$p99" "$cpu" "${SIZE[$sc,$p]}"
      RPS[$sc,$p]="${RPS[$sc,$p]:-} $rps"
      CPU[$sc,$p]="${CPU[$sc,$p]:-} $cpu"
      P99[$sc,$p]="${P99[$sc,$p]:-} $p99"
    done
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{ print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2) }'; }
echo
echo "Commit $(cd "$ROOT" && git rev-parse --short HEAD), $(date -u +%F), wrk -t1 -c$CONNS -d${DUR}s, $ROUNDS rounds, proxies on CPU 0, wrk and origin on CPU 1; a $(wc -c < "$WWW/html/page.html")-byte HTML page, gzip level $GZIP_LEVEL, Brotli quality $BR_LEVEL (window 512 KiB)."
echo
echo "| scenario | proxy | req/s (median) | vs nginx | p99 (each round) | CPU µs/req | answer bytes |"
echo "|---|---|---:|---:|---:|---:|---:|"
for sc in gzip br; do
  n_rps=$(echo "${RPS[$sc,nginx]}" | median)
  for p in outpost nginx; do
    rps=$(echo "${RPS[$sc,$p]}" | median)
    printf '| %s-hit100k | %s | %s | %s | %s | %s | %s |\n' "$sc" "$p" "$rps" \
      "$(awk -v a="$rps" -v b="$n_rps" 'BEGIN{ printf "%.2f×", a/b }')" \
      "$(echo "${P99[$sc,$p]}" | xargs | tr ' ' '/')" \
      "$(echo "${CPU[$sc,$p]}" | median)" "${SIZE[$sc,$p]}"
  done
done
echo
echo "Sizes and speeds of every level on this page: OUTPOST_PAGE=$WWW/html/page.html cargo bench --bench compression"
