# The trellis binary and the example actors in one image. `trellis host` by default, configured
# by TRELLIS_* variables; the actors are in /usr/local/share/trellis/actors.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# With internet, the ordinary guest route: the wasm32-wasip2 target (see actors/README.md).
RUN rustup target add wasm32-wasip2 \
 && cargo build --release --locked --bin trellis \
 && mkdir -p /actors && cp $(scripts/build-actors) /actors/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/trellis /usr/local/bin/trellis
COPY --from=build /actors /usr/local/share/trellis/actors
COPY --from=build /src/examples/demo.yaml /usr/local/share/trellis/demo.yaml
ENV TRELLIS_LOG=info
ENTRYPOINT ["trellis"]
CMD ["host"]
