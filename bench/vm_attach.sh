#!/usr/bin/env bash
# Attach and detach time of every skb function on the kprobe backends, in
# the Debian guests of e2e/vm (qemu TCG: absolute times are slow, the ratios
# are what matters). Prints one line per run and the parallel/sequential
# detach ratio for plain kprobes (target <= 0.4, and all detached in < 30 s).
#
# Usage (as root, after .ci/setup): bash bench/vm_attach.sh [PATH_TO_PWRU]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
pwru=${1:-$root/build/pwru}
cache=$root/build/vm-cache
payload=$(mktemp -d /tmp/pwru-vm-bench.XXXXXX)
trap 'rm -rf "$payload"' EXIT
cp "$pwru" "$payload/pwru"

run() { # run FLAVOR BACKEND BATCHES
  local log=$payload/$1-$2.log
  bash "$root/e2e/vm/run_vm.sh" --flavor "$1" --cache "$cache" --payload "$payload" \
    --script "$here/vm_attach_guest.sh" --env "PWRU_BACKEND=$2" --env "PWRU_BATCHES=$3" \
    --timeout 1500 --log "$log" >/dev/null || { tail -n 30 "$log"; echo "bench: guest run failed" >&2; exit 1; }
  grep -a '^attach_bench ' "$log" | tr -d '\r'
}

kprobe=$(run 6.1 kprobe "1 10 32")
echo "$kprobe"
run 6.12 kprobe-multi "1"
seq_s=$(sed -n 's/.* batch=1 .*detach_s=\([0-9.]*\).*/\1/p' <<<"$kprobe")
par_s=$(sed -n 's/.* batch=10 .*detach_s=\([0-9.]*\).*/\1/p' <<<"$kprobe")
python3 -c "
s, p = float('$seq_s'), float('$par_s')
print(f'kprobe_detach sequential={s:.1f}s parallel(10)={p:.1f}s ratio={p/s:.2f} (target <= 0.4; under 30 s: {\"yes\" if p < 30 else \"no\"})')"
