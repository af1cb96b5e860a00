#!/usr/bin/env bash
# The container image end to end: makes the debian:bookworm base with
# debootstrap (there is no image registry here), builds the Dockerfile with
# podman, runs the image the way the chart runs it (privileged, host PID and
# network, the host's /sys and /proc) and scrapes its /metrics; `pwru` must
# run inside it too. Needs root, podman, runc, debootstrap (.ci/setup).
#
# Usage: image_e2e.sh REPO_ROOT
# Prints one closing line: PASS or FAIL with the reason.
set -euo pipefail
ROOT=$(cd "${1:?usage: image_e2e.sh REPO_ROOT}" && pwd)
BASE=docker.io/library/debian:bookworm
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
for tool in podman runc debootstrap curl; do
	command -v "$tool" >/dev/null || fail "$tool missing: run .ci/setup (it installs podman, runc, debootstrap, curl)"
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
echo "image: base ready after $(($(date +%s) - START)) s"

timeout 1800 podman build --pull=never --network host -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" >"$TMP/build.log" 2>&1 ||
	fail "podman build failed: $(tail -n 20 "$TMP/build.log")"
BUILT=$(date +%s)
echo "image: built after $((BUILT - START)) s"

# As the chart runs it: privileged, host PID and network, host /sys and /proc.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'http:\n  listen: 127.0.0.1:%s\nlog:\n  format: json\nkubernetes:\n  enabled: off\n' "$PORT" >"$TMP/agent.yaml"
podman run -d --name "$NAME" --privileged --pid host --network host \
	-v /sys:/sys -v /proc:/host/proc:ro -v "$TMP/agent.yaml:/etc/pwru-agent/agent.yaml:ro" \
	"$IMAGE" --config /etc/pwru-agent/agent.yaml >/dev/null || fail "podman run failed"
for _ in $(seq 600); do
	curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
	[[ $(podman inspect -f '{{.State.Running}}' "$NAME") == true ]] || fail "the agent exited before it was ready"
	sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || fail "not ready within 60 s"
metrics=$(curl -fs "http://127.0.0.1:$PORT/metrics") || fail "GET /metrics failed"
grep -q '^pwru_attached_hooks{backend="' <<<"$metrics" || fail "no pwru_attached_hooks in /metrics"
grep -q '^pwru_build_info{version="' <<<"$metrics" || fail "no pwru_build_info in /metrics"
hooks=$(grep '^pwru_attached_hooks' <<<"$metrics")
version=$(podman exec "$NAME" pwru --version 2>&1) || fail "pwru inside the image: $version"
podman stop -t 30 "$NAME" >/dev/null || fail "podman stop"
code=$(podman inspect -f '{{.State.ExitCode}}' "$NAME")
[[ $code == 0 ]] || fail "the agent exited $code after SIGTERM"
size=$(podman image inspect -f '{{.Size}}' "$IMAGE")
echo "PASS [image]: built in $((BUILT - START)) s, $((size / 1048576)) MiB; $hooks; '$version' inside; exit 0 on SIGTERM"
