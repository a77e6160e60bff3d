# syntax=docker/dockerfile:1
#
# dualprobe container image.
#
#   docker build -t dualprobe:dev --build-arg VERSION=0.1.0 .
#
# Stage 1 builds a fully static musl binary (rustls + ring, no OpenSSL);
# stage 2 is an empty `scratch` image that holds only that binary.
# The binary carries its own CA roots (webpki-roots) and an embedded default
# config, so nothing else is needed at run time.

# ---------------------------------------------------------------------------
# Pinned to the crate's rust-version (Cargo.toml: rust-version = "1.90").
FROM rust:1.90.0-bookworm AS builder

ARG TARGET=x86_64-unknown-linux-musl

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# musl-tools provides musl-gcc, which the `cc` crate uses to build ring's C/asm parts.
# DL3008 (pin apt versions) ignored: the pinned bookworm base image already fixes the
# Debian release, and exact .deb versions vanish from the mirror on every point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"

ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

WORKDIR /build

# --- dependency layer: only re-built when Cargo.toml / Cargo.lock change ---
# Stub every target the manifest names (src/main.rs, src/lib.rs, and any
# [[bench]]/[[test]]/[[example]] or explicit `path = "*.rs"`) so cargo can load it;
# only src/ is replaced by the real sources below.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && awk -F'"' \
      'function f(){ if (p != "") print p; else if (d != "" && n != "") print d "/" n ".rs"; d = n = p = "" } \
       /^\[/ { f() } /^\[\[bench\]\]/ { d = "benches" } /^\[\[test\]\]/ { d = "tests" } /^\[\[example\]\]/ { d = "examples" } \
       /^name *=/ { n = $2 } /^path *= *".*\.rs"/ { p = $2 } END { f() }' \
      Cargo.toml \
    | while read -r f; do mkdir -p "$(dirname "$f")"; [ -e "$f" ] || echo 'fn main() {}' > "$f"; done \
 && cargo build --release --locked --target "${TARGET}" \
 && rm -rf src \
           "target/${TARGET}/release/dualprobe" \
           "target/${TARGET}/release/deps/dualprobe-"* \
           "target/${TARGET}/release/deps/libdualprobe-"* \
           "target/${TARGET}/release/.fingerprint/dualprobe-"*

# --- application layer ---
COPY src ./src
# Touch the sources so cargo never mistakes them for the dummy build's output;
# then fail the build if the binary has any shared-library dependency.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target "${TARGET}" \
 && cp "target/${TARGET}/release/dualprobe" /dualprobe \
 && needed="$(readelf -d /dualprobe | grep NEEDED || true)" \
 && if [ -n "${needed}" ]; then echo "dualprobe is not static: ${needed}" >&2; exit 1; fi

# ---------------------------------------------------------------------------
FROM scratch

ARG VERSION=0.1.0
ARG SOURCE_URL=https://github.com/dualprobe/dualprobe

LABEL org.opencontainers.image.title="dualprobe" \
      org.opencontainers.image.description="Per-address-family (IPv4/IPv6) reachability prober sidecar for dual-stack ECS/Fargate tasks, exporting Prometheus metrics" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=builder /dualprobe /dualprobe

# Non-root "nonroot" uid/gid (same numbers as distroless); no passwd file needed.
USER 65532:65532

EXPOSE 9469

HEALTHCHECK --interval=30s --timeout=3s --start-period=10s CMD ["/dualprobe", "healthcheck"]

ENTRYPOINT ["/dualprobe"]
CMD ["run", "--log-format", "json"]
