#!/usr/bin/env bash
# pwru-agent benchmark: tracer overhead and event throughput.
#
# Usage (as root):  bash bench/run.sh [PATH_TO_PWRU]
#   PATH_TO_PWRU defaults to build/pwru relative to the repository root.
#
# Tunables (environment):
#   BENCH_ROUNDS      TCP rounds per mode (baseline/traced), >= 3   (default 3)
#   BENCH_DURATION    seconds per iperf3 run                        (default 5)
#   BENCH_UDP_PPS     packet rate of the first events step          (default 17000)
#   BENCH_MAX_PPS     highest packet rate the events steps may use  (default 400000)
#
# Measures, in one run, with baseline and traced runs interleaved:
#   1. TCP throughput over a veth pair between two netns, without a tracer and
#      with pwru attached but filtered on a third, idle netns.
#   2. Events per second pwru delivers (and events lost) while tracing the netns
#      of a paced small-packet UDP sender.
#   3. Per-hit cost of the pcap filter: average run time of the tracepoint
#      programs (kernel.bpf_stats_enabled) under the same TCP load, with a
#      pcap filter against without one, when both reject and when both match.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

PWRU=${1:-$REPO_ROOT/build/pwru}
case $PWRU in /*) ;; *) PWRU=$PWD/$PWRU ;; esac

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-5}
UDP_PPS=${BENCH_UDP_PPS:-17000}
MAX_PPS=${BENCH_MAX_PPS:-400000}
UDP_LEN=64                 # datagram payload bytes (iperf3 -l)
EVENTS_TARGET=100000       # events/s the tracer must sustain without loss
MAX_EVENT_STEPS=3          # bound on the number of events steps
READY_TIMEOUT=30           # seconds to wait for pwru's ready file
STOP_TIMEOUT=15            # seconds to wait for pwru to exit after SIGINT
CLIENT_TIMEOUT=$((DURATION + 30))

NS_A=pwb-$$-a              # iperf3 client
NS_B=pwb-$$-b              # iperf3 server
NS_IDLE=pwb-$$-idle        # idle netns the overhead run filters on
ADDR_A=10.231.1.1
ADDR_B=10.231.1.2
NS_EXTRA=("$NS_IDLE")
PORT=5201

# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

# ---------------------------------------------------------------- preflight
[[ $(id -u) -eq 0 ]] || die "must run as root"
for tool in ip iperf3 python3 timeout stat bpftool sysctl; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found"
done
[[ -x $PWRU ]] || die "pwru binary '$PWRU' not found or not executable (build it first or pass its path as \$1)"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 3 ]] || die "BENCH_ROUNDS must be an integer >= 3"
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 ]] || die "BENCH_DURATION must be a positive integer"
[[ $UDP_PPS =~ ^[0-9]+$ && $UDP_PPS -ge 1 ]] || die "BENCH_UDP_PPS must be a positive integer"
[[ $MAX_PPS =~ ^[0-9]+$ && $MAX_PPS -ge $UDP_PPS ]] || die "BENCH_MAX_PPS must be an integer >= BENCH_UDP_PPS"
for ns in "$NS_A" "$NS_B" "$NS_IDLE"; do
    [[ ! -e /var/run/netns/$ns ]] || die "netns $ns already exists"
done


TMP=$(mktemp -d /tmp/pwru-bench.XXXXXX)
PWRU_PID=""
SERVER_PID=""
NS_CREATED=()
BPF_STATS_BEFORE=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo 0)

# ---------------------------------------------------------------- cleanup
stop_bench_processes() {
    stop_pid "$PWRU_PID" INT
    stop_pid "$SERVER_PID" TERM
}
bench_cleanup_on_exit

# ---------------------------------------------------------------- helpers
netns_inode() {
    stat -L -c %i "/var/run/netns/$1" || die "cannot stat netns $1"
}


# stderr counters of the last pwru run
pwru_received() {
    local n
    n=$(sed -n 's/^pwru: \([0-9][0-9]*\) events received$/\1/p' "$PWRU_LOG" | tail -n 1)
    [[ -n $n ]] || { tail -n 20 "$PWRU_LOG" >&2; die "pwru did not print 'pwru: N events received' on exit"; }
    echo "$n"
}
pwru_lost() {
    local n
    n=$(sed -n 's/^pwru: \([0-9][0-9]*\) events lost.*$/\1/p' "$PWRU_LOG" | tail -n 1)
    echo "${n:-0}"
}

# ---------------------------------------------------------------- setup
log "pwru binary: $PWRU"
setup_netns
start_server
# warm-up run, also the connectivity check
log "warm-up run (connectivity check)"
DURATION=1 run_client "$TMP/warmup.json"
IDLE_INODE=$(netns_inode "$NS_IDLE")
CLIENT_INODE=$(netns_inode "$NS_A")
SERVER_INODE=$(netns_inode "$NS_B")
log "netns: client=$NS_A (inode $CLIENT_INODE) server=$NS_B idle=$NS_IDLE (inode $IDLE_INODE)"

# ---------------------------------------------------------------- 1. TCP overhead
BASE=()
TRACED=()
for round in $(seq 1 "$ROUNDS"); do
    run_client "$TMP/tcp-base-$round.json"
    bps=$(pyjson "$TMP/tcp-base-$round.json" 'j["end"]["sum_received"]["bits_per_second"]') \
        || die "cannot parse iperf3 output (baseline round $round)"
    BASE+=("$bps")
    log "round $round baseline: $(calc "round($bps/1e9, 3)") Gbit/s"

    start_pwru "$PWRU" "tcp-$round" --filter-netns "inode:$IDLE_INODE" --output-file /dev/null
    run_client "$TMP/tcp-traced-$round.json"
    stop_pwru
    bps=$(pyjson "$TMP/tcp-traced-$round.json" 'j["end"]["sum_received"]["bits_per_second"]') \
        || die "cannot parse iperf3 output (traced round $round)"
    TRACED+=("$bps")
    log "round $round traced:   $(calc "round($bps/1e9, 3)") Gbit/s"
done
base_med=$(median "${BASE[@]}")
traced_med=$(median "${TRACED[@]}")
echo "tcp_throughput baseline=$(calc "f'{$base_med/1e9:.2f}'") Gbit/s" \
    "traced=$(calc "f'{$traced_med/1e9:.2f}'") Gbit/s" \
    "ratio=$(calc "f'{$traced_med/$base_med:.3f}'") (target >= 0.95)"
# spread of the baseline runs, (max - min) / median: the machine's noise
spread=$(python3 -c 'import statistics, sys; v = [float(x) for x in sys.argv[1:]]; print(round(100 * (max(v) - min(v)) / statistics.median(v)))' "${BASE[@]}")
echo "tcp_baseline_spread=${spread}% (rounds=$ROUNDS, loadavg: $(cut -d' ' -f1-3 /proc/loadavg))"
if ((spread > 10)); then
    echo "WARNING: baseline runs differ by ${spread}%: the machine is busy, the ratio is not reliable (rerun on an idle machine or with a larger BENCH_ROUNDS)"
fi

# ---------------------------------------------------------------- 2. events/s
# Step k sends UDP at pps_k; after each step the measured events per packet
# tells the rate needed for the next step to exceed EVENTS_TARGET.
pps=$UDP_PPS
reached=0
for step in $(seq 1 "$MAX_EVENT_STEPS"); do
    bitrate=$((pps * UDP_LEN * 8))
    # The server's netns sees the most hooks per datagram (veth xmit end,
    # netif_rx, receive, socket delivery), so fewer packets reach the target.
    start_pwru "$PWRU" "events-$step" --filter-netns "inode:$SERVER_INODE" --output-json --output-file /dev/null
    t0=$(now)
    run_client "$TMP/udp-$step.json" -u -b "$bitrate" -l "$UDP_LEN"
    t1=$(now)
    stop_pwru
    received=$(pwru_received) || exit 1
    lost=$(pwru_lost)
    packets=$(pyjson "$TMP/udp-$step.json" 'j["end"]["sum"]["packets"]') \
        || die "cannot parse iperf3 UDP output (step $step)"
    secs=$(calc "$t1 - $t0")
    eps=$(calc "int(round($received / $secs))")
    sent_pps=$(calc "int(round($packets / $DURATION))")
    epp=$(calc "round($received / $packets, 2) if $packets else 0")
    echo "events_step=$step udp_target_pps=$pps udp_sent_pps=$sent_pps events=$received" \
        "duration=$(calc "f'{$secs:.2f}'")s events_per_packet=$epp"
    echo "events_per_second=$eps lost=$lost (target: no loss at 100k events/s)"
    if ((eps >= EVENTS_TARGET)); then
        reached=1
        reached_eps=$eps
        reached_lost=$lost
        break
    fi
    ((step < MAX_EVENT_STEPS)) || break
    if ((pps >= MAX_PPS)); then
        log "packet rate cap BENCH_MAX_PPS=$MAX_PPS reached"
        break
    fi
    # next rate: enough packets per second for 1.3x the target at the observed
    # events per packet (or 4x if nothing was observed), at least 2x, capped
    # at MAX_PPS
    if ((received > 0 && packets > 0)); then
        next=$(calc "math.ceil(1.3 * $EVENTS_TARGET * $packets / $received)")
    else
        next=$((pps * 4))
    fi
    ((next >= pps * 2)) || next=$((pps * 2))
    ((next <= MAX_PPS)) || next=$MAX_PPS
    pps=$next
done
if ((reached == 0)); then
    echo "events_target=FAIL (no step reached ${EVENTS_TARGET} events/s; highest udp rate sent: ${sent_pps} pps)"
elif ((reached_lost > 0)); then
    echo "events_target=FAIL (${reached_lost} events lost at ${reached_eps} events/s)"
else
    echo "events_target=PASS (no loss at ${reached_eps} events/s)"
fi

# ---------------------------------------------------------------- 3. pcap per-hit cost
# Average run time per hit of pwru's tracepoint programs, summed over all of
# them, under the TCP load of part 1. Each pair differs only in the pcap
# filter: "reject" pairs reject every skb (by mark, or by a pcap filter that
# the traffic on port $PORT never matches), "match" pairs print every skb of
# the flow (no filter, or a pcap filter the flow matches).
prog_stats() { # prints "run_time_ns run_cnt" summed over pwru's programs
    bpftool -j prog show | python3 -c '
import json, sys
t = c = 0
for p in json.load(sys.stdin):
    if p.get("name", "").startswith("pwru_tp_"):
        t += p.get("run_time_ns", 0)
        c += p.get("run_cnt", 0)
print(t, c)'
}
sysctl -q -w kernel.bpf_stats_enabled=1 || die "cannot enable kernel.bpf_stats_enabled"
declare -A NS_PER_HIT
MODES=(reject_meta reject_pcap match_none match_pcap)
declare -A MODE_ARGS=(
    [reject_meta]="--filter-mark 0xdead"
    [reject_pcap]="tcp and port 443"
    [match_none]="--filter-netns inode:$CLIENT_INODE"
    [match_pcap]="tcp and port $PORT"
)
for round in $(seq 1 "$ROUNDS"); do
    for mode in "${MODES[@]}"; do
        case $mode in
            reject_meta | match_none) read -r -a args <<<"${MODE_ARGS[$mode]}" ;;
            match_pcap) args=(--filter-netns "inode:$CLIENT_INODE" "${MODE_ARGS[$mode]}") ;;
            *) args=("${MODE_ARGS[$mode]}") ;;
        esac
        start_pwru "$PWRU" "cost-$mode-$round" --output-file /dev/null "${args[@]}"
        run_client "$TMP/cost-$mode-$round.json"
        read -r ns cnt < <(prog_stats)
        stop_pwru
        ((cnt > 0)) || die "no program runs counted for $mode (bpf stats)"
        per_hit=$(calc "$ns / $cnt")
        NS_PER_HIT[$mode]+="$per_hit "
        log "round $round $mode: $(calc "round($per_hit, 1)") ns per hit over $cnt hits"
    done
done
for pair in "reject_pcap reject_meta" "match_pcap match_none"; do
    read -r with without <<<"$pair"
    # shellcheck disable=SC2086
    w=$(median ${NS_PER_HIT[$with]})
    # shellcheck disable=SC2086
    wo=$(median ${NS_PER_HIT[$without]})
    echo "pcap_per_hit_${with%%_*} with_filter=$(calc "f'{$w:.1f}'")ns without=$(calc "f'{$wo:.1f}'")ns" \
        "ratio=$(calc "f'{$w/$wo:.2f}'") ('$([[ $with == reject_pcap ]] && echo "tcp and port 443" || echo "tcp and port $PORT")' against no pcap filter)"
done
