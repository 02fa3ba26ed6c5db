#!/usr/bin/env bash
# Leader failover as a client sees it (issue 13's figure): kill -9 of the
# leader, then the time until the next write is acknowledged.
#
# Starts a local cluster (scripts/local-cluster.sh), then per trial: finds
# the leader, SIGKILLs it, restarts it after the trial and lets the
# cluster settle before the next. Two ways to look (MODE):
#   cli    fresh `vault-cli add-secret` commands, run one after another
#          from the kill (each with the client's own timeout, nothing cut
#          from outside) until one succeeds; the trial's figure is the time
#          from the kill to that success, and the same command's time on
#          the healthy cluster (median of 5, measured first) is printed so
#          it can be subtracted.
#   bench  `vault-cli bench` (CLIENTS clients with open connections) runs
#          for 8 s and the leader is killed 3 s in; the trial's figure is
#          the slowest acknowledged write (max_ms), with the writes that
#          failed and the run's throughput.
# Prints every trial, then the median and p99; asserts nothing.
#
#   scripts/failover.sh                                   # 3 nodes, 20 trials, default timeouts
#   VAULT_RAFT_HEARTBEAT_MS=50 VAULT_RAFT_ELECTION_MIN_MS=150 VAULT_RAFT_ELECTION_MAX_MS=300 scripts/failover.sh
#   MODE=bench CLIENTS=8 TRIALS=10 scripts/failover.sh
#
# Knobs: MODE (cli), NODES (3), TRIALS (20), CLIENTS (8, bench), KEEP (0),
# BASE_PORT, VAULT_CLI (a binary to measure instead of building), and any
# VAULT_RAFT_* node setting.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${TRIALS:-20}
MODE=${MODE:-cli}
CLIENTS=${CLIENTS:-8}
source scripts/local-cluster.sh

export VAULT_PASSPHRASE=failover-trials
now_ms() { date +%s%3N; }
# One add-secret, by a fresh process.
add() { echo secret | "$CLI" add-secret "$1" --password-stdin >/dev/null 2>"$DIR/add.err"; }

if [ "$MODE" = cli ]; then
    healthy=()
    for i in 1 2 3 4 5; do
        started=$(now_ms)
        add "healthy-$i" || { cat "$DIR/add.err" >&2; exit 1; }
        healthy+=($(($(now_ms) - started)))
    done
    echo "one add-secret on the healthy cluster: $(printf '%s\n' "${healthy[@]}" | sort -n | sed -n 3p) ms (median of 5)"
fi

results=()
for ((trial = 1; trial <= TRIALS; trial++)); do
    wait_for_leader
    sleep 1
    leader=$(leader_id)
    [ -n "$leader" ] || { echo "trial $trial: no leader" >&2; exit 1; }
    if [ "$MODE" = bench ]; then
        "$CLI" --json bench --clients "$CLIENTS" --duration 8s >"$DIR/bench.json" 2>"$DIR/bench.err" &
        bench=$!
        sleep 3
    fi
    killed_at=$(now_ms)
    kill -9 "${PIDS[$((leader - 1))]}"
    wait "${PIDS[$((leader - 1))]}" 2>/dev/null || true
    if [ "$MODE" = bench ]; then
        wait "$bench"
        read -r took ops <<<"$(python3 -c 'import json, sys; b = json.load(open(sys.argv[1])); print(round(b["max_ms"]), b["ops_per_sec"])' "$DIR/bench.json")"
        # Writes that failed (the client's whole timeout passed) are not in
        # max_ms: bench reports them on stderr.
        failed=$(grep -o '^[0-9]* operations failed' "$DIR/bench.err" | cut -d' ' -f1 || true)
        echo "trial $trial: killed node$leader, slowest write $took ms, ${failed:-0} writes failed, $ops writes/s over the 8 s"
    else
        attempts=0
        until add "failover-$trial-$attempts"; do
            attempts=$((attempts + 1))
            # Thirty failures in a row is not a failover but a broken cluster.
            [ "$attempts" -lt 30 ] || { cat "$DIR/add.err" >&2; exit 1; }
        done
        took=$(($(now_ms) - killed_at))
        echo "trial $trial: killed node$leader, first write acknowledged after $took ms ($((attempts + 1)) commands)"
    fi
    results+=("$took")
    start_node "$leader"
done
printf '%s\n' "${results[@]}" | sort -n | awk '{ v[NR] = $1 } END {
    p99 = v[int((NR * 99 + 99) / 100)]; if (p99 == "") p99 = v[NR]
    median = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "failover over %d trials: median %d ms, p99 %d ms, min %d ms, max %d ms\n", NR, median, p99, v[1], v[NR] }'
