#!/bin/sh
# Guest side of bench/vm_attach.sh: attach pwru to every skb function on
# $PWRU_BACKEND and detach it, once per detach batch in $PWRU_BATCHES, and
# print one line per run. busybox sh.
B=${PWRU_BACKEND:?}
PWRU=/opt/pwru/pwru
for batch in ${PWRU_BATCHES:-1 10}; do
	rm -f /tmp/ready /tmp/err
	"$PWRU" --backend "$B" --filter-kprobe-batch "$batch" --ready-file /tmp/ready --output-file /dev/null \
		--filter-mark 0xdead 2>/tmp/err &
	pid=$!
	i=0
	while [ ! -e /tmp/ready ]; do
		kill -0 "$pid" 2>/dev/null || { cat /tmp/err; echo "pwru exited early"; exit 1; }
		i=$((i + 1))
		[ "$i" -le 6000 ] || { echo "not ready within 600 s"; exit 1; }
		sleep 0.1
	done
	kill -INT "$pid"
	wait "$pid" || { cat /tmp/err; echo "pwru failed"; exit 1; }
	attach=$(sed -n 's/^pwru: attached \([0-9]*\), skipped \([0-9]*\) in \([0-9.]*\) s$/attached=\1 skipped=\2 attach_s=\3/p' /tmp/err)
	detach=$(sed -n 's/^pwru: detached in \([0-9.]*\) s$/detach_s=\1/p' /tmp/err)
	echo "attach_bench kernel=$(uname -r) backend=$B batch=$batch $attach $detach"
done
exit 0
