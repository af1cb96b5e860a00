# Helpers shared by the benchmarks (sourced). The caller sets NS_A, NS_B,
# NS_EXTRA (more namespaces to create), ADDR_A, ADDR_B, PORT, TMP, DURATION,
# CLIENT_TIMEOUT and NS_CREATED=(), and cleans up NS_CREATED and SERVER_PID
# on exit.

die() {
    echo "bench: ERROR: $*" >&2
    exit 1
}
log() { echo "bench: $*" >&2; }

pyjson() { # pyjson FILE EXPR  -> prints the python expression over the JSON `j`
    python3 -c '
import json, sys
with open(sys.argv[1]) as f:
    j = json.load(f)
if "error" in j:
    sys.exit("iperf3 error: " + j["error"])
print(eval(sys.argv[2]))
' "$1" "$2"
}

median() { # median N...
    python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"
}

calc() { # calc PYTHON_EXPR
    python3 -c "import math; print($1)"
}

now() { date +%s.%N; }

setup_netns() {
    local ns
    for ns in "$NS_A" "$NS_B" "${NS_EXTRA[@]}"; do
        ip netns add "$ns" || die "cannot create netns $ns"
        NS_CREATED+=("$ns")
        ip -n "$ns" link set lo up || die "cannot bring up lo in $ns"
    done
    ip -n "$NS_A" link add veth-a type veth peer name veth-b netns "$NS_B" \
        || die "cannot create veth pair"
    ip -n "$NS_A" addr add "$ADDR_A/24" dev veth-a || die "cannot address veth-a"
    ip -n "$NS_B" addr add "$ADDR_B/24" dev veth-b || die "cannot address veth-b"
    ip -n "$NS_A" link set veth-a up || die "cannot bring up veth-a"
    ip -n "$NS_B" link set veth-b up || die "cannot bring up veth-b"
    for _ in $(seq 1 100); do
        if ip -n "$NS_A" link show veth-a | grep -q LOWER_UP &&
            ip -n "$NS_B" link show veth-b | grep -q LOWER_UP; then
            return 0
        fi
        sleep 0.1
    done
    die "veth pair did not come up within 10 s"
}

start_server() {
    ip netns exec "$NS_B" iperf3 -s -B "$ADDR_B" -p "$PORT" >"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; die "iperf3 server exited"; }
        if ip netns exec "$NS_B" ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .; then
            return 0
        fi
        sleep 0.1
    done
    die "iperf3 server did not start listening within 10 s"
}

# run_client OUT ARGS... : iperf3 client in NS_A with JSON output
run_client() {
    local out=$1
    shift
    if ! timeout "$CLIENT_TIMEOUT" ip netns exec "$NS_A" \
        iperf3 -c "$ADDR_B" -p "$PORT" -t "$DURATION" -J "$@" >"$out" 2>"$out.err"; then
        cat "$out.err" >&2
        python3 -c 'import json,sys; print("iperf3:", json.load(open(sys.argv[1])).get("error", "?"))' "$out" >&2 2>/dev/null || true
        die "iperf3 client failed ($*)"
    fi
}


# Kills what still runs inside the namespaces we created (we started it),
# then deletes them. For the caller's EXIT trap.
cleanup_netns() {
    local ns pid
    for ns in "${NS_CREATED[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null
    done
}
