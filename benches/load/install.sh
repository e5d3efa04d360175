#!/usr/bin/env bash
# Installs what the load benchmark needs from Debian's packages, if missing:
# nginx (origin and peer), varnish (peer), wrk (load generator), perf, nstat,
# curl and openssl (tls.sh, pgo.sh).
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v varnishd >/dev/null 2>&1 || need+=(varnish)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# perf: the host probe around each round (run.sh) and profile.sh.
command -v perf >/dev/null 2>&1 || need+=(linux-perf)
# nstat: TCP counters per round (run.sh).
command -v nstat >/dev/null 2>&1 || need+=(iproute2)
# nginx's Brotli filter: the peer of compression.sh.
[ -f /usr/lib/nginx/modules/ngx_http_brotli_filter_module.so ] || need+=(libnginx-mod-http-brotli-filter)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${need[*]}"
  # Packaged services must not start on install (we run our own instances).
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  $SUDO rm -f /usr/sbin/policy-rc.d
fi
nginx -v 2>&1; varnishd -V 2>&1 | head -1; wrk --version 2>&1 | head -1 || true
