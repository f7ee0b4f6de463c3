#!/usr/bin/env bash
# Local Redis Cluster for tests and CI: three masters and three replicas on
# loopback, from the Debian redis-server package. No Docker.
#
# Usage:
#   bash scripts/redis-cluster.sh start              start six nodes and create the cluster (fresh data)
#   bash scripts/redis-cluster.sh stop               stop exactly the nodes in our pid files, remove our files
#   bash scripts/redis-cluster.sh status             print the nodes; exit 0 when healthy, 1 otherwise
#   bash scripts/redis-cluster.sh start-node <port>  start one node again with its nodes-<port>.conf (a
#                                                    crashed master rejoins as a replica); for fault tests
#
# Environment:
#   REDIS_CLUSTER_PORT          first port, the nodes use PORT..PORT+5   (default 17000)
#   REDIS_CLUSTER_BUS_OFFSET    cluster bus port = port + offset          (default 10000, Redis' own)
#   REDIS_CLUSTER_DIR           configs, pids, logs                       (default a temp dir, recorded in
#                                                                          ${TMPDIR:-/tmp}/fastify-ws-hub-redis-cluster-PORT.dir
#                                                                          so stop and status find it)
#   REDIS_CLUSTER_NODE_TIMEOUT  cluster-node-timeout, ms                  (default 2000: failover in a few s)
#   REDIS_CLUSTER_START_TIMEOUT readiness timeout, s                      (default 30)
#
# "Healthy" means: every node says cluster_state:ok with all 16384 slots ok,
# three masters own slots, and each has a replica whose replication link is up
# (so killing any master is followed by a failover).
#
# On a successful start prints:
#   REDIS_CLUSTER_NODES=127.0.0.1:17000,127.0.0.1:17001,...,127.0.0.1:17005
set -euo pipefail

HOST=127.0.0.1
PORT="${REDIS_CLUSTER_PORT:-17000}"
BUS_OFFSET="${REDIS_CLUSTER_BUS_OFFSET:-10000}"
NODE_TIMEOUT="${REDIS_CLUSTER_NODE_TIMEOUT:-2000}"
START_TIMEOUT="${REDIS_CLUSTER_START_TIMEOUT:-30}"
STOP_TIMEOUT=10
NODES=6
MASTERS=3

[[ "$PORT" =~ ^[0-9]+$ ]] && (( PORT > 0 && PORT + NODES - 1 + BUS_OFFSET <= 65535 )) \
  || { echo "redis-cluster.sh: ERROR: bad REDIS_CLUSTER_PORT/REDIS_CLUSTER_BUS_OFFSET: $PORT/$BUS_OFFSET" >&2; exit 2; }

# Where the data dir of the cluster on $PORT is recorded when none was given.
DIR_RECORD="${TMPDIR:-/tmp}/fastify-ws-hub-redis-cluster-$PORT.dir"
LOCK_FILE="${TMPDIR:-/tmp}/fastify-ws-hub-redis-cluster-$PORT.lock"
if [[ -n "${REDIS_CLUSTER_DIR:-}" ]]; then
  DIR="$REDIS_CLUSTER_DIR"
elif [[ -s "$DIR_RECORD" ]]; then
  DIR="$(cat "$DIR_RECORD")"
else
  DIR=""  # created by start
fi

log() { echo "redis-cluster.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- helpers ---

ports() { seq "$PORT" $((PORT + NODES - 1)); }

nodes_line() {
  local list=() p
  for p in $(ports); do list+=("$HOST:$p"); done
  (IFS=,; echo "REDIS_CLUSTER_NODES=${list[*]}")
}

# Everything this script creates inside DIR (stop removes only these).
pid_file() { echo "$DIR/redis-$1.pid"; }
log_file() { echo "$DIR/redis-$1.log"; }
conf_file() { echo "$DIR/nodes-$1.conf"; }
# A replica saves the copy it receives from its master: one file per node, so a
# restarted node never loads another node's keys.
rdb_name() { echo "dump-$1.rdb"; }
CREATE_LOG() { echo "$DIR/cluster-create.log"; }

with_lock() {
  # Serialise concurrent start/stop invocations on the same ports.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCK_FILE"
    flock -w 120 9 || die "could not acquire $LOCK_FILE"
  fi
}

# PID of our node on $1 if running (pid file + live redis-server process that
# serves that port), else empty. Guards against PID reuse: we only ever signal
# a process that is our redis-server.
running_pid() {
  [[ -n "$DIR" ]] || return 0
  local f pid cmd
  f="$(pid_file "$1")"
  [[ -f "$f" ]] || return 0
  pid="$(tr -dc '0-9' <"$f")"
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  if [[ -r "/proc/$pid/cmdline" ]]; then
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    [[ "$cmd" == redis-server*":$1"* ]] || return 0
  fi
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# A node's answer, or nothing when it does not answer within 5 s (a paused node).
cli() { local p="$1"; shift; timeout 5 redis-cli -h "$HOST" -p "$p" "$@" 2>/dev/null || true; }

last_logs() {
  local p
  for p in $(ports); do
    [[ -f "$(log_file "$p")" ]] && { echo "--- $(log_file "$p")"; tail -n 8 "$(log_file "$p")"; }
  done >&2
  [[ -f "$(CREATE_LOG)" ]] && { echo "--- $(CREATE_LOG)"; tail -n 20 "$(CREATE_LOG)"; } >&2
  return 0
}

# Starts the node on $1 with its (possibly existing) cluster config and waits
# until it answers PING.
start_node() {
  local p="$1" pid
  pid="$(running_pid "$p")"
  [[ -z "$pid" ]] || return 0
  port_open "$p" && die "port $HOST:$p is already in use by another process"
  rm -f -- "$(pid_file "$p")"
  # repl-diskless-sync-delay 0: a replica gets its first copy at once, not
  # after the default 5 s (a failover needs a synced replica).
  redis-server --port "$p" --bind "$HOST" \
    --cluster-enabled yes --cluster-config-file "$(conf_file "$p")" \
    --cluster-port $((p + BUS_OFFSET)) --cluster-node-timeout "$NODE_TIMEOUT" \
    --save '' --appendonly no --dbfilename "$(rdb_name "$p")" \
    --repl-diskless-sync-delay 0 \
    --daemonize yes --pidfile "$(pid_file "$p")" --logfile "$(log_file "$p")" --dir "$DIR" \
    </dev/null >/dev/null 9>&- || { last_logs; die "redis-server on $HOST:$p did not start"; }
  local deadline=$((SECONDS + 10))
  until [[ "$(cli "$p" ping)" == PONG ]]; do
    (( SECONDS < deadline )) || { last_logs; die "node $HOST:$p does not answer PING after 10s"; }
    sleep 0.1
  done
  [[ -n "$(running_pid "$p")" ]] || { last_logs; die "node $HOST:$p answers but wrote no pid file we can use"; }
}

# Prints why the cluster is not healthy, or nothing when it is.
unhealthy_reason() {
  local p info nodes
  for p in $(ports); do
    [[ -n "$(running_pid "$p")" ]] || { echo "node $HOST:$p is not running"; return; }
    info="$(cli "$p" cluster info | tr -d '\r')"
    [[ "$info" == *"cluster_state:ok"* ]] || { echo "node $HOST:$p: cluster_state is not ok"; return; }
    [[ "$info" == *"cluster_slots_ok:16384"* ]] || { echo "node $HOST:$p: not all 16384 slots are ok"; return; }
    [[ "$info" == *"cluster_known_nodes:$NODES"* ]] || { echo "node $HOST:$p does not know all $NODES nodes yet"; return; }
  done
  nodes="$(cli "$PORT" cluster nodes | tr -d '\r')"
  # Fields: id addr flags master-id ping pong epoch link-state slots...
  local reason
  reason="$(awk -v want="$MASTERS" '
    $3 ~ /fail/ { print "node " $2 " is flagged " $3; exit }
    $3 ~ /master/ && NF >= 9 { masters[$1] = $2 }
    $3 ~ /slave/ && $8 == "connected" { replicated[$4] = 1 }
    END {
      n = 0
      for (id in masters) { n++; if (!(id in replicated)) { print "master " masters[id] " has no connected replica"; exit } }
      if (n != want) print n " masters own slots, want " want
    }' <<<"$nodes")"
  [[ -z "$reason" ]] || { echo "$reason"; return; }
  # A replica only takes over if it has synced; wait for every link to be up.
  for p in $(ports); do
    info="$(cli "$p" info replication | tr -d '\r')"
    if [[ "$info" == *"role:slave"* && "$info" != *"master_link_status:up"* ]]; then
      echo "replica $HOST:$p has not synced with its master yet"; return
    fi
  done
}

wait_healthy() {
  local deadline=$((SECONDS + START_TIMEOUT)) reason
  while :; do
    reason="$(unhealthy_reason)"
    [[ -n "$reason" ]] || return 0
    if (( SECONDS >= deadline )); then
      log "ERROR: cluster not healthy after ${START_TIMEOUT}s: $reason. Last log lines:"
      last_logs
      return 1
    fi
    sleep 0.2
  done
}

# Stops every node in our pid files: SIGCONT (a paused node cannot exit),
# SIGTERM, then SIGKILL after STOP_TIMEOUT; returns once all are gone.
stop_nodes() {
  local p pid pids=()
  for p in $(ports); do
    pid="$(running_pid "$p")"
    [[ -n "$pid" ]] && pids+=("$pid")
  done
  (( ${#pids[@]} > 0 )) || return 0
  log "stopping nodes (pids ${pids[*]}) ..."
  kill -CONT "${pids[@]}" 2>/dev/null || true
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local waited=0 alive
  while :; do
    alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    (( ${#alive[@]} > 0 )) || break
    if (( waited == STOP_TIMEOUT * 10 )); then
      log "still alive after ${STOP_TIMEOUT}s, sending SIGKILL to ${alive[*]}"
      kill -KILL "${alive[@]}" 2>/dev/null || true
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

remove_files() {
  [[ -n "$DIR" && -d "$DIR" ]] || return 0
  local p
  for p in $(ports); do
    rm -f -- "$(pid_file "$p")" "$(log_file "$p")" "$(conf_file "$p")" "$DIR/$(rdb_name "$p")"
  done
  # A node killed while receiving a sync leaves its temp-<pid>.rdb behind.
  rm -f -- "$(CREATE_LOG)" "$DIR"/temp-*.rdb
  rmdir -- "$DIR" 2>/dev/null || log "left $DIR in place: it holds files that are not ours"
}

# A fresh start failed (its log lines are printed): leave nothing behind.
abort_start() {
  stop_nodes
  remove_files
  rm -f -- "$DIR_RECORD" "$LOCK_FILE"
  exit 1
}

# ------------------------------------------------------------- subcommands --

cmd_status() {
  local p pid reason
  for p in $(ports); do
    pid="$(running_pid "$p")"
    if [[ -n "$pid" ]]; then echo "$HOST:$p running (pid $pid)"; else echo "$HOST:$p stopped"; fi
  done
  reason="$(unhealthy_reason)"
  if [[ -z "$reason" ]]; then
    echo "healthy ($(nodes_line))"
    return 0
  fi
  echo "not healthy: $reason"
  return 1
}

cmd_stop() {
  with_lock
  if [[ -z "$DIR" ]]; then
    log "not running (no data dir recorded in $DIR_RECORD)"
    return 0
  fi
  stop_nodes
  remove_files
  # The lock file goes too, so private clusters on random ports leave nothing
  # behind (a start waiting on it at this moment is not a case we support).
  rm -f -- "$DIR_RECORD" "$LOCK_FILE"
  log "stopped"
}

cmd_start() {
  with_lock
  command -v redis-server >/dev/null 2>&1 || die "redis-server not found (Debian package redis-server)"
  command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found (Debian package redis-tools)"

  local p running=0
  for p in $(ports); do [[ -n "$(running_pid "$p")" ]] && running=$((running + 1)); done
  if (( running == NODES )) && [[ -z "$(unhealthy_reason)" ]]; then
    log "already running and healthy (data $DIR)"
    nodes_line
    return 0
  fi
  if (( running > 0 )); then
    # Ours, but not (yet) healthy: a crashed node, a failover under way, or a
    # cluster still converging. Bring missing nodes back and give it the timeout.
    log "$running of $NODES nodes running; starting the others and waiting for the cluster"
    for p in $(ports); do start_node "$p"; done
    wait_healthy || die "the cluster in $DIR is running but not healthy; 'stop' then 'start' gives a fresh one"
    nodes_line
    return 0
  fi

  # Nothing of ours runs: a fresh cluster. Data is not persisted, so old
  # configs (from a crash) are dropped rather than rejoined.
  # Ports first, before anything is written: a start that collides with
  # another cluster must not touch that cluster's record.
  for p in $(ports); do
    port_open "$p" && die "port $HOST:$p is already in use by another process"
    port_open $((p + BUS_OFFSET)) && die "cluster bus port $HOST:$((p + BUS_OFFSET)) is already in use by another process"
  done
  if [[ -z "$DIR" ]]; then
    DIR="$(mktemp -d "${TMPDIR:-/tmp}/redis-cluster-$PORT.XXXXXX")"
  fi
  mkdir -p "$DIR"
  echo "$DIR" >"$DIR_RECORD"
  for p in $(ports); do
    rm -f -- "$(pid_file "$p")" "$(conf_file "$p")" "$DIR/$(rdb_name "$p")"
    : >"$(log_file "$p")"
  done

  log "starting $NODES nodes on $HOST:$PORT..$((PORT + NODES - 1)) (data $DIR, node timeout ${NODE_TIMEOUT}ms) ..."
  for p in $(ports); do (start_node "$p") || abort_start; done

  local addrs=()
  for p in $(ports); do addrs+=("$HOST:$p"); done
  if ! timeout "$START_TIMEOUT" redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
      </dev/null >"$(CREATE_LOG)" 2>&1; then
    log "ERROR: redis-cli --cluster create failed. Last log lines:"
    last_logs
    abort_start
  fi
  wait_healthy || abort_start
  log "ready"
  nodes_line
}

cmd_start_node() {
  local p="${1:-}"
  [[ "$p" =~ ^[0-9]+$ ]] && (( p >= PORT && p < PORT + NODES )) \
    || die "start-node needs a port in $PORT..$((PORT + NODES - 1)), got '${p}'"
  [[ -n "$DIR" && -f "$(conf_file "$p")" ]] || die "no cluster config for $HOST:$p (is the cluster on $PORT started?)"
  with_lock
  start_node "$p"
  log "node $HOST:$p started (pid $(running_pid "$p"))"
}

# -------------------------------------------------------------------- main --

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  start-node) cmd_start_node "${2:-}" ;;
  *) echo "usage: $0 {start|stop|status|start-node <port>}" >&2; exit 2 ;;
esac
