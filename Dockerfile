# syntax=docker/dockerfile:1
#
# okta-ciam-operator image: a static (musl) release binary on distroless/static, run as a
# numeric non-root user, with no shell.
#
#   docker build -t okta-ciam-operator .
#
# The build stage is Alpine, where Rust's host target is *-linux-musl and binaries are
# statically linked, so the same file builds amd64 and arm64 images (docker buildx).

FROM rust:1.95-alpine AS build
# ring (TLS) compiles C code.
RUN apk add --no-cache musl-dev
WORKDIR /src
# Dependencies first, so source edits do not refetch them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo fetch --locked \
    && rm -rf src
COPY src ./src
RUN cargo build --release --locked --bin okta-ciam-operator \
    && cp target/release/okta-ciam-operator /okta-ciam-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /okta-ciam-operator /okta-ciam-operator
# distroless "nonroot" (65532), numeric so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/okta-ciam-operator"]
CMD ["run"]
