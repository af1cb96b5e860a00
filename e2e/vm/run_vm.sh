#!/usr/bin/env bash
# Boot a Debian 12 kernel under qemu TCG with a busybox initramfs and run one
# guest script in it.
#
#   run_vm.sh --flavor 6.1|6.12 --cache DIR --payload DIR --script FILE
#             [--timeout SECONDS] [--log FILE]
#             [--module NAME]... [--extra-bin PATH]... [--env KEY=VALUE]...
#             [--smp N] [--mem MB] [--append "KERNEL ARGS"] [--dmesg]
#
# Guest layout (merged /usr, like the host):
#   /opt/pwru            copy of --payload (the script starts with it as cwd)
#   /pwru-vm/script.sh   copy of --script, run with busybox `sh`
#   /usr/sbin/ip         iproute2 (busybox's shell runs its own `ip` applet
#                        first, so scripts must call /usr/sbin/ip by path)
#   /usr/sbin/bpftool    if the host has it
#   busybox applets for everything else; shared libraries of every ELF
#   executable shipped, found with ldd.
# Guest environment: PWRU_VM=1, PWRU_VM_FLAVOR, PWRU_VM_KERNEL (uname -r),
# plus --env pairs. proc, sysfs, devtmpfs, debugfs, tracefs
# (/sys/kernel/tracing), bpffs (/sys/fs/bpf), cgroup2 (/sys/fs/cgroup), tmpfs
# on /tmp and /run (/var/run -> /run, /run/netns exists) are mounted; lo is up;
# veth and the --module modules, with their dependencies, are loaded; memlock is
# unlimited.
#
# The console goes to --log (without --log it is also streamed to stdout); a
# short summary goes to stdout. Exit status: the guest script's, 124 on
# timeout (qemu killed), 125 when no "PWRU-VM-RESULT: N" line was seen (the
# last 40 console lines are printed), 2 on usage errors, 1 on setup errors.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"

die() { echo "run_vm: error: $*" >&2; exit 1; }
usage() { sed -n '2,10p' "$self" | sed 's/^# \{0,1\}//' >&2; exit 2; }
say() { echo "run_vm: $*"; }

flavor="" cache="" payload="" script="" timeout_s=600 logfile=""
smp=2 mem=2048 append_extra="" dump_dmesg=0
modules=(veth) extra_bins=() envs=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --flavor) flavor=${2:?}; shift 2 ;;
    --cache) cache=${2:?}; shift 2 ;;
    --payload) payload=${2:?}; shift 2 ;;
    --script) script=${2:?}; shift 2 ;;
    --timeout) timeout_s=${2:?}; shift 2 ;;
    --log) logfile=${2:?}; shift 2 ;;
    --module) modules+=("${2:?}"); shift 2 ;;
    --extra-bin) extra_bins+=("${2:?}"); shift 2 ;;
    --env) envs+=("${2:?}"); shift 2 ;;
    --smp) smp=${2:?}; shift 2 ;;
    --mem) mem=${2:?}; shift 2 ;;
    --append) append_extra=${2:?}; shift 2 ;;
    --dmesg) dump_dmesg=1; shift ;;
    -h|--help) usage ;;
    *) echo "run_vm: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ -n "$flavor" && -n "$cache" && -n "$payload" && -n "$script" ]] || usage
[[ "$flavor" == 6.1 || "$flavor" == 6.12 ]] || { echo "run_vm: --flavor must be 6.1 or 6.12" >&2; exit 2; }
[[ "$timeout_s" =~ ^[0-9]+$ && "$timeout_s" -gt 0 ]] || { echo "run_vm: bad --timeout" >&2; exit 2; }
[[ -d "$payload" ]] || die "--payload $payload is not a directory"
[[ -f "$script" ]] || die "--script $script is not a file"
for e in "${envs[@]+"${envs[@]}"}"; do
  [[ "$e" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { echo "run_vm: bad --env '$e'" >&2; exit 2; }
done

for tool in qemu-system-x86_64 cpio ldd xz flock sha256sum; do
  command -v "$tool" >/dev/null || die "missing tool: $tool (Debian packages: qemu-system-x86 cpio libc-bin xz-utils util-linux coreutils)"
done
busybox=""
for b in /usr/bin/busybox /bin/busybox; do [[ -x "$b" ]] && { busybox=$b; break; }; done
[[ -n "$busybox" ]] || die "no busybox (Debian package busybox-static)"
# A dynamically linked busybox would work too, but busybox-static is what we test.
iproute2=""
for b in /usr/sbin/ip /sbin/ip /usr/bin/ip /bin/ip; do
  [[ -x "$b" ]] && ! [[ "$(readlink -f "$b")" == *busybox* ]] && { iproute2=$b; break; }
done
[[ -n "$iproute2" ]] || die "no iproute2 ip binary (Debian package iproute2)"
bpftool=""
for b in /usr/sbin/bpftool /sbin/bpftool; do [[ -x "$b" ]] && { bpftool=$b; break; }; done

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
payload=$(cd "$payload" && pwd)

# --- temp dir, qemu cleanup ------------------------------------------------
# Per-run scratch under the cache; dirs left by runs that were SIGKILLed
# (their pid is gone) are removed here.
mkdir -p "$cache/tmp"
for d in "$cache"/tmp/run.*; do
  [[ -d "$d" ]] || continue
  p=${d#"$cache/tmp/run."}; p=${p%%.*}
  [[ "$p" =~ ^[0-9]+$ ]] && ! kill -0 "$p" 2>/dev/null && rm -rf "$d"
done
tmp=$(mktemp -d "$cache/tmp/run.$$.XXXXXX")
qpid="" tailpid=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  if [[ -n "$qpid" ]] && kill -0 "$qpid" 2>/dev/null; then
    kill -TERM "$qpid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qpid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
  fi
  if [[ -n "$tailpid" ]]; then kill "$tailpid" 2>/dev/null || true; wait "$tailpid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- kernel ---------------------------------------------------------------
t0=$(date +%s.%N)
kout=$("$here/fetch_kernel.sh" "$flavor" "$cache") || die "fetch_kernel.sh $flavor failed"
vmlinuz=$(sed -n 1p <<<"$kout")
moddir=$(sed -n 2p <<<"$kout")
[[ -f "$vmlinuz" && -d "$moddir" ]] || die "fetch_kernel.sh printed unusable paths: $kout"
kver=$(basename "$moddir")
kpkg=${moddir#"$cache/kernels/"}; kpkg=${kpkg%%/*}

# --- helpers for staging trees ---------------------------------------------
# Host path -> path in the merged-/usr guest tree.
guest_path() {
  local p=$1
  case "$p" in
    /bin/*|/sbin/*|/lib/*|/lib64/*) p=/usr$p ;;
  esac
  printf '%s' "$p"
}

is_elf() {
  local magic=""
  [[ -f "$1" && -r "$1" ]] || return 1
  LC_ALL=C IFS= read -r -d '' -n 4 magic <"$1" 2>/dev/null || true
  [[ "$magic" == $'\x7fELF' ]]
}

# Print the absolute paths (loader included) of the shared libraries of an
# ELF file; nothing for static executables and non-executable ELF (BPF objects).
elf_libs() {
  local out line
  out=$(LC_ALL=C ldd "$1" 2>/dev/null) || return 0
  while IFS= read -r line; do
    case "$line" in
      *"=> not found"*) echo "run_vm: warning: $1 needs ${line%% =>*} which ldd cannot find" >&2 ;;
      *"=> /"*) line=${line#*=> }; echo "${line%% (0x*}" ;;
      *[[:space:]]/*) line=${line#"${line%%/*}"}; echo "${line%% (0x*}" ;;
    esac
  done <<<"$out"
}

# copy_host_file STAGE HOSTPATH: copy (dereferenced) to its guest path.
copy_host_file() {
  local stage=$1 src=$2 dst
  dst="$stage$(guest_path "$src")"
  [[ -e "$dst" ]] && return 0
  mkdir -p "$(dirname "$dst")"
  cp -L --preserve=mode "$src" "$dst"
}

make_cpio() {  # make_cpio STAGE OUT
  (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$2"
}

# Module name -> path relative to $moddir (first match, - and _ equivalent).
find_module() {
  local name=$1 alt f
  alt=${name//_/-}
  [[ "$alt" == "$name" ]] && alt=${name//-/_}
  f=$(find "$moddir/kernel" \( -name "$name.ko" -o -name "$name.ko.xz" -o -name "$name.ko.zst" \
        -o -name "$alt.ko" -o -name "$alt.ko.xz" -o -name "$alt.ko.zst" \) -print -quit 2>/dev/null || true)
  [[ -n "$f" ]] || return 1
  printf '%s' "${f#"$moddir/"}"
}

module_deps() {  # module_deps RELPATH: names of direct dependencies
  local rel=$1 line
  if [[ -f "$moddir/modules.dep" ]]; then
    line=$(grep -m1 "^$rel:" "$moddir/modules.dep" || true)
    for d in ${line#*:}; do d=${d##*/}; echo "${d%%.ko*}"; done
    return 0
  fi
  # The Debian package ships no modules.dep (depmod runs in postinst):
  # read depends= from the module's .modinfo section instead.
  case "$rel" in
    *.xz) xz -dc "$moddir/$rel" ;;
    *.zst) zstd -dc "$moddir/$rel" ;;
    *) cat "$moddir/$rel" ;;
  esac | tr '\0' '\n' | { grep -a -m1 '^depends=' || true; } | sed 's/^depends=//' | tr ',' '\n' | sed '/^$/d'
}

declare -A mod_seen=()
mod_order=()
resolve_module() {  # depth-first, dependencies first
  local name=$1 rel dep
  [[ -n "${mod_seen[$name]:-}" ]] && return 0
  mod_seen[$name]=1
  if grep -Eq "/${name//[-_]/[-_]}\.ko(\.xz|\.zst)?\$" "$moddir/modules.builtin" 2>/dev/null; then
    return 0  # built into this kernel
  fi
  rel=$(find_module "$name") || die "module $name not found under $moddir"
  for dep in $(module_deps "$rel"); do resolve_module "$dep"; done
  mod_order+=("$rel")
}
for m in "${modules[@]}"; do resolve_module "$m"; done

# --- /init ----------------------------------------------------------------
init_text=$(cat <<'INIT'
#!/bin/sh
# pwru-agent qemu matrix init (generated by e2e/vm/run_vm.sh)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mkdir -p /proc /sys /tmp /run /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/netns /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /dev/shm 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug || echo "PWRU-VM-INIT: debugfs mount failed"
mount -t tracefs tracefs /sys/kernel/tracing || echo "PWRU-VM-INIT: tracefs mount failed"
mount -t bpf bpf /sys/fs/bpf || echo "PWRU-VM-INIT: bpffs mount failed"
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null || echo "PWRU-VM-INIT: cgroup2 mount failed"
hostname pwru-vm
/usr/sbin/ip link set lo up
while read -r m; do
  [ -n "$m" ] || continue
  insmod "/usr/lib/modules/$(uname -r)/$m"
  # busybox insmod can exit 0 on failure: check /proc/modules instead.
  n=${m##*/}; n=${n%.ko}
  grep -q "^$(echo "$n" | tr - _) " /proc/modules || echo "PWRU-VM-INIT: insmod $m failed"
done </pwru-vm/modules
ulimit -l unlimited
export PWRU_VM=1 PWRU_VM_KERNEL="$(uname -r)"
[ -f /pwru-vm/env ] && . /pwru-vm/env
read -r up _ </proc/uptime
echo "PWRU-VM-BOOTED: kernel=$(uname -r) uptime=${up}s"
cd /opt/pwru
sh /pwru-vm/script.sh </dev/null
rc=$?
cd /
read -r up _ </proc/uptime
echo "PWRU-VM-DONE: uptime=${up}s"
if [ -f /pwru-vm/dump-dmesg ]; then
  echo "PWRU-VM-DMESG-BEGIN"; dmesg; echo "PWRU-VM-DMESG-END"
fi
dmesg | grep -E '(WARNING:|BUG:|Oops|general protection fault|Kernel panic|Call Trace:)' | sed 's/^/PWRU-VM-KERNEL: /'
echo "PWRU-VM-RESULT: $rc"
sync
poweroff -f
sleep 5
INIT
)

# --- base initramfs (cached by host file identity) ------------------------
# Everything that does not depend on the payload or script: busybox, iproute2,
# bpftool, their libraries, /init.
base_bins=("$busybox" "$iproute2")
[[ -n "$bpftool" ]] && base_bins+=("$bpftool")
manifest="$tmp/base.manifest"
{
  echo "format 1"
  sha256sum "$self" | cut -d' ' -f1
  for b in "${base_bins[@]}"; do
    stat -L -c 'bin %n %s %Y' "$b"
    for l in $(elf_libs "$b"); do stat -L -c 'lib %n %s %Y' "$l"; done
  done
} >"$manifest"
key=$(sha256sum "$manifest" | cut -c1-16)
idir="$cache/initramfs"
mkdir -p "$idir"
base="$idir/base-$key.cpio"
exec 8>"$idir/.lock"
timeout 600 flock 8 || die "timed out waiting for $idir/.lock"
if [[ ! -s "$base" ]]; then
  say "building base initramfs $base"
  stage="$tmp/base"
  mkdir -p "$stage"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,dev,proc,sys,tmp,run,root,opt/pwru,pwru-vm,var}
  ln -s usr/bin "$stage/bin"; ln -s usr/sbin "$stage/sbin"
  ln -s usr/lib "$stage/lib"; ln -s usr/lib64 "$stage/lib64"
  ln -s /run "$stage/var/run"
  chmod 1777 "$stage/tmp"
  if [[ $(id -u) -eq 0 ]]; then mknod -m 600 "$stage/dev/console" c 5 1; fi
  cp "$busybox" "$stage/usr/bin/busybox"
  for b in "$iproute2" ${bpftool:+"$bpftool"}; do
    copy_host_file "$stage" "$b"
    for l in $(elf_libs "$b"); do copy_host_file "$stage" "$l"; done
  done
  # Busybox applets, but never over a real binary (iproute2's ip).
  while IFS= read -r a; do
    case "$a" in bin/*|sbin/*) a=usr/$a ;; esac
    [[ -e "$stage/$a" || -L "$stage/$a" ]] && continue
    ln -s /usr/bin/busybox "$stage/$a"
  done < <("$busybox" --list-full)
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
  printf 'root:x:0:\n' >"$stage/etc/group"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"$stage/etc/hosts"
  printf '%s\n' "$init_text" >"$stage/init"
  chmod 755 "$stage/init"
  make_cpio "$stage" "$base.tmp.$$"
  mv "$base.tmp.$$" "$base"
  # Drop stale bases (under the lock, so no other run is reading them).
  find "$idir" -maxdepth 1 -name "base-*.cpio" ! -name "$(basename "$base")" -delete
  rm -rf "$stage"
fi
cp "$base" "$tmp/initrd"
base_kib=$(( $(stat -c %s "$base") / 1024 ))
cpio -t --quiet <"$base" 2>/dev/null | sed 's|^\./||' >"$tmp/base.list" || true
flock -u 8

# --- per-run initramfs: payload, its libraries, script, env --------------
stage="$tmp/run"
mkdir -p "$stage/opt" "$stage/pwru-vm"
cp -a "$payload" "$stage/opt/pwru"
cp "$script" "$stage/pwru-vm/script.sh"
{
  printf "export PWRU_VM_FLAVOR='%s'\n" "$flavor"
  for e in "${envs[@]+"${envs[@]}"}"; do
    k=${e%%=*} v=${e#*=}
    printf "export %s='%s'\n" "$k" "$(printf '%s' "$v" | sed "s/'/'\\\\''/g")"
  done
} >"$stage/pwru-vm/env"
[[ $dump_dmesg -eq 1 ]] && : >"$stage/pwru-vm/dump-dmesg"
# Modules go into the per-run archive so module sets do not fork the base.
: >"$stage/pwru-vm/modules"
for rel in "${mod_order[@]+"${mod_order[@]}"}"; do
  dst="$stage/usr/lib/modules/$kver/${rel%.xz}"; dst=${dst%.zst}
  mkdir -p "$(dirname "$dst")"
  # busybox insmod hands the file to init_module as is: decompress here.
  case "$rel" in
    *.xz) xz -dc "$moddir/$rel" >"$dst" ;;
    *.zst) zstd -qdc "$moddir/$rel" >"$dst" ;;
    *) cp "$moddir/$rel" "$dst" ;;
  esac
  echo "${dst#"$stage/usr/lib/modules/$kver/"}" >>"$stage/pwru-vm/modules"
done
nelf=0
while IFS= read -r -d '' f; do
  is_elf "$f" || continue
  nelf=$((nelf + 1))
  for l in $(elf_libs "$f"); do copy_host_file "$stage" "$l"; done
done < <(find "$payload" -type f -print0)
for b in "${extra_bins[@]+"${extra_bins[@]}"}"; do
  [[ -f "$b" ]] || die "--extra-bin $b not found"
  copy_host_file "$stage" "$(readlink -f "$b")"
  [[ "$(readlink -f "$b")" == "$b" ]] || copy_host_file "$stage" "$b"
  for l in $(elf_libs "$b"); do copy_host_file "$stage" "$l"; done
done
# Libraries already in the base (same host file) would be duplicate cpio
# entries; drop them. Only libraries: an --extra-bin must replace a busybox
# applet link of the same name.
while IFS= read -r f; do
  if grep -qxF "$f" "$tmp/base.list"; then rm -f "$stage/$f"; fi
done < <(cd "$stage" && { find usr/lib usr/lib64 -type f 2>/dev/null || true; })
make_cpio "$stage" "$tmp/run.cpio"
cat "$tmp/run.cpio" >>"$tmp/initrd"

# --- boot -------------------------------------------------------------------
if [[ -n "$logfile" ]]; then
  mkdir -p "$(dirname "$logfile")"
  : >"$logfile"
  console="$logfile"
else
  console="$tmp/console.log"
  : >"$console"
fi
cmdline="console=ttyS0 panic=-1 quiet $append_extra"
qemu=(qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp "$smp"
      -nographic -no-reboot -nic none
      -kernel "$vmlinuz" -initrd "$tmp/initrd" -append "$cmdline")
say "kernel $kpkg ($kver), initrd $(( $(stat -c %s "$tmp/initrd") / 1024 )) KiB" \
    "(base $base_kib KiB, payload $(( $(stat -c %s "$tmp/run.cpio") / 1024 )) KiB, $nelf ELF)," \
    "modules: ${mod_order[*]:-none}"
say "console: ${logfile:-stdout}; timeout ${timeout_s}s"
pdeath=()
if command -v setpriv >/dev/null && setpriv --pdeathsig KILL true 2>/dev/null; then
  pdeath=(setpriv --pdeathsig KILL --)
fi
t_boot=$(date +%s.%N)
# setpriv --pdeathsig: qemu dies with this script even if it is SIGKILLed.
"${pdeath[@]}" "${qemu[@]}" </dev/null >>"$console" 2>&1 &
qpid=$!
if [[ -z "$logfile" ]]; then
  tail -n +1 -f --pid="$qpid" "$console" &
  tailpid=$!
fi

# guest_result FILE: the script's exit code from the console log, or "".
# The result line counts only after init's PWRU-VM-DONE line, so a script
# that echoes the marker itself does not fake a result by accident.
guest_result() {
  tr -d '\r' <"$1" | awk '/PWRU-VM-DONE: / {done = 1; r = ""; next}
       done && match($0, /PWRU-VM-RESULT: [0-9]+/) {r = substr($0, RSTART + 16, RLENGTH - 16)}
       END {print r}'
}
timed_out=0 seen_result_at=""
while kill -0 "$qpid" 2>/dev/null; do
  now=$(date +%s.%N)
  if awk -v a="$now" -v b="$t_boot" -v t="$timeout_s" 'BEGIN{exit !(a-b>=t)}'; then
    timed_out=1; break
  fi
  if [[ -z "$seen_result_at" ]] && grep -q 'PWRU-VM-RESULT: ' "$console" \
       && [[ -n "$(guest_result "$console")" ]]; then
    seen_result_at=$now
  fi
  # poweroff should end qemu right after the result line; do not hang on it.
  if [[ -n "$seen_result_at" ]] && awk -v a="$now" -v b="$seen_result_at" 'BEGIN{exit !(a-b>=30)}'; then
    say "qemu still running 30s after the result line; killing it"
    break
  fi
  sleep 0.25
done
if kill -0 "$qpid" 2>/dev/null; then
  kill -TERM "$qpid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$qpid" 2>/dev/null || true
fi
qrc=0; wait "$qpid" 2>/dev/null || qrc=$?
qpid=""
if [[ -n "$tailpid" ]]; then wait "$tailpid" 2>/dev/null || true; tailpid=""; fi
t_end=$(date +%s.%N)

# Drop CRs and SeaBIOS's terminal escapes for parsing and the summary.
clean=$(tr -d '\r' <"$console" | sed 's/\x1bc//g; s/\x1b\[[0-9;?]*[A-Za-z]//g')
booted=$(grep -Eo 'PWRU-VM-BOOTED: .*' <<<"$clean" | tail -n1 || true)
done_line=$(grep -Eo 'PWRU-VM-DONE: .*' <<<"$clean" | tail -n1 || true)
result=$(guest_result "$console")
kern=$(grep -c 'PWRU-VM-KERNEL: ' <<<"$clean" || true)
fmt() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", a-b}'; }
say "prep $(fmt "$t_boot" "$t0")s, qemu $(fmt "$t_end" "$t_boot")s (exit $qrc); ${booted:-never booted}; ${done_line:-script did not finish}"
[[ "$kern" -gt 0 ]] && say "kernel reported $kern warning/bug line(s), see PWRU-VM-KERNEL: in the console"
if [[ $timed_out -eq 1 ]]; then
  say "TIMEOUT after ${timeout_s}s; last 40 console lines:"
  tail -n 40 <<<"$clean" | sed 's/^/  | /'
  exit 124
fi
if [[ -z "$result" ]]; then
  say "no PWRU-VM-RESULT line; last 40 console lines:"
  tail -n 40 <<<"$clean" | sed 's/^/  | /'
  exit 125
fi
say "guest script exit code $result"
exit "$result"
