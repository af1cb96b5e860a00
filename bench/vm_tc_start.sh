#!/usr/bin/env bash
# Start-up of pwru --filter-trace-tc with 100 tc programs loaded, tracers
# loaded one after another vs in parallel, in the Debian 6.12 guest of e2e/vm
# (fentry on BPF programs works there; this build kernel refuses it). qemu
# TCG with 2 vCPUs: the ratio is what matters. Rounds are interleaved.
#
# Usage (as root, after .ci/setup and `ctest -R vm.payload`, which fetches
# the guest's tools; pwru and pwru-test-attach are taken from build/):
#   bash bench/vm_tc_start.sh [PROGRAMS] [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
[ -d "$root/build/vm-payload" ] || { echo "bench: no build/vm-payload: run ctest --test-dir build -R vm.payload" >&2; exit 1; }
payload=$(mktemp -d /tmp/pwru-vm-tc-start.XXXXXX)
log=$payload.log
trap 'rm -rf "$payload" "$log"' EXIT
cp -a "$root/build/vm-payload/." "$payload/"
cp "$root/build/pwru" "$root/build/tests/pwru-test-attach" "$payload/"
bash "$root/e2e/vm/run_vm.sh" --flavor 6.12 --cache "$root/build/vm-cache" --payload "$payload" \
  --script "$here/vm_tc_start_guest.sh" --module sch_ingress --module cls_bpf --env "PWRU_TC_PROGRAMS=${1:-100}" --env "PWRU_ROUNDS=${2:-3}" \
  --timeout 1500 --log "$log" >/dev/null || { tail -n 30 "$log"; echo "bench: guest run failed" >&2; exit 1; }
lines=$(grep -a '^tc_start_bench ' "$log" | tr -d '\r')
echo "$lines"
python3 - "$lines" <<'PY'
import re, statistics, sys
runs = {}
for line in sys.argv[1].splitlines():
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    runs.setdefault(f["threads"], []).append(int(f["ready_cs"]) / 100)
seq, par = runs.get("1", []), runs.get("default", [])
if not seq or not par:
    sys.exit("bench: missing runs")
s, p = statistics.median(seq), statistics.median(par)
print(f"tc_start sequential median={s:.1f}s ({min(seq):.1f}..{max(seq):.1f}) parallel median={p:.1f}s "
      f"({min(par):.1f}..{max(par):.1f}) ratio={p / s:.2f} over {len(seq)} interleaved rounds")
PY
