#!/bin/sh
# Guest script for e2e/vm/run_vm.sh: the e2e scenarios on a kprobe backend.
# busybox sh; iproute2 by full path. PWRU_BACKEND (kprobe | kprobe-multi)
# comes from the harness; /opt/pwru holds pwru, nc (netcat-openbsd),
# ping (iputils, for -m MARK) and setpriv (util-linux: busybox's cannot
# shrink the bounding set).
IP=/usr/sbin/ip
P=/opt/pwru
PWRU=$P/pwru
B=${PWRU_BACKEND:?PWRU_BACKEND must name the backend}
# A handful of functions on both paths keeps attach short under TCG; the
# full set is attached by the attach benchmark.
FUNCS='^(ip_rcv|ip_rcv_finish|ip_local_deliver|ip_output|ip_finish_output|__ip_finish_output|__dev_queue_xmit|dev_hard_start_xmit|veth_xmit|udp_rcv|__udp4_lib_rcv|icmp_rcv|__netif_receive_skb|netif_receive_skb|consume_skb|kfree_skb_reason|sk_skb_reason_drop)$'
OUT=""
PID=""
REQUEST=$B  # what --backend asks for; start_pwru checks that $B is what runs

fail() {
	echo "SCENARIO FAIL ($B): $*"
	if [ -n "$OUT" ]; then
		echo "--- stderr"; tail -n 20 "$OUT.err"
		echo "--- output"; tail -n 20 "$OUT"
	fi
	exit 1
}

# start_pwru NAME ARGS...: pwru in the background, waits for its ready file
start_pwru() {
	OUT=/tmp/$1.out
	shift
	rm -f "$OUT.ready"
	"$PWRU" --backend "$REQUEST" --output-json --ready-file "$OUT.ready" --output-file "$OUT" "$@" 2>"$OUT.err" &
	PID=$!
	i=0
	while [ ! -e "$OUT.ready" ]; do
		kill -0 "$PID" 2>/dev/null || fail "pwru exited before it was ready: $*"
		i=$((i + 1))
		[ "$i" -le 3000 ] || fail "pwru not ready within 300 s: $*"
		sleep 0.1
	done
	grep -q "backend $B:" "$OUT.err" || fail "pwru did not use backend $B"
}

# interrupt_pwru SECONDS WHAT: SIGINT, then pwru must exit 0 within SECONDS
interrupt_pwru() {
	kill -INT "$PID"
	i=0
	while kill -0 "$PID" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -le $(($1 * 10)) ] || fail "pwru still running $1 s after SIGINT ($2)"
		sleep 0.1
	done
	wait "$PID" || fail "pwru exited with status $? after SIGINT ($2)"
}

stop_pwru() {
	sleep 1
	interrupt_pwru 120 "after the traffic"
	grep -q "events lost" "$OUT.err" && fail "events were lost"
	nothing_attached "after pwru exited"
	echo "$(wc -l <"$OUT") events: $(grep -o '"func":"[^"]*"' "$OUT" | sort | uniq -c | tr '\n' ' ')"
}

# nothing_attached WHAT: no kprobe (kprobes/list) and no fprobe/ftrace hook
# (enabled_functions) is left in the kernel.
nothing_attached() {
	left=$(cat /sys/kernel/debug/kprobes/list /sys/kernel/tracing/enabled_functions 2>/dev/null | head -n 3)
	[ -z "$left" ] || fail "$1: still attached: $left"
}

# attach_test_progs: pwru-test-attach's tc and XDP programs on vb in netns
# b, kept until `kill "$ATTACH"`
attach_test_progs() {
	"$P/pwru-test-attach" /run/netns/b vb >/tmp/attach.out 2>&1 &
	ATTACH=$!
	i=0
	until grep -q attached /tmp/attach.out; do
		kill -0 "$ATTACH" 2>/dev/null || fail "pwru-test-attach: $(cat /tmp/attach.out)"
		i=$((i + 1))
		[ "$i" -le 300 ] || fail "pwru-test-attach did not attach within 30 s"
		sleep 0.1
	done
}

# every_line PATTERN WHAT: all output lines match PATTERN (and there are some)
every_line() {
	[ -s "$OUT" ] || fail "no events: $2"
	bad=$(grep -v -e "$1" "$OUT" | head -n 3)
	[ -z "$bad" ] || fail "$2: lines without $1: $bad"
}
some_line() { grep -q -e "$1" "$OUT" || fail "$2: no line with $1"; }
no_line() { ! grep -q -e "$1" "$OUT" || fail "$2: $(grep -m1 -e "$1" "$OUT")"; }
# pwru v1.0.9 names a drop after the function it probes for drops, with the
# reason: sk_skb_reason_drop since 6.11 (kfree_skb_reason became its inline
# wrapper), kfree_skb_reason before.
if grep -q ' sk_skb_reason_drop$' /proc/kallsyms; then DROP_FUNC=sk_skb_reason_drop; else DROP_FUNC=kfree_skb_reason; fi

$IP netns add a || fail "netns a"
$IP netns add b || fail "netns b"
$IP link add va netns a type veth peer name vb netns b || fail "veth"
$IP -n a addr add 10.241.0.1/24 dev va
$IP -n b addr add 10.241.0.2/24 dev vb
$IP -n a link set va up
$IP -n b link set vb up
$IP -n a link set lo up
$IP -n b link set lo up
$IP netns exec a ping -c 1 -W 5 10.241.0.2 >/dev/null || fail "no connectivity between the test namespaces"
INODE_A=$(stat -L -c %i /run/netns/a)
INODE_B=$(stat -L -c %i /run/netns/b)
IFINDEX_B=$($IP -n b -o link show vb | cut -d: -f1)

echo "== ping, netns filter, function names from kprobes"
start_pwru ping --filter-netns /run/netns/a --filter-func "$FUNCS"
$IP netns exec a ping -c 3 -i 0.2 10.241.0.2 >/dev/null || fail "ping"
stop_pwru
every_line "\"netns\":$INODE_A," "netns filter"
some_line '"func":"ip_rcv"' "receive path (kprobe)"
some_line '"func":"ip_output"\|"func":"__dev_queue_xmit"\|"func":"ip_finish_output"' "transmit path (kprobe)"
some_line '"saddr":"10.241.0.2","daddr":"10.241.0.1","proto":1' "ICMP reply tuple"

echo "== UDP to a closed port: $DROP_FUNC(SKB_DROP_REASON_NO_SOCKET), as pwru prints it"
start_pwru udp --filter-netns /run/netns/b --filter-func "$FUNCS"
echo pwru | $IP netns exec a "$P/nc" -u -w1 10.241.0.2 9999
stop_pwru
some_line "\"func\":\"$DROP_FUNC(SKB_DROP_REASON_NO_SOCKET)\".*\"dport\":9999" "NO_SOCKET drop"
no_line "\"func\":\"$DROP_FUNC\"" "the drop printed a second time by the kprobe on $DROP_FUNC, without its reason"
DROPS=$(grep -c 'NO_SOCKET.*"dport":9999' "$OUT")
[ "$DROPS" -eq 1 ] || fail "one NO_SOCKET line for the one datagram, as pwru prints: $DROPS"
some_line '"func":"udp_rcv"\|"func":"__udp4_lib_rcv"' "UDP receive (kprobe)"

echo "== --summary: each skb's fate (TCP data read by nc, UDP to a closed port)"
start_pwru summary --summary --filter-netns /run/netns/b \
	--filter-func '^(ip_rcv|__udp4_lib_rcv|tcp_v4_rcv|tcp_queue_rcv|skb_copy_datagram_iter|kfree_skb_reason|consume_skb)$' \
	"host 10.241.0.2 and (port 7000 or port 9997)"
$IP netns exec b "$P/nc" -l 10.241.0.2 7000 >/tmp/summary.tcp &
LISTENER=$!
sleep 1
echo pwru-summary | $IP netns exec a "$P/nc" -N -w 3 10.241.0.2 7000 || fail "TCP to the nc listener"
wait "$LISTENER"
grep -q pwru-summary /tmp/summary.tcp || fail "the listener did not get the data"
echo pwru | $IP netns exec a "$P/nc" -u -w1 10.241.0.2 9997
stop_pwru
some_line '"journey":{"fate":"delivered".*"where":"read by nc:' "TCP data delivered (skb_copy_datagram_iter)"
some_line '"journey":{"fate":"dropped",.*"reason":"SKB_DROP_REASON_NO_SOCKET".*"dport":9997.*"where":"__udp4_lib_rcv"' \
	"UDP to port 9997 dropped in __udp4_lib_rcv with NO_SOCKET"
some_line '"journey":{"fate":"dropped","hint":"nothing listens' "the NO_SOCKET hint"
grep '"journey"' "$OUT" | cut -c 1-160

echo "== --output-pcap on $B: the ping's packets, one record per event"
start_pwru opcap --output-pcap /tmp/trace.pcap --filter-netns /run/netns/b --filter-func "$FUNCS" "icmp and host 10.241.0.2"
$IP netns exec a ping -c 2 -i 0.2 10.241.0.2 >/dev/null || fail "ping"
stop_pwru
EVENTS=$(wc -l <"$OUT")
grep -q "pwru: $EVENTS packets written to /tmp/trace.pcap" "$OUT.err" || fail "pcap records for $EVENTS events: $(grep packets "$OUT.err")"
[ "$(head -c 4 /tmp/trace.pcap | od -An -tx1 | tr -d ' ')" = "d4c3b2a1" ] || fail "not a pcap file"
[ "$(stat -c %s /tmp/trace.pcap)" -gt $((24 + EVENTS * 60)) ] || fail "pcap file too small for $EVENTS packets"
some_line '"func":"ip_rcv"' "kprobe events alongside the capture"
REQS=$("$P/tcpdump" -Z root -n -r /tmp/trace.pcap 2>/dev/null | grep -c "IP 10.241.0.1 > 10.241.0.2: ICMP echo request")
[ "$REQS" -ge 2 ] || fail "tcpdump -r found $REQS echo requests in the pcap file: $("$P/tcpdump" -Z root -n -r /tmp/trace.pcap 2>&1 | head -n 5)"

echo "== DNAT in netns b: --filter-track-skb reports the datagram after the rewrite; --summary names the netfilter drop"
printf 'table ip pwru {\n chain pre {\n  type nat hook prerouting priority -100; policy accept;\n  udp dport 7777 dnat to :8888\n }\n chain input {\n  type filter hook input priority 0; policy accept;\n  udp dport 9996 drop\n }\n}\n' |
	$IP netns exec b "$P/nft" -f - || fail "nft rules in netns b (modules nft_chain_nat, nft_nat)"
start_pwru dnat --filter-track-skb --filter-netns /run/netns/b --filter-func "$FUNCS" "udp and dst port 7777"
echo track | $IP netns exec a "$P/nc" -u -w1 10.241.0.2 7777
stop_pwru
some_line "\"func\":\"$DROP_FUNC(SKB_DROP_REASON_NO_SOCKET)\".*\"dport\":8888" "the tracked datagram dropped at port 8888 after DNAT"
some_line '"func":"ip_rcv".*"dport":7777' "the datagram before DNAT"
start_pwru nfdrop --summary --filter-netns /run/netns/b --filter-func "$FUNCS" "udp and dst port 9996"
echo drop | $IP netns exec a "$P/nc" -u -w1 10.241.0.2 9996
stop_pwru
some_line '"journey":{"fate":"dropped","hint":"a netfilter rule dropped it (in nf.*"reason":"SKB_DROP_REASON_NETFILTER_DROP"' \
	"the UDP datagram dropped by the nft rule in netfilter (nf_hook_slow or nft_do_chain), with the netfilter hint"
$IP netns exec b "$P/nft" delete table ip pwru

echo "== --output-skb, --output-skb-shared-info, --output-skb-cb on $B (bpf_snprintf_btf from kprobes)"
start_pwru skbout --output-skb --output-skb-shared-info --output-skb-cb --filter-netns /run/netns/b --filter-func "$FUNCS" "icmp and host 10.241.0.2"
$IP netns exec a ping -c 1 10.241.0.2 >/dev/null || fail "ping"
stop_pwru
every_line '"skb_shared_info":"\\n(struct skb_shared_info){' "the shared info through BTF on every event"
every_line '"cb":\[[0-9]*,[0-9]*,[0-9]*,[0-9]*,[0-9]*\]' "five cb words on every event"
every_line '"skb_metadata":"\\n(struct sk_buff){' "the skb through BTF on every event"
some_line '"func":"ip_rcv".*"skb_metadata"' "a kprobe event with its skb text"
grep -q "texts lost" "$OUT.err" && fail "--output-skb texts lost"

echo "== IPv6 ping, ARP with the filter arp, TCP flags of a handshake"
$IP -n a addr add fd00:241::1/64 dev va nodad
$IP -n b addr add fd00:241::2/64 dev vb nodad
start_pwru ipv6 --filter-func "$FUNCS|^(ipv6_rcv|ip6_output)$" "icmp6 and host fd00:241::2"
$IP netns exec a "$P/ping" -6 -c 2 -i 0.2 fd00:241::2 >/dev/null || fail "ping -6"
stop_pwru
some_line '"saddr":"\[fd00:241::1\]","daddr":"\[fd00:241::2\]","proto":58' "ICMPv6 echo request tuple"
some_line '"func":"ipv6_rcv"' "IPv6 receive (kprobe)"
$IP -n a neigh flush all
$IP -n b neigh flush all
start_pwru arp --filter-netns /run/netns/a --filter-func "$FUNCS|^arp_rcv$" arp
$IP netns exec a ping -c 1 10.241.0.2 >/dev/null || fail "ping"
stop_pwru
every_line '"proto":2054,' "only ARP under 'arp'"
some_line '"func":"arp_rcv"' "the ARP reply at arp_rcv"
# From dev_hard_start_xmit on: at __dev_queue_xmit's entry the MAC header
# is not set yet, so an L2 filter cannot see ARP there (pwru neither); the
# kprobe backends attach no net_dev_queue tracepoint (only kfree_skb).
some_line '"func":"dev_hard_start_xmit"\|"func":"veth_xmit"' "the ARP request on the transmit path"
start_pwru tcpflags --output-tcp-flags --filter-netns /run/netns/b --filter-func "$FUNCS|^tcp_v4_rcv$" "tcp and port 7001"
$IP netns exec b "$P/nc" -l 10.241.0.2 7001 >/dev/null &
LISTENER=$!
sleep 1
echo flags | $IP netns exec a "$P/nc" -N -w 3 10.241.0.2 7001 || fail "TCP to the nc listener"
wait "$LISTENER"
stop_pwru
some_line '"proto":6,"flags":"SYN"}' "SYN"
some_line '"proto":6,"flags":"SYN|ACK"}' "SYN|ACK"
some_line '"proto":6,"flags":"FIN|ACK"}' "FIN|ACK"

echo "== mark filter"
start_pwru mark --filter-mark 42 --filter-func "$FUNCS"
$IP netns exec a "$P/ping" -m 42 -c 2 -i 0.2 10.241.0.2 >/dev/null || fail "ping -m 42"
$IP netns exec a "$P/ping" -c 2 -i 0.2 10.241.0.2 >/dev/null || fail "unmarked ping"
stop_pwru
every_line '"mark":42,' "mark 42"
start_pwru mark2 --filter-mark 43 --filter-func "$FUNCS"
$IP netns exec a "$P/ping" -m 42 -c 2 -i 0.2 10.241.0.2 >/dev/null || fail "ping -m 42"
stop_pwru
[ ! -s "$OUT" ] || fail "--filter-mark 43 printed marked-42 traffic"

echo "== ifname filter"
start_pwru ifname --filter-netns /run/netns/b --filter-ifname vb --filter-func "$FUNCS"
$IP netns exec a ping -c 2 -i 0.2 10.241.0.2 >/dev/null || fail "ping"
$IP netns exec b ping -c 2 -i 0.2 127.0.0.1 >/dev/null || fail "ping lo in b"
stop_pwru
every_line "\"iface\":\"vb:$IFINDEX_B\"" "ifname vb"
every_line "\"netns\":$INODE_B," "ifname pins the netns"

echo "== pcap filter"
start_pwru pcap --filter-func "$FUNCS" "icmp and host 10.241.0.2"
$IP netns exec a ping -c 2 -i 0.2 10.241.0.2 >/dev/null || fail "ping"
echo pwru | $IP netns exec a "$P/nc" -u -w1 10.241.0.2 9998
stop_pwru
every_line '10\.241\.0\.2.*"proto":1}' "icmp and host 10.241.0.2"
some_line '"func":"ip_rcv"' "pcap on a kprobe hook"

echo "== --kmods veth: module functions from the module's split BTF"
start_pwru kmods --filter-netns /run/netns/a --kmods veth --filter-func '^(veth_xmit|ip_rcv)$'
$IP netns exec a ping -c 2 -i 0.2 10.241.0.2 >/dev/null || fail "ping"
stop_pwru
some_line '"func":"veth_xmit"' "veth_xmit (module veth)"

echo "== --filter-non-skb-funcs: fib_table_lookup (no skb argument) reports the skb its stack carries"
start_pwru nonskb --filter-non-skb-funcs fib_table_lookup --filter-func '^ip_rcv$' "icmp and host 10.241.0.2"
$IP netns exec a ping -c 3 -i 0.2 10.241.0.2 >/dev/null || fail "ping"
stop_pwru
some_line '"func":"fib_table_lookup"' "route lookup on the receive path"
grep -q "without an skb, tracked by stack" "$OUT.err" || fail "the plan does not count the non-skb function"
# Only ip_rcv starts tracking, so every skb a route lookup reports was first
# matched at ip_rcv on the same stack.
for skb in $(grep '"func":"fib_table_lookup"' "$OUT" | grep -o '"skb":"0x[0-9a-f]*"' | sort -u); do
	grep '"func":"ip_rcv"' "$OUT" | grep -q "$skb" || fail "fib_table_lookup reported $skb, which ip_rcv never matched"
done
OUT=""
"$PWRU" --backend "$B" --filter-non-skb-funcs no_such_function_here --filter-func '^ip_rcv$' 2>/tmp/nonskb_bad.err
status=$?
[ "$status" -eq 1 ] || fail "unknown --filter-non-skb-funcs name: exit $status, want 1: $(cat /tmp/nonskb_bad.err)"
grep -q "no function named 'no_such_function_here'" /tmp/nonskb_bad.err || fail "unclear error: $(cat /tmp/nonskb_bad.err)"

echo "== --backend auto picks $B on this kernel"
REQUEST=auto
start_pwru auto --filter-func '^ip_rcv$'
$IP netns exec a ping -c 1 10.241.0.2 >/dev/null || fail "ping"
stop_pwru
some_line '"func":"ip_rcv"' "auto-selected kprobes"
echo "== pwru-agent: catalogue functions counted on $B"
OUT=/tmp/agent.metrics
printf 'probe:\n  backend: %s\nhttp:\n  listen: 127.0.0.1:9464\n' "$B" >/tmp/agent.yaml
"$P/pwru-agent" --config /tmp/agent.yaml 2>"$OUT.err" &
PID=$!
i=0
until wget -q -O /dev/null http://127.0.0.1:9464/readyz 2>/dev/null; do
	kill -0 "$PID" 2>/dev/null || fail "pwru-agent exited before it was ready"
	i=$((i + 1))
	[ "$i" -le 1200 ] || fail "pwru-agent not ready within 120 s"
	sleep 0.1
done
echo pwru | $IP netns exec a "$P/nc" -u -w1 10.241.0.2 9999
$IP netns exec a ping -c 1 10.241.0.2 >/dev/null || fail "ping"
wget -q -O "$OUT" http://127.0.0.1:9464/metrics || fail "scrape"
some_line "pwru_attached_hooks{backend=\"$B\"}" "backend in the metrics"
some_line "pwru_skb_function_visits_total{function=\"ip_rcv\",namespace=\"\",pod=\"\",netns=\"$INODE_B\"}" \
	"ip_rcv visits (catalogue kprobe) in netns b"
some_line "pwru_skb_function_visits_total{function=\"veth_xmit\",namespace=\"\",pod=\"\",netns=\"$INODE_A\"}" \
	"veth_xmit visits (catalogue, module veth) in netns a"
some_line "pwru_skb_drops_total{function=\"[a-z0-9_]*\",reason=\"NO_SOCKET\",namespace=\"\",pod=\"\",netns=\"$INODE_B\"}" \
	"NO_SOCKET drop in netns b"
grep 'function="ip_rcv"\|function="veth_xmit"\|NO_SOCKET\|attached_hooks' "$OUT"
echo "== pwru-agent: a trace over HTTP with \"functions\" on $B"
# Loading a trace takes seconds under TCG: ping until the trace is over
# (bounded: 120 pings).
$IP netns exec a ping -c 120 -i 0.25 10.241.0.2 >/dev/null &
PING=$!
wget -q -O /tmp/agent.trace --header 'Content-Type: application/json' \
	--post-data "{\"netns\":$INODE_B,\"functions\":\"^(ip_rcv|icmp_rcv)\$\",\"filter\":\"icmp\",\"duration\":\"4s\"}" \
	http://127.0.0.1:9464/v1/traces || fail "POST /v1/traces with functions"
kill "$PING" 2>/dev/null
wait "$PING"
grep -q '"func":"icmp_rcv"' /tmp/agent.trace || fail "no icmp_rcv (kprobe) event in the trace: $(head -c 600 /tmp/agent.trace)"
grep -q '"func":"ip_rcv"' /tmp/agent.trace || fail "no ip_rcv (kprobe) event in the trace"
grep -v '"summary"' /tmp/agent.trace | grep -qv "\"netns\":$INODE_B," && fail "trace events outside netns b"
tail -n 1 /tmp/agent.trace | grep -q "\"summary\".*\"backend\":\"$B\".*\"ended\":\"duration\"" ||
	fail "summary line: $(tail -n 1 /tmp/agent.trace)"
tail -n 1 /tmp/agent.trace
echo "== pwru-agent: one trace of netns a and b (\"netns\" as an array: the filter_netns map) on $B"
# Echo requests and replies in a and b, and ICMP in the root netns, which
# the set leaves out.
$IP netns exec a ping -c 120 -i 0.25 10.241.0.2 >/dev/null &
PING=$!
ping -c 120 -i 0.25 127.0.0.1 >/dev/null &
PING_ROOT=$!
wget -q -O /tmp/agent.set --header 'Content-Type: application/json' \
	--post-data "{\"netns\":[$INODE_A,$INODE_B],\"functions\":\"^(ip_rcv|icmp_rcv)\$\",\"filter\":\"icmp\",\"duration\":\"4s\"}" \
	http://127.0.0.1:9464/v1/traces || fail "POST /v1/traces with a netns array"
kill "$PING" "$PING_ROOT" 2>/dev/null
wait "$PING" "$PING_ROOT"
grep -q "\"func\":\"icmp_rcv\".*\"netns\":$INODE_A," /tmp/agent.set || fail "no icmp_rcv (kprobe) event in netns a: $(head -c 600 /tmp/agent.set)"
grep -q "\"func\":\"icmp_rcv\".*\"netns\":$INODE_B," /tmp/agent.set || fail "no icmp_rcv (kprobe) event in netns b"
grep -v '"summary"' /tmp/agent.set | grep -v "\"netns\":$INODE_A," | grep -qv "\"netns\":$INODE_B," &&
	fail "set trace events outside netns a and b: $(grep -v '"summary"' /tmp/agent.set | grep -v "\"netns\":$INODE_A," | grep -v "\"netns\":$INODE_B," | head -c 600)"
tail -n 1 /tmp/agent.set | grep -q "\"summary\".*\"ended\":\"duration\"" || fail "set summary line: $(tail -n 1 /tmp/agent.set)"
tail -n 1 /tmp/agent.set | grep -q "\"target\":\"netns $INODE_A,$INODE_B\"" || fail "set summary target: $(tail -n 1 /tmp/agent.set)"
echo "set trace: $(grep -c "\"netns\":$INODE_A," /tmp/agent.set) events in a, $(grep -c "\"netns\":$INODE_B," /tmp/agent.set) in b"
if [ "$B" = kprobe ]; then
	# Plain kprobes detach one grace period per link (about 30 s for a
	# whole trace): the client gets its summary and the end of the response
	# first, and the agent detaches after.
	echo "== pwru-agent: a trace of every skb function on $B answers before it detaches"
	kprobes() { wc -l </sys/kernel/debug/kprobes/list; }
	counting=$(kprobes)
	wget -q -O /tmp/agent.full --header 'Content-Type: application/json' \
		--post-data "{\"netns\":$INODE_B,\"filter\":\"icmp\",\"duration\":\"1s\"}" \
		http://127.0.0.1:9464/v1/traces || fail "POST /v1/traces of every skb function"
	after_answer=$(kprobes)
	tail -n 1 /tmp/agent.full | grep -q '"summary".*"ended":"duration"' || fail "summary line: $(tail -n 1 /tmp/agent.full)"
	[ "$after_answer" -gt "$counting" ] ||
		fail "the trace's kprobes ($after_answer, counters' $counting) were gone before the answer ended: the client waited for the detach"
	i=0
	while [ "$(kprobes)" -gt "$counting" ]; do
		i=$((i + 1))
		[ "$i" -le 1800 ] || fail "the trace's kprobes still attached 180 s after its answer"
		sleep 0.1
	done
	echo "answer ended with $((after_answer - counting)) trace kprobes attached; detached $((i / 10)) s later"
fi
interrupt_pwru 60 "pwru-agent SIGINT"
grep "attached\|detached\|not counting" "$OUT.err"
nothing_attached "after pwru-agent exited"

# Whether SYS_ADMIN can be dropped where CAP_BPF and CAP_PERFMON exist: the
# chart's capabilities without it (setpriv empties the bounding set, so
# root keeps only these), kprobes counted and a trace with "functions".
echo "== pwru-agent without CAP_SYS_ADMIN (BPF PERFMON NET_ADMIN SYS_PTRACE SYS_RESOURCE SYSLOG) on $B"
OUT=/tmp/agent-nosysadmin.metrics
without_sys_admin() {
	"$P/setpriv" --bounding-set -all,+bpf,+perfmon,+net_admin,+sys_ptrace,+sys_resource,+syslog -- \
		"$P/pwru-agent" --config /tmp/agent.yaml 2>"$OUT.err" &
	PID=$!
}
paranoid=$(cat /proc/sys/kernel/perf_event_paranoid)
echo "kernel.perf_event_paranoid=$paranoid"
if [ "$B" = kprobe ] && [ "$paranoid" -ge 3 ]; then
	# Debian's kernels default to 3, a Debian patch under which
	# perf_event_open (how plain kprobes attach) needs CAP_SYS_ADMIN,
	# CAP_PERFMON or not. kprobe-multi links do not go through it.
	without_sys_admin
	i=0
	while kill -0 "$PID" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -le 1200 ] || fail "pwru-agent without SYS_ADMIN at perf_event_paranoid $paranoid kept running"
		sleep 0.1
	done
	wait "$PID" && fail "pwru-agent without SYS_ADMIN at perf_event_paranoid $paranoid exited 0"
	grep -q "backend kprobe is not available.*Permission denied" "$OUT.err" ||
		fail "the refusal does not say why: $(tail -n 2 "$OUT.err")"
	echo "refused as expected at perf_event_paranoid $paranoid: $(grep -o 'backend kprobe is not available[^;]*' "$OUT.err")"
	nothing_attached "after the refused pwru-agent"
	echo 2 >/proc/sys/kernel/perf_event_paranoid
fi
without_sys_admin
i=0
until wget -q -O /dev/null http://127.0.0.1:9464/readyz 2>/dev/null; do
	kill -0 "$PID" 2>/dev/null || fail "pwru-agent without SYS_ADMIN exited before it was ready"
	i=$((i + 1))
	[ "$i" -le 1200 ] || fail "pwru-agent without SYS_ADMIN not ready within 120 s"
	sleep 0.1
done
# BPF 39, PERFMON 38, SYSLOG 34, SYS_RESOURCE 24, SYS_PTRACE 19, NET_ADMIN 12.
grep -q "^CapEff:[[:space:]]*000000c401081000\$" /proc/$PID/status ||
	fail "not the chart's capabilities without SYS_ADMIN: $(grep Cap /proc/$PID/status | tr '\n' ' ')"
echo pwru | $IP netns exec a "$P/nc" -u -w1 10.241.0.2 9999
$IP netns exec a ping -c 1 10.241.0.2 >/dev/null || fail "ping"
wget -q -O "$OUT" http://127.0.0.1:9464/metrics || fail "scrape without SYS_ADMIN"
some_line "pwru_attached_hooks{backend=\"$B\"}" "backend without SYS_ADMIN"
some_line "pwru_skb_function_visits_total{function=\"ip_rcv\",namespace=\"\",pod=\"\",netns=\"$INODE_B\"}" \
	"ip_rcv visits (kprobe) without SYS_ADMIN"
some_line "pwru_skb_drops_total{function=\"[a-z0-9_]*\",reason=\"NO_SOCKET\",namespace=\"\",pod=\"\",netns=\"$INODE_B\"}" \
	"a named NO_SOCKET drop without SYS_ADMIN"
$IP netns exec a ping -c 120 -i 0.25 10.241.0.2 >/dev/null &
PING=$!
wget -q -O /tmp/agent-nosysadmin.trace --header 'Content-Type: application/json' \
	--post-data "{\"netns\":$INODE_B,\"functions\":\"^(ip_rcv|icmp_rcv)\$\",\"filter\":\"icmp\",\"duration\":\"4s\"}" \
	http://127.0.0.1:9464/v1/traces || fail "POST /v1/traces with functions without SYS_ADMIN"
kill "$PING" 2>/dev/null
wait "$PING"
grep -q '"func":"icmp_rcv"' /tmp/agent-nosysadmin.trace ||
	fail "no icmp_rcv (kprobe) event without SYS_ADMIN: $(head -c 600 /tmp/agent-nosysadmin.trace)"
interrupt_pwru 60 "pwru-agent without SYS_ADMIN, SIGINT"
nothing_attached "after pwru-agent without SYS_ADMIN exited"
echo "pwru-agent without SYS_ADMIN on $B at perf_event_paranoid $(cat /proc/sys/kernel/perf_event_paranoid): kprobes counted, named drops, a kprobe trace"
echo "$paranoid" >/proc/sys/kernel/perf_event_paranoid

echo "== --filter-trace-tc, --filter-trace-xdp: fentry on a tc and an XDP program in netns b"
attach_test_progs
start_pwru bpfprogs --filter-trace-tc --filter-trace-xdp --filter-func '^ip_rcv$' "icmp and host 10.241.0.2"
$IP netns exec a ping -c 2 -i 0.2 10.241.0.2 >/dev/null || fail "ping through the tc and XDP programs"
stop_pwru
kill "$ATTACH"
wait "$ATTACH"
some_line '"func":"bpf_prog_[0-9a-f]*_pwru_test_tc(tc)".*"iface":"vb:' "the tc program on vb"
some_line '"func":"bpf_prog_[0-9a-f]*_pwru_test_xdp(xdp)".*"iface":"vb:' "the XDP program on vb"
no_line '"cb":' "a cb field without --output-skb-cb (pwru v1.0.9 prints none with --filter-trace-tc)"
some_line '"func":"bpf_prog_[0-9a-f]*_pwru_test_xdp(xdp)".*"saddr":"10.241.0.1","daddr":"10.241.0.2","proto":1' "the XDP frame's tuple"

echo "== --filter-track-bpf-helpers: bpf_skb_load_bytes, which the tc program on vb calls, reports the skb its stack carries"
attach_test_progs
# tcf_classify runs the tc program, so it starts tracking the echo request
# on the stack the helper then runs on.
start_pwru helpers --filter-track-bpf-helpers --filter-func '^tcf_classify$' "icmp and host 10.241.0.2"
$IP netns exec a ping -c 2 -i 0.2 10.241.0.2 >/dev/null || fail "ping through the tc program"
stop_pwru
kill "$ATTACH"
wait "$ATTACH"
grep -q "filter-track-bpf-helpers: [1-9][0-9]* kernel functions called by [1-9][0-9]* loaded BPF programs" "$OUT.err" ||
	fail "the plan does not count the helpers: $(grep 'kprobes on' "$OUT.err")"
grep "kprobes on" "$OUT.err"
some_line '"func":"bpf_skb_load_bytes".*"iface":"vb:.*"saddr":"10.241.0.1","daddr":"10.241.0.2","proto":1' \
	"the helper's event with the echo request on vb"
for skb in $(grep '"func":"bpf_skb_load_bytes"' "$OUT" | grep -o '"skb":"0x[0-9a-f]*"' | sort -u); do
	grep '"func":"tcf_classify"' "$OUT" | grep -q "$skb" || fail "bpf_skb_load_bytes reported $skb, which tcf_classify never matched"
done

echo "== --filter-track-skb follows clones: a bridge floods a tracked ARP request to two ports"
for ns in x y z w; do $IP netns add $ns || fail "netns $ns"; $IP -n $ns link set lo up; done
$IP -n y link add br9 type bridge || fail "bridge (module bridge)"
$IP link add x0 netns x type veth peer name y0 netns y || fail "veth x0"
$IP link add z0 netns z type veth peer name y1 netns y || fail "veth z0"
$IP link add w0 netns w type veth peer name y2 netns y || fail "veth w0"
for p in y0 y1 y2; do $IP -n y link set $p master br9 up; done
$IP -n y link set br9 up
$IP -n x addr add 10.242.0.1/24 dev x0
$IP -n z addr add 10.242.0.3/24 dev z0
$IP -n w addr add 10.242.0.4/24 dev w0
$IP -n x link set x0 up
$IP -n z link set z0 up
$IP -n w link set w0 up
# Only y0 matches the filters; the request leaves through y1 and y2, one of
# them as a clone (br_flood), which only clone tracking reports.
# __netif_receive_skb sees it arrive on y0 (the kprobe backends attach no
# netif_receive_skb tracepoint).
start_pwru clones --filter-track-skb --filter-netns /run/netns/y --filter-ifname y0 \
	--filter-func '^(__netif_receive_skb|__dev_queue_xmit|dev_hard_start_xmit)$' arp
$IP netns exec x ping -c 1 -W 2 10.242.0.3 >/dev/null || fail "ping across the bridge"
stop_pwru
some_line '"func":"__netif_receive_skb".*"iface":"y0:' "the request entering the bridge on y0"
grep -q '"iface":"y1:[0-9]*","proto":2054,' "$OUT" || fail "no ARP event on y1"
grep -q '"iface":"y2:[0-9]*","proto":2054,' "$OUT" || fail "no ARP event on y2"
[ "$(grep '"iface":"y[12]:[0-9]*","proto":2054,' "$OUT" | grep -o '"skb":"0x[0-9a-f]*"' | sort -u | wc -l)" -ge 2 ] ||
	fail "the flooded copies are not two skbs (no clone followed)"
grep -q "following clones" "$OUT.err" && fail "clone tracking not attached: $(grep 'following clones' "$OUT.err")"

echo "== Ctrl-C while attaching every skb function"
OUT=/tmp/int.out  # fail() shows $OUT.err: pwru's stderr
: >"$OUT"
"$PWRU" --backend "$B" --output-file /dev/null 2>"$OUT.err" &
PID=$!
i=0
until grep -q "attaching" "$OUT.err" 2>/dev/null; do
	i=$((i + 1))
	[ "$i" -le 3000 ] || fail "pwru never started attaching"
	sleep 0.1
done
sleep 2
interrupt_pwru 180 "during attach"
grep "attached\|detached" "$OUT.err"
nothing_attached "after SIGINT during attach"

echo "ALL SCENARIOS PASSED ($B, $(uname -r))"
exit 0
