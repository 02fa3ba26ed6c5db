#!/usr/bin/env bash
# How the vault holds up as it grows (issue 13's growth figures).
#
# Starts a local cluster (scripts/local-cluster.sh) and measures, in order:
#   1. add-secret throughput of the fresh vault (`vault-cli bench`, CLIENTS
#      clients, SECS seconds);
#   2. the time to fill it to SECRETS secrets (bench --ops);
#   3. the same throughput at that size;
#   4. each node's memory (VmRSS, of it anonymous and file-backed, from
#      /proc/PID/status), the leader marked, then the same load for
#      MEMORY_SECS seconds with every node's RSS and anonymous memory read
#      every second: median and maximum over that time (one reading can
#      fall on a snapshot or between two);
#   5. each node's data directory on disk against the ciphertext it holds
#      (the secrets' and versions' ciphertext columns, read from the node's
#      own SQLite file);
#   6. catch-up: a follower is killed, writes go on for SECS seconds, the
#      follower is restarted, and the time until its applied index reaches
#      the leader's commit index of the moment it was restarted.
# Prints the figures; asserts nothing.
#
#   scripts/growth.sh                              # 3 nodes, 1 000 000 secrets
#   SECRETS=100000 SECS=5 scripts/growth.sh
#
# Knobs: SECRETS (1000000), CLIENTS (64), SECS (10), MEMORY_SECS (40),
# SIZE (256), NODES (3), KEEP (0), BASE_PORT, VAULT_CLI (a binary to
# measure instead of building).
set -euo pipefail
cd "$(dirname "$0")/.."
SECRETS=${SECRETS:-1000000}
CLIENTS=${CLIENTS:-64}
SECS=${SECS:-10}
MEMORY_SECS=${MEMORY_SECS:-40}
SIZE=${SIZE:-256}
source scripts/local-cluster.sh
export VAULT_PASSPHRASE=growth

now_ms() { date +%s%3N; }
json() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
bench() { "$CLI" --json bench --clients "$CLIENTS" --size "$SIZE" "$@" >"$DIR/bench.json"; }
# The field `field` of node `id` in `vault-cli status`.
node_field() {
    "$CLI" --json status 2>/dev/null | python3 -c '
import json, sys
for node in json.load(sys.stdin)["nodes"]:
    if str(node["id"]).removeprefix("node") == sys.argv[1]:
        print(node.get(sys.argv[2]) or 0)' "$1" "$2"
}

bench --duration "${SECS}s"
fresh=$(json "$DIR/bench.json" ops_per_sec)
echo "fresh vault: $fresh writes/s (p99 $(json "$DIR/bench.json" p99_ms) ms)"

started=$(now_ms)
bench --ops "$SECRETS"
echo "filled with $SECRETS secrets in $((($(now_ms) - started) / 1000)) s ($(json "$DIR/bench.json" ops_per_sec) writes/s)"

bench --duration "${SECS}s"
grown=$(json "$DIR/bench.json" ops_per_sec)
python3 -c 'import sys; f, g = map(float, sys.argv[1:3]); print(f"at {sys.argv[3]} secrets: {g:.0f} writes/s (p99 {sys.argv[4]} ms), {100 * g / f:.0f} % of the fresh vault")' \
    "$fresh" "$grown" "$SECRETS" "$(json "$DIR/bench.json" p99_ms)"

leader=$(leader_id)
for ((k = 1; k <= NODES; k++)); do
    role=follower
    [ "$k" = "$leader" ] && role=leader
    awk -v node="node$k" -v role="$role" '
        /^VmRSS/ { rss = $2 } /^RssAnon/ { anon = $2 } /^RssFile/ { file = $2 }
        END { printf "%s (%s): RSS %.0f MB (anonymous %.0f MB, file-backed %.0f MB)\n", node, role, rss / 1024, anon / 1024, file / 1024 }' \
        "/proc/${PIDS[$((k - 1))]}/status"
done
# Anonymous memory of every node once a second while the load runs.
samples=$DIR/memory.samples
(
    while true; do
        for ((k = 1; k <= NODES; k++)); do
            awk -v node="$k" '/^VmRSS/ { rss = $2 } /^RssAnon/ { anon = $2 } END { print node, rss, anon }' "/proc/${PIDS[$((k - 1))]}/status" 2>/dev/null || true
        done
        sleep 1
    done
) >"$samples" &
sampler=$!
bench --duration "${MEMORY_SECS}s"
kill "$sampler"
wait "$sampler" 2>/dev/null || true
echo "over ${MEMORY_SECS} s more of writes ($(json "$DIR/bench.json" ops_per_sec) writes/s), memory median / max:"
python3 -c '
import statistics, sys
leader, by_node = sys.argv[2], {}
for line in open(sys.argv[1]):
    node, rss, anon = line.split()
    by_node.setdefault(node, []).append((int(rss) / 1024, int(anon) / 1024))
for node in sorted(by_node, key=int):
    rss = [r for r, _ in by_node[node]]
    anon = [a for _, a in by_node[node]]
    role = "leader" if node == leader else "follower"
    print(f"  node{node} ({role}): RSS {statistics.median(rss):.0f} / {max(rss):.0f} MB, "
          f"anonymous {statistics.median(anon):.0f} / {max(anon):.0f} MB, {len(rss)} readings")
' "$samples" "$leader"
for ((k = 1; k <= NODES; k++)); do
    disk=$(du -sb "$DIR/node$k/data" | cut -f1)
    cipher=$(python3 -c '
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(sum(db.execute(f"SELECT coalesce(sum(length(ciphertext)), 0) FROM {t}").fetchone()[0]
          for t in ("secrets", "secret_versions")))' "$DIR/node$k/data/vault.db")
    python3 -c 'import sys; d, c = map(int, sys.argv[2:]); print(f"node{sys.argv[1]}: {d / 1e6:.0f} MB on disk for {c / 1e6:.0f} MB of ciphertext ({d / max(c, 1):.2f}x)")' "$k" "$disk" "$cipher"
done
du -sb "$DIR"/node"${leader}"/data/* | awk '{ printf "  leader %s: %.0f MB\n", $2, $1 / 1e6 }' | sed "s|$DIR/||"

follower=1
[ "$leader" = 1 ] && follower=2
kill -9 "${PIDS[$((follower - 1))]}"
wait "${PIDS[$((follower - 1))]}" 2>/dev/null || true
bench --duration "${SECS}s"
target=$(node_field "$leader" commit_index)
restarted=$(now_ms)
start_node "$follower"
until [ "$(node_field "$follower" applied_index)" -ge "$target" ] 2>/dev/null; do
    sleep 0.05
    [ $(($(now_ms) - restarted)) -lt 120000 ] || { echo "node$follower did not catch up in 120 s" >&2; exit 1; }
done
echo "node$follower, down while $(json "$DIR/bench.json" ops) writes were made, caught up $(($(now_ms) - restarted)) ms after its restart (applied index $target)"
