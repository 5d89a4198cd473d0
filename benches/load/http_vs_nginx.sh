#!/usr/bin/env bash
# Keep-alive HTTP/1.1 requests per second through wicket and through nginx, side by side.
#
#   benches/load/http_vs_nginx.sh [duration-seconds] [connections]
#
# One backend (nginx answering a 2-byte body) stands in for the pod. The proxy under test
# (wicket, then nginx as a reverse proxy with upstream keepalive) is pinned to CPU 0 with
# one worker; wrk and the backend share CPU 1. Needs: wrk, nginx, taskset, a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-10}
connections=${2:-50}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet
mkdir -p "$work/manifests" "$work/logs"

cat > "$work/backend.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/backend.pid;
error_log $work/logs/backend.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:19000 backlog=4096; location / { return 200 "ok"; } }
}
CONF

cat > "$work/proxy.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/proxy.pid;
error_log $work/logs/proxy.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream pod { server 127.0.0.1:19000; keepalive 128; }
  server {
    listen 127.0.0.1:18081 backlog=4096;
    location / {
      proxy_pass http://pod;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
CONF

cat > "$work/manifests/bench.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: wicket}
spec: {controller: wicket.dev/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: pod}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: pod-1
  labels: {kubernetes.io/service-name: pod}
addressType: IPv4
ports: [{name: http, port: 19000}]
endpoints:
- addresses: ["127.0.0.1"]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench}
spec:
  ingressClassName: wicket
  rules:
  - host: bench.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: pod, port: {number: 80}}}}
YAML

taskset -c 1 nginx -c "$work/backend.conf" -e "$work/logs/backend.err" &
taskset -c 0 nginx -c "$work/proxy.conf" -e "$work/logs/proxy.err" &
TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/wicket run --manifests "$work/manifests" \
  --http-addr 127.0.0.1:18080 --admin-addr 127.0.0.1:18254 --log-level warn &
for _ in $(seq 100); do
  curl -sf -o /dev/null http://127.0.0.1:18254/readyz && curl -sf -o /dev/null http://127.0.0.1:19000/ && break
  sleep 0.1
done

run() {
  local name=$1 port=$2
  # Warm up pools and caches, then measure.
  taskset -c 1 wrk -t1 -c"$connections" -d2s -H 'Host: bench.test' "http://127.0.0.1:$port/" >/dev/null
  local out
  out=$(taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency -H 'Host: bench.test' "http://127.0.0.1:$port/")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '%-8s %12s req/s   p50 %8s   p99 %8s\n' "$name" "$rps" "$p50" "$p99"
  echo "$rps"  > "$work/$name.rps"
}

echo "keep-alive HTTP/1.1, ${connections} connections, ${duration}s, proxy pinned to one core"
run wicket 18080
run nginx 18081
awk -v w="$(cat "$work/wicket.rps")" -v n="$(cat "$work/nginx.rps")" 'BEGIN { printf "wicket / nginx = %.2f\n", w / n }'
