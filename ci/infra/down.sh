#!/usr/bin/env bash
# Stops the Kafka cluster started by up.sh. PostgreSQL and Redis are left
# running: they are cheap and shared with other local work.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/kafka.sh" down
