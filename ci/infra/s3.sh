#!/usr/bin/env bash
# An S3-compatible object store on 127.0.0.1:19000 for integration tests: s3s-fs (objects
# as files), which checks AWS Signature V4 on every request, presigned URLs included.
# Built once from crates.io into the cache; safe to re-run (a running one is kept).
#
# Usage: s3.sh            install if missing, start if not answering
#        s3.sh down       stop it
set -euo pipefail

# Pinned: the newest s3s-fs that builds with the workspace's Rust (0.15+ need newer).
readonly S3S_VERSION=0.14.1
readonly CACHE_ROOT=${MARKETPLACE_CACHE:-$HOME/.cache/marketplace}
readonly INSTALL=$CACHE_ROOT/s3s-fs-$S3S_VERSION
readonly BIN=$INSTALL/bin/s3s-fs
readonly STATE=${MARKETPLACE_S3_STATE:-/tmp/marketplace-s3}
readonly HOST=127.0.0.1
readonly PORT=${S3_PORT:-19000}
readonly BUCKET=${S3_BUCKET:-marketplace-media}
# Local development credentials (the object store only listens on loopback).
readonly ACCESS_KEY=${S3_ACCESS_KEY_ID:-marketplace-dev}
readonly SECRET_KEY=${S3_SECRET_ACCESS_KEY:-marketplace-dev-secret}
readonly READY_TIMEOUT=${S3_READY_TIMEOUT:-30}

log() { printf '[s3] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Any HTTP answer on the port (an unsigned request is refused, which proves it is up).
answers() {
  timeout 2 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "HEAD / HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n" "$1" "$2" >&3
    IFS= read -r -t 1 line <&3 && [[ $line == HTTP/1.1* ]]
  ' _ "$HOST" "$PORT" 2>/dev/null
}

install() {
  [[ -x $BIN ]] && return 0
  log "building s3s-fs $S3S_VERSION from crates.io into $INSTALL (once; ~3 min on 2 cores)"
  cargo install --quiet --locked s3s-fs --version "$S3S_VERSION" --features binary \
    --root "$INSTALL" >&2
}

up() {
  if answers; then
    log "already answers on $HOST:$PORT"
    return 0
  fi
  install
  mkdir -p "$STATE/data/$BUCKET"
  log "starting s3s-fs on $HOST:$PORT (bucket $BUCKET, data in $STATE/data)"
  nohup "$BIN" --host "$HOST" --port "$PORT" --access-key "$ACCESS_KEY" \
    --secret-key "$SECRET_KEY" "$STATE/data" >"$STATE/s3s-fs.log" 2>&1 &
  echo $! >"$STATE/s3s-fs.pid"
  local deadline=$((SECONDS + READY_TIMEOUT))
  until answers; do
    ((SECONDS < deadline)) || die "s3s-fs did not answer on $HOST:$PORT after ${READY_TIMEOUT}s (see $STATE/s3s-fs.log)"
    sleep 0.2
  done
  log "ready: http://$HOST:$PORT"
}

down() {
  if [[ -f $STATE/s3s-fs.pid ]]; then
    kill "$(cat "$STATE/s3s-fs.pid")" 2>/dev/null || true
    rm -f "$STATE/s3s-fs.pid"
  fi
}

case ${1:-up} in
  up) up ;;
  down) down ;;
  *) die "usage: $0 [up|down]" ;;
esac
