# Shared by the single-proxy tools (instructions.sh, profile.sh), sourced
# after they set HERE, ROOT and BIN: the release build, content and configs
# for the single-object scenarios, CPU pinning as in run.sh's pinned mode,
# a watchdog, stopping everything started by PID, and the origin.

# parse_rounds_args "$@": the options of the single-comparison scripts
# (pools.sh, tls.sh, security.sh) into DUR (10), ROUNDS (3), CONNS (64)
# and BIN (kept unless --bin is given).
parse_rounds_args() {
  DUR=10
  ROUNDS=3
  CONNS=64
  while [ $# -gt 0 ]; do
    case "$1" in
      --duration) DUR=$2; shift ;;
      --rounds) ROUNDS=$2; shift ;;
      --connections) CONNS=$2; shift ;;
      --bin) BIN=$2; shift ;;
      *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
  done
}

# Builds Outpost unless another binary was given.
build_outpost() {
  if [ "$BIN" = "$ROOT/target/release/outpost" ]; then
    (cd "$ROOT" && cargo build --release --bin outpost -q)
  fi
}

# setup_run WWW RUN: the single-object content under WWW, and the origin's
# and Outpost's configs rendered into RUN (both created if missing).
setup_run() {
  WWW=$1
  RUN=$2
  mkdir -p "$WWW/pass" "$RUN"
  [ -f "$WWW/1k.bin" ] || python3 "$HERE/loadtool.py" gen "$WWW" 1k.bin 1024
  [ -f "$WWW/100k.bin" ] || python3 "$HERE/loadtool.py" gen "$WWW" 100k.bin 102400
  [ -f "$WWW/1m.bin" ] || python3 "$HERE/loadtool.py" gen "$WWW" 1m.bin 1048576
  [ -f "$WWW/pass/1k.bin" ] || python3 "$HERE/loadtool.py" gen "$WWW/pass" 1k.bin 1024
  local f
  for f in origin.conf outpost.toml; do
    sed "s|@RUN@|$RUN|g; s|@WWW@|$WWW|g; s|@WORKERS@|1|g" "$HERE/$f" > "$RUN/$f"
  done
}

# One CPU for Outpost (its current-thread runtime, as in run.sh's pinned
# mode), the other for the origin and the load, when there are two.
PROXY_CPU=()
LOAD_CPU=()
if [ "$(nproc)" -ge 2 ]; then
  PROXY_CPU=(taskset -c 0)
  LOAD_CPU=(taskset -c 1)
fi

# Every process started goes into PIDS and is stopped on exit; the script
# is stopped after $1 seconds. The watchdog's output goes nowhere, so a pipe
# reading the script's output ends when the script does.
PIDS=()
WATCHDOG=
cleanup() {
  [ -z "$WATCHDOG" ] || pkill -TERM -P "$WATCHDOG" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
guard() {
  trap cleanup EXIT
  ( sleep "$1"; kill -TERM $$ ) >/dev/null 2>&1 &
  WATCHDOG=$!
  PIDS+=($WATCHDOG)
}

wait_port() {
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  exit 1
}

# The static origin (nginx) on port 18080, on the load CPU.
start_origin() {
  "${LOAD_CPU[@]}" nginx -p "$RUN" -c "$RUN/origin.conf" &
  PIDS+=($!)
  wait_port 18080
}

# CPU ticks (user + system) and RSS (KiB) of process $1 and its children
# (nginx's workers).
# tree_sum PID FILE AWK: the sum of AWK's figure over /proc/P/FILE of PID
# and its children.
tree_sum() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk "$3" "/proc/$p/$2")))
  done
  echo "$t"
}
tree_ticks() { tree_sum "$1" stat '{print $14 + $15}'; }
tree_rss() { tree_sum "$1" status '/^VmRSS/{print $2}'; }

# start_peer outpost|nginx OUTPOST_CONFIG NGINX_CONFIG: one proxy on the
# proxy CPU with an empty cache (Outpost's under $RUN/outpost-cache, nginx's
# under $RUN/nginx-cache); sets PID and PORT once it listens.
start_peer() {
  case $1 in
    outpost)
      rm -rf "$RUN/outpost-cache"
      "${PROXY_CPU[@]}" "$BIN" serve --config "$2" > "$RUN/outpost.log" 2>&1 &
      PID=$!; PORT=18083 ;;
    nginx)
      rm -rf "$RUN/nginx-cache"
      "${PROXY_CPU[@]}" nginx -p "$RUN" -c "$3" 2> "$RUN/nginx.log" &
      PID=$!; PORT=18081 ;;
  esac
  PIDS+=("$PID")
  wait_port "$PORT"
}
