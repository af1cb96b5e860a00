# pwru-agent's container image. pwru-agent runs by default; pwru is there
# for `kubectl exec` (`kubectl exec -it POD -- pwru --output-tuple icmp`).
#
#   podman build \
#     --build-arg VERSION="$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' charts/pwru-agent/Chart.yaml)" \
#     --build-arg REVISION="$(git rev-parse --short HEAD)" \
#     --build-arg SOURCE=https://github.com/ORG/pwru-agent \
#     -t REGISTRY/pwru-agent:VERSION .          (or docker build)
#
# README, "Container image", has the whole build, push and install.
# VERSION is checked against the version the sources build; REVISION ends up
# in pwru_build_info{revision} and the image's labels ("unknown" without it).
#
# Three stages: `deps` installs the build's Debian packages from .ci/setup
# alone, so that editing a source reuses that layer instead of running apt
# again; `build` runs the README's own setup script, build part only;
# the runtime stage is debian:bookworm-slim with the two programs and the
# Debian packages of the shared libraries they link, nothing else.
FROM docker.io/library/debian:bookworm AS deps
WORKDIR /src
COPY .ci/setup .ci/setup
RUN bash .ci/setup --build-deps-only && apt-get clean && rm -rf /var/lib/apt/lists/*

FROM deps AS build
ARG VERSION=""
ARG REVISION=unknown
COPY . /src
# The version check comes before the compile, so that a wrong VERSION fails
# in seconds.
RUN sources=$(sed -n 's/^project(pwru_agent VERSION \([^ ]*\) .*/\1/p' CMakeLists.txt) \
 && { [ -n "$sources" ] || { echo "no project(pwru_agent VERSION ...) line in CMakeLists.txt" >&2; exit 1; }; } \
 && { [ -z "$VERSION" ] || [ "$VERSION" = "$sources" ] || { \
      echo "--build-arg VERSION=$VERSION, but these sources are pwru-agent $sources: pass --build-arg VERSION=$sources (the chart's appVersion)" >&2; \
      exit 1; }; } \
 && rm -rf build \
 && PWRU_REVISION="$REVISION" bash .ci/setup --build-only \
 && strip --strip-debug /usr/local/bin/pwru /usr/local/bin/pwru-agent \
 && for lib in $(ldd /usr/local/bin/pwru /usr/local/bin/pwru-agent | awk '$3 ~ /^\// { print $3 }' | sort -u); do \
      file=$(basename "$(readlink -f "$lib")"); \
      pkg=$(dpkg -S "*/$file" 2>/dev/null | head -n 1 | cut -d: -f1); \
      [ -n "$pkg" ] || { echo "no Debian package owns $lib ($file)" >&2; exit 1; }; \
      echo "$pkg" >> /tmp/packages; \
    done \
 && sort -u /tmp/packages > /runtime-packages \
 && cat /runtime-packages

FROM docker.io/library/debian:bookworm-slim
COPY --from=build /runtime-packages /tmp/runtime-packages
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(cat /tmp/runtime-packages) \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages
COPY --from=build /usr/local/bin/pwru /usr/local/bin/pwru-agent /usr/local/bin/
# Last, so that a new revision does not rebuild the layers above.
ARG VERSION=""
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="pwru-agent" \
      org.opencontainers.image.description="Per-kernel-function skb drop counters for Prometheus and pod-scoped pwru traces" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.source="$SOURCE" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
# The agent listens on 9464 (http.listen); the chart passes --config.
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/pwru-agent"]
