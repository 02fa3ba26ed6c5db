#!/usr/bin/env bash
# Benchmark (not a test): how long a new node takes to become a voter in a
# 3-node cluster that already holds N secrets (SPEC §13, catch-up).
#
#   deploy/join-at-scale.sh [BIN] [N] [DIR]
#
# BIN defaults to target/release/vault-cli, N to 1000000, DIR to a fresh
# temporary directory. It makes a cluster on loopback with random free-ish
# ports, fills it with `bench --ops N` (256-byte secrets, 64 clients), then
# runs `cluster add-node`, `member add` and `node run` for node4 and polls
# `member list --json` until node4 is a voter. Every process it starts is
# stopped on exit. Figures go to stdout.
set -euo pipefail

BIN=${1:-target/release/vault-cli}
N=${2:-1000000}
DIR=${3:-$(mktemp -d /tmp/join-at-scale.XXXXXX)}
BIN=$(realpath "$BIN")
BASE=$((20000 + RANDOM % 20000))
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

rm -rf "$DIR"
mkdir -p "$DIR"
"$BIN" cluster init --dir "$DIR" --nodes 3 --base-port "$BASE" >/dev/null
for k in 1 2 3; do
    "$BIN" node run --config "$DIR/node$k/node.toml" 2>"$DIR/node$k.log" &
    PIDS+=($!)
done
export VAULT_CONFIG=$DIR/client.toml
export VAULT_PASSPHRASE=join-at-scale
until "$BIN" status --json >/dev/null 2>&1; do sleep 0.2; done

echo "fill: $N secrets of 256 bytes, 64 clients"
t=$(now)
"$BIN" bench --clients 64 --ops "$N" --size 256 --json
echo "fill took $(since "$t") s"
sleep 2
du -sh "$DIR"/node1/data | sed 's/^/node1 data: /'
ls -l "$DIR"/node1/data/raft/ 2>/dev/null | grep -i snap || true

ADDR=127.0.0.1:$((BASE + 3))
"$BIN" cluster add-node --dir "$DIR" --id node4 --addr "$ADDR" >/dev/null
t=$(now)
"$BIN" member add node4 --addr "$ADDR" >/dev/null
"$BIN" node run --config "$DIR/node4/node.toml" 2>"$DIR/node4.log" &
PIDS+=($!)
deadline=$(( $(date +%s) + 600 ))
while :; do
    if "$BIN" member list --json 2>/dev/null |
        grep -q '"id":"node4"[^}]*"role":"voter"'; then
        break
    fi
    if [ "$(date +%s)" -gt "$deadline" ]; then
        echo "node4 was not a voter after 600 s" >&2
        "$BIN" member list >&2 || true
        exit 1
    fi
    sleep 0.1
done
echo "node4 voter after $(since "$t") s (from member add)"
"$BIN" member list
grep -i "snapshot" "$DIR/node4.log" | tail -3 || true
