# Helpers shared by the benchmarks (sourced). The caller sets NS_A, NS_B,
# NS_EXTRA (more namespaces to create), ADDR_A, ADDR_B, PORT, TMP, DURATION,
# CLIENT_TIMEOUT and NS_CREATED=(), and calls bench_cleanup_on_exit.

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
stop_pid() { # stop_pid PID SIGNAL: SIGNAL, up to 5 s to end, then SIGKILL; reaped. "" is nothing.
    local pid=$1 sig=$2
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" "$pid" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    # Its exit status is not ours: a program ended by the signal must not end
    # a caller running under set -e.
    wait "$pid" 2>/dev/null || true
}

# start_empty_program HOOK_COST DIR TRACEPOINT... : a program that returns at
# once on those tracepoints (the floor: what any program there costs), from
# build/bench/hook_cost, running until it says ready (READY_TIMEOUT s, default
# 60); its pid in EMPTY_PROGRAM_PID, its output in DIR/empty.{out,err}.
start_empty_program() {
    local hook_cost=$1 dir=$2
    shift 2
    # Not a previous run's "ready": the new process may not have truncated
    # the file yet when we first look.
    rm -f "$dir/empty.out"
    "$hook_cost" empty 600 "$@" >"$dir/empty.out" 2>"$dir/empty.err" &
    EMPTY_PROGRAM_PID=$!
    local deadline=$((SECONDS + ${READY_TIMEOUT:-60}))
    until grep -q ready "$dir/empty.out" 2>/dev/null; do
        kill -0 "$EMPTY_PROGRAM_PID" 2>/dev/null || { cat "$dir/empty.err" >&2; die "hook_cost empty exited"; }
        ((SECONDS < deadline)) || die "hook_cost empty not ready within ${READY_TIMEOUT:-60} s"
        sleep 0.05
    done
}

# bench_cleanup_on_exit: on exit, SIGINT or SIGTERM, runs the caller's
# stop_bench_processes, removes NS_CREATED, restores kernel.bpf_stats_enabled
# to BPF_STATS_BEFORE and removes TMP; keeps the exit status.
bench_cleanup_on_exit() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    stop_bench_processes
    cleanup_netns
    sysctl -q -w kernel.bpf_stats_enabled="$BPF_STATS_BEFORE" 2>/dev/null
    rm -rf "$TMP"
    exit "$rc"
}

cleanup_netns() {
    local ns pid
    for ns in "${NS_CREATED[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null
    done
}

# Background jobs of a non-interactive shell start with SIGINT ignored; env
# resets it so that pwru gets the SIGINT that stops it.
RESET_SIGINT=(env --default-signal=INT)
"${RESET_SIGINT[@]}" true 2>/dev/null || RESET_SIGINT=()

# start_pwru BINARY LOGNAME ARGS... : start pwru in the background (PWRU_PID,
# PWRU_LOG), wait up to READY_TIMEOUT s for its ready file
start_pwru() {
    local bin=$1 name=$2
    shift 2
    local ready=$TMP/$name.ready
    rm -f "$ready"
    PWRU_LOG=$TMP/$name.stderr
    "${RESET_SIGINT[@]}" "$bin" --ready-file "$ready" "$@" >"$TMP/$name.stdout" 2>"$PWRU_LOG" &
    PWRU_PID=$!
    local deadline=$((SECONDS + READY_TIMEOUT))
    while [[ ! -e $ready ]]; do
        if ! kill -0 "$PWRU_PID" 2>/dev/null; then
            wait "$PWRU_PID" 2>/dev/null && rc=0 || rc=$?
            PWRU_PID=""
            tail -n 20 "$PWRU_LOG" >&2
            die "pwru exited (status $rc) before becoming ready: $bin $*"
        fi
        ((SECONDS < deadline)) || { tail -n 20 "$PWRU_LOG" >&2; die "pwru did not write its ready file within ${READY_TIMEOUT} s"; }
        sleep 0.1
    done
}

# stop_pwru : SIGINT, up to STOP_TIMEOUT s, require exit status 0
stop_pwru() {
    local rc
    kill -INT "$PWRU_PID" 2>/dev/null || true
    for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do
        kill -0 "$PWRU_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PWRU_PID" 2>/dev/null; then
        kill -KILL "$PWRU_PID" 2>/dev/null || true
        wait "$PWRU_PID" 2>/dev/null || true
        PWRU_PID=""
        tail -n 20 "$PWRU_LOG" >&2
        die "pwru did not exit within ${STOP_TIMEOUT} s of SIGINT"
    fi
    wait "$PWRU_PID" && rc=0 || rc=$?
    PWRU_PID=""
    if ((rc != 0)); then
        tail -n 20 "$PWRU_LOG" >&2
        die "pwru exited with status $rc after SIGINT"
    fi
}
