# syntax=docker/dockerfile:1

FROM rust:1.95-bookworm AS builder
WORKDIR /src
ENV SQLX_OFFLINE=true
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sentryops \
    && cp target/release/sentryops /usr/local/bin/sentryops

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sentryops \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin sentryops \
    && mkdir -p /var/lib/sentryops && chown sentryops:sentryops /var/lib/sentryops && chmod 700 /var/lib/sentryops
COPY --from=builder /usr/local/bin/sentryops /usr/local/bin/sentryops
COPY rules /etc/sentryops/rules
USER sentryops
EXPOSE 8080
ENV SENTRYOPS_BIND=0.0.0.0:8080 RULES_DIR=/etc/sentryops/rules
ENTRYPOINT ["/usr/local/bin/sentryops"]
CMD ["serve"]
