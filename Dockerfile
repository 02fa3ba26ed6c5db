# syntax=docker/dockerfile:1
#
# vault-cli in a container: one image is a node, the CA tool and the client.
# Build:  docker build -t vault-cli:latest .
# Run a 3-node cluster with deploy/docker-compose.yml (see README, "Docker").

# Build stage: the whole workspace, release profile, locked dependencies.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p vault-cli \
    && cp target/release/vault-cli /vault-cli \
    && strip /vault-cli

# Run stage: a small Debian with the binary and an unprivileged user. SQLite
# is compiled in and TLS is rustls, so no other library is needed.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /cluster \
        --shell /usr/sbin/nologin vault \
    && mkdir -p /cluster \
    && chown vault:vault /cluster \
    && chmod 0700 /cluster
COPY --from=build /vault-cli /usr/local/bin/vault-cli
USER vault:vault
WORKDIR /cluster
# Node directories (keys, Raft log, vault.db) live here; a named volume
# keeps them across container restarts and starts owned by the vault user.
VOLUME ["/cluster"]
EXPOSE 7001/udp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/vault-cli"]
CMD ["--help"]
