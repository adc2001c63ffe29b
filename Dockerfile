# The trellis binary and the example components in one image. `trellis host` by default, configured
# by TRELLIS_* variables; the components are in /usr/local/share/trellis/components.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# With internet, the ordinary guest route: the wasm32-wasip2 target (see components/README.md).
RUN rustup target add wasm32-wasip2 \
 && cargo build --release --locked --bin trellis \
 && mkdir -p /components && cp $(scripts/build-components) /components/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/trellis /usr/local/bin/trellis
COPY --from=build /components /usr/local/share/trellis/components
COPY --from=build /src/examples/demo.yaml /usr/local/share/trellis/demo.yaml
ENV TRELLIS_LOG=info
ENTRYPOINT ["trellis"]
CMD ["host"]
