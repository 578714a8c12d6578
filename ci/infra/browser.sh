#!/usr/bin/env bash
# Headless Chromium for the live-page browser test, from Debian packages. Safe to re-run:
# an installed browser is kept. Prints nothing on stdout; the test finds the browser as
# `chromium` on PATH (or CHROMIUM=/path/to/binary).
set -euo pipefail

log() { printf '[browser] %s\n' "$*" >&2; }

as_root() {
  if ((EUID == 0)); then "$@"; else sudo "$@"; fi
}

# apt-get update at most once per hour across the infra scripts.
apt_update() {
  if ! find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -60 2>/dev/null | grep -q .; then
    as_root apt-get update -qq
  fi
}

main() {
  if command -v "${CHROMIUM:-chromium}" >/dev/null; then
    log "already installed: $("${CHROMIUM:-chromium}" --version 2>/dev/null || echo "${CHROMIUM:-chromium}")"
    return 0
  fi
  log "installing chromium from Debian"
  apt_update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-liberation >&2
  log "installed: $(chromium --version 2>/dev/null)"
}

main "$@"
