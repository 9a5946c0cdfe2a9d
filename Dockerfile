# syntax=docker/dockerfile:1
# flashsale: multi-stage build. The builder compiles the dependencies once
# against dummy sources (cached while Cargo.toml/Cargo.lock stay the same),
# then the real sources; the runtime image holds only the binary.

FROM rust:1.95-bookworm AS builder
WORKDIR /app

# 1. Dependencies only: manifests plus dummy targets, so this layer is rebuilt
#    only when the manifests or the lock file change.
COPY Cargo.toml Cargo.lock ./
COPY load/Cargo.toml load/Cargo.toml
RUN set -eux; \
    mkdir -p src benches load/src; \
    echo 'fn main() {}' > src/main.rs; \
    : > src/lib.rs; \
    echo 'fn main() {}' > load/src/main.rs; \
    for b in $(sed -n '/^\[\[bench\]\]/,/^name/s/^name *= *"\([^"]*\)".*/\1/p' Cargo.toml); do \
        echo 'fn main() {}' > "benches/$b.rs"; \
    done; \
    cargo build --release --locked -p flashsale --bin flashsale; \
    rm -rf src

# 2. The real sources (the Lua scripts are compiled in with include_str!).
COPY src src
COPY lua lua
# COPY keeps the files' own mtimes, which may be older than the dummy build:
# touch the crate roots so cargo rebuilds the crate itself.
RUN set -eux; \
    touch src/main.rs src/lib.rs; \
    cargo build --release --locked -p flashsale --bin flashsale; \
    install -D -m 0755 target/release/flashsale /out/flashsale

FROM debian:bookworm-slim AS runtime
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 flashsale; \
    useradd --system --uid 10001 --gid flashsale --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin flashsale
COPY --from=builder /out/flashsale /usr/local/bin/flashsale
WORKDIR /app
USER 10001:10001
ENV PORT=5050 \
    BIND_ADDR=0.0.0.0
EXPOSE 5050
ENTRYPOINT ["/usr/local/bin/flashsale"]
