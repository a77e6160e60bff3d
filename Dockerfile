# syntax=docker/dockerfile:1
#
# dualprobe container image.
#
#   docker build -t dualprobe:dev --build-arg VERSION=0.1.0 .
#
# The builder stage makes a static-pie binary with scripts/build-release.sh (glibc linked
# statically, rustls + ring, no OpenSSL), the same script CI runs; the runtime stage is an empty
# `scratch` image with that one binary and the directories ECS Exec's agent writes to. The binary
# carries its own CA roots (webpki-roots) and an embedded default config.
#
# The runtime stage takes the binary from the stage named `binary`. To package a binary built
# elsewhere (CI does: scripts/check-image.sh ships the very binary the tests ran), replace that
# stage with a directory holding a file named `dualprobe`; the builder then never runs:
#
#   buildah build --build-context binary=DIR .
#
# (docker buildx build takes the same flag: a named build context overrides the stage of that
# name.)

# ---------------------------------------------------------------------------
FROM rust:1.95.0-bookworm AS builder

ARG TARGET=x86_64-unknown-linux-gnu

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    TARGET=${TARGET}

WORKDIR /build

# --- dependency layer: only re-built when Cargo.toml / Cargo.lock change ---
# Stub every target the manifest names (src/main.rs, src/lib.rs, and any
# [[bench]]/[[test]]/[[example]] or explicit `path = "*.rs"`) so cargo can load it;
# only src/ is replaced by the real sources below.
COPY Cargo.toml Cargo.lock ./
COPY scripts/build-release.sh ./scripts/
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && awk -F'"' \
      'function f(){ if (p != "") print p; else if (d != "" && n != "") print d "/" n ".rs"; d = n = p = "" } \
       /^\[/ { f() } /^\[\[bench\]\]/ { d = "benches" } /^\[\[test\]\]/ { d = "tests" } /^\[\[example\]\]/ { d = "examples" } \
       /^name *=/ { n = $2 } /^path *= *".*\.rs"/ { p = $2 } END { f() }' \
      Cargo.toml \
    | while read -r f; do mkdir -p "$(dirname "$f")"; [ -e "$f" ] || echo 'fn main() {}' > "$f"; done \
 && scripts/build-release.sh \
 && rm -rf src \
           "target/${TARGET}/release/dualprobe" \
           "target/${TARGET}/release/deps/dualprobe-"* \
           "target/${TARGET}/release/deps/libdualprobe-"* \
           "target/${TARGET}/release/.fingerprint/dualprobe-"*

# --- application layer ---
COPY src ./src
# Touch the sources so cargo never mistakes them for the dummy build's output; the script fails
# the build if the binary is not static-pie.
RUN touch src/main.rs src/lib.rs \
 && mkdir /out \
 && cp "$(scripts/build-release.sh | tail -n 1)" /out/dualprobe

# ---------------------------------------------------------------------------
# The binary the image ships: the builder's, unless --build-context binary=DIR replaces it.
FROM scratch AS binary
COPY --from=builder /out/dualprobe /dualprobe

# ---------------------------------------------------------------------------
FROM scratch

ARG VERSION=0.1.0
ARG SOURCE_URL=https://github.com/dualprobe/dualprobe

LABEL org.opencontainers.image.title="dualprobe" \
      org.opencontainers.image.description="Per-address-family (IPv4/IPv6) reachability prober sidecar for dual-stack ECS/Fargate tasks, exporting Prometheus metrics" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# ECS Exec's SSM agent writes under /var/lib/amazon/ssm and /var/log/amazon/ssm, and the task
# root filesystem is read-only, so the task definition mounts task storage on /var/lib/amazon
# and /var/log/amazon. Fargate fills such a volume from the image when the path is a VOLUME
# here: the ssm/ directories arrive owned by 65532 (dualprobe's user) with group 0 writable,
# since the agent runs as root without capabilities (no CAP_DAC_OVERRIDE). The tree lives in
# image/rootfs/ (its .keep files are left out by .dockerignore); --chmod fixes the modes
# whatever the checkout's umask.
COPY --chmod=0755 image/rootfs/ /
COPY --chown=65532:0 --chmod=0775 image/rootfs/var/lib/amazon/ /var/lib/amazon/
COPY --chown=65532:0 --chmod=0775 image/rootfs/var/log/amazon/ /var/log/amazon/
VOLUME ["/var/lib/amazon", "/var/log/amazon"]

COPY --from=binary --chmod=0755 /dualprobe /dualprobe

# Non-root "nonroot" uid/gid (same numbers as distroless); no passwd file needed.
USER 65532:65532

EXPOSE 9469

HEALTHCHECK --interval=30s --timeout=3s --start-period=10s CMD ["/dualprobe", "healthcheck"]

ENTRYPOINT ["/dualprobe"]
CMD ["run", "--log-format", "json"]
