#!/usr/bin/env bash
# Our pwru against cilium/pwru v1.0.9 in the Debian guests of e2e/vm: the
# 6.12 guest on kprobe-multi, the 6.1 guest on kprobe, every skb function,
# pcap filter 'icmp'. Start to ready (interleaved rounds: median, spread,
# ratio), our start-up phases, and events per second under `ping -f` on
# loopback with the loss of each tool (see bench/README.md).
#
# Usage (root; qemu etc. as for e2e/vm/run_vm.sh):
#   bash bench/vm_compare.sh [--pwru PATH] [--before PATH] [--flavors "6.12 6.1"]
# --before: an earlier build of ours, measured alongside (before/after).
# --summary FILE: only print the figures of the compare_* lines in FILE (a
# guest console log or results.txt of an earlier run).
# Environment: ROUNDS (start-to-ready rounds per tool, default 3), FLOOD_S
# (seconds per load step, default 10), LOADS (ping intervals of the load
# steps, f for ping -f; default "0.01 0.002 f").
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
pwru=$root/build/pwru before="" flavors="6.12 6.1" summary_of=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pwru) pwru=${2:?}; shift 2 ;;
    --before) before=${2:?}; shift 2 ;;
    --flavors) flavors=${2:?}; shift 2 ;;
    --summary) summary_of=${2:?}; shift 2 ;;
    *) echo "vm_compare: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
summarize() { python3 - "$1" <<'EOF'
import re, statistics, sys
rows = []
for line in open(sys.argv[1]):
    kind, rest = line.split(' ', 1)
    fields = dict(re.findall(r"(\w+)=('[^']*'|\S+)", rest))
    rows.append((kind, fields))

def med(xs): return statistics.median(xs)
kernels = []
for kind, f in rows:
    if kind == 'compare_info' and f['kernel'] not in kernels: kernels.append(f['kernel'])
for k in kernels:
    backend = next(f['backend'] for kind, f in rows if kind == 'compare_info' and f['kernel'] == k)
    ready = {}
    for kind, f in rows:
        if kind == 'compare_ready' and f['kernel'] == k:
            ready.setdefault(f['tool'], []).append((float(f['ready_s']), float(f['exit_s'])))
    for tool, runs in ready.items():
        r = [x[0] for x in runs]; e = [x[1] for x in runs]
        print(f"ready kernel={k} backend={backend} tool={tool} rounds={len(r)} median_s={med(r):.2f} "
              f"min_s={min(r):.2f} max_s={max(r):.2f} spread={(max(r)-min(r))/med(r)*100:.0f}% "
              f"exit_median_s={med(e):.2f}")
    if 'ours' in ready and 'ref' in ready:
        o, p = med([x[0] for x in ready['ours']]), med([x[0] for x in ready['ref']])
        print(f"ready_ratio kernel={k} ours/pwru={o/p:.2f} (target <= 0.5: {'PASS' if o/p <= 0.5 else 'FAIL'})")
    if 'before' in ready and 'ours' in ready:
        b, o = med([x[0] for x in ready['before']]), med([x[0] for x in ready['ours']])
        print(f"ready_before_after kernel={k} before={b:.2f}s after={o:.2f}s ratio={o/b:.2f}")
    calib = {f['tool']: f for kind, f in rows if kind == 'compare_calib' and f['kernel'] == k}
    eps = {}
    for kind, f in rows:
        if kind != 'compare_events' or f['kernel'] != k: continue
        tool = f['tool']; c = calib.get(tool)
        per_echo = int(c['lines']) / int(c['echoes']) if c and int(c['echoes']) else float('nan')
        lines, echoes, secs = int(f['lines']), int(f['echoes']), float(f['seconds'])
        expected = echoes * per_echo
        est_lost = max(0, round(expected - lines))
        load = f.get('load', 'f')
        eps.setdefault(load, {})[tool] = lines / secs
        own = f"own_lost={f['own_lost']} own_received={f['own_received']}" if tool != 'ref' else \
              "own_lost=n/a (cilium/pwru's BPF queue overwrites silently)"
        print(f"events kernel={k} backend={backend} tool={tool} load={load} echoes={echoes} seconds={secs:.1f} lines={lines} "
              f"events_per_s={lines/secs:.0f} calib_events_per_echo={per_echo:.1f} "
              f"estimated_lost={est_lost} ({est_lost/expected*100 if expected else 0:.1f}%) {own}")
    for load, by_tool in eps.items():
        if 'ours' in by_tool and 'ref' in by_tool:
            r = by_tool['ours'] / by_tool['ref']
            print(f"events_ratio kernel={k} load={load} ours/pwru={r:.2f} (target >= 2 with no loss: see estimated_lost)")
EOF
}
if [[ -n "$summary_of" ]]; then
  tr -d '\r' <"$summary_of" | grep -a '^compare_' >"${TMPDIR:-/tmp}/vm_compare.$$" || true
  summarize "${TMPDIR:-/tmp}/vm_compare.$$"; rm -f "${TMPDIR:-/tmp}/vm_compare.$$"; exit 0
fi
[[ -x "$pwru" ]] || { echo "vm_compare: no pwru at $pwru (build it first)" >&2; exit 1; }
ping_bin=$(readlink -f "$(command -v ping)") || { echo "vm_compare: needs iputils ping on the host" >&2; exit 1; }
ref=$(bash "$here/reference_pwru.sh") || { echo "vm_compare: cannot build the reference pwru (above)" >&2; exit 1; }
cache=$root/build/vm-cache
payload=$(mktemp -d /tmp/pwru-vm-compare.XXXXXX)
logs=$(mktemp -d /tmp/pwru-vm-compare-logs.XXXXXX)
trap 'rm -rf "$payload"' EXIT
cp "$pwru" "$payload/pwru"
cp "$ref" "$payload/pwru-ref"
cp "$ping_bin" "$payload/ping"
[[ -n "$before" ]] && cp "$before" "$payload/pwru-before"
echo "vm_compare: reference $("$ref" --version 2>&1 | head -n1); logs in $logs" >&2

results=$logs/results.txt
: >"$results"
for flavor in $flavors; do
  case "$flavor" in 6.12) backend=kprobe-multi ;; 6.1) backend=kprobe ;; *) echo "vm_compare: flavor 6.12 or 6.1" >&2; exit 2 ;; esac
  log=$logs/$flavor-$backend.log
  echo "vm_compare: guest $flavor ($backend), console in $log" >&2
  bash "$root/e2e/vm/run_vm.sh" --flavor "$flavor" --cache "$cache" --payload "$payload" \
    --script "$here/vm_compare_guest.sh" --env "PWRU_BACKEND=$backend" --env "ROUNDS=${ROUNDS:-3}" \
    --env "FLOOD_S=${FLOOD_S:-10}" --env "LOADS=${LOADS:-0.01 0.002 f}" --timeout 3600 --log "$log" >&2 ||
    { tail -n 40 "$log" >&2; echo "vm_compare: guest $flavor run failed" >&2; exit 1; }
  grep -a '^compare_' "$log" | tr -d '\r' | tee -a "$results"
done
summarize "$results"
