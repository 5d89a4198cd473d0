#!/usr/bin/env bash
# wicket, nginx and HAProxy side by side, each pinned to one core with one worker.
#
#   benches/load/vs_nginx.sh [http|https|handshakes|h2|all] [seconds] [connections] [runs]
#   benches/load/vs_nginx.sh idle [connections] [runs]
#   benches/load/vs_nginx.sh callgrind [requests]
#
#   http        keep-alive HTTP/1.1 requests per second (wrk; 50 connections, 5 runs)
#   https       keep-alive HTTPS (TLS 1.3, ECDSA P-256) requests per second (wrk; 50, 5)
#   handshakes  new TLS 1.3 handshakes per second: every request on a new connection
#               (wrk with "Connection: close", no session resumption; 50, 5)
#   h2          HTTP/2 over TLS 1.3 (ALPN h2) requests per second and the p99 latency:
#               h2load with 10 streams per connection (32 connections, 3 runs); the p99 is
#               computed from h2load's per-request --log-file. HTTP/1.1 to the backend.
#   idle        KiB of proxy memory (VmRSS) per idle keep-alive connection, plain and TLS:
#               `connections` (default 2000) connections each make one request, one at a
#               time, and stay open; (RSS with them - RSS before) / connections. Each run
#               starts the proxies afresh, so no earlier load's freed memory hides the cost.
#               1 run by default: the figure repeats to a few hundredths of a KiB.
#   all         http, https, handshakes, h2 (with `connections` and `runs` if given), then
#               idle with its defaults (2000 connections, 1 run): about 15 minutes
#   callgrind   instructions per request of wicket alone, plain and TLS: runs
#               benches/load/instructions.sh http and https (slow: valgrind; not in all)
#
# One backend (nginx answering a 2-byte body) stands in for the pod and shares CPU 1 with
# the client (wrk, h2load or the idle connections' Python); the proxy under test runs on
# CPU 0. The three proxies serve the same certificate, speak HTTP/1.1 and HTTP/2 (ALPN) on
# TLS 1.3 only with the same curves, forward X-Forwarded-For, X-Forwarded-Proto and
# X-Real-IP, and keep their connections to the same backend alive (nginx: upstream
# keepalive; HAProxy: http-reuse always), with no access log (nginx: access_log off;
# HAProxy: no log target; wicket: --access-log off); wicket's metrics stay on, as they always
# are. nginx and HAProxy (prefer-client-ciphers) keep the client's cipher order
# (AES-256-GCM-SHA384 with wrk, AES-128-GCM-SHA256 with h2load); NGINX_SAME_CIPHERS=1 gives
# both wicket's server order (AES-128-GCM-SHA256 first) instead. Each comparison alternates
# wicket, nginx and HAProxy `runs` times and reports the medians and the ratios to nginx,
# because the shared client core makes single runs vary by several percent. Next to
# requests per second it reports requests per CPU-second of the proxy process (from
# /proc/PID/stat): the proxy's own per-core throughput, which the client core's noise does
# not touch. A warning goes to stderr when a run saw errors or non-2xx answers.
# WICKET_BINARY=PATH benchmarks that binary; without it the script builds wicket with the
# `dist` profile, as the container image does (fat LTO: a build of several minutes). Needs: wrk, h2load (nghttp2-client), nginx, haproxy, python3, openssl, taskset,
# curl; callgrind also valgrind.
set -euo pipefail
wicket=${WICKET_BINARY:+$(realpath "$WICKET_BINARY")}
cd "$(dirname "$0")/../.."
. benches/load/common.sh
mode=${1:-all}
case $mode in
  http|https|handshakes|h2|all) duration=${2:-10}; connections_arg=${3:-}; runs_arg=${4:-}
    idle_n=2000 ;;
  idle) idle_n=${2:-2000}; runs_arg=${3:-} ;;
  callgrind) requests=${2:-20000} ;;
  *) echo "unknown mode $mode (http, https, handshakes, h2, idle, callgrind, all)" >&2; exit 2 ;;
esac
if [ -z "$wicket" ]; then
  cargo build --profile dist --quiet
  wicket=$PWD/target/dist/wicket
fi

if [ "$mode" = callgrind ]; then
  for kind in http https; do benches/load/instructions.sh "$kind" "$requests" "$wicket"; done
  exit 0
fi

# 2000 idle connections need as many descriptors in the client and in each proxy (plus the
# proxy's own), and wrk needs one per connection.
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 16384 ] || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/manifests" "$work/logs"

bench_cert "$work"
cat "$work/cert.pem" "$work/key.pem" > "$work/haproxy.pem"

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

same_ciphers=${NGINX_SAME_CIPHERS:-0}
wicket_order=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256

cat > "$work/proxy.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/proxy.pid;
error_log $work/logs/proxy.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream pod { server 127.0.0.1:19000; keepalive 256; keepalive_requests 1000000; }
  ssl_certificate $work/cert.pem;
  ssl_certificate_key $work/key.pem;
  ssl_protocols TLSv1.3;
  ssl_ecdh_curve X25519:prime256v1;
$( [ "$same_ciphers" = 1 ] && printf '  ssl_prefer_server_ciphers on;\n  ssl_conf_command Ciphersuites %s;\n' "$wicket_order" )
  server {
    listen 127.0.0.1:18081 backlog=4096;
    listen 127.0.0.1:18444 ssl http2 backlog=4096;
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

# HAProxy as the nginx above: one process with one thread, the same timeouts as nginx's
# defaults (75 s idle keep-alive, 60 s otherwise), no log target (so no logging).
cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  maxconn 8192
  timeout connect 60s
  timeout client 60s
  timeout server 60s
  timeout http-request 60s
  timeout http-keep-alive 75s
frontend proxy
  bind 127.0.0.1:18082 backlog 4096
  bind 127.0.0.1:18445 backlog 4096 ssl crt $work/haproxy.pem alpn h2,http/1.1 ssl-min-ver TLSv1.3 curves X25519:P-256 $( [ "$same_ciphers" = 1 ] && echo "ciphersuites $wicket_order" || echo prefer-client-ciphers )
  option forwardfor
  http-request set-header X-Forwarded-Proto https if { ssl_fc }
  http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
  http-request set-header X-Real-IP %[src]
  default_backend pod
backend pod
  http-reuse always
  server pod 127.0.0.1:19000
CONF

bench_manifests "$work/manifests/bench.yaml" "$work/cert.pem" "$work/key.pem" 19000

proxies=(wicket nginx haproxy)
declare -A pid http_port tls_port
http_port=([wicket]=18080 [nginx]=18081 [haproxy]=18082)
tls_port=([wicket]=18443 [nginx]=18444 [haproxy]=18445)

# Every proxy must answer "ok" from the backend for bench.test, over HTTP and HTTPS.
answers() {
  local p
  for p in "${proxies[@]}"; do
    [ "$(curl -sf -H 'Host: bench.test' "http://127.0.0.1:${http_port[$p]}/")" = ok ] || return 1
    [ "$(curl -sfk -H 'Host: bench.test' "https://127.0.0.1:${tls_port[$p]}/")" = ok ] || return 1
  done
}

nginx_master=
start_proxies() {
  taskset -c 0 nginx -c "$work/proxy.conf" -e "$work/logs/proxy.err" &
  nginx_master=$!
  taskset -c 0 haproxy -db -f "$work/haproxy.cfg" 2>>"$work/logs/haproxy.err" &
  pid[haproxy]=$!
  taskset -c 0 "$wicket" --worker-threads 1 run --manifests "$work/manifests" \
    --http-addr 127.0.0.1:18080 --https-addr 127.0.0.1:18443 --admin-addr 127.0.0.1:18254 \
    --default-certificate default/bench-tls --log-level warn --access-log off \
    2>>"$work/logs/wicket.err" &
  pid[wicket]=$!
  for _ in $(seq 100); do
    curl -sf -o /dev/null http://127.0.0.1:18254/readyz && answers && break
    sleep 0.1
  done
  answers || { echo "a proxy does not answer; logs:" >&2; tail -n 5 "$work"/logs/* >&2; exit 1; }
  pid[nginx]=$(pgrep -P "$nginx_master")
}

stop_proxies() {
  kill -TERM "$nginx_master" "${pid[haproxy]}" "${pid[wicket]}"
  wait "$nginx_master" "${pid[haproxy]}" "${pid[wicket]}" 2>/dev/null || true
}

taskset -c 1 nginx -c "$work/backend.conf" -e "$work/logs/backend.err" &
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:19000/ && break; sleep 0.1; done
start_proxies

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# measure PROXY URL [wrk options]: wrk against an address sends no SNI, so all three serve
# their default certificate — the same one. Prints "requests/s requests-per-CPU-second".
measure() {
  local p=$1 url=$2; shift 2
  taskset -c 1 wrk -t1 -c"$connections" -d2s "$@" -H 'Host: bench.test' "$url" >/dev/null
  local before after out
  before=$(cpu_ticks "${pid[$p]}")
  out=$(taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" "$@" -H 'Host: bench.test' "$url")
  after=$(cpu_ticks "${pid[$p]}")
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "warning: $p $url: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' \n' ' ')" >&2
  fi
  awk -v b="$before" -v a="$after" -v hz="$ticks" '
    / requests in / { n = $1 }
    /Requests\/sec/ { rps = $2 }
    END { printf "%s %.0f\n", rps, n / ((a - b) / hz) }' <<<"$out"
}

# measure_h2 PROXY: h2load over TLS with ALPN h2 (SNI and :authority bench.test, connected
# to the proxy's TLS port). Prints "requests/s requests-per-CPU-second p99-ms".
measure_h2() {
  local p=$1 port=${tls_port[$1]}
  local args=(-c"$connections" -m10 --connect-to="127.0.0.1:$port" "https://bench.test:$port/")
  taskset -c 1 h2load -D 2 "${args[@]}" >/dev/null
  local before after out
  before=$(cpu_ticks "${pid[$p]}")
  out=$(taskset -c 1 h2load -D "$duration" --log-file="$work/h2.log" "${args[@]}")
  after=$(cpu_ticks "${pid[$p]}")
  grep -q '^Application protocol: h2$' <<<"$out" \
    || { echo "$p did not speak h2: $(grep 'Application protocol' <<<"$out")" >&2; exit 1; }
  awk '/^requests:/ && ($10 + $12 + $14) > 0 { bad = 1 } /^status codes:/ && ($5 + $7 + $9) > 0 { bad = 1 }
       bad { exit 1 }' <<<"$out" \
    || echo "warning: $p h2: $(grep -E '^(requests|status codes):' <<<"$out" | tr '\n' ' ')" >&2
  local p99
  p99=$(awk -F'\t' '{ print $3 }' "$work/h2.log" | sort -n \
    | awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < NR * 0.99) i++; printf "%.2f", v[i] / 1000 }')
  awk -v b="$before" -v a="$after" -v hz="$ticks" -v p99="$p99" '
    /^finished in/ { rps = $4 }
    /^requests:/ { n = $6 }
    END { printf "%s %.0f %s\n", rps, n / ((a - b) / hz), p99 }' <<<"$out"
}

# idle_kib PROXY PORT plain|tls: KiB of the proxy's VmRSS per idle keep-alive connection.
# Twenty connections first (one request each, closed) take the one-time costs: the backend
# connection, the first TLS handshake's state. Then N connections, opened one after the
# other, each make one request and stay open; RSS after a second's rest, minus RSS before,
# over N. A connection the proxy closed in the meantime is reported (it would not count).
idle_kib() {
  taskset -c 1 python3 - "${pid[$1]}" "$2" "$3" "$idle_n" <<'PY'
import http.client, select, ssl, sys, time
pid, port, tls, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "tls", int(sys.argv[4])
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
def one():
    if tls:
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/", headers={"Host": "bench.test"})
    r = c.getresponse()
    body = r.read()
    assert r.status == 200 and body == b"ok", (r.status, body)
    return c
for _ in range(20):
    one().close()
time.sleep(0.5)
before = rss_kib()
held = [one() for _ in range(n)]
time.sleep(1)
after = rss_kib()
poll = select.poll()
for c in held:
    poll.register(c.sock, select.POLLIN)
closed = len(poll.poll(0))
if closed:
    print(f"warning: {closed} of {n} idle connections were closed or readable", file=sys.stderr)
print(f"{(after - before) / n:.2f} {before} {after}")
for c in held:
    c.close()
PY
}

ratios() { # name label wicket nginx haproxy [format]: one line, with the ratios to nginx
  awk -v name="$1" -v label="$2" -v w="$3" -v n="$4" -v h="$5" -v f="${6:-%8.0f}" 'BEGIN {
    printf "%-11s %-15s wicket " f "   nginx " f "   haproxy " f "   wicket/nginx %.2f   haproxy/nginx %.2f\n",
      name, label, w, n, h, w / n, h / n }'
}

# medians ARRAY: the median of each proxy's runs in the associative array ARRAY (proxy ->
# space-separated values), in the order of $proxies.
medians() {
  local -n values=$1
  local p
  for p in "${proxies[@]}"; do printf '%s\n' ${values[$p]} | median; done
}

# runs_line LABEL ARRAY: every run's value, per proxy.
runs_line() {
  local -n values=$2
  local p line="            runs ($1):"
  for p in "${proxies[@]}"; do line+=" $p ${values[$p]% };"; done
  echo "${line%;}"
}

# compare NAME http|https|h2 [wrk options]: `runs` rounds of wicket, nginx, HAProxy in turn.
compare() {
  local name=$1 kind=$2; shift 2
  local -A rps cpu p99
  local p res m
  for _ in $(seq "$runs"); do
    for p in "${proxies[@]}"; do
      case $kind in
        http) res=$(measure "$p" "http://127.0.0.1:${http_port[$p]}/" "$@") ;;
        https) res=$(measure "$p" "https://127.0.0.1:${tls_port[$p]}/" "$@") ;;
        h2) res=$(measure_h2 "$p") ;;
      esac
      read -ra m <<<"$res"
      rps[$p]+="${m[0]} "; cpu[$p]+="${m[1]} "; p99[$p]+="${m[2]:-} "
    done
  done
  ratios "$name" "req/s:" $(medians rps)
  ratios "" "req/CPU-second:" $(medians cpu)
  [ "$kind" != h2 ] || ratios "" "p99 ms:" $(medians p99) "%8.2f"
  runs_line req/s rps
  [ "$kind" != h2 ] || runs_line "p99 ms" p99
}

# idle: `runs` rounds; each kind (plain, TLS) of each round on freshly started proxies.
idle() {
  local -A plain tls
  local p kind res m
  echo "one core each, $idle_n idle keep-alive connections with one request each, median of $runs fresh starts"
  for _ in $(seq "$runs"); do
    for kind in plain tls; do
      stop_proxies
      start_proxies
      for p in "${proxies[@]}"; do
        if [ "$kind" = plain ]; then
          res=$(idle_kib "$p" "${http_port[$p]}" plain); read -ra m <<<"$res"; plain[$p]+="${m[0]} "
        else
          res=$(idle_kib "$p" "${tls_port[$p]}" tls); read -ra m <<<"$res"; tls[$p]+="${m[0]} "
        fi
      done
    done
  done
  ratios idle "KiB/conn plain:" $(medians plain) "%8.2f"
  ratios "" "KiB/conn TLS:" $(medians tls) "%8.2f"
  runs_line "KiB plain" plain
  runs_line "KiB TLS" tls
}

load() { # NAME KIND DEFAULT-CONNECTIONS DEFAULT-RUNS WHAT [wrk options]
  local name=$1 kind=$2 what=$5
  connections=${connections_arg:-$3}
  runs=${runs_arg:-$4}
  shift 5
  echo "one core each, ${connections} connections${what}, ${duration}s per run, median of ${runs}"
  compare "$name" "$kind" "$@"
}

case $mode in
  http|all) load http http 50 5 "" ;;&
  https|all) load https https 50 5 "" ;;&
  handshakes|all) load handshakes https 50 5 " (a new one for every request)" -H 'Connection: close' ;;&
  h2|all) load h2 h2 32 3 " x 10 HTTP/2 streams" ;;&
  idle) runs=${runs_arg:-1}; idle ;;
  all) runs=1; idle ;;
esac
