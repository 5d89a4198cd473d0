#!/usr/bin/env bash
# wicket and nginx side by side, each pinned to one core with one worker.
#
#   benches/load/vs_nginx.sh [http|https|handshakes|all] [seconds] [connections] [runs]
#
#   http        keep-alive HTTP/1.1 requests per second
#   https       keep-alive HTTPS (TLS 1.3, ECDSA P-256) requests per second
#   handshakes  new TLS 1.3 handshakes per second: every request on a new connection
#               (wrk with "Connection: close", no session resumption)
#
# One backend (nginx answering a 2-byte body) stands in for the pod and shares CPU 1 with
# wrk; the proxy under test runs on CPU 0. Both proxies serve the same certificate and
# forward to the same backend over keep-alive connections, with no access log (nginx:
# access_log off; wicket: --access-log off); wicket's metrics stay on, as they always are. nginx keeps its default cipher
# choice (the client's order: AES-256-GCM-SHA384 with wrk); NGINX_SAME_CIPHERS=1 gives it
# wicket's server order (AES-128-GCM-SHA256 first) instead. Each comparison alternates
# wicket and nginx `runs` times and reports the medians, because the shared client core
# makes single runs vary by several percent. Next to requests per second it reports
# requests per CPU-second of the proxy process (from /proc/PID/stat): the proxy's own
# per-core throughput, which the client core's noise does not touch. Needs: wrk, nginx,
# openssl, taskset, curl; it builds wicket in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/common.sh
mode=${1:-all}
duration=${2:-10}
connections=${3:-50}
runs=${4:-5}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet
mkdir -p "$work/manifests" "$work/logs"

bench_cert "$work"

cat > "$work/backend.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/backend.pid;
error_log $work/logs/backend.err warn;
events { worker_connections 8192; }
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
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream pod { server 127.0.0.1:19000; keepalive 256; }
  ssl_certificate $work/cert.pem;
  ssl_certificate_key $work/key.pem;
  ssl_protocols TLSv1.3;
  ssl_ecdh_curve X25519:prime256v1;
$( [ "${NGINX_SAME_CIPHERS:-0}" = 1 ] && printf '  ssl_prefer_server_ciphers on;\n  ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;\n' )
  server {
    listen 127.0.0.1:18081 backlog=4096;
    listen 127.0.0.1:18444 ssl backlog=4096;
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

bench_manifests "$work/manifests/bench.yaml" "$work/cert.pem" "$work/key.pem" 19000

taskset -c 1 nginx -c "$work/backend.conf" -e "$work/logs/backend.err" &
taskset -c 0 nginx -c "$work/proxy.conf" -e "$work/logs/proxy.err" &
taskset -c 0 target/release/wicket run --manifests "$work/manifests" \
  --http-addr 127.0.0.1:18080 --https-addr 127.0.0.1:18443 --admin-addr 127.0.0.1:18254 \
  --default-certificate default/bench-tls --log-level warn --access-log off &
for _ in $(seq 100); do
  curl -sf -o /dev/null http://127.0.0.1:18254/readyz && curl -sf -o /dev/null http://127.0.0.1:19000/ \
    && curl -sfk -o /dev/null https://127.0.0.1:18444/ && break
  sleep 0.1
done

wicket_pid=$(pgrep -f "target/release/wicket run --manifests $work")
nginx_pid=$(pgrep -P "$(cat "$work/proxy.pid")")
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# wrk against an address sends no SNI, so both serve their default certificate — the same
# one. Prints "requests/s requests-per-CPU-second".
measure() {
  local pid=$1 url=$2; shift 2
  taskset -c 1 wrk -t1 -c"$connections" -d2s "$@" -H 'Host: bench.test' "$url" >/dev/null
  local before after out
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" "$@" -H 'Host: bench.test' "$url")
  after=$(cpu_ticks "$pid")
  awk -v b="$before" -v a="$after" -v hz="$ticks" '
    / requests in / { n = $1 }
    /Requests\/sec/ { rps = $2 }
    END { printf "%s %.0f\n", rps, n / ((a - b) / hz) }' <<<"$out"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

compare() {
  local name=$1 wicket_url=$2 nginx_url=$3; shift 3
  local wr=() nr=() wc=() nc=() m
  for _ in $(seq "$runs"); do
    read -ra m <<<"$(measure "$wicket_pid" "$wicket_url" "$@")"; wr+=("${m[0]}"); wc+=("${m[1]}")
    read -ra m <<<"$(measure "$nginx_pid" "$nginx_url" "$@")"; nr+=("${m[0]}"); nc+=("${m[1]}")
  done
  local w n w_cpu n_cpu
  w=$(printf '%s\n' "${wr[@]}" | median); n=$(printf '%s\n' "${nr[@]}" | median)
  w_cpu=$(printf '%s\n' "${wc[@]}" | median); n_cpu=$(printf '%s\n' "${nc[@]}" | median)
  awk -v name="$name" -v w="$w" -v n="$n" -v wc="$w_cpu" -v nc="$n_cpu" 'BEGIN {
    printf "%-11s req/s:         wicket %8.0f   nginx %8.0f   wicket/nginx %.2f\n", name, w, n, w / n
    printf "%-11s req/CPU-second: wicket %8.0f   nginx %8.0f   wicket/nginx %.2f\n", "", wc, nc, wc / nc }'
  echo "            runs (req/s): wicket ${wr[*]}; nginx ${nr[*]}"
}

echo "one core each, ${connections} connections, ${duration}s per run, median of ${runs}"
case $mode in
  http|all) compare http http://127.0.0.1:18080/ http://127.0.0.1:18081/ ;;&
  https|all) compare https https://127.0.0.1:18443/ https://127.0.0.1:18444/ ;;&
  handshakes|all) compare handshakes https://127.0.0.1:18443/ https://127.0.0.1:18444/ -H 'Connection: close' ;;
  http|https|handshakes) ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
