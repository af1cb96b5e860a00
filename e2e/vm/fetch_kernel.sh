#!/usr/bin/env bash
# Fetch and unpack a Debian 12 kernel for the qemu matrix.
#
#   fetch_kernel.sh FLAVOR CACHE_DIR
#
# FLAVOR is 6.1 (bookworm linux-image-6.1.0-N-amd64-unsigned: kprobe) or 6.12
# (linux-image-6.12.N+deb12-amd64-unsigned: kprobe-multi). The newest package
# name apt knows is used (override with PWRU_VM_KERNEL_PKG=<package name>).
# The package is downloaded with `apt-get download` into
# CACHE_DIR/kernels/<package>/ and unpacked there with `dpkg-deb -x`; an
# already unpacked package is reused without touching the network.
#
# stdout, on success, exactly two lines:
#   <path of vmlinuz>
#   <path of the modules dir, .../lib/modules/<release>>
# Progress and diagnostics go to stderr. Concurrent runs on the same cache are
# serialized with flock. Every network/unpack step runs under `timeout`.
# Never edits apt sources.
set -euo pipefail

log() { echo "fetch_kernel: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -eq 2 ]] || die "usage: $0 6.1|6.12 CACHE_DIR"
flavor=$1
cache=$2

case "$flavor" in
  6.1)  pattern='^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' ;;
  6.12) pattern='^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' ;;
  *) die "unknown flavor '$flavor' (want 6.1 or 6.12)" ;;
esac

for tool in apt-cache apt-get dpkg-deb flock timeout; do
  command -v "$tool" >/dev/null || die "missing tool: $tool"
done

mkdir -p "$cache/kernels"
cache=$(cd "$cache" && pwd)
kroot="$cache/kernels"

# Serialize everything touching this flavor's cache (ctest may run the
# flavors, or several tests of one flavor, in parallel).
exec 9>"$kroot/.lock-$flavor"
timeout 1800 flock 9 || die "timed out waiting for lock $kroot/.lock-$flavor"

# Print "<vmlinuz>\n<modules dir>" for an unpacked package dir; fail if absent.
emit() {
  local dir=$1 root vmlinuz moddir
  root="$dir/root"
  [[ -f "$dir/.unpacked" ]] || return 1
  vmlinuz=$( (find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' -type f 2>/dev/null || true) \
             | sort | tail -n1)
  # 6.1 ships /lib/modules, newer packages may use /usr/lib/modules.
  moddir=$( (find "$root/lib/modules" "$root/usr/lib/modules" -mindepth 1 -maxdepth 1 \
               -type d 2>/dev/null || true) | sort | tail -n1)
  [[ -n "$vmlinuz" && -n "$moddir" ]] || return 1
  printf '%s\n%s\n' "$vmlinuz" "$moddir"
}

# Newest package name matching the flavor that apt could download.
lookup() {
  local names avail
  names=$(apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$pattern" || true)
  [[ -n "$names" ]] || return 1
  # pkgnames may also list names with no downloadable version; madison prints
  # a line only for versions some configured source serves.
  # shellcheck disable=SC2086
  avail=$(apt-cache madison $names 2>/dev/null | awk -F' *[|] *' '{gsub(/^ +/, "", $1); print $1}' \
            | sort -u -V | tail -n1)
  [[ -n "$avail" ]] || return 1
  echo "$avail"
}

pkg=${PWRU_VM_KERNEL_PKG:-}
if [[ -z "$pkg" ]]; then
  if ! pkg=$(lookup); then
    log "no $flavor kernel package in the apt lists; running apt-get update"
    if timeout 300 apt-get update -qq >&2; then
      pkg=$(lookup) || pkg=""
    else
      log "apt-get update failed"
      pkg=""
    fi
  fi
fi

if [[ -z "$pkg" ]]; then
  # Offline fallback: newest already unpacked package of this flavor.
  for d in $(find "$kroot" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | { grep -E "$pattern" || true; } | sort -V -r); do
    if out=$(emit "$kroot/$d"); then
      printf '%s\n' "$out"
      log "apt knows no $flavor kernel; using cached $d"
      exit 0
    fi
  done
  die "no package matching $pattern found by apt-cache (and none cached)"
fi

dir="$kroot/$pkg"
if out=$(emit "$dir"); then
  log "using cached $pkg ($(cat "$dir/.version" 2>/dev/null || echo '?'))"
  printf '%s\n' "$out"
  exit 0
fi

version=$(apt-cache policy "$pkg" | awk '/^  Candidate:/ {print $2}' || true)
log "downloading $pkg $version"
rm -rf "$dir"
mkdir -p "$dir/dl"
# _apt cannot write to arbitrary dirs; let it try, apt falls back to root
# with a harmless warning.
chmod 755 "$dir/dl"
if [[ $(id -u) -eq 0 ]] && id _apt >/dev/null 2>&1; then chown _apt "$dir/dl" || true; fi
start=$(date +%s)
(cd "$dir/dl" && timeout 900 apt-get download -q "$pkg" >&2) \
  || die "apt-get download $pkg failed or timed out"
deb=$(find "$dir/dl" -maxdepth 1 -name '*.deb' | head -n1)
[[ -n "$deb" ]] || die "apt-get download left no .deb in $dir/dl"
log "downloaded $(du -h "$deb" | cut -f1) in $(( $(date +%s) - start ))s; unpacking"
start=$(date +%s)
timeout 600 dpkg-deb -x "$deb" "$dir/root" || die "dpkg-deb -x $deb failed"
log "unpacked in $(( $(date +%s) - start ))s"
echo "$version" >"$dir/.version"
rm -f "$deb"
rmdir "$dir/dl" 2>/dev/null || true
touch "$dir/.unpacked"

# Drop superseded packages of this flavor so the cache does not grow forever.
for d in $(find "$kroot" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | { grep -E "$pattern" || true; }); do
  [[ "$d" == "$pkg" ]] || { log "removing superseded $d"; rm -rf "${kroot:?}/$d"; }
done

out=$(emit "$dir") || die "unpacked $pkg but found no boot/vmlinuz-* or lib/modules/*"
printf '%s\n' "$out"
