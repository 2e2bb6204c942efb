# Heartbeat images: one per binary, chosen with --build-arg BIN=heartbeat-agent | heartbeat-dashboard | heartbeat-mock.
#
#   docker build --build-arg BIN=heartbeat-agent -t heartbeat-agent .
#       compiles inside Docker (the `build` stage needs the rust:1.95 image from a registry)
#   cargo xtask images
#       no registry: builds static binaries on the host, stages them in target/docker/ and
#       builds `--target runtime-prebuilt` (what the end-to-end test uses)
#
# Both paths give the same image: the `runtime-base` stage below is the one definition of the
# layout. Stage order matters: Docker's legacy builder (no BuildKit) builds every stage up to
# --target, so the prebuilt path comes before the Rust builder, which it must never reach.

ARG BIN=heartbeat-agent

# ---- The runtime layout, shared by both paths -------------------------------------------
# scratch + one static binary at /usr/local/bin/heartbeat + a CA bundle + /data owned by the
# non-root user. No shell, so the HEALTHCHECK is the binary's own `healthcheck` subcommand.
# No tzdata: jiff bundles the IANA database (feature tzdb-bundle-always), so TZ works without
# /usr/share/zoneinfo.
FROM scratch AS runtime-base
# docker/data/ holds only a .keep that .dockerignore leaves out: this creates an empty /data
# owned by 10001, which a fresh named volume inherits, so the agent can write its database.
COPY --chown=10001:10001 docker/data/ /data/
ENV SQLITE_DB_PATH=/data/metrics.db
USER 10001:10001
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/heartbeat"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/heartbeat", "healthcheck"]

# ---- Runtime from host-built static binaries (no registry needed) -----------------------
# target/docker/ is staged by `cargo xtask images`: the three binaries, built with
# `--target x86_64-unknown-linux-gnu -C target-feature=+crt-static`, and the host's CA bundle.
FROM runtime-base AS runtime-prebuilt
ARG BIN
COPY target/docker/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY target/docker/${BIN} /usr/local/bin/heartbeat

# ---- Builder: compiles the same static binaries inside Docker ---------------------------
# Cargo fetches crates while the image is built; nothing is downloaded at run time.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked --target x86_64-unknown-linux-gnu \
        -p heartbeat-agent -p heartbeat-dashboard -p heartbeat-mock

# ---- Runtime from the builder (the default target) -------------------------------------
FROM runtime-base AS runtime
ARG BIN
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/${BIN} /usr/local/bin/heartbeat
