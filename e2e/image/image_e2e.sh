#!/usr/bin/env bash
# The container image end to end: makes the debian:bookworm base with
# debootstrap (there is no image registry here) and bookworm-slim from it,
# builds the Dockerfile with podman, checks its OCI labels, that a source
# edit reuses the apt layer and that a wrong VERSION is refused, runs the
# image the way the chart runs it by default (its capabilities only,
# read-only root, no privilege escalation, the default seccomp filter, host
# PID and network, the chart's host mounts) and scrapes its /metrics: named
# functions, a NO_SOCKET drop, pwru_build_info with the revision, kernel and
# backend; `pwru` must run inside it too. Needs
# root, podman, runc, debootstrap (.ci/setup).
#
# Usage: image_e2e.sh REPO_ROOT
# Prints one closing line: PASS or FAIL with the reason.
set -euo pipefail
ROOT=$(cd "${1:?usage: image_e2e.sh REPO_ROOT}" && pwd)
BASE=docker.io/library/debian:bookworm
SLIM=docker.io/library/debian:bookworm-slim
IMAGE=localhost/pwru-agent:e2e
NAME=pwru-image-e2e-$$
TMP=$(mktemp -d /tmp/pwru-image-e2e.XXXXXX)
START=$(date +%s)

fail() {
	echo "FAIL [image]: $*" >&2
	if podman container exists "$NAME" 2>/dev/null; then
		echo "--- container log" >&2
		podman logs "$NAME" 2>&1 | tail -n 30 >&2
	fi
	exit 1
}
cleanup() {
	podman rm -f -t 5 "$NAME" >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT

[[ $(id -u) -eq 0 ]] || fail "needs root"
for tool in podman runc debootstrap curl nc; do
	command -v "$tool" >/dev/null || fail "$tool missing: run .ci/setup (it installs podman, runc, debootstrap, curl, netcat-openbsd)"
done

# What makes podman work on these machines (and a plain host too).
cat >"$TMP/containers.conf" <<'CONF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
export CONTAINERS_CONF=$TMP/containers.conf

if ! podman image exists "$BASE"; then
	# The archive apt already uses (deb822 sources or the classic list).
	mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	[[ -n $mirror ]] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
	[[ -n $mirror ]] || mirror=http://deb.debian.org/debian
	echo "image: debootstrap bookworm from $mirror"
	timeout 600 debootstrap --variant=minbase bookworm "$TMP/rootfs" "$mirror" >"$TMP/debootstrap.log" 2>&1 ||
		fail "debootstrap failed: $(tail -n 5 "$TMP/debootstrap.log")"
	tar -C "$TMP/rootfs" -c . | podman import - "$BASE" >/dev/null || fail "podman import of the base failed"
	rm -rf "$TMP/rootfs"
fi
if ! podman image exists "$SLIM"; then
	# What Docker Hub's -slim variant is (debuerreotype's slimify): the same
	# system with dpkg told to leave out documentation, manuals and locales.
	mkdir "$TMP/slim"
	base_container=$(podman create "$BASE" true) || fail "podman create $BASE failed"
	podman export "$base_container" | tar -C "$TMP/slim" -x || fail "podman export of $BASE failed"
	podman rm "$base_container" >/dev/null
	cat >"$TMP/slim/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
DPKG
	find "$TMP/slim/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
	rm -rf "$TMP/slim/usr/share/groff" "$TMP/slim/usr/share/info" "$TMP/slim/usr/share/locale" \
		"$TMP/slim/usr/share/man" "$TMP/slim/var/cache/apt/archives/"*.deb "$TMP/slim/var/lib/apt/lists/"*
	tar -C "$TMP/slim" -c . | podman import - "$SLIM" >/dev/null || fail "podman import of the slim base failed"
	rm -rf "$TMP/slim"
fi
echo "image: base ready after $(($(date +%s) - START)) s"

# What a user passes (README, "Container image").
VERSION=$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' "$ROOT/charts/pwru-agent/Chart.yaml")
[[ -n $VERSION ]] || fail "no appVersion in charts/pwru-agent/Chart.yaml"
REVISION=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || REVISION=unknown
SOURCE=https://example.com/pwru-agent.git
build() { # CONTEXT LOG [podman build flags]
	local context=$1 log=$2
	shift 2
	timeout 1800 podman build --pull=never --network host -f "$context/Dockerfile" "$@" "$context" >"$log" 2>&1
}
build "$ROOT" "$TMP/build.log" -t "$IMAGE" --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
	--build-arg SOURCE="$SOURCE" || fail "podman build failed: $(tail -n 20 "$TMP/build.log")"
BUILT=$(date +%s)
echo "image: built after $((BUILT - START)) s"

label() { podman image inspect -f "{{index .Labels \"org.opencontainers.image.$1\"}}" "$IMAGE"; }
for want in "version=$VERSION" "revision=$REVISION" "source=$SOURCE" "base.name=$SLIM" "title=pwru-agent"; do
	seen=$(label "${want%%=*}")
	[[ "${want%%=*}=$seen" == "$want" ]] || fail "label org.opencontainers.image.${want%%=*} is '$seen', want '${want#*=}'"
done
# Slim: no compiler, no apt lists or downloaded packages, no manuals.
leftovers=$(podman run --rm --network none --entrypoint sh "$IMAGE" -c 'command -v cc clang cmake;
	find /var/lib/apt/lists /var/cache/apt/archives /usr/share/man /usr/share/doc -type f -not -name copyright \
		-not -name lock 2>/dev/null' 2>&1) || true
[[ -z $leftovers ]] || fail "the runtime stage is not slim: $leftovers"

# A source edit must not run apt again: the deps stage of an edited copy of
# the sources is the very image the build above made.
deps_id=$(podman build --pull=never --network host -q --target deps -f "$ROOT/Dockerfile" "$ROOT" 2>"$TMP/deps.log") ||
	fail "podman build --target deps failed: $(tail -n 20 "$TMP/deps.log")"
mkdir "$TMP/edited"
tar -C "$ROOT" --exclude=./build --exclude='./build-*' --exclude=./.git --exclude='__pycache__' -c . | tar -C "$TMP/edited" -x
echo "// edited by image_e2e.sh" >>"$TMP/edited/agent/app/agent_app.cpp"
edited_id=$(podman build --pull=never --network host -q --target deps -f "$TMP/edited/Dockerfile" "$TMP/edited" \
	2>"$TMP/edited.log") || fail "podman build of the edited sources failed: $(tail -n 20 "$TMP/edited.log")"
[[ $edited_id == "$deps_id" ]] || fail "a source edit rebuilt the apt layer: deps image $edited_id, not $deps_id"

# A VERSION that is not the sources' is refused before the compile.
build "$ROOT" "$TMP/wrong.log" --target build --build-arg VERSION=0.0.0-wrong &&
	fail "--build-arg VERSION=0.0.0-wrong was accepted"
grep -q "pass --build-arg VERSION=$VERSION" "$TMP/wrong.log" ||
	fail "a wrong VERSION failed without saying what to pass: $(tail -n 5 "$TMP/wrong.log")"

# As the chart runs it by default: not privileged but exactly the chart's
# capabilities (values.yaml), no privilege escalation, a read-only root, the
# runtime's default seccomp filter, host PID and network, and the chart's
# host mounts, read-only.
CAPS=$(sed -n 's/^capabilities: \[\(.*\)\]$/\1/p' "$ROOT/charts/pwru-agent/values.yaml" | tr -d ' ')
[[ -n $CAPS ]] || fail "no 'capabilities: [...]' line in charts/pwru-agent/values.yaml"
cap_args=(--cap-drop ALL)
for cap in ${CAPS//,/ }; do cap_args+=(--cap-add "CAP_$cap"); done
mount_args=()
for dir in /sys/kernel/btf /sys/kernel/tracing /sys/kernel/debug /sys/fs/cgroup /sys/fs/bpf; do
	grep -q "path: $dir\$" "$ROOT/charts/pwru-agent/templates/daemonset.yaml" || fail "the chart no longer mounts $dir"
	mount_args+=(-v "$dir:$dir:ro")
done
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'http:\n  listen: 127.0.0.1:%s\nlog:\n  format: json\nkubernetes:\n  enabled: off\n' "$PORT" >"$TMP/agent.yaml"
podman run -d --name "$NAME" "${cap_args[@]}" --security-opt no-new-privileges --read-only --pid host \
	--network host "${mount_args[@]}" -v /proc:/host/proc:ro -v "$TMP/agent.yaml:/etc/pwru-agent/agent.yaml:ro" \
	"$IMAGE" --config /etc/pwru-agent/agent.yaml >/dev/null || fail "podman run failed"
for _ in $(seq 600); do
	curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
	[[ $(podman inspect -f '{{.State.Running}}' "$NAME") == true ]] || fail "the agent exited before it was ready"
	sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || fail "not ready within 60 s"
metrics=$(curl -fs "http://127.0.0.1:$PORT/metrics") || fail "GET /metrics failed"
grep -q '^pwru_attached_hooks{backend="' <<<"$metrics" || fail "no pwru_attached_hooks in /metrics"
hooks=$(grep '^pwru_attached_hooks' <<<"$metrics")
backend=$(sed -n 's/^pwru_attached_hooks{backend="\([^"]*\)".*/\1/p' <<<"$metrics")
info=$(grep '^pwru_build_info' <<<"$metrics") || fail "no pwru_build_info in /metrics"
for want in "version=\"$VERSION\"" "revision=\"$REVISION\"" "kernel=\"$(uname -r)\"" "backend=\"$backend\""; do
	grep -qF "$want" <<<"$info" || fail "pwru_build_info without $want: $info"
done
# Capability-only mode still names functions (CAP_SYSLOG: kallsyms shows
# addresses) and counts a drop: UDP to a closed port on the host's loopback.
closed_port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for _ in 1 2 3; do echo pwru-image-e2e | nc -u -w0 127.0.0.1 "$closed_port"; done
drop=""
for _ in $(seq 50); do
	metrics=$(curl -fs "http://127.0.0.1:$PORT/metrics") || fail "GET /metrics failed"
	drop=$(grep '^pwru_skb_drops_total{function="__udp4_lib_rcv",reason="NO_SOCKET"' <<<"$metrics") && break
	sleep 0.1
done
[[ -n $drop ]] || fail "no NO_SOCKET drop in __udp4_lib_rcv with the chart's capabilities: $(grep '^pwru_skb_drops_total' <<<"$metrics" | head -n 5)"
hex=$(grep -E '^pwru_skb_(drops|function_visits)_total\{function="0x' <<<"$metrics" | head -n 3) || true
[[ -z $hex ]] || fail "functions as hex addresses with the chart's capabilities (CAP_SYSLOG?): $hex"
if podman logs "$NAME" 2>&1 | grep -q 'kallsyms shows no addresses'; then
	fail "the agent could not read kernel addresses: $(podman logs "$NAME" 2>&1 | grep kallsyms)"
fi
version=$(podman exec "$NAME" pwru --version 2>&1) || fail "pwru inside the image: $version"
podman stop -t 30 "$NAME" >/dev/null || fail "podman stop"
code=$(podman inspect -f '{{.State.ExitCode}}' "$NAME")
[[ $code == 0 ]] || fail "the agent exited $code after SIGTERM"
size=$(podman image inspect -f '{{.Size}}' "$IMAGE")
echo "PASS [image]: run with --cap-drop ALL --cap-add $CAPS, read-only, no-new-privileges, default seccomp: $drop; built in $((BUILT - START)) s, $((size / 1048576)) MiB, bookworm-slim, OCI labels version $VERSION revision $REVISION; a source edit reuses the apt layer ($deps_id), a wrong VERSION refused; $info; $hooks; '$version' inside; exit 0 on SIGTERM"
