#!/usr/bin/env bash
# pwru-agent benchmark: what the always-on counters cost and how a scrape
# scales.
#
# Usage (as root):  bash bench/agent.sh [PATH_TO_PWRU_AGENT]
#   PATH_TO_PWRU_AGENT defaults to build/pwru-agent relative to the repository root.
#
# Tunables (environment):
#   BENCH_ROUNDS      TCP rounds per mode (without/with the agent), >= 3  (default 9)
#   BENCH_DURATION    seconds per iperf3 run                              (default 5)
#   BENCH_SERIES      label sets put into the agent's maps for the scrape (default 10000)
#   BENCH_SCRAPES     scrapes timed                                       (default 20)
#
# Measures, in one run:
#   1. TCP throughput over a veth pair between two netns without the agent,
#      with an empty program on the agent's default visit hooks (the floor:
#      what any program there costs) and with the agent counting every
#      packet there (the embedded default configuration), runs interleaved;
#      prints the ratios.
#   2. Scrape time of /metrics (curl, loopback) with BENCH_SERIES label sets
#      in the kernel maps (half drops, half visits; real kernel addresses to
#      symbolize), and the agent's resident memory.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

AGENT=${1:-$REPO_ROOT/build/pwru-agent}
case $AGENT in /*) ;; *) AGENT=$PWD/$AGENT ;; esac
FILL=$REPO_ROOT/build/bench/fill_counter_maps
HOOK_COST=$REPO_ROOT/build/bench/hook_cost

ROUNDS=${BENCH_ROUNDS:-9}
DURATION=${BENCH_DURATION:-5}
SERIES=${BENCH_SERIES:-10000}
SCRAPES=${BENCH_SCRAPES:-20}
CLIENT_TIMEOUT=$((DURATION + 30))
READY_TIMEOUT=60
STOP_TIMEOUT=30
# Map size no other program uses: how fill_counter_maps finds the agent's maps.
MARKER_ENTRIES=$((SERIES + 4093))

NS_A=pwa-$$-a
NS_B=pwa-$$-b
NS_EXTRA=()
ADDR_A=10.231.2.1
ADDR_B=10.231.2.2
PORT=5202

[[ $(id -u) -eq 0 ]] || die "must run as root"
for tool in ip iperf3 python3 timeout curl ss bpftool sysctl; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found"
done
[[ -x $AGENT ]] || die "pwru-agent '$AGENT' not found (build it, or pass its path as \$1)"
[[ -x $FILL ]] || die "$FILL not found: build the tree first (cmake --build build)"
[[ -x $HOOK_COST ]] || die "$HOOK_COST not found: build the tree first (cmake --build build)"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 3 ]] || die "BENCH_ROUNDS must be an integer >= 3"
[[ $SERIES =~ ^[0-9]+$ && $SERIES -ge 2 && $SERIES -le 200000 ]] || die "BENCH_SERIES must be in 2..200000"
[[ $SCRAPES =~ ^[0-9]+$ && $SCRAPES -ge 1 && $SCRAPES -le 1000 ]] || die "BENCH_SCRAPES must be in 1..1000"

TMP=$(mktemp -d /tmp/pwru-agent-bench.XXXXXX)
AGENT_PID=""
SERVER_PID=""
EMPTY_PID=""
NS_CREATED=()
BPF_STATS_BEFORE=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo 0)

stop_bench_processes() {
    stop_pid "$AGENT_PID" KILL
    stop_pid "$EMPTY_PID" KILL
    stop_pid "$SERVER_PID" TERM
}
bench_cleanup_on_exit

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_agent NAME YAML : the agent on a free loopback port, waits for /readyz
start_agent() {
    AGENT_PORT=$(free_port)
    printf 'http:\n  listen: 127.0.0.1:%s\n%s' "$AGENT_PORT" "$2" >"$TMP/$1.yaml"
    AGENT_LOG=$TMP/$1.stderr
    "$AGENT" --config "$TMP/$1.yaml" 2>"$AGENT_LOG" &
    AGENT_PID=$!
    local deadline=$((SECONDS + READY_TIMEOUT))
    until curl -sf -o /dev/null "http://127.0.0.1:$AGENT_PORT/readyz"; do
        kill -0 "$AGENT_PID" 2>/dev/null || { cat "$AGENT_LOG" >&2; die "pwru-agent exited before it was ready"; }
        ((SECONDS < deadline)) || { cat "$AGENT_LOG" >&2; die "pwru-agent not ready within ${READY_TIMEOUT} s"; }
        sleep 0.1
    done
}

stop_agent() {
    kill -TERM "$AGENT_PID"
    local deadline=$((SECONDS + STOP_TIMEOUT)) rc
    while kill -0 "$AGENT_PID" 2>/dev/null; do
        ((SECONDS < deadline)) || die "pwru-agent still running ${STOP_TIMEOUT} s after SIGTERM"
        sleep 0.1
    done
    wait "$AGENT_PID" && rc=0 || rc=$?
    AGENT_PID=""
    ((rc == 0)) || { cat "$AGENT_LOG" >&2; die "pwru-agent exited with status $rc after SIGTERM"; }
}

csv() { local IFS=,; echo "$*"; }
gbits() { pyjson "$1" 'j["end"]["sum_received"]["bits_per_second"] / 1e9'; }

log "pwru-agent: $AGENT"
setup_netns
start_server
DURATION=1 run_client "$TMP/warmup.json"

# ---------------------------------------------------------------- 1. TCP overhead
# The tracepoints the agent attaches by default, for the empty program.
start_agent hooks ""
mapfile -t DEFAULT_HOOKS < <("$HOOK_COST" stats "$AGENT_PID" | cut -d' ' -f1 | sort)
stop_agent
((${#DEFAULT_HOOKS[@]} > 0)) || die "the agent attached no tracepoint"

BASE=()
EMPTY=()
WITH=()
for round in $(seq 1 "$ROUNDS"); do
    run_client "$TMP/base-$round.json"
    BASE+=("$(gbits "$TMP/base-$round.json")")
    start_empty_program "$HOOK_COST" "$TMP" "${DEFAULT_HOOKS[@]}"
    EMPTY_PID=$EMPTY_PROGRAM_PID
    run_client "$TMP/empty-$round.json"
    EMPTY+=("$(gbits "$TMP/empty-$round.json")")
    stop_pid "$EMPTY_PID" TERM
    EMPTY_PID=""
    start_agent "tcp-$round" ""
    run_client "$TMP/with-$round.json"
    WITH+=("$(gbits "$TMP/with-$round.json")")
    # The agent really counted this flow: its visits of the receive path grew.
    inode_b=$(stat -L -c %i "/var/run/netns/$NS_B")
    visits=$(curl -sf "http://127.0.0.1:$AGENT_PORT/metrics" |
        sed -n "s/^pwru_skb_function_visits_total{function=\"netif_receive_skb\",.*netns=\"$inode_b\"} \([0-9.e+]*\)$/\1/p")
    [[ -n $visits ]] || die "the agent did not count the flow (no netif_receive_skb visits in $NS_B)"
    stop_agent
    log "round $round: without ${BASE[-1]} Gbit/s, empty program ${EMPTY[-1]} Gbit/s, with agent ${WITH[-1]} Gbit/s ($visits receive visits counted)"
done
base_med=$(median "${BASE[@]}")
with_med=$(median "${WITH[@]}")
# Each round's pair ran back to back: the median of their ratios is robust
# to the machine's load drifting between rounds.
PAIRED=()
for i in "${!BASE[@]}"; do PAIRED+=("$(calc "${WITH[$i]} / ${BASE[$i]}")"); done
paired=$(calc "round($(median "${PAIRED[@]}"), 3)")
spread=$(calc "(max($(csv "${BASE[@]}")) - min($(csv "${BASE[@]}"))) / $base_med * 100")
ratio=$(calc "round($with_med / $base_med, 3)")
PAIRED_EMPTY=()
for i in "${!BASE[@]}"; do PAIRED_EMPTY+=("$(calc "${EMPTY[$i]} / ${BASE[$i]}")"); done
echo "agent_tcp_floor empty_program_paired_ratio_median=$(calc "round($(median "${PAIRED_EMPTY[@]}"), 3)") range=$(calc "round(min($(csv "${PAIRED_EMPTY[@]}")), 3)")..$(calc "round(max($(csv "${PAIRED_EMPTY[@]}")), 3)") hooks=${#DEFAULT_HOOKS[@]} (the same tracepoints, a program that returns at once)"
paired_range="$(calc "round(min($(csv "${PAIRED[@]}")), 3)")..$(calc "round(max($(csv "${PAIRED[@]}")), 3)")"
echo "agent_tcp_throughput without_gbps=$(calc "round($base_med, 2)") with_agent_gbps=$(calc "round($with_med, 2)") ratio=$ratio paired_ratio_median=$paired paired_ratio_range=$paired_range rounds=$ROUNDS baseline_spread_pct=$(calc "round($spread, 1)") load=$(cut -d' ' -f1 /proc/loadavg)"
echo "agent_tcp_target paired_ratio_median=$paired (target >= 0.97 over >= 9 interleaved rounds: $(calc "1 if $paired >= 0.97 and $ROUNDS >= 9 else 0" | sed 's/^1$/PASS/; s/^0$/FAIL/'))"

# Per-hit cost of the agent's programs, from the kernel's BPF statistics
# (which add their own few ns per run), under the same TCP load.
sysctl -q -w kernel.bpf_stats_enabled=1
start_agent stats ""
run_client "$TMP/stats.json"
per_hit=$(bpftool prog show -j | python3 -c '
import json, sys
progs = [p for p in json.load(sys.stdin) if p.get("name", "").startswith("pwru_")]
runs = sum(p.get("run_cnt", 0) for p in progs)
ns = sum(p.get("run_time_ns", 0) for p in progs)
print("hits=%d ns_per_hit=%.1f" % (runs, ns / max(runs, 1)))')
stop_agent
sysctl -q -w kernel.bpf_stats_enabled="$BPF_STATS_BEFORE"
echo "agent_per_hit $per_hit duration_s=$DURATION"

# ---------------------------------------------------------------- 2. scrape and memory
start_agent scrape "counters:
  drops_max_entries: $MARKER_ENTRIES
  visits_max_entries: $MARKER_ENTRIES
metrics:
  max_series: $SERIES
"
hooks=$(curl -sf "http://127.0.0.1:$AGENT_PORT/metrics" | sed -n 's/^pwru_attached_hooks{.*} \([0-9]*\)$/\1/p')
[[ -n $hooks ]] || die "no pwru_attached_hooks in a scrape"
"$FILL" "$MARKER_ENTRIES" $((SERIES / 2)) $((SERIES - SERIES / 2)) "$hooks" >&2
rss_before=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$AGENT_PID/status")
TIMES=()
for i in $(seq 1 "$SCRAPES"); do
    t=$(curl -sf -o "$TMP/scrape.txt" -w '%{time_total}' "http://127.0.0.1:$AGENT_PORT/metrics") ||
        die "scrape $i failed"
    TIMES+=("$t")
done
samples=$(grep -c '^pwru_skb_\(drops\|function_visits\)_total{' "$TMP/scrape.txt" || true)
folded=$(sed -n 's/^pwru_metrics_folded_keys{metric="pwru_skb_drops_total"} \([0-9]*\)$/\1/p' "$TMP/scrape.txt")
((samples >= SERIES)) || die "a scrape holds $samples drop/visit series, expected at least $SERIES"
rss=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$AGENT_PID/status")
hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$AGENT_PID/status")
stop_agent
echo "agent_scrape series=$samples bytes=$(stat -c %s "$TMP/scrape.txt") folded_drop_keys=${folded:-?} scrapes=$SCRAPES median_ms=$(calc "round($(median "${TIMES[@]}") * 1000, 1)") max_ms=$(calc "round(max($(csv "${TIMES[@]}")) * 1000, 1)") target_ms=100"
echo "agent_memory rss_before_fill_mib=$(calc "round($rss_before / 1024, 1)") rss_after_scrapes_mib=$(calc "round($rss / 1024, 1)") peak_mib=$(calc "round($hwm / 1024, 1)") target_mib=64"
