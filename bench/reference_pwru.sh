#!/usr/bin/env bash
# Build cilium/pwru v1.0.9 from its own vendored sources, as the reference
# binary the benchmarks compare ours with, and cache it under build/.
#
# Usage (root, Debian 12): bash bench/reference_pwru.sh [--mirror GIT_DIR]
# Prints the binary's path on stdout; progress goes to stderr.
#
# Network: only Debian's apt (golang-1.23-go from bookworm-backports, since
# bookworm's own Go is 1.19 and pwru's go.mod wants 1.23.1; clang, llvm,
# flex, bison, make from bookworm) and the local git mirror of cilium/pwru
# (default /work/.mirror/cilium+pwru/repo). Go modules come from the tag's
# vendor/ directory, GOPROXY=off and GOFLAGS=-mod=vendor: nothing is fetched
# from the Go proxy. Without the mirror the script stops with an error; it
# does not clone anything from GitHub.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
mirror=/work/.mirror/cilium+pwru/repo
tag=v1.0.9
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mirror) mirror=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) echo "reference_pwru: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
say() { echo "reference_pwru: $*" >&2; }
die() { echo "reference_pwru: error: $*" >&2; exit 1; }

out_dir=$root/build/reference
bin=$out_dir/pwru-$tag
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi

git -C "$mirror" rev-parse --verify -q "$tag^{commit}" >/dev/null 2>&1 ||
  die "no git mirror of cilium/pwru with tag $tag at $mirror (pass --mirror GIT_DIR; this script fetches nothing from GitHub)"

gobin=/usr/lib/go-1.23/bin/go
if [[ ! -x "$gobin" ]] || ! command -v clang >/dev/null || ! command -v flex >/dev/null ||
   ! command -v bison >/dev/null || ! command -v llvm-strip >/dev/null || ! command -v make >/dev/null; then
  [[ $(id -u) -eq 0 ]] || die "needs packages golang-1.23-go (bookworm-backports), clang, llvm, flex, bison, make, gcc: run as root to install them"
  src=/etc/apt/sources.list.d/pwru-bookworm-backports.sources
  pin=/etc/apt/preferences.d/pwru-bookworm-backports
  if [[ ! -f "$src" ]] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "adding bookworm-backports ($src), pinned to golang-1.23 only ($pin)"
    cat >"$src" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  # Backports default to priority 100 already; the pin keeps every package
  # except Go's below any installed version, so `apt-get upgrade` and the
  # dependencies of later installs never come from backports.
  [[ -f "$pin" ]] || cat >"$pin" <<'EOF'
Package: *
Pin: release n=bookworm-backports
Pin-Priority: 1

Package: golang-1.23 golang-1.23-go golang-1.23-src
Pin: release n=bookworm-backports
Pin-Priority: 500
EOF
  say "apt-get update"
  apt-get update -qq >&2 || die "apt-get update failed"
  say "installing golang-1.23-go (backports), clang llvm flex bison make gcc libc6-dev"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -t bookworm-backports golang-1.23-go >&2 || die "apt-get install golang-1.23-go from bookworm-backports failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    clang llvm flex bison make gcc libc6-dev >&2 || die "apt-get install of the C toolchain failed"
fi
[[ -x "$gobin" ]] || die "$gobin missing after the install"

work=$(mktemp -d /tmp/pwru-ref.XXXXXX)
trap 'rm -rf "$work"' EXIT
say "exporting $tag from $mirror"
git -C "$mirror" archive --format=tar "$tag" | tar -x -C "$work"
[[ -f "$work/vendor/modules.txt" && -f "$work/libpcap/configure" ]] ||
  die "$tag in $mirror has no vendor/ or libpcap/ (a shallow or partial mirror?)"

export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=vendor GOCACHE=$work/.gocache GOPATH=$work/.gopath
export PATH=/usr/lib/go-1.23/bin:$PATH

# Upstream Makefile target libpcap/libpcap.a, same configure flags.
say "building static libpcap"
(cd "$work/libpcap" &&
  ./configure --disable-rdma --disable-shared --disable-usb --disable-netmap --disable-bluetooth \
    --disable-dbus --without-libnl --host=x86_64-unknown-linux-gnu >"$work/libpcap.log" 2>&1 &&
  make -j"$(nproc)" >>"$work/libpcap.log" 2>&1) || { tail -n 30 "$work/libpcap.log" >&2; die "libpcap build failed"; }

# Upstream Makefile target pwru: bpf2go (vendored) compiles bpf/kprobe_pwru.c
# with clang into the four object variants, then cgo links libpcap.a.
say "go generate (bpf2go + clang)"
(cd "$work" && TARGET_GOARCH=amd64 go generate ./... >"$work/generate.log" 2>&1) ||
  { tail -n 30 "$work/generate.log" >&2; die "go generate failed"; }
say "go build"
(cd "$work" && CGO_ENABLED=1 GOARCH=amd64 go build \
  -ldflags "-w -s -X 'github.com/cilium/pwru/internal/pwru.Version=$tag'" -o pwru . >"$work/build.log" 2>&1) ||
  { tail -n 30 "$work/build.log" >&2; die "go build failed"; }
"$work/pwru" --version >/dev/null 2>&1 || die "the built binary does not run (--version)"
mkdir -p "$out_dir"
cp "$work/pwru" "$bin.tmp.$$"
mv "$bin.tmp.$$" "$bin"
say "built $("$bin" --version 2>&1 | head -n1)"
echo "$bin"
