# Builds avap-host with the guest interpreter embedded; the image needs no
# other file or service to serve. (Not built in CI: these machines have no
# Docker engine.)
FROM rust:1-bookworm AS build
RUN rustup target add wasm32-wasip1
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p avap-host \
 && cp target/release/avap-host /usr/local/bin/avap-host

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 avap
COPY --from=build /usr/local/bin/avap-host /usr/local/bin/avap-host
USER avap
ENV PORT=8888
EXPOSE 8888
ENTRYPOINT ["/usr/local/bin/avap-host"]
