# Warden's image: built with the Rust toolchain, run from a distroless base as a non-root user
# (uid 65532) with nothing but the binary and the bundled default policy.
#   docker build -t warden .
#   docker run --rm -p 4000:4000 -p 9464:9464 warden demo --listen 0.0.0.0:4000 --admin 0.0.0.0:9464
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY examples examples
RUN cargo build --release --locked --bin warden && strip target/release/warden

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/warden /usr/local/bin/warden
COPY config/warden.yaml /etc/warden/policy/warden.yaml
USER 65532:65532
ENV WARDEN_CONFIG=/etc/warden/policy WARDEN_LOG_FORMAT=json
EXPOSE 4000 9464
ENTRYPOINT ["/usr/local/bin/warden"]
CMD ["serve"]
