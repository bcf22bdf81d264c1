# syntax=docker/dockerfile:1
# dotproxy container image: compile a self-contained binary in the official Deno image, run it as
# a non-root user (65532) in distroless (glibc, CA-free: dotproxy ships its own Mozilla roots).
#
#   docker build -t dotproxy .
#   docker run -d --name dotproxy -p 53:53/udp -p 53:53/tcp -p 127.0.0.1:9153:9153 dotproxy
#
# The config lives at /etc/dotproxy/config.toml (deploy/docker/config.toml: listeners on
# 0.0.0.0:53, admin on 0.0.0.0:9153); mount your own file over it. The binary may read
# /etc/dotproxy only (permissions are baked in at compile time). See deploy/README.md for port 53,
# capabilities and the health check.

ARG DENO_VERSION=2.5.6

FROM denoland/deno:${DENO_VERSION} AS build
WORKDIR /src
COPY deno.json deno.lock ./
COPY main.ts ./
COPY lib ./lib
# --frozen: the build fails rather than resolve anything the lock file does not pin.
# --no-code-cache: a container's first run is its only run, and the cache would be written to
# /tmp, which a read-only root filesystem does not allow.
RUN deno compile --frozen --no-code-cache --allow-net --allow-read=/etc/dotproxy \
      --allow-sys=networkInterfaces \
      --output /out/dotproxy main.ts

# cap_net_bind_service as a file capability lets the non-root user bind port 53 where the
# runtime does not lower net.ipv4.ip_unprivileged_port_start (host networking, older runtimes).
# A container started with --cap-drop ALL must then --cap-add NET_BIND_SERVICE, or the kernel
# refuses to run the binary. Build with --build-arg NET_BIND_CAP=false to leave it off.
ARG NET_BIND_CAP=true
RUN if [ "$NET_BIND_CAP" = "true" ]; then \
      apt-get update && \
      apt-get install -y --no-install-recommends libcap2-bin && \
      setcap cap_net_bind_service=+ep /out/dotproxy && \
      rm -rf /var/lib/apt/lists/*; \
    fi

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/dotproxy /usr/local/bin/dotproxy
COPY deploy/docker/config.toml /etc/dotproxy/config.toml
# Numeric, so Kubernetes can check runAsNonRoot against the image.
USER 65532:65532
EXPOSE 53/udp 53/tcp 9153/tcp
# distroless has no curl: the binary probes its own admin listener and exits 0 or 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/dotproxy", "--probe", "http://127.0.0.1:9153/healthz"]
STOPSIGNAL SIGTERM
# Extra arguments are appended: `docker run dotproxy --check`, `… --log-level debug`.
ENTRYPOINT ["/usr/local/bin/dotproxy", "--config", "/etc/dotproxy/config.toml"]
