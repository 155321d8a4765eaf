# The deployable server: a release build of whatsapp-server on Debian with Chromium.
#
#   docker build -t whatsapp-keepalive .
#   docker run -p 4000:4000 -v whatsapp-data:/data whatsapp-keepalive
#
# Everything lives under the /data volume (SQLite database, Chromium profiles, local
# backups, the generated admin key): keep it across deploys, or sessions need a new QR.
# Settings are environment variables (`whatsapp-server --help`, docs/operations.md).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p whatsapp-server \
    && cp target/release/whatsapp-server /usr/local/bin/whatsapp-server

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        chromium ca-certificates fonts-liberation fonts-noto-color-emoji tini \
    && rm -rf /var/lib/apt/lists/*
# A non-root user. Chromium's own sandbox needs user namespaces, which Docker's default
# seccomp profile denies, so it runs with --no-sandbox; the container is the sandbox.
RUN useradd --create-home --uid 10001 app \
    && mkdir -p /data && chown app:app /data
COPY --from=build /usr/local/bin/whatsapp-server /usr/local/bin/whatsapp-server
USER app
ENV PORT=4000 \
    DATA_DIR=/data \
    SESSIONS_PATH=/data/whatsapp-sessions \
    CHROMIUM_PATH=/usr/bin/chromium \
    CHROMIUM_ARGS=--no-sandbox \
    RUST_LOG=info,chromiumoxide=off
VOLUME ["/data"]
EXPOSE 4000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
# tini reaps Chromium's helpers and forwards SIGTERM: the server closes every browser
# gracefully (profiles flushed) before it exits. Give it 30 s (docker stop -t 30).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/whatsapp-server"]
