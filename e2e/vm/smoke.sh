#!/bin/sh
# Guest script for e2e/vm/run_vm.sh: basic checks of the qemu matrix guest.
# busybox sh; iproute2 by full path (the shell's own `ip` applet has no netns).
IP=/usr/sbin/ip

fail() { echo "SMOKE FAIL: $*"; exit 1; }

echo "uname -r: $(uname -r)"
[ -f /sys/kernel/btf/vmlinux ] || fail "/sys/kernel/btf/vmlinux missing"
echo "btf: $(wc -c </sys/kernel/btf/vmlinux) bytes"
[ -d /sys/kernel/tracing/events ] || fail "tracefs not mounted at /sys/kernel/tracing"
grep -q ' /sys/fs/bpf bpf ' /proc/mounts || fail "bpffs not mounted"
grep -q '^veth ' /proc/modules || fail "veth module not loaded"
# shellcheck disable=SC3045  # busybox ash has ulimit -l
[ "$(ulimit -l)" = unlimited ] || fail "memlock limit is $(ulimit -l)"

$IP netns add smoke-a || fail "ip netns add smoke-a"
$IP netns add smoke-b || fail "ip netns add smoke-b"
$IP link add smoke0 netns smoke-a type veth peer name smoke1 netns smoke-b \
  || fail "veth pair"
$IP -n smoke-a addr add 10.240.0.1/24 dev smoke0 || fail "addr a"
$IP -n smoke-b addr add 10.240.0.2/24 dev smoke1 || fail "addr b"
$IP -n smoke-a link set smoke0 up || fail "link a up"
$IP -n smoke-b link set smoke1 up || fail "link b up"
$IP -n smoke-a link set lo up
$IP -n smoke-b link set lo up
$IP netns exec smoke-a ping -c 1 -W 5 10.240.0.2 || fail "ping 10.240.0.1 -> 10.240.0.2"
$IP netns exec smoke-b ping -c 1 -W 5 10.240.0.1 || fail "ping 10.240.0.2 -> 10.240.0.1"
$IP netns del smoke-a
$IP netns del smoke-b
echo "SMOKE OK $(uname -r)"
exit 0
