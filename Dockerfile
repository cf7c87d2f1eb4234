# Weir in a container: built with the Rust toolchain (cmake and libcurl headers for
# librdkafka), run from a slim Debian image with the examples next to the binary.
FROM rust:1.94-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libssl-dev libsasl2-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin weir && cp target/release/weir /usr/local/bin/weir

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcurl4 libssl3 libsasl2-2 zlib1g openssl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 weir
COPY --from=build /usr/local/bin/weir /usr/local/bin/weir
COPY examples /opt/weir/examples
COPY deploy/run-example.sh /opt/weir/run-example.sh
USER weir
WORKDIR /home/weir
ENV WEIR_DATA_DIR=/home/weir/weir-data
EXPOSE 5433 50051 8080
ENTRYPOINT ["weir"]
CMD ["serve", "--sql-dir", "/opt/weir/examples/transactions-report"]
