#!/bin/sh
# Guest side of bench/vm_compare.sh (busybox sh): our pwru against cilium/pwru
# v1.0.9 on $PWRU_BACKEND, every skb function, pcap filter 'icmp'.
#   1. start to ready: $ROUNDS interleaved rounds per tool (ours, pwru, ours,
#      ...); one `compare_ready` line per run (and our `pwru: startup:` phase
#      line), plus the time SIGINT takes to end the process.
#   2. events: ICMP on loopback, a slow calibration (events per echo, no loss
#      expected), then for each of $LOADS (ping intervals, f: ping -f)
#      $FLOOD_S seconds of echoes; output --output-json
#      into a FIFO read by `wc -l`, the same for both tools, so both counts
#      are lines really written. One `compare_events` line per run.
# /opt/pwru holds pwru (ours), pwru-ref (cilium/pwru), ping (iputils) and
# optionally pwru-before (ours, an earlier build: measured like ours).
P=/opt/pwru
B=${PWRU_BACKEND:?}
ROUNDS=${ROUNDS:-3}
FLOOD_S=${FLOOD_S:-10}
# ping intervals of the load steps, "f" for ping -f (as fast as replies come)
LOADS=${LOADS:-0.01 0.002 f}
CALIB=${CALIB:-20}
TOOLS="ours ref"
[ -x "$P/pwru-before" ] && TOOLS="before ours ref"
K=$(uname -r)

fail() { echo "compare FAIL: $*"; [ -f /tmp/err ] && tail -n 20 /tmp/err; exit 1; }
uptime_s() { read -r up _ </proc/uptime; echo "$up"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a - b}'; }
bin() { case "$1" in ours) echo "$P/pwru" ;; before) echo "$P/pwru-before" ;; ref) echo "$P/pwru-ref" ;; esac; }

# start TOOL OUTFILE: runs the tool on all skb functions with 'icmp', waits
# for its ready file; sets PID and READY_S (seconds from exec to the file).
start() {
	rm -f /tmp/ready /tmp/err
	t0=$(uptime_s)
	"$(bin "$1")" --backend "$B" --output-tuple --output-json --ready-file /tmp/ready --output-file "$2" icmp 2>/tmp/err &
	PID=$!
	while [ ! -e /tmp/ready ]; do
		kill -0 "$PID" 2>/dev/null || fail "$1 exited before it was ready"
		[ "$(sub "$(uptime_s)" "$t0" | cut -d. -f1)" -lt 900 ] || fail "$1 not ready within 900 s"
		sleep 0.05
	done
	READY_S=$(sub "$(uptime_s)" "$t0")
}

# stop: SIGINT, wait; sets EXIT_S
stop() {
	t0=$(uptime_s)
	kill -INT "$PID"
	wait "$PID" || fail "exit status $? after SIGINT"
	EXIT_S=$(sub "$(uptime_s)" "$t0")
}

ping -c 1 -W 2 127.0.0.1 >/dev/null 2>&1 || fail "no loopback"
[ -x "$P/ping" ] || fail "no iputils ping in the payload"
nfuncs=$(wc -l </sys/kernel/tracing/available_filter_functions)
echo "compare_info kernel=$K backend=$B tools='$TOOLS' rounds=$ROUNDS available_filter_functions=$nfuncs"

echo "== start to ready"
r=1
while [ "$r" -le "$ROUNDS" ]; do
	for tool in $TOOLS; do
		start "$tool" /dev/null
		stop
		echo "compare_ready kernel=$K backend=$B tool=$tool round=$r ready_s=$READY_S exit_s=$EXIT_S"
		[ "$tool" = ref ] || grep -a '^pwru: startup: \|^pwru: attached \|^pwru: kprobes on ' /tmp/err | sed "s/^/compare_phases tool=$tool round=$r kernel=$K /"
	done
	r=$((r + 1))
done

echo "== events"
mkfifo /tmp/out.fifo || fail "mkfifo"
# run_events TOOL LOAD: LOAD calib (CALIB echoes, 0.2 s apart), f (ping -f)
# or a ping interval
run_events() {
	wc -l </tmp/out.fifo >/tmp/lines &
	wcpid=$!
	start "$1" /tmp/out.fifo
	t0=$(uptime_s)
	if [ "$2" = calib ]; then
		"$P/ping" -n -q -c "$CALIB" -i 0.2 127.0.0.1 >/tmp/ping 2>&1 || fail "ping"
	elif [ "$2" = f ]; then
		"$P/ping" -n -q -f -w "$FLOOD_S" 127.0.0.1 >/tmp/ping 2>&1
	else
		"$P/ping" -n -q -i "$2" -w "$FLOOD_S" 127.0.0.1 >/tmp/ping 2>&1
	fi
	TRAFFIC_S=$(sub "$(uptime_s)" "$t0")
	# Whatever is still queued in the kernel is read before detach: let
	# both tools drain for the same time.
	sleep 2
	stop
	wait "$wcpid"
	LINES=$(tr -d ' ' </tmp/lines)
	SENT=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' /tmp/ping)
	RECEIVED=$(sed -n 's/^pwru: \([0-9]*\) events received$/\1/p' /tmp/err)
	LOST=$(sed -n 's/^pwru: \([0-9]*\) events lost.*/\1/p' /tmp/err)
	# cilium/pwru counts neither: its BPF queue silently overwrites.
	if [ "$1" = ref ]; then RECEIVED=n/a LOST=n/a; else LOST=${LOST:-0}; fi
}
for tool in $TOOLS; do
	run_events "$tool" calib
	echo "compare_calib kernel=$K backend=$B tool=$tool echoes=$SENT lines=$LINES own_received=$RECEIVED own_lost=$LOST"
	for load in $LOADS; do
		run_events "$tool" "$load"
		echo "compare_events kernel=$K backend=$B tool=$tool load=$load seconds=$TRAFFIC_S echoes=$SENT lines=$LINES own_received=$RECEIVED own_lost=$LOST"
	done
done
exit 0
