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
# ROUTE=gateway routes the same requests through a Gateway API HTTPRoute of the same shape
# instead of the Ingress (GatewayClass, Gateway with an HTTP listener on port 80 and an
# HTTPS one on 443 with the same certificate, one `PathPrefix /` rule for bench.test to the
# same Service); each run first checks that the route is in /debug/routes and answers.
# Needs valgrind, h2load (nghttp2-client), nginx, curl, openssl.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/common.sh
mode=${1:-http}
route=${ROUTE:-ingress}
case "$route" in
  ingress) ;;
  gateway)
    if [ -n "${ANNOTATIONS:-}" ]; then
      echo "ANNOTATIONS are Ingress annotations: not with ROUTE=gateway" >&2
      exit 2
    fi
    ;;
  *) echo "ROUTE: ingress or gateway, not $route" >&2; exit 2 ;;
esac
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
if [ "$route" = gateway ]; then
  # The same world without the Ingress: its route as a Gateway API HTTPRoute instead.
  awk 'function flush() {
         if (doc != "" && doc !~ /(^|\n)kind: Ingress\n/) printf "%s%s", (n++ ? "---\n" : ""), doc
         doc = ""
       }
       /^---$/ { flush(); next }
       { doc = doc $0 "\n" }
       END { flush() }' "$work/manifests/bench.yaml" > "$work/bench.yaml"
  cat >> "$work/bench.yaml" <<YAML
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: wicket}
spec: {controllerName: wicket.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench}
spec:
  gatewayClassName: wicket
  listeners:
  - {name: http, protocol: HTTP, port: 80}
  - name: https
    protocol: HTTPS
    port: 443
    tls: {mode: Terminate, certificateRefs: [{name: bench-tls}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench}
spec:
  parentRefs: [{name: bench}]
  hostnames: [bench.test]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: pod, port: 80}]
YAML
  mv "$work/bench.yaml" "$work/manifests/bench.yaml"
fi

# Whether bench.test goes through the HTTPRoute: it is in the Gateway API table, and with
# no Ingress nothing else routes it. One request, the same in both runs: no effect on the
# difference.
through_gateway() {
  local routes
  routes=$(curl -sf http://127.0.0.1:18354/debug/routes) || routes=""
  if ! grep -q '"path": *"PathPrefix /"' <<<"$routes"; then
    echo "no Gateway API route in /debug/routes" >&2
    return 1
  fi
  if [ "$(curl -sf --connect-to bench.test:18180:127.0.0.1:18180 http://bench.test:18180/)" != ok ]; then
    echo "bench.test is not answered through the HTTPRoute" >&2
    return 1
  fi
}

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
  if [ "$route" = gateway ] && ! through_gateway; then
    kill -TERM "$pid"
    wait "$pid" || true
    exit 1
  fi
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

label=""
if [ "$route" = gateway ]; then label=", Gateway API route"; fi
one=$(run "$requests")
two=$(run $((requests * 2)))
# KEEP=DIR keeps the callgrind profiles (callgrind_annotate DIR/callgrind.N).
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work"/callgrind.* "$KEEP"/; fi
echo "$mode: $(( (two - one) / requests )) instructions per request ($binary$label; N=$requests: $one, 2N: $two)"
