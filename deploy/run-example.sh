#!/bin/sh
# Runs one example in the weir container: `weir gen` with the example's profile filling
# Kafka in the background, then `weir serve` on the example's folder.
#   WEIR_EXAMPLE  shopnow | transactions-report | shopsphere | realtime-sales | marketing-roi
#   GEN_RATE      events per second per topic (default 50)
set -eu
example="${WEIR_EXAMPLE:-transactions-report}"
case "$example" in
  shopnow) profile=shop topics="page_views cart_additions orders payments stock_updates" ;;
  transactions-report) profile=transactions topics="transactions" ;;
  shopsphere) profile=shopsphere topics="shopsphere.transactions shopsphere.products" ;;
  realtime-sales) profile=sales topics="product_sold" ;;
  marketing-roi) profile=marketing topics="web_logs crm_orders ad_spend" ;;
  *) echo "unknown WEIR_EXAMPLE '$example'" >&2; exit 2 ;;
esac
dir="/opt/weir/examples/$example"
# The topics exist before the sources read them (an empty `weir produce` creates one).
for topic in $topics; do
  until weir produce --brokers "$KAFKA_BROKERS" --topic "$topic" --partitions 3 </dev/null >/dev/null; do
    echo "waiting for Kafka at $KAFKA_BROKERS" >&2
    sleep 2
  done
done
# Flight SQL beyond loopback needs TLS: without a certificate of the operator's, the demo
# makes a self-signed one (clients pass it as their trusted root).
if [ -z "${WEIR_TLS_CERT:-}" ]; then
  tls="$HOME/tls"
  mkdir -p "$tls"
  if [ ! -f "$tls/cert.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
      -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      -keyout "$tls/key.pem" -out "$tls/cert.pem" 2>/dev/null
  fi
  export WEIR_TLS_CERT="$tls/cert.pem" WEIR_TLS_KEY="$tls/key.pem"
fi
weir gen --brokers "$KAFKA_BROKERS" --profile "$profile" --rate "${GEN_RATE:-50}" --seed "${GEN_SEED:-1}" &
exec weir serve --sql-dir "$dir"
