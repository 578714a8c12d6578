#!/usr/bin/env bash
# Real Apache Kafka (KRaft) cluster on loopback for integration tests:
# one dedicated controller (node 100) + three brokers (nodes 1..3, racks msk/msk/nsk).
# The controller is separate so the metadata quorum survives when tests kill brokers.
#
# Usage: kafka.sh fetch|up|down|status|kill-broker N|start-broker N|pause-broker N|resume-broker N|truncate
# Logs go to stderr; `up`, `status` and `start-broker` print the bootstrap string on stdout.
set -euo pipefail

# Pinned: latest 4.x on Maven Central when written (kafka_2.13 metadata: release 4.4.0).
readonly KAFKA_VERSION=4.4.0
readonly LOG4J_VERSION=2.24.3
readonly DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

readonly CACHE_ROOT=${MARKETPLACE_CACHE:-$HOME/.cache/marketplace}
readonly KAFKA_HOME=$CACHE_ROOT/kafka-$KAFKA_VERSION
readonly LIBS=$KAFKA_HOME/libs
readonly STATE=${MARKETPLACE_STATE:-/tmp/marketplace-kafka}
readonly READY_TIMEOUT=${KAFKA_READY_TIMEOUT:-120}
readonly STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-60}
readonly HEALTH_TIMEOUT=${KAFKA_HEALTH_TIMEOUT:-20}

# Fixed id so storage formatted once is reused by every later `up`.
readonly CLUSTER_ID=bWFya2V0cGxhY2Uta2ZrMQ
readonly CONTROLLER_PORT=19190
readonly BROKER_PORTS=(19092 19093 19094)
readonly BROKER_RACKS=(msk msk nsk)
readonly BOOTSTRAP=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094
readonly TOPICS_FILE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/topics.tsv"
readonly SETTINGS_FILE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/kafka-cluster.properties"
readonly JAVA_BIN=${JAVA:-java}
readonly HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
# C1-only JIT: on 2 cores, four JVMs booting at once spend most of their start-up
# in C2 compiler threads; with SerialGC the measured start went 36s -> 14s.
# Test traffic is light, so C1 code is fast enough.
readonly JVM_OPTS=${KAFKA_JVM_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC}

log() { printf '[kafka %(%T)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Node naming: "controller" or "broker1".."broker3".
node_port() {
  case $1 in
    controller) echo "$CONTROLLER_PORT" ;;
    broker[1-3]) echo "${BROKER_PORTS[${1#broker}-1]}" ;;
    *) die "unknown node $1" ;;
  esac
}
props_file() { echo "$STATE/$1.properties"; }
pid_file() { echo "$STATE/$1.pid"; }

port_open() {
  # bash's /dev/tcp avoids needing nc; timeout guards against a hung connect.
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Prints the pid of the node's JVM if it is alive; the cmdline check guards against pid reuse.
node_pid() {
  local pf pid
  pf=$(pid_file "$1")
  [[ -f $pf ]] || return 1
  pid=$(<"$pf")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$(props_file "$1")" || return 1
  echo "$pid"
}

# --------------------------------------------------------------------------- fetch

cmd_fetch() {
  if [[ -f $LIBS/.complete ]]; then
    log "kafka $KAFKA_VERSION already in $LIBS"
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (apt-get install -y maven)"
  mkdir -p "$KAFKA_HOME"
  # A throwaway pom lets Maven resolve the broker's full runtime closure from Central.
  cat >"$KAFKA_HOME/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.marketplace</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- Logging backend so the JVMs write log files instead of slf4j's no-op. -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  local tmp=$KAFKA_HOME/libs.tmp
  rm -rf "$tmp"
  log "resolving kafka_2.13:$KAFKA_VERSION + kafka-tools via Maven"
  if ! mvn -B -Dstyle.color=never -f "$KAFKA_HOME/pom.xml" "$DEP_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_HOME/fetch.log" 2>&1; then
    tail -n 40 "$KAFKA_HOME/fetch.log" >&2
    die "maven could not fetch kafka $KAFKA_VERSION (full log: $KAFKA_HOME/fetch.log)"
  fi
  # Rename only after a full copy so an interrupted fetch is retried, not half-used.
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  touch "$LIBS/.complete"
  log "kafka $KAFKA_VERSION: $(find "$LIBS" -name '*.jar' | wc -l) jars in $LIBS"
}

# --------------------------------------------------------------------------- config

write_log_configs() {
  mkdir -p "$KAFKA_HOME/config"
  # Servers: rolling file per node under ${kafka.logs.dir}.
  cat >"$KAFKA_HOME/config/log4j2-server.properties" <<'EOF'
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
EOF
  # CLI tools: only warnings, on stderr, so their stdout stays parseable.
  cat >"$KAFKA_HOME/config/log4j2-tools.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

# Settings shared by every node. Topic defaults (num.partitions,
# default.replication.factor) are controller-only: in KRaft the controller
# applies them when creating topics and Kafka 4.x warns if brokers set them.
common_props() {
  cat <<EOF
controller.quorum.voters=100@127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector
# 2-core machine: keep thread pools small.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.dirs=$STATE/$1/data
EOF
  # The settings the Kafka model reads too (one file for both).
  grep -Ev '^[[:space:]]*(#|$)' "$SETTINGS_FILE"
}

write_props() {
  local node=$1 port
  port=$(node_port "$node")
  mkdir -p "$STATE/$node/data" "$STATE/$node/logs"
  {
    echo "# generated by ci/infra/kafka.sh"
    if [[ $node == controller ]]; then
      echo "process.roles=controller"
      echo "node.id=100"
      echo "listeners=CONTROLLER://127.0.0.1:$port"
      echo "default.replication.factor=3"
      echo "num.partitions=6"
    else
      local n=${node#broker}
      echo "process.roles=broker"
      echo "node.id=$n"
      echo "broker.rack=${BROKER_RACKS[n - 1]}"
      echo "listeners=PLAINTEXT://127.0.0.1:$port"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port"
      echo "inter.broker.listener.name=PLAINTEXT"
    fi
    common_props "$node"
  } >"$(props_file "$node")"
}

run_tool() {
  # Runs a Kafka CLI main class from the cached jars; a tool stuck on a frozen cluster is
  # stopped after TOOL_TIMEOUT seconds.
  timeout "${KAFKA_TOOL_TIMEOUT:-300}" "$JAVA_BIN" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2-tools.properties" \
    -cp "$LIBS/*" "$@"
}

is_formatted() {
  # meta.properties exists once formatted; re-formatting would fail / lose data.
  [[ -f $STATE/$1/data/meta.properties ]]
}

# Formats the given nodes' storage in parallel (one JVM each; done only once).
format_storage() {
  local node entry pids=() failed=0
  for node in "$@"; do
    is_formatted "$node" && continue
    write_props "$node"
    log "formatting storage for $node"
    run_tool kafka.tools.StorageTool format --cluster-id "$CLUSTER_ID" \
      --config "$(props_file "$node")" --ignore-formatted \
      >"$STATE/$node/logs/format.log" 2>&1 &
    pids+=("$node:$!")
  done
  for entry in "${pids[@]}"; do
    node=${entry%%:*}
    if ! wait "${entry#*:}"; then
      cat "$STATE/$node/logs/format.log" >&2
      failed=1
    fi
  done
  ((failed == 0)) || die "storage format failed"
}

# --------------------------------------------------------------------------- lifecycle

start_node() {
  local node=$1 port
  port=$(node_port "$node")
  if node_pid "$node" >/dev/null; then
    log "$node already running (pid $(node_pid "$node"))"
    return 0
  fi
  if port_open "$port"; then
    die "port $port is taken by a process this script did not start"
  fi
  write_props "$node"
  format_storage "$node"
  log "starting $node on 127.0.0.1:$port"
  # setsid+nohup: the JVM outlives the calling shell and its process group.
  # shellcheck disable=SC2086 # HEAP_OPTS/JVM_OPTS are intentionally word-split.
  setsid nohup "$JAVA_BIN" $HEAP_OPTS $JVM_OPTS \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dkafka.logs.dir="$STATE/$node/logs" \
    -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2-server.properties" \
    -cp "$LIBS/*" kafka.Kafka "$(props_file "$node")" \
    >"$STATE/$node/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$(pid_file "$node")"
}

wait_port() {
  local node=$1 port deadline
  port=$(node_port "$node")
  deadline=$((SECONDS + READY_TIMEOUT))
  until port_open "$port"; do
    node_pid "$node" >/dev/null || die "$node exited; see $STATE/$node/logs/"
    ((SECONDS < deadline)) || die "$node not listening on $port after ${READY_TIMEOUT}s"
    sleep 0.5
  done
}

# Brokers the cluster reports as alive (registered and unfenced) that also answered their
# own ApiVersions request (`-> (`, not `-> ERROR`), one id per line.
alive_brokers() {
  run_tool org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$BOOTSTRAP" 2>/dev/null |
    sed -n 's/^127\.0\.0\.1:[0-9]* (id: \([0-9]*\) rack: [^)]*) -> ($/\1/p' | sort -u
}

wait_brokers_alive() {
  local want=("$@") deadline alive missing id
  deadline=$((SECONDS + READY_TIMEOUT))
  while :; do
    alive=$(alive_brokers || true)
    missing=()
    for id in "${want[@]}"; do
      grep -qx "$id" <<<"$alive" || missing+=("$id")
    done
    ((${#missing[@]} == 0)) && return 0
    ((SECONDS < deadline)) || die "brokers not alive after ${READY_TIMEOUT}s: ${missing[*]}"
    sleep 1
  done
}

# Every topic of the one list (topics.tsv: name, partitions, configs), with its configs:
# set on creation, and set again on a topic that exists (so a changed list reaches it).
ensure_topics() {
  local name partitions configs pair
  local -a config_args pairs
  while IFS=$'\t' read -r name partitions configs; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    config_args=(--config min.insync.replicas=2)
    if [[ -n "$configs" && "$configs" != "-" ]]; then
      IFS=',' read -ra pairs <<<"$configs"
      for pair in "${pairs[@]}"; do config_args+=(--config "$pair"); done
    fi
    log "ensuring topic $name ($partitions partitions, configs: ${configs:--})"
    run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
      --create --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 3 \
      "${config_args[@]}" 2>&1 |
      sed '/limitations in metric names/d' >&2 # harmless notice about '.' in the name
    if [[ -n "$configs" && "$configs" != "-" ]]; then
      run_tool org.apache.kafka.tools.ConfigCommand --bootstrap-server "$BOOTSTRAP" \
        --alter --entity-type topics --entity-name "$name" --add-config "$configs" >/dev/null
    fi
  done < "$TOPICS_FILE"
}

# Deletes every record of every topic of the list (the log start moves to the high
# watermark; topics and group offsets stay). A test run starts from empty topics, so the
# fresh consumer groups of its stacks (which start at the earliest offset) do not replay
# what earlier runs and benchmarks left.
cmd_truncate() {
  local name partitions configs p json='{"version":1,"partitions":['
  local first=1
  while IFS=$'\t' read -r name partitions configs; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    for ((p = 0; p < partitions; p++)); do
      ((first)) || json+=','
      first=0
      json+="{\"topic\":\"$name\",\"partition\":$p,\"offset\":-1}"
    done
  done < "$TOPICS_FILE"
  json+=']}'
  local file
  file=$(mktemp)
  printf '%s' "$json" >"$file"
  log "truncating every topic of topics.tsv"
  run_tool org.apache.kafka.tools.DeleteRecordsCommand --bootstrap-server "$BOOTSTRAP" \
    --offset-json-file "$file" >/dev/null
  rm -f "$file"
}

all_ports_open() {
  local node
  for node in controller broker1 broker2 broker3; do
    port_open "$(node_port "$node")" || return 1
  done
}

# True when every broker answers through the bootstrap list as registered and unfenced
# within HEALTH_TIMEOUT seconds. Open ports alone are not enough: a cluster left behind by
# an earlier session may have lost its controller, or hold frozen JVMs whose sockets still
# accept connections.
cluster_healthy() {
  local deadline=$((SECONDS + HEALTH_TIMEOUT)) alive
  while :; do
    alive=$(alive_brokers || true)
    [[ $(grep -cx '[123]' <<<"$alive") == 3 ]] && return 0
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

# Nodes of this script that are alive, by name.
running_nodes() {
  local node
  for node in controller broker1 broker2 broker3; do
    node_pid "$node" >/dev/null && echo "$node"
  done
  return 0
}

# SIGKILL: for a cluster found broken, where a controlled shutdown may never finish.
kill_nodes() {
  local node pid
  for node in "$@"; do
    if pid=$(node_pid "$node"); then
      log "SIGKILL $node (pid $pid)"
      kill -KILL "$pid" 2>/dev/null || true
      while [[ -e /proc/$pid ]] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
        sleep 0.2
      done
    fi
    rm -f "$(pid_file "$node")"
  done
}

cmd_up() {
  local t0=$SECONDS node
  local -a stale
  if all_ports_open && cluster_healthy; then
    log "cluster already running"
    echo "$BOOTSTRAP"
    return 0
  fi
  mapfile -t stale < <(running_nodes)
  if ((${#stale[@]} > 0)); then
    # Part of a cluster (say, brokers whose controller died) does not heal by starting the
    # missing nodes next to it: start every node afresh. The data directories stay.
    log "cluster is partly up or unhealthy (running: ${stale[*]}); restarting every node"
    kill_nodes broker1 broker2 broker3 controller
  fi
  [[ -f $LIBS/.complete ]] || cmd_fetch
  command -v "$JAVA_BIN" >/dev/null || die "java not found (Kafka $KAFKA_VERSION needs Java 17+)"
  mkdir -p "$STATE"
  write_log_configs
  format_storage controller broker1 broker2 broker3
  start_node controller
  wait_port controller
  for node in broker1 broker2 broker3; do start_node "$node"; done
  for node in broker1 broker2 broker3; do wait_port "$node"; done
  wait_brokers_alive 1 2 3
  ensure_topics
  log "cluster up in $((SECONDS - t0))s"
  echo "$BOOTSTRAP"
}

stop_nodes() {
  # SIGTERM triggers Kafka's controlled shutdown; SIGKILL only after the deadline.
  local node pid deadline entry pids=()
  for node in "$@"; do
    if pid=$(node_pid "$node"); then
      log "stopping $node (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$node:$pid")
    fi
  done
  deadline=$((SECONDS + STOP_TIMEOUT))
  for entry in "${pids[@]}"; do
    node=${entry%%:*} pid=${entry#*:}
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        log "$node did not exit in ${STOP_TIMEOUT}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.5
    done
    rm -f "$(pid_file "$node")"
  done
}

cmd_down() {
  # Brokers first: their controlled shutdown needs the controller.
  stop_nodes broker1 broker2 broker3
  stop_nodes controller
  log "cluster stopped"
}

cmd_status() {
  local node pid rc=0 port
  for node in controller broker1 broker2 broker3; do
    port=$(node_port "$node")
    pid=$(node_pid "$node" || echo -)
    if port_open "$port"; then
      log "$node 127.0.0.1:$port pid=$pid listening"
    else
      log "$node 127.0.0.1:$port pid=$pid DOWN"
      rc=1
    fi
  done
  ((rc == 0)) && echo "$BOOTSTRAP"
  return "$rc"
}

broker_arg() {
  [[ ${1:-} =~ ^[1-3]$ ]] || die "broker number must be 1, 2 or 3"
  echo "broker$1"
}

cmd_kill_broker() {
  local node pid
  node=$(broker_arg "${1:-}")
  pid=$(node_pid "$node") || { log "$node is not running"; return 0; }
  log "SIGKILL $node (pid $pid)"
  kill -KILL "$pid"
  # Wait until the kernel has reaped it so callers see a dead broker.
  local deadline=$((SECONDS + 30))
  while [[ -e /proc/$pid ]] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
    ((SECONDS < deadline)) || die "$node (pid $pid) still alive after SIGKILL"
    sleep 0.2
  done
  # A zombie may still hold its listening port; wait until it is free so an immediate
  # start-broker can bind it.
  local port
  port=$(node_port "$node")
  while port_open "$port"; do
    ((SECONDS < deadline)) || die "$node still holds port $port after SIGKILL"
    sleep 0.2
  done
  rm -f "$(pid_file "$node")"
}

# SIGSTOP / SIGCONT: a broker that neither answers nor heartbeats, with its process and state
# intact (a long GC pause, a frozen VM); on resume it goes on with the same incarnation.
cmd_signal_broker() {
  local node pid
  node=$(broker_arg "${2:-}")
  pid=$(node_pid "$node") || die "$node is not running"
  log "SIG$1 $node (pid $pid)"
  kill "-$1" "$pid"
}

cmd_start_broker() {
  local node
  node=$(broker_arg "${1:-}")
  [[ -f $LIBS/.complete ]] || die "kafka not fetched; run: $0 fetch"
  port_open "$CONTROLLER_PORT" || die "controller is not running; run: $0 up"
  write_log_configs
  start_node "$node"
  wait_port "$node"
  wait_brokers_alive "${node#broker}"
  log "$node is back"
  echo "$BOOTSTRAP"
}

case ${1:-} in
  fetch) cmd_fetch ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kill-broker) cmd_kill_broker "${2:-}" ;;
  start-broker) cmd_start_broker "${2:-}" ;;
  pause-broker) cmd_signal_broker STOP "${2:-}" ;;
  resume-broker) cmd_signal_broker CONT "${2:-}" ;;
  truncate) cmd_truncate ;;
  *)
    echo "usage: $0 fetch|up|down|status|kill-broker N|start-broker N|pause-broker N|resume-broker N|truncate" >&2
    exit 2
    ;;
esac
