# Sourced by the measurement scripts: builds the release binary and starts
# a local cluster of NODES durable, mutually authenticated nodes on free
# loopback ports, each as its own `vault-cli node run` process.
#
# After sourcing: CLI (the binary; VAULT_CLI to pick one), DIR (the cluster directory),
# PIDS (node k's pid is PIDS[k-1]), VAULT_CONFIG exported, and
# `start_node K`, `wait_for_leader`, `leader_id`. The cluster is stopped
# (and DIR removed unless KEEP=1) when the sourcing script exits.
# Extra node settings come from the environment (VAULT_RAFT_* and the
# like are read by every node).

NODES=${NODES:-3}
KEEP=${KEEP:-0}

# VAULT_CLI names another binary to measure (an older build, say).
if [ -n "${VAULT_CLI:-}" ]; then
    CLI=$VAULT_CLI
else
    cargo build --release -q -p vault-cli
    CLI=$PWD/target/release/vault-cli
fi
DIR=$(mktemp -d /tmp/vault-measure.XXXXXX)
PIDS=()

stop_cluster() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ "$KEEP" = 1 ] || rm -rf "$DIR"
}
trap stop_cluster EXIT

# A run of NODES ports (and their metrics ports, +1000) free on loopback.
port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && ! ss -Huln "sport = :$1" 2>/dev/null | grep -q .; }
BASE_PORT=${BASE_PORT:-27101}
while true; do
    ok=1
    for ((k = 0; k < NODES; k++)); do
        port_free $((BASE_PORT + k)) && port_free $((BASE_PORT + k + 1000)) || { ok=0; break; }
    done
    [ $ok = 1 ] && break
    BASE_PORT=$((BASE_PORT + NODES))
done

"$CLI" cluster init --dir "$DIR" --nodes "$NODES" --base-port "$BASE_PORT" >/dev/null
export VAULT_CONFIG=$DIR/client.toml

# Starts node K (again, after a kill), appending to its log.
start_node() {
    "$CLI" node run --config "$DIR/node$1/node.toml" >>"$DIR/node$1.log" 2>&1 &
    PIDS[$(($1 - 1))]=$!
}

# The id of the node every reachable node agrees leads, or nothing.
leader_id() {
    "$CLI" --json status 2>/dev/null | python3 -c '
import json, sys
try:
    nodes = json.load(sys.stdin)["nodes"]
except Exception:
    sys.exit(0)
leaders = {n.get("leader") for n in nodes if n.get("reachable")}
roles = [n for n in nodes if n.get("role") == "leader"]
if len(leaders) == 1 and len(roles) == 1 and None not in leaders:
    print(str(roles[0]["id"]).removeprefix("node"))'
}

# Waits (up to 20 s) until one leader is agreed on and every node answers.
wait_for_leader() {
    for _ in $(seq 1 100); do
        if [ -n "$(leader_id)" ] && ! "$CLI" --json status 2>/dev/null | grep -q '"reachable": *false'; then
            return 0
        fi
        sleep 0.2
    done
    echo "no leader after 20 s" >&2
    return 1
}

for ((k = 1; k <= NODES; k++)); do start_node "$k"; done
wait_for_leader
