# syntax=docker/dockerfile:1
#
# okta-ciam-operator image: a static (musl) release binary on distroless/static, run as a
# numeric non-root user, with no shell.
#
#   docker build -t okta-ciam-operator .
#
# The build stage is Alpine, where Rust's host target is *-linux-musl and binaries are
# statically linked, so the same file builds amd64 and arm64 images (docker buildx).
# .ci/check-image-context.sh checks that the build context (.dockerignore) is enough to build.

FROM rust:1.95-alpine AS build
# ring (TLS) compiles C code.
RUN apk add --no-cache musl-dev
WORKDIR /src
# The whole context, as .dockerignore trims it: cargo needs every workspace member
# (emulator/ and tests/kube-test-server, also path dev-dependencies) and every declared [[bench]] target to
# load the workspace, even to build one binary.
COPY . .
# Without default features: the shipped binary has no emulated org (`emulator`, `sync --demo`)
# and so no `/__emulator/` test controls.
# Cache mounts keep downloaded crates and compiled dependencies between builds; the binary is
# copied out because the target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin okta-ciam-operator \
    && cp target/release/okta-ciam-operator /okta-ciam-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /okta-ciam-operator /okta-ciam-operator
# distroless "nonroot" (65532), numeric so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/okta-ciam-operator"]
CMD ["run"]
