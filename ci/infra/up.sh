#!/usr/bin/env bash
# Brings up the integration-test stack on loopback: PostgreSQL, Redis, an S3-compatible
# object store (s3s-fs) and a 1-controller + 3-broker Kafka cluster, and installs headless
# Chromium for the browser test. Idempotent: running (installed) parts are skipped.
# Progress goes to stderr; stdout is only the export lines, so callers can do
#   eval "$(ci/infra/up.sh)"
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

"$here/postgres.sh"
"$here/redis.sh"
"$here/browser.sh"
"$here/s3.sh" up
"$here/kafka.sh" fetch
# kafka.sh prints the bootstrap string on stdout; keep our stdout for exports.
"$here/kafka.sh" up >&2

cat <<'EXPORTS'
export DATABASE_URL=postgres://marketplace:marketplace@127.0.0.1:5432/marketplace
export REDIS_URL=redis://127.0.0.1:6379
export KAFKA_BOOTSTRAP=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094
export S3_ENDPOINT=http://127.0.0.1:19000
EXPORTS
