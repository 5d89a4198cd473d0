# wicket container image: built with the Rust toolchain, run on distroless (glibc, CA
# certificates, no shell, no package manager) as the non-root user 65532.
#
#   docker build -t wicket:dev .
#
# The chart (charts/wicket) runs it with a read-only root filesystem: wicket writes nothing.

# The `dist` profile (Cargo.toml): fat LTO, what the load benchmarks measure.
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && echo 'fn main() {}' > benches/routing.rs \
 && cargo build --profile dist --locked \
 && rm -rf src benches
COPY src ./src
COPY benches ./benches
# Make sure the real sources are newer than the placeholder build.
RUN touch src/main.rs src/lib.rs \
 && cargo build --profile dist --locked --bin wicket \
 && cp target/dist/wicket /wicket

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /wicket /wicket
USER 65532:65532
EXPOSE 8080 8443 10254
ENTRYPOINT ["/wicket"]
CMD ["run"]
