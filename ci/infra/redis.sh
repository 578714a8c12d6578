#!/usr/bin/env bash
# Redis on 127.0.0.1:6379 for integration tests, from Debian packages. Safe to re-run.
set -euo pipefail

readonly REDIS_HOST=127.0.0.1
readonly REDIS_PORT=6379
readonly STATE=${MARKETPLACE_REDIS_STATE:-/tmp/marketplace-redis}
readonly READY_TIMEOUT=${REDIS_READY_TIMEOUT:-30}

log() { printf '[redis] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
  if ((EUID == 0)); then "$@"; else sudo "$@"; fi
}

# apt-get update at most once per hour across these scripts: postgres.sh and
# redis.sh both install on a fresh machine.
apt_update() {
  if ! find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -60 2>/dev/null | grep -q .; then
    as_root apt-get update -qq
  fi
}

# PING via bash's /dev/tcp so the check works before redis-tools is installed.
pong() {
  # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash.
  timeout 2 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "PING\r\n" >&3
    IFS= read -r -t 1 reply <&3 && [[ $reply == "+PONG"* ]]
  ' _ "$REDIS_HOST" "$REDIS_PORT" 2>/dev/null
}

main() {
  if pong; then
    log "already answers PONG on $REDIS_HOST:$REDIS_PORT"
    return 0
  fi
  if ! command -v redis-server >/dev/null; then
    log "installing redis-server from Debian"
    apt_update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >&2
    # On hosts with a working init the package may start its own instance.
    if pong; then
      log "packaged service answers PONG"
      return 0
    fi
  fi
  mkdir -p "$STATE"
  # Own command line instead of /etc/redis/redis.conf: loopback only, no
  # persistence (test data is disposable), pid/log under the state dir.
  log "starting redis-server on $REDIS_HOST:$REDIS_PORT"
  redis-server --bind "$REDIS_HOST" --port "$REDIS_PORT" --protected-mode yes \
    --daemonize yes --dir "$STATE" --pidfile "$STATE/redis.pid" \
    --logfile "$STATE/redis.log" --save '' --appendonly no
  local deadline=$((SECONDS + READY_TIMEOUT))
  until pong; do
    ((SECONDS < deadline)) || die "no PONG from $REDIS_HOST:$REDIS_PORT after ${READY_TIMEOUT}s (see $STATE/redis.log)"
    sleep 0.2
  done
  log "ready: redis://$REDIS_HOST:$REDIS_PORT"
}

main "$@"
