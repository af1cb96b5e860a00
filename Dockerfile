# pwru-agent's container image. pwru-agent runs by default; pwru is there
# for `kubectl exec` (`kubectl exec -it POD -- pwru --output-tuple icmp`).
#
#   podman build -t pwru-agent .      (or docker build)
#
# The build stage runs the README's own setup script, build part only; the
# runtime stage holds the two programs and the Debian packages of the shared
# libraries they link, nothing else.
FROM debian:bookworm AS build
COPY . /src
WORKDIR /src
RUN rm -rf build \
 && bash .ci/setup --build-only \
 && strip --strip-debug /usr/local/bin/pwru /usr/local/bin/pwru-agent \
 && for lib in $(ldd /usr/local/bin/pwru /usr/local/bin/pwru-agent | awk '$3 ~ /^\// { print $3 }' | sort -u); do \
      file=$(basename "$(readlink -f "$lib")"); \
      pkg=$(dpkg -S "*/$file" 2>/dev/null | head -n 1 | cut -d: -f1); \
      [ -n "$pkg" ] || { echo "no Debian package owns $lib ($file)" >&2; exit 1; }; \
      echo "$pkg" >> /tmp/packages; \
    done \
 && sort -u /tmp/packages > /runtime-packages \
 && cat /runtime-packages

FROM debian:bookworm
COPY --from=build /runtime-packages /tmp/runtime-packages
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(cat /tmp/runtime-packages) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages
COPY --from=build /usr/local/bin/pwru /usr/local/bin/pwru-agent /usr/local/bin/
# The agent listens on 9464 (http.listen); the chart passes --config.
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/pwru-agent"]
