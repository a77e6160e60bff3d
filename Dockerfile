# syntax=docker/dockerfile:1
#
# dualprobe container image.
#
#   docker build -t dualprobe:dev --build-arg VERSION=0.1.0 .
#
# Stage 1 builds a fully static binary with scripts/build-release.sh (glibc linked statically,
# rustls + ring, no OpenSSL) -- the same script CI runs, so CI tests the binary this image ships;
# stage 2 is an empty `scratch` image that holds only that binary.
# The binary carries its own CA roots (webpki-roots) and an embedded default
# config, so nothing else is needed at run time.

# ---------------------------------------------------------------------------
# The toolchain CI builds and profiles with: the release link orders functions by name
# (scripts/symbol-order.txt), and the names' hashes come from the compiler version. Another
# toolchain still builds (names are then matched without their hashes, a looser layout).
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
COPY scripts/build-release.sh scripts/link-with-symbol-order.sh ./scripts/
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
COPY scripts/symbol-order.txt ./scripts/symbol-order.txt
# Touch the sources so cargo never mistakes them for the dummy build's output; the script fails
# the build if the binary has any shared-library dependency.
RUN touch src/main.rs src/lib.rs \
 && cp "$(scripts/build-release.sh | tail -n 1)" /dualprobe

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
