#!/usr/bin/env bash
# A profile-guided build of Outpost (PGO): an instrumented build serves the
# load benchmark's scenarios for a while, and the release build is then
# compiled with the counts it recorded, so that the compiler lays out the
# request paths' hot code together and inlines along them. Outpost's request
# path is long, straight-line code (each layer's `async fn` one large
# `poll`), so the instruction cache is where it loses time; see
# benches/load/README.md for what this build changes.
#
#   benches/load/pgo.sh [--seconds N]
#
# Writes target/pgo/release/outpost (the optimised binary) and
# target/pgo/outpost.profdata (the merged profile); the instrumented build
# goes to target/pgo-gen. Two release builds (~7 min each on 2 cores).
# Training, N seconds per workload (default 5), on both runtimes (pinned to
# one CPU: the current-thread runtime; unpinned: the multi-thread one):
# pass-through of one URL and of 10,000, hits of 1 KiB and 100 KiB and of a
# hot set of 10,000 keys, misses of new objects, gzip and br responses of a
# text page, and hits over TLS with HTTP/1.1 and HTTP/2. Code no workload
# runs is compiled as cold, so a deployment whose traffic differs much
# (other features on the request path) should add its own workload here.
#
# Needs llvm-profdata of the toolchain's LLVM (rustup's llvm-tools
# component, added when missing), and wrk, curl, openssl and nginx (the
# origin), which install.sh installs. Uses the ports of run.sh: not while
# run.sh runs. Stops what it started by PID; gives up after 40 min.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SECS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
BIN="$ROOT/target/pgo-gen/release/outpost"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
"$HERE/install.sh" > /dev/null
guard 2400

# The toolchain rust-toolchain.toml pins, whose LLVM wrote the counts.
cd "$ROOT"
SYSROOT=$(rustc --print sysroot)
HOST=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA="$SYSROOT/lib/rustlib/$HOST/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
  echo "== adding rustup's llvm-tools (llvm-profdata)"
  rustup component add llvm-tools
fi

BASE=${LOAD_BASE:-/tmp/outpost-load}
setup_run "$BASE/www" "$BASE/pgo"
DATA="$RUN/profraw"
rm -rf "$DATA"

echo "== instrumented build (target/pgo-gen)"
(cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/pgo-gen" \
  RUSTFLAGS="-Cprofile-generate=$DATA" cargo build --release --bin outpost -q)
# Build scripts ran instrumented too: only the training's counts are kept.
rm -rf "$DATA"

# A text page for the compressed responses.
mkdir -p "$WWW/html"
[ -f "$WWW/html/page.html" ] || python3 - "$WWW/html/page.html" <<'PY'
import sys
para = "<p>" + " ".join(f"word{i % 97} text{i % 13}" for i in range(40)) + "</p>\n"
open(sys.argv[1], "w").write("<!doctype html><html><body>" + para * 200 + "</body></html>")
PY
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
  -keyout "$RUN/train.key" -out "$RUN/train.crt" -subj /CN=bench.test \
  -addext "subjectAltName=DNS:bench.test" 2> /dev/null
cat >> "$RUN/outpost.toml" <<EOF
[compression]
gzip_level = 6
br_level = 6

[[tls.certificates]]
cert = "$RUN/train.crt"
key = "$RUN/train.key"
EOF
sed -i "s|^admin = .*|&\ntls = \"127.0.0.1:18092\"|" "$RUN/outpost.toml"
"$BIN" check --config "$RUN/outpost.toml" > /dev/null
start_origin

URL=http://127.0.0.1:18083
load() { # wrk's arguments after the duration
  "${LOAD_CPU[@]}" wrk -t1 -c64 -d"${SECS}s" "$@" > /dev/null
}
keys() { # path, keys (0: a new key per request)
  LOAD_PATH=$1 LOAD_KEYS=$2 load -s "$HERE/keys.lua" "$URL/"
}
train() { # label, then the command that starts Outpost
  local label=$1 pid
  shift
  rm -rf "$RUN/outpost-cache"
  "$@" serve --config "$RUN/outpost.toml" > "$RUN/outpost.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_port 18083
  echo "== training: $label"
  load "$URL/pass/1k.bin"
  keys /pass/1k.bin 10000
  load "$URL/1k.bin"
  load "$URL/100k.bin"
  keys /1k.bin 10000
  keys /1k.bin 0
  load -H "Accept-Encoding: gzip, deflate, br" "$URL/html/page.html"
  load -H "Accept-Encoding: gzip" "$URL/html/page.html"
  load -H "Host: bench.test" "https://127.0.0.1:18092/1k.bin"
  local urls=() i
  for i in $(seq 1 300); do urls+=("https://bench.test:18092/1k.bin?h2=$((i % 30))"); done
  curl -sk --http2 --resolve bench.test:18092:127.0.0.1 "${urls[@]}" > /dev/null
  # The counts are written as the process exits.
  kill -TERM "$pid"
  wait "$pid" || true
}
train "current-thread runtime (one CPU)" "${PROXY_CPU[@]}" "$BIN"
train "multi-thread runtime (every CPU)" "$BIN"

PROFILE="$ROOT/target/pgo/outpost.profdata"
mkdir -p "$ROOT/target/pgo"
"$PROFDATA" merge -o "$PROFILE" "$DATA"/*.profraw
echo "== optimised build (target/pgo)"
(cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/pgo" \
  RUSTFLAGS="-Cprofile-use=$PROFILE" cargo build --release --bin outpost -q)
echo "built $ROOT/target/pgo/release/outpost"
