# syntax=docker/dockerfile:1
# Builds the `iqs` binary, then copies it alone into a distroless image that runs as a
# non-root user and has no shell.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
COPY migrations migrations
RUN cargo build --release --locked --bin iqs

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/iqs /usr/local/bin/iqs
ENV IQS_LISTEN_ADDR=0.0.0.0:50051 \
    IQS_LOG_FORMAT=json
EXPOSE 50051
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/iqs"]
CMD ["serve"]
