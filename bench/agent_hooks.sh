#!/usr/bin/env bash
# pwru-agent benchmark: what the always-on visit counters cost per packet,
# for the default hook set (counters.visit_hooks: default), for every skb
# tracepoint (visit_hooks: all), and for an empty program on the default
# set's tracepoints (the floor: what any program there costs).
#
# Usage (as root):  bash bench/agent_hooks.sh [PATH_TO_PWRU_AGENT]
#   PATH_TO_PWRU_AGENT defaults to build/pwru-agent relative to the repository root.
#
# Tunables (environment):
#   BENCH_ROUNDS    rounds, each measuring the three sets in turn, >= 3 (default 5)
#   BENCH_PACKETS   UDP datagrams per measurement                       (default 100000)
#   BENCH_PPS       their rate, packets per second                      (default 40000)
#
# Traffic: 64-byte UDP datagrams from netns A through router netns R
# (IPv4 forwarding) to netns B over two veth pairs, so each datagram is
# sent, forwarded and received. Cost from kernel.bpf_stats_enabled
# (restored on exit): the run count and run time of every program the agent
# (or the empty-program helper) attached, read before and after the load:
#   hits/packet = run count / datagrams R forwarded (its Ip ForwDatagrams)
#   ns/hit      = run time / run count (the stats' own clock reads included)
#   ns/packet   = run time / datagrams R forwarded
# Round 1 also logs each tracepoint's hits per packet (stderr).
# Hits of other traffic on the host during the load count too: run on an
# otherwise idle machine.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

AGENT=${1:-$REPO_ROOT/build/pwru-agent}
case $AGENT in /*) ;; *) AGENT=$PWD/$AGENT ;; esac
HOOK_COST=$REPO_ROOT/build/bench/hook_cost

ROUNDS=${BENCH_ROUNDS:-5}
PACKETS=${BENCH_PACKETS:-100000}
PPS=${BENCH_PPS:-40000}
READY_TIMEOUT=60
STOP_TIMEOUT=30

NS_A=pwh-$$-a
NS_R=pwh-$$-r
NS_B=pwh-$$-b
ADDR_A=10.231.5.1
ADDR_RA=10.231.5.254
ADDR_RB=10.231.6.254
ADDR_B=10.231.6.2
PORT=5203

[[ $(id -u) -eq 0 ]] || die "must run as root"
for tool in ip python3 timeout curl sysctl; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found"
done
[[ -x $AGENT ]] || die "pwru-agent '$AGENT' not found (build it, or pass its path as \$1)"
[[ -x $HOOK_COST ]] || die "$HOOK_COST not found: build the tree first (cmake --build build)"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 3 && $ROUNDS -le 50 ]] || die "BENCH_ROUNDS must be in 3..50"
[[ $PACKETS =~ ^[0-9]+$ && $PACKETS -ge 1000 && $PACKETS -le 10000000 ]] || die "BENCH_PACKETS must be in 1000..10000000"
[[ $PPS =~ ^[0-9]+$ && $PPS -ge 1000 && $PPS -le 1000000 ]] || die "BENCH_PPS must be in 1000..1000000"
# Sending takes PACKETS/PPS seconds; anything far beyond is a hang.
LOAD_TIMEOUT=$((PACKETS / PPS * 3 + 10))

TMP=$(mktemp -d /tmp/pwru-agent-hooks.XXXXXX)
HOLDER_PID=""
HOLDER_KIND=""
NS_CREATED=()
BPF_STATS_BEFORE=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo 0)

stop_bench_processes() {
    stop_pid "$HOLDER_PID" KILL
}
bench_cleanup_on_exit

setup_forwarding() {
    local ns
    for ns in "$NS_A" "$NS_R" "$NS_B"; do
        ip netns add "$ns" || die "cannot create netns $ns"
        NS_CREATED+=("$ns")
        ip -n "$ns" link set lo up || die "cannot bring up lo in $ns"
    done
    ip -n "$NS_A" link add veth-a type veth peer name veth-ra netns "$NS_R" || die "cannot create veth A-R"
    ip -n "$NS_B" link add veth-b type veth peer name veth-rb netns "$NS_R" || die "cannot create veth B-R"
    ip -n "$NS_A" addr add "$ADDR_A/24" dev veth-a &&
        ip -n "$NS_R" addr add "$ADDR_RA/24" dev veth-ra &&
        ip -n "$NS_R" addr add "$ADDR_RB/24" dev veth-rb &&
        ip -n "$NS_B" addr add "$ADDR_B/24" dev veth-b || die "cannot address the veths"
    ip -n "$NS_A" link set veth-a up && ip -n "$NS_R" link set veth-ra up &&
        ip -n "$NS_R" link set veth-rb up && ip -n "$NS_B" link set veth-b up || die "cannot bring up the veths"
    ip -n "$NS_A" route add default via "$ADDR_RA" && ip -n "$NS_B" route add default via "$ADDR_RB" ||
        die "cannot add the routes through $NS_R"
    ip netns exec "$NS_R" sysctl -q -w net.ipv4.ip_forward=1 || die "cannot enable forwarding in $NS_R"
    # No neighbour resolution inside a measurement.
    ip netns exec "$NS_A" ping -c 1 -W 5 "$ADDR_B" >/dev/null || die "$NS_A cannot reach $ADDR_B through $NS_R"
}

# IP datagrams netns R has forwarded so far (Ip: ForwDatagrams).
forwarded_so_far() {
    ip netns exec "$NS_R" awk '/^Ip:/ { if (!n++) for (i = 1; i <= NF; i++) col[$i] = i; else print $col["ForwDatagrams"] }' /proc/net/snmp
}

# udp_load : PACKETS datagrams A -> B at PPS; sets FORWARDED to how many R
# forwarded and RECEIVED to how many B received. (Runs in the calling
# shell, like everything that starts a process, so that the EXIT trap sees
# what is running.)
udp_load() {
    ip netns exec "$NS_B" timeout "$LOAD_TIMEOUT" python3 -c '
import socket, sys, time
want, port = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE (root): past rmem_max
s.bind(("0.0.0.0", port))
print("listening", flush=True)
got = 0
s.settimeout(5.0)  # until the first datagram
try:
    while got < want:
        s.recv(2048)
        got += 1
        s.settimeout(1.0)  # then: the sender is done when it goes quiet
except socket.timeout:
    pass
print(got, flush=True)
' "$PACKETS" "$PORT" >"$TMP/received" &
    local receiver=$!
    local deadline=$((SECONDS + 10))
    until [[ -s $TMP/received ]]; do
        ((SECONDS < deadline)) || die "UDP receiver in $NS_B did not start"
        sleep 0.05
    done
    local forwarded_before
    forwarded_before=$(forwarded_so_far)
    ip netns exec "$NS_A" timeout "$LOAD_TIMEOUT" python3 -c '
import socket, sys, time
n, pps, addr, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * 64
start = time.monotonic()
batch = 50
for i in range(0, n, batch):
    for _ in range(min(batch, n - i)):
        s.sendto(payload, (addr, port))
    ahead = (i + batch) / pps - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
' "$PACKETS" "$PPS" "$ADDR_B" "$PORT" || die "UDP sender failed"
    wait "$receiver" || die "UDP receiver failed"
    RECEIVED=$(tail -n 1 "$TMP/received")
    [[ $RECEIVED =~ ^[0-9]+$ ]] || die "UDP receiver gave no count"
    FORWARDED=$(($(forwarded_so_far) - forwarded_before))
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_set default|all|empty : the programs of that set, attached
start_set() {
    HOLDER_KIND=$1
    if [[ $1 == empty ]]; then
        start_empty_program "$HOOK_COST" "$TMP" "${DEFAULT_HOOKS[@]}"
        HOLDER_PID=$EMPTY_PROGRAM_PID
        return
    fi
    AGENT_PORT=$(free_port)
    printf 'http:\n  listen: 127.0.0.1:%s\ncounters:\n  visit_hooks: %s\nkubernetes:\n  enabled: off\ntraces:\n  enabled: false\n' \
        "$AGENT_PORT" "$1" >"$TMP/$1.yaml"
    "$AGENT" --config "$TMP/$1.yaml" 2>"$TMP/agent.stderr" &
    HOLDER_PID=$!
    local deadline=$((SECONDS + READY_TIMEOUT))
    until curl -sf -o /dev/null "http://127.0.0.1:$AGENT_PORT/readyz"; do
        kill -0 "$HOLDER_PID" 2>/dev/null || { cat "$TMP/agent.stderr" >&2; die "pwru-agent exited before it was ready"; }
        ((SECONDS < deadline)) || { cat "$TMP/agent.stderr" >&2; die "pwru-agent not ready within ${READY_TIMEOUT} s"; }
        sleep 0.1
    done
}

stop_set() {
    kill -TERM "$HOLDER_PID"
    local deadline=$((SECONDS + STOP_TIMEOUT)) rc
    while kill -0 "$HOLDER_PID" 2>/dev/null; do
        ((SECONDS < deadline)) || die "$HOLDER_KIND programs still running ${STOP_TIMEOUT} s after SIGTERM"
        sleep 0.1
    done
    wait "$HOLDER_PID" && rc=0 || rc=$?
    HOLDER_PID=""
    # The helper's SIGTERM is its normal end (143).
    [[ $HOLDER_KIND == empty && $rc -eq 143 ]] && rc=0
    ((rc == 0)) || { cat "$TMP/agent.stderr" >&2; die "$HOLDER_KIND programs exited with status $rc after SIGTERM"; }
}

# measure SET [BREAKDOWN] : one measurement; sets RESULT to
# "hooks hits run_ns forwarded received"; logs hits/packet per tracepoint
# when BREAKDOWN is given
measure() {
    start_set "$1"
    "$HOOK_COST" stats "$HOLDER_PID" >"$TMP/before" || die "cannot read the programs' statistics"
    udp_load
    "$HOOK_COST" stats "$HOLDER_PID" >"$TMP/after" || die "cannot read the programs' statistics"
    if [[ $1 != empty ]]; then
        # The agent really counted the flow: B's receive path has visits.
        local inode_b
        inode_b=$(stat -L -c %i "/var/run/netns/$NS_B")
        curl -sf "http://127.0.0.1:$AGENT_PORT/metrics" >"$TMP/metrics" || die "cannot scrape the agent ($1)"
        grep -q "^pwru_skb_function_visits_total{function=\"netif_receive_skb\",.*netns=\"$inode_b\"}" "$TMP/metrics" || {
            grep '^pwru_skb_function_visits_total{function="netif_receive_skb"' "$TMP/metrics" >&2
            die "the agent ($1) did not count the flow (no netif_receive_skb visits in $NS_B, netns $inode_b)"
        }
    fi
    stop_set
    RESULT=$(python3 -c '
import sys
def read(path):
    return {l.split()[0]: (int(l.split()[1]), int(l.split()[2])) for l in open(path) if l.strip()}
before, after = read(sys.argv[1]), read(sys.argv[2])
hits = sum(after[k][0] - before.get(k, (0, 0))[0] for k in after)
ns = sum(after[k][1] - before.get(k, (0, 0))[1] for k in after)
packets = max(int(sys.argv[3]), 1)
if sys.argv[5]:
    per_hook = sorted(((after[k][0] - before.get(k, (0, 0))[0]) / packets, k) for k in after)
    print("bench: %s hits/packet by tracepoint: %s" % (sys.argv[5], " ".join(
        "%s=%.2f" % (k, v) for v, k in reversed(per_hook) if v >= 0.005)), file=sys.stderr)
print(len(after), hits, ns, sys.argv[3], sys.argv[4])' "$TMP/before" "$TMP/after" "$FORWARDED" "$RECEIVED" "${2:-}")
}

log "pwru-agent: $AGENT"
setup_forwarding
sysctl -q -w kernel.bpf_stats_enabled=1 || die "cannot set kernel.bpf_stats_enabled"

# The default set's tracepoints, as the agent chose them on this kernel.
start_set default
mapfile -t DEFAULT_HOOKS < <("$HOOK_COST" stats "$HOLDER_PID" | cut -d' ' -f1 | sort)
stop_set
((${#DEFAULT_HOOKS[@]} > 0)) || die "the agent attached no tracepoint"
log "default set (${#DEFAULT_HOOKS[@]} tracepoints): ${DEFAULT_HOOKS[*]}"
udp_load
log "warm-up: of $PACKETS datagrams $FORWARDED forwarded, $RECEIVED received"

SETS=(default all empty)
declare -A HITS_PP NS_HIT NS_PP HOOKS
for round in $(seq 1 "$ROUNDS"); do
    # Each round starts with another set, so none always runs first.
    for k in 0 1 2; do
        set_name=${SETS[$(((round - 1 + k) % 3))]}
        measure "$set_name" "$( ((round == 1)) && echo "$set_name")"
        read -r hooks hits run_ns forwarded received <<<"$RESULT"
        ((forwarded > 0)) || die "$NS_R forwarded no datagram"
        # Packets lost before R would make hits/packet count hits of packets
        # not in the denominator; those lost in B (the receiver falling
        # behind) were forwarded, and their frees are hits like consume_skb.
        ((forwarded * 100 >= PACKETS * 99)) ||
            log "warning: $set_name round $round: $NS_R forwarded only $forwarded of $PACKETS datagrams"
        HOOKS[$set_name]=$hooks
        HITS_PP[$set_name]+="$(calc "$hits / $forwarded") "
        NS_HIT[$set_name]+="$(calc "$run_ns / max($hits, 1)") "
        NS_PP[$set_name]+="$(calc "$run_ns / $forwarded") "
        log "round $round $set_name: $hooks hooks, $(calc "round($hits / $forwarded, 2)") hits/packet, $(calc "round($run_ns / max($hits, 1), 1)") ns/hit, $(calc "round($run_ns / $forwarded, 1)") ns/packet ($received received in $NS_B)"
    done
done

# stats NAME VALUES... -> "NAME=median spread_pct=..." over the rounds
summary() {
    local name=$1
    shift
    local med
    med=$(median "$@")
    echo "$name=$(calc "round($med, 2)") ${name}_spread_pct=$(calc "round((max($(IFS=,; echo "$*")) - min($(IFS=,; echo "$*"))) / max($med, 1e-9) * 100, 1)")"
}
for set_name in "${SETS[@]}"; do
    # shellcheck disable=SC2086
    echo "agent_hooks set=$set_name hooks=${HOOKS[$set_name]} $(summary hits_per_packet ${HITS_PP[$set_name]}) $(summary ns_per_hit ${NS_HIT[$set_name]}) $(summary ns_per_packet ${NS_PP[$set_name]})"
done
# Paired per round (the three sets of a round ran back to back), then the median.
read -ra d <<<"${NS_PP[default]}"
read -ra a <<<"${NS_PP[all]}"
read -ra e <<<"${NS_PP[empty]}"
VS_EMPTY=()
VS_ALL=()
for i in "${!d[@]}"; do
    VS_EMPTY+=("$(calc "${d[$i]} / ${e[$i]}")")
    VS_ALL+=("$(calc "${d[$i]} / ${a[$i]}")")
done
vs_empty=$(calc "round($(median "${VS_EMPTY[@]}"), 2)")
vs_all=$(calc "round($(median "${VS_ALL[@]}"), 2)")
echo "agent_hooks_ratio default_vs_empty=$vs_empty (target <= 1.5; rounds $(calc "round(min($(IFS=,; echo "${VS_EMPTY[*]}")), 2)")..$(calc "round(max($(IFS=,; echo "${VS_EMPTY[*]}")), 2)")) default_vs_all=$vs_all (target <= 0.5; rounds $(calc "round(min($(IFS=,; echo "${VS_ALL[*]}")), 2)")..$(calc "round(max($(IFS=,; echo "${VS_ALL[*]}")), 2)")) rounds=$ROUNDS packets=$PACKETS pps=$PPS load=$(cut -d' ' -f1 /proc/loadavg)"
echo "agent_hooks_target default_vs_empty=$(calc "'PASS' if $vs_empty <= 1.5 else 'FAIL'") default_vs_all=$(calc "'PASS' if $vs_all <= 0.5 else 'FAIL'")"
