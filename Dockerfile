# syntax=docker/dockerfile:1
# vigil (server): `vigil serve` and the rest of the CLI.
#   docker build -t vigil:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/vigil:0.1.0 --push .
# See docs/deploy.md.

# --- build ---------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# rusqlite builds its bundled SQLite with the image's C compiler; nothing else is needed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p vigil \
 && install -D -m 0755 target/release/vigil /out/vigil

# --- runtime -------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 vigil \
 && useradd --system --uid 10001 --gid vigil --home-dir /var/lib/vigil --shell /usr/sbin/nologin vigil \
 && install -d -o vigil -g vigil -m 0750 /var/lib/vigil /var/lib/vigil/reports \
 && install -d -m 0755 /etc/vigil
COPY --from=build /out/vigil /usr/local/bin/vigil
COPY deploy/vigil-standalone-agent.yaml /etc/vigil/vigil.yaml
USER vigil:vigil
WORKDIR /var/lib/vigil
VOLUME ["/var/lib/vigil"]
ENV VIGIL_CONFIG=/etc/vigil/vigil.yaml
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["serve", "-c", "/etc/vigil/vigil.yaml"]
