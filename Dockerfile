# syntax=docker/dockerfile:1
# Build stage: a release binary; dependencies are compiled in their own layer so code edits rebuild fast.
FROM rust:1-slim-bookworm AS build
# OpenSSL's headers for webauthn-rs-core (the passkeys' signature checks)
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src tests/api bench && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && echo 'fn main() {}' > tests/api/main.rs \
    && for e in argon2_rate amqp_ceiling sse_fanout; do echo 'fn main() {}' > bench/$e.rs; done \
    && cargo build --release --locked --bin users-service \
    && rm -rf src tests bench
COPY src ./src
COPY bench ./bench
COPY migrations ./migrations
COPY config ./config
COPY tests ./tests
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin users-service

# Runtime stage: a slim Debian with the binary, run as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin users
COPY --from=build /src/target/release/users-service /usr/local/bin/users-service
USER 10001:10001
ENV USERS__LOG__FORMAT=json
EXPOSE 8080
# /health/ready over bash's /dev/tcp: no curl needed in the image
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /health/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["users-service"]
CMD ["serve"]
