#!/usr/bin/env bash
# A loopback fleet (nats-server -js, one shield, four edges) under a Zipf
# workload: origin fetches per object with and without the shield tier, hit
# ratio per tier, purge propagation p50/p99, and the catch-up of a node that
# missed 1,000 purges. Installs Debian's nats-server when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nats-server
fi
cargo build --release --bin outpost
echo "commit $(git rev-parse --short HEAD)"
exec python3 benches/cluster/cluster.py --outpost target/release/outpost "$@"
