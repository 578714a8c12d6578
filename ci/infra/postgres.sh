#!/usr/bin/env bash
# PostgreSQL on 127.0.0.1:5432 for integration tests, from Debian packages.
# Ensures role marketplace/marketplace (SUPERUSER: tests create a fresh
# database per test) and database marketplace. Safe to re-run. `postgres.sh prune` drops
# the schemas earlier test runs left behind.
set -euo pipefail

readonly PG_HOST=127.0.0.1
readonly PG_PORT=5432
readonly PG_USER=marketplace
readonly PG_PASSWORD=marketplace
readonly PG_DB=marketplace
readonly READY_TIMEOUT=${PG_READY_TIMEOUT:-60}

log() { printf '[postgres] %s\n' "$*" >&2; }
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

server_ready() {
  command -v pg_isready >/dev/null && pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2
}

install_packages() {
  log "installing postgresql from Debian"
  apt_update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
}

# Newest installed server major version (postgresql-common layout:
# /usr/lib/postgresql/<ver>/bin/postgres; client-only installs lack that binary).
pg_version() {
  local bin
  for bin in /usr/lib/postgresql/*/bin/postgres; do
    if [[ -x $bin ]]; then basename "$(dirname "$(dirname "$bin")")"; fi
  done | sort -n | tail -1
}

ensure_cluster() {
  local ver=$1
  # The Debian package usually creates cluster <ver>/main; images may lack it.
  if [[ ! -f /etc/postgresql/$ver/main/postgresql.conf ]]; then
    log "creating cluster $ver/main"
    as_root pg_createcluster --port "$PG_PORT" "$ver" main >&2
  fi
  # Loopback IPv4 only, via our own file in conf.d. Debian's default
  # postgresql.conf includes conf.d; add the include if a cluster lacks it.
  local dir=/etc/postgresql/$ver/main
  if ! grep -Eq "^[[:space:]]*include_dir[[:space:]]*=[[:space:]]*'conf\.d'" "$dir/postgresql.conf"; then
    echo "include_dir = 'conf.d'" | as_root tee -a "$dir/postgresql.conf" >/dev/null
  fi
  as_root mkdir -p "$dir/conf.d"
  local want
  want=$(printf "listen_addresses = '%s'\nport = %s" "$PG_HOST" "$PG_PORT")
  if [[ ! -f $dir/conf.d/marketplace.conf ]] || [[ $(<"$dir/conf.d/marketplace.conf") != "$want" ]]; then
    printf '%s\n' "$want" | as_root tee "$dir/conf.d/marketplace.conf" >/dev/null
  fi
}

start_server() {
  local ver=$1
  # No systemd as PID 1 here: pg_ctlcluster drives pg_ctl directly.
  log "starting cluster $ver/main"
  if ! as_root pg_ctlcluster "$ver" main start >&2; then
    as_root service postgresql start >&2 || die "could not start PostgreSQL $ver/main (see /var/log/postgresql/)"
  fi
}

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  until server_ready; do
    ((SECONDS < deadline)) || die "PostgreSQL not ready on $PG_HOST:$PG_PORT after ${READY_TIMEOUT}s"
    sleep 0.5
  done
}

# psql as the postgres superuser over the local socket (peer auth); SQL on stdin.
admin_psql() {
  as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres
}

ensure_role_and_db() {
  admin_psql <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
SQL
}

# Drops the schemas test and benchmark runs left behind: every service schema with a prefix
# (`<prefix>_orders`, …; each run makes its own, and thousands of them slow the catalog).
# The unprefixed schemas (a dev stack's) stay. Only between runs: a running test loses its
# schemas.
prune() {
  local services='users|ads|search|media|reports|moderation|notifications|orders|payments|deliveries|analytics'
  local n
  n=$(PGPASSWORD=$PG_PASSWORD psql -X -q -At -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -c \
    "SELECT count(*) FROM pg_namespace WHERE nspname ~ '^.+_($services)\$'")
  log "dropping $n schemas left by earlier test runs"
  # One schema per transaction: a lock table never holds a thousand schemas at once.
  PGPASSWORD=$PG_PASSWORD psql -X -q -At -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -c \
    "SELECT format('DROP SCHEMA IF EXISTS %I CASCADE;', nspname) FROM pg_namespace
     WHERE nspname ~ '^.+_($services)\$'" |
    PGOPTIONS="-c client_min_messages=warning" PGPASSWORD=$PG_PASSWORD \
      psql -X -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" >/dev/null
}

main() {
  if [[ ${1:-} == prune ]]; then
    prune
    return
  fi
  if server_ready; then
    log "server already answers on $PG_HOST:$PG_PORT"
  else
    local ver
    ver=$(pg_version)
    if [[ -z $ver ]] || ! command -v pg_ctlcluster >/dev/null; then
      install_packages
      ver=$(pg_version)
      [[ -n $ver ]] || die "postgresql installed but no server binaries found"
    fi
    ensure_cluster "$ver"
    start_server "$ver"
    wait_ready
  fi
  # A server we did not start may not be reachable via the postgres OS user;
  # then it is enough that the marketplace login already works.
  local err
  if ! err=$(ensure_role_and_db 2>&1); then
    PGPASSWORD=$PG_PASSWORD psql -X -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -c 'SELECT 1' >/dev/null ||
      die "cannot create role/database $PG_USER on $PG_HOST:$PG_PORT: $err"
  fi
  log "ready: postgres://$PG_USER:$PG_PASSWORD@$PG_HOST:$PG_PORT/$PG_DB"
}

main "$@"
