#!/bin/sh
# Guest side of bench/vm_tc_start.sh: $PWRU_TC_PROGRAMS tc programs loaded
# (plus one XDP), then pwru --filter-trace-tc started to ready, its tracers
# loaded one after another (PWRU_PROG_LOAD_THREADS=1) and in parallel (the
# default), interleaved for $PWRU_ROUNDS rounds. busybox sh.
IP=/usr/sbin/ip
P=/opt/pwru
N=${PWRU_TC_PROGRAMS:-100}
ROUNDS=${PWRU_ROUNDS:-3}
$IP netns add b || exit 1
$IP link add va type veth peer name vb netns b || exit 1
$IP -n b link set vb up || exit 1
"$P/pwru-test-attach" /run/netns/b vb $((N - 1)) >/tmp/attach.out 2>&1 &
ATTACH=$!
i=0
until grep -q attached /tmp/attach.out; do
	kill -0 "$ATTACH" 2>/dev/null || { cat /tmp/attach.out; echo "pwru-test-attach failed"; exit 1; }
	i=$((i + 1))
	[ "$i" -le 3000 ] || { echo "test programs not loaded within 300 s"; exit 1; }
	sleep 0.1
done
ms() { sed 's/ .*//; s/\.//' /proc/uptime; }  # centiseconds since boot
round=1
while [ "$round" -le "$ROUNDS" ]; do
	for threads in 1 default; do
		rm -f /tmp/ready
		start=$(ms)
		if [ "$threads" = 1 ]; then
			PWRU_PROG_LOAD_THREADS=1 "$P/pwru" --filter-trace-tc --filter-func '^ip_rcv$' --ready-file /tmp/ready \
				--output-file /dev/null 'host 192.0.2.1' 2>/tmp/err &
		else
			"$P/pwru" --filter-trace-tc --filter-func '^ip_rcv$' --ready-file /tmp/ready \
				--output-file /dev/null 'host 192.0.2.1' 2>/tmp/err &
		fi
		pid=$!
		i=0
		while [ ! -e /tmp/ready ]; do
			kill -0 "$pid" 2>/dev/null || { cat /tmp/err; echo "pwru exited early"; exit 1; }
			i=$((i + 1))
			[ "$i" -le 6000 ] || { echo "not ready within 600 s"; exit 1; }
			sleep 0.05
		done
		ready=$(( $(ms) - start ))
		kill -INT "$pid"
		wait "$pid" || { cat /tmp/err; echo "pwru failed"; exit 1; }
		attached=$(sed -n 's/^pwru: attached \([0-9]*\), skipped \([0-9]*\).*/attached=\1 skipped=\2/p' /tmp/err)
		echo "tc_start_bench kernel=$(uname -r) programs=$N round=$round threads=$threads ready_cs=$ready $attached"
	done
	round=$((round + 1))
done
kill "$ATTACH"
wait "$ATTACH"
exit 0
