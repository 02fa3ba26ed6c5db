#!/usr/bin/env bash
# CPU per committed write, whole machine and per thread (issue 13's figure).
#
# Starts a local cluster of release-built nodes (durable, mutual TLS) on
# loopback (scripts/local-cluster.sh), runs `vault-cli bench` against it,
# and reads /proc before and after the measured run: the machine's busy
# time (user, nice, system, irq,
# softirq, steal from /proc/stat), each node's threads (utime + stime by
# thread name), each node's context switches, and the bench client's own
# CPU. Prints one block of figures per run; measures, asserts nothing.
#
#   scripts/cpu-per-write.sh                       # 3 nodes, 64 clients, 10 s, 256 B
#   NODES=5 CLIENTS=16 SECS=5 RUNS=3 scripts/cpu-per-write.sh
#   IDLE=1 SECS=30 scripts/cpu-per-write.sh        # an idle cluster's CPU instead
#
# Knobs: NODES (3), CLIENTS (64), SECS (10), SIZE (256), RUNS (1),
# BASE_PORT (free ports are searched from 27101), IDLE (0), KEEP (0: the
# cluster directory is removed at the end), VAULT_CLI (a binary to measure
# instead of building one).
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-64}
SECS=${SECS:-10}
SIZE=${SIZE:-256}
RUNS=${RUNS:-1}
IDLE=${IDLE:-0}
source scripts/local-cluster.sh

HZ=$(getconf CLK_TCK)
# Busy jiffies of the whole machine.
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# utime+stime of one process.
process_cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# "name jiffies" per thread of every node, summed by thread name (digits
# folded so that tokio-runtime-w and numbered workers group together).
threads() {
    for pid in "${PIDS[@]}"; do
        for task in /proc/"$pid"/task/*; do
            [ -r "$task/stat" ] || continue
            # comm may hold spaces: take what is between the parentheses.
            sed -E 's/^[0-9]+ \((.*)\) [A-Za-z] (.*)$/\1|\2/' "$task/stat" |
                awk -F'|' '{ split($2, f, " "); name = $1; gsub(/[0-9]+$/, "", name); print name, f[11] + f[12] }'
        done
    done | awk '{ sum[$1] += $2 } END { for (n in sum) print n, sum[n] }' | sort
}
# Voluntary and involuntary context switches of every thread of every node
# (a process's own status file counts its main thread only).
switches() {
    for pid in "${PIDS[@]}"; do
        cat /proc/"$pid"/task/*/status 2>/dev/null
    done | awk '/ctxt_switches/ { s += $2 } END { print s }'
}
# UDP datagrams sent by the whole machine (every node and the client talk
# QUIC over loopback, so this counts both directions of every packet once).
datagrams() { awk '/^Udp:/ { if (header) { print $5; exit } header = 1 }' /proc/net/snmp; }

for ((run = 1; run <= RUNS; run++)); do
    machine0=$(machine_busy)
    threads >"$DIR/threads0"
    switches0=$(switches)
    datagrams0=$(datagrams)
    nodes0=0
    for pid in "${PIDS[@]}"; do nodes0=$((nodes0 + $(process_cpu "$pid"))); done
    if [ "$IDLE" = 1 ]; then
        sleep "$SECS"
        ops=0
        client=0
        bench='{}'
    else
        bench_out=$DIR/bench$run.json
        /usr/bin/time -f '%U %S' -o "$DIR/bench$run.time" \
            "$CLI" --json bench --clients "$CLIENTS" --duration "${SECS}s" --size "$SIZE" >"$bench_out"
        bench=$(cat "$bench_out")
        ops=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ops"])' "$bench_out")
        client=$(awk '{ printf "%d", ($1 + $2) * 1000000 }' "$DIR/bench$run.time")
    fi
    machine1=$(machine_busy)
    threads >"$DIR/threads1"
    switches1=$(switches)
    datagrams1=$(datagrams)
    nodes1=0
    for pid in "${PIDS[@]}"; do nodes1=$((nodes1 + $(process_cpu "$pid"))); done

    us_per_jiffy=$((1000000 / HZ))
    machine_us=$(((machine1 - machine0) * us_per_jiffy))
    nodes_us=$(((nodes1 - nodes0) * us_per_jiffy))
    echo "== run $run: $NODES nodes, $([ "$IDLE" = 1 ] && echo idle || echo "$CLIENTS clients, $SIZE B"), ${SECS} s"
    echo "bench: $bench"
    if [ "$IDLE" = 1 ]; then
        awk -v m="$machine_us" -v n="$nodes_us" -v s="$SECS" 'BEGIN {
            printf "idle: whole machine %.2f %% of one core, the nodes %.2f %%\n", m / s / 1e4, n / s / 1e4 }'
        echo "per thread name, ms of CPU per second (all nodes together):"
        join -a 2 -e 0 -o 0,1.2,2.2 "$DIR/threads0" "$DIR/threads1" |
            awk -v s="$SECS" -v j="$us_per_jiffy" '{ d = ($3 - $2) * j / s / 1000; if (d >= 0.05) printf "  %-20s %8.2f\n", $1, d }' |
            sort -k2 -nr
    else
        awk -v m="$machine_us" -v n="$nodes_us" -v c="$client" -v ops="$ops" \
            -v sw="$((switches1 - switches0))" -v dg="$((datagrams1 - datagrams0))" 'BEGIN {
            if (ops == 0) { print "no writes counted"; exit }
            printf "CPU per write: whole machine %.1f us, the nodes %.1f us, the bench client %.1f us, the rest (kernel, others) %.1f us\n",
                m / ops, n / ops, c / ops, (m - n - c) / ops
            printf "context switches per write (nodes): %.2f; UDP datagrams sent per write (machine): %.2f\n", sw / ops, dg / ops }'
        echo "per thread name, us per write (all nodes together):"
        join -a 2 -e 0 -o 0,1.2,2.2 "$DIR/threads0" "$DIR/threads1" |
            awk -v ops="$ops" -v j="$us_per_jiffy" '{ d = ($3 - $2) * j / ops; if (d >= 0.5) printf "  %-20s %8.1f\n", $1, d }' |
            sort -k2 -nr
    fi
done
