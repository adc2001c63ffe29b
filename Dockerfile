# Builds the trellis binary; the image runs `trellis host`, configured by TRELLIS_* variables.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin trellis

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/trellis /usr/local/bin/trellis
ENV TRELLIS_LOG=info
ENTRYPOINT ["trellis"]
CMD ["host"]
