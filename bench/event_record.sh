#!/usr/bin/env bash
# Events per second of two pwru builds side by side, for the ring record's
# size (bpf/pwru_abi.h): a plain trace and one with --output-skb-cb and
# --output-tunnel, under the same paced UDP flood, runs interleaved.
#
# Usage (as root):  bash bench/event_record.sh BEFORE_PWRU AFTER_PWRU
#
# Tunables (environment):
#   BENCH_ROUNDS    rounds; each runs every (mode, binary) once   (default 3)
#   BENCH_DURATION  seconds of UDP per run                         (default 5)
#   BENCH_PPS       UDP datagrams per second sent                   (default 40000)
#
# Per run: events/s = pwru's "N events received" / the sender's wall time,
# lost = its "N events lost", ns/event = the run time of pwru's BPF programs
# (kernel.bpf_stats_enabled, restored on exit) / their run count.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[[ $# -eq 2 ]] || { echo "usage: bash bench/event_record.sh BEFORE_PWRU AFTER_PWRU" >&2; exit 2; }
declare -A BIN=([before]=$1 [after]=$2)

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-5}
PPS=${BENCH_PPS:-40000}
UDP_LEN=64
READY_TIMEOUT=30
STOP_TIMEOUT=15
CLIENT_TIMEOUT=$((DURATION + 30))

NS_A=pwe-$$-a
NS_B=pwe-$$-b
ADDR_A=10.231.3.1
ADDR_B=10.231.3.2
NS_EXTRA=()
PORT=5202

# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

[[ $(id -u) -eq 0 ]] || die "must run as root"
for tool in ip iperf3 python3 timeout stat bpftool sysctl; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found"
done
for which in before after; do
    [[ -x ${BIN[$which]} ]] || die "$which binary '${BIN[$which]}' not found or not executable"
done
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "BENCH_ROUNDS must be a positive integer"
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 && $DURATION -le 60 ]] || die "BENCH_DURATION must be an integer in 1..60"
[[ $PPS =~ ^[0-9]+$ && $PPS -ge 1 && $PPS -le 1000000 ]] || die "BENCH_PPS must be an integer in 1..1000000"
for ns in "$NS_A" "$NS_B"; do
    [[ ! -e /var/run/netns/$ns ]] || die "netns $ns already exists"
done


TMP=$(mktemp -d /tmp/pwru-bench-record.XXXXXX)
PWRU_PID=""
SERVER_PID=""
NS_CREATED=()
BPF_STATS_BEFORE=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo 0)

stop_bench_processes() {
    stop_pid "$PWRU_PID" INT
    stop_pid "$SERVER_PID" TERM
}
bench_cleanup_on_exit


pwru_count() { # pwru_count received|lost : from the last run's stderr
    local n
    n=$(sed -n "s/^pwru: \([0-9][0-9]*\) events $1.*\$/\1/p" "$PWRU_LOG" | tail -n 1)
    [[ -n $n || $1 == lost ]] || { tail -n 20 "$PWRU_LOG" >&2; die "pwru did not print 'pwru: N events $1'"; }
    echo "${n:-0}"
}

prog_stats() { # "run_time_ns run_cnt" of the BPF programs the running pwru holds
    # its programs are the prog_id of its file descriptors (bpftool's pids
    # column needs a bpftool built with it; other pwru runs may be loaded)
    local ids
    ids=$(sed -n 's/^prog_id:[[:space:]]*\([0-9]*\)$/\1/p' /proc/"$PWRU_PID"/fdinfo/* 2>/dev/null | sort -u | tr '\n' ' ')
    bpftool -j prog show | python3 -c '
import json, sys
ids = {int(i) for i in sys.argv[1].split()}
t = c = 0
for p in json.load(sys.stdin):
    if p.get("id") in ids:
        t += p.get("run_time_ns", 0)
        c += p.get("run_cnt", 0)
print(t, c)' "$ids"
}

log "before: ${BIN[before]}"
log "after:  ${BIN[after]}"
setup_netns
start_server
DURATION=1 run_client "$TMP/warmup.json"
SERVER_INODE=$(stat -L -c %i "/var/run/netns/$NS_B")
sysctl -q -w kernel.bpf_stats_enabled=1 || die "cannot enable kernel.bpf_stats_enabled"

MODES=(plain options)
declare -A MODE_ARGS=([plain]="" [options]="--output-meta --output-skb-cb --output-tunnel")
declare -A EPS NS LOST
for round in $(seq 1 "$ROUNDS"); do
    # alternate which binary goes first, so that drift in the machine's load
    # does not favour one
    order=(before after)
    ((round % 2 == 0)) && order=(after before)
    for mode in "${MODES[@]}"; do
        for which in "${order[@]}"; do
            read -r -a extra <<<"${MODE_ARGS[$mode]}"
            name=$mode-$which-$round
            start_pwru "${BIN[$which]}" "$name" --filter-netns "inode:$SERVER_INODE" --output-json \
                --output-file /dev/null "${extra[@]}"
            t0=$(now)
            run_client "$TMP/udp-$name.json" -u -b $((PPS * UDP_LEN * 8)) -l "$UDP_LEN"
            t1=$(now)
            read -r run_ns run_cnt < <(prog_stats)
            stop_pwru
            received=$(pwru_count received)
            lost=$(pwru_count lost)
            eps=$(calc "int(round($received / ($t1 - $t0)))")
            per_event=$(calc "round($run_ns / $run_cnt, 1) if $run_cnt else 0")
            EPS[$mode-$which]+="$eps "
            NS[$mode-$which]+="$per_event "
            LOST[$mode-$which]=$((${LOST[$mode-$which]:-0} + lost))
            echo "run round=$round mode=$mode binary=$which events=$received events_per_second=$eps lost=$lost" \
                "bpf_ns_per_run=$per_event"
        done
    done
done

echo "loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in "${MODES[@]}"; do
    # shellcheck disable=SC2086
    b=$(median ${EPS[$mode-before]})
    # shellcheck disable=SC2086
    a=$(median ${EPS[$mode-after]})
    # shellcheck disable=SC2086
    nb=$(median ${NS[$mode-before]})
    # shellcheck disable=SC2086
    na=$(median ${NS[$mode-after]})
    echo "event_record mode=$mode events_per_second before=$(calc "int($b)") after=$(calc "int($a)")" \
        "ratio=$(calc "f'{$a/$b:.3f}'" 2>/dev/null || echo nan)" \
        "lost before=${LOST[$mode-before]} after=${LOST[$mode-after]}" \
        "bpf_ns_per_run before=$nb after=$na ratio=$(calc "f'{$na/$nb:.3f}'" 2>/dev/null || echo nan)"
done
