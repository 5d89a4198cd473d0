#!/usr/bin/env bash
# Instructions per request, counted by callgrind: repeatable for the same binary whatever
# else the machine does, so a change to the request path can be judged to a fraction of a
# percent (wall-clock benchmarks on a shared 2-core machine move by several percent).
#
#   benches/load/instructions.sh [http|https|h2] [requests] [binary]
#
# The binary defaults to target/dist/wicket, built with the `dist` profile the container
# image uses (fat LTO; a long build). Pass target/release/wicket to compare two changes
# quickly: both builds of the same profile.
#
# Runs wicket (one worker thread, no access log) under valgrind twice, serving N and then
# 2N keep-alive requests from h2load (10 connections; h2: HTTP/2 over TLS, 10 streams each)
# to one backend nginx answering "ok",
# and prints (instructions(2N) - instructions(N)) / N: the cost of one request, without
# start-up and shutdown. KEEP=DIR keeps the profiles for callgrind_annotate. ANNOTATIONS=
# 'k: "v", ...' puts annotations on the benchmark's Ingress (the cost of a route's policy).
# Needs valgrind, h2load (nghttp2-client), nginx, curl, openssl.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/common.sh
mode=${1:-http}
requests=${2:-20000}
binary=${3:-target/dist/wicket}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

# The profile the container image ships (Cargo.toml [profile.dist]: fat LTO).
[ "$binary" = target/dist/wicket ] && cargo build --profile dist --quiet
mkdir -p "$work/manifests" "$work/logs"

cat > "$work/backend.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/backend.pid;
error_log $work/logs/backend.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:19100; location / { return 200 "ok"; } }
}
CONF
nginx -c "$work/backend.conf" -p "$work" &

bench_cert "$work"
bench_manifests "$work/manifests/bench.yaml" "$work/cert.pem" "$work/key.pem" 19100 "${ANNOTATIONS:-}"

# Total instructions of one wicket run serving $1 requests.
run() {
  local n=$1 out="$work/callgrind.$1"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$binary" --worker-threads 1 run \
    --manifests "$work/manifests" --http-addr 127.0.0.1:18180 --https-addr 127.0.0.1:18543 \
    --admin-addr 127.0.0.1:18354 --access-log off \
    >"$work/logs/wicket.$n" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do
    curl -sf http://127.0.0.1:18354/readyz >/dev/null 2>&1 && break
    sleep 0.1
  done
  if [ "$mode" = h2 ]; then
    h2load -n "$n" -c 10 -m 10 --connect-to=127.0.0.1:18543 https://bench.test:18543/ >/dev/null
  elif [ "$mode" = https ]; then
    h2load --h1 -n "$n" -c 10 --connect-to=127.0.0.1:18543 https://bench.test:18543/ >/dev/null
  else
    h2load --h1 -n "$n" -c 10 --connect-to=127.0.0.1:18180 http://bench.test:18180/ >/dev/null
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  grep '^summary:' "$out" | awk '{print $2}'
}

one=$(run "$requests")
two=$(run $((requests * 2)))
# KEEP=DIR keeps the callgrind profiles (callgrind_annotate DIR/callgrind.N).
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work"/callgrind.* "$KEEP"/; fi
echo "$mode: $(( (two - one) / requests )) instructions per request ($binary; N=$requests: $one, 2N: $two)"
