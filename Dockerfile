# dotproxy container image: compile a self-contained binary in the official Deno image, run it
# as a non-root user in a minimal glibc image. Mount your own config at /etc/dotproxy/config.toml.
#   docker build -t dotproxy .
#   docker run -p 53:5053/udp -p 53:5053/tcp dotproxy
FROM denoland/deno:2.5.6 AS build
WORKDIR /src
COPY deno.json deno.lock ./
COPY main.ts ./
COPY lib ./lib
RUN deno compile --allow-net --allow-read=/etc/dotproxy --output /out/dotproxy main.ts
COPY config.toml ./
# In a container the proxy must listen on all addresses, not loopback.
RUN mkdir -p /out/etc && sed 's#://127\.0\.0\.1:5053#://0.0.0.0:5053#' config.toml > /out/etc/config.toml

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/dotproxy /usr/local/bin/dotproxy
COPY --from=build /out/etc/config.toml /etc/dotproxy/config.toml
USER nonroot
EXPOSE 5053/udp 5053/tcp
ENTRYPOINT ["/usr/local/bin/dotproxy", "--config", "/etc/dotproxy/config.toml"]
