#!/usr/bin/env bash
# Memory of a large routing table across live edits: RSS after the first load, after E
# edits of the manifests, and their ratio.
#
#   benches/load/routes_memory.sh [routes] [edits] [requests-per-edit]
#
#   routes             routes in the table (default 10000): routes/10 Ingresses of 10 hosts
#                      each (one path per host), one Service and one EndpointSlice per
#                      Ingress (one loopback endpoint, served by `wicket echo`)
#   edits              manifest edits (default 100); each rewrites one Ingress's file with
#                      a changed path, and the next edit waits until the admin endpoint
#                      shows the table of the previous one (its generation)
#   requests-per-edit  requests sent through the proxy after each edit (default 5; 0: none)
#
# Environment:
#   WICKET=PATH        the binary to measure (default: cargo build --profile dist, the
#                      build the container image ships; target/dist/wicket)
#   WICKET_WRAP="..."  a command put in front of it that execs it (so its pid is wicket's):
#                      "env MALLOC_ARENA_MAX=1", "env LD_PRELOAD=.../libjemalloc.so.2", ...
#   SETTLE=SECONDS     wait before the last RSS reading (default 3)
#   MAX_RATIO=R        exit 1 when after-edits RSS / first-load RSS exceeds R (default: report only)
#   KEEP=1             keep the work directory (manifests, wicket's log, rss.tsv)
#   PORT_BASE=N        listeners on N (http), N+1 (https), N+2 (admin), N+3 (echo pod);
#                      default 19240
#   HEAP_STATS=1       also ask glibc (gdb calls malloc_stats() in the process) for the
#                      bytes in use (live heap) and held, after the first load and after
#                      settling; then calls malloc_trim(0) and reports the RSS after it.
#                      Live heap growing = a leak; RSS growing with a flat live heap and
#                      falling after the trim = freed memory the allocator keeps. Needs gdb.
#
# Output: first-load RSS, RSS after the edits and after settling, and their ratios to the
# first; one line per edit (generation, VmRSS, and the anonymous memory from
# /proc/PID/smaps_rollup, i.e. without the mapped binary) goes to WORK/rss.tsv (KEEP=1).
# Needs: curl (and gdb for HEAP_STATS).
#
# The issue's target: MAX_RATIO=1.25 benches/load/routes_memory.sh
set -euo pipefail
if [ -n "${WICKET:-}" ]; then WICKET=$(realpath "$WICKET"); fi
cd "$(dirname "$0")/../.."
routes=${1:-10000}
edits=${2:-100}
requests=${3:-5}
settle=${SETTLE:-3}
base=${PORT_BASE:-19240}
http=127.0.0.1:$base https=127.0.0.1:$((base + 1)) admin=127.0.0.1:$((base + 2))
pod_port=$((base + 3))
ingresses=$(( (routes + 9) / 10 ))

if [ -z "${WICKET:-}" ]; then
  cargo build --profile dist --quiet
  WICKET=target/dist/wicket
fi
work=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$work/manifests"

# ingress_file I VERSION: Ingress I (10 hosts i<I>-<j>.bench.test, path /v<VERSION>/ on
# each) with its Service and EndpointSlice; written beside and renamed in, so wicket never
# reads half a file.
ingress_file() {
  local i=$1 version=$2 file="$work/manifests/ing-$1.yaml" j
  {
    cat <<YAML
apiVersion: v1
kind: Service
metadata: {name: svc-$i}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-$i-1
  labels: {kubernetes.io/service-name: svc-$i}
addressType: IPv4
ports: [{name: http, port: $pod_port}]
endpoints:
- addresses: ["127.0.0.1"]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ing-$i}
spec:
  ingressClassName: wicket
  rules:
YAML
    for ((j = 0; j < 10 && i * 10 + j < routes; j++)); do
      printf '  - host: i%d-%d.bench.test\n    http:\n      paths:\n      - {path: /v%d/, pathType: Prefix, backend: {service: {name: svc-%d, port: {number: 80}}}}\n' \
        "$i" "$j" "$version" "$i"
    done
  } > "$work/manifests/.ing-$i.tmp"
  mv "$work/manifests/.ing-$i.tmp" "$file"
}

cat > "$work/manifests/class.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: wicket}
spec: {controller: wicket.dev/ingress-controller}
YAML
for ((i = 0; i < ingresses; i++)); do ingress_file "$i" 0; done

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
anon_kib() { awk '/^Anonymous:/ {print $2}' "/proc/$pid/smaps_rollup"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
# The generation of the table in force, from the admin endpoint's metrics.
generation() {
  curl -sf "http://$admin/metrics" | awk '/^wicket_snapshot_generation / {print $2}'
}
# wait_generation N: until the table in force is generation N (or later), at most 120 s.
wait_generation() {
  local want=$1 g deadline=$((SECONDS + 120))
  while :; do
    g=$(generation || true)
    if [ -n "$g" ] && [ "$g" -ge "$want" ]; then return 0; fi
    if [ $SECONDS -ge $deadline ]; then
      echo "generation $want not published within 120 s (at ${g:-none})" >&2
      tail -5 "$work/wicket.log" >&2
      exit 1
    fi
    sleep 0.05
  done
}
# The route count wicket logged when it published generation N.
routes_of() {
  grep 'routing table published' "$work/wicket.log" | grep -E "generation=$1( |$)" \
    | sed -E 's/.*routes=([0-9]+).*/\1/' | tail -1
}
# send N: N requests through the proxy to hosts spread over the table (the current path).
send() {
  local n=$1 version=$2 k i code
  for ((k = 0; k < n; k++)); do
    i=$(( (k * 7919 + version * 31) % ingresses ))
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: i$i-0.bench.test" \
      "http://$http/v$(version_of "$i")/x") || true
    [ "$code" = 200 ] || { echo "request to i$i-0.bench.test answered $code" >&2; exit 1; }
  done
}
# heap_stats: glibc's totals (all arenas and mmaps), "in-use-KiB held-KiB", from
# malloc_stats(), which writes to wicket's stderr.
heap_stats() {
  gdb -p "$pid" -batch -nx --readnever -ex 'call (void)malloc_stats()' > /dev/null 2>&1
  awk '
    /^Total \(incl. mmap\):/ {total = 1; next}
    total && /^system bytes/ {held = $4}
    total && /^in use bytes/ {last = int($5 / 1024) " " int(held / 1024); total = 0}
    END {print last}
  ' "$work/wicket.log"
}
trim() { gdb -p "$pid" -batch -nx --readnever -ex 'call (int)malloc_trim(0)' > /dev/null 2>&1; }
declare -A versions=()
version_of() { echo "${versions[$1]:-0}"; }

"$WICKET" echo --addr "127.0.0.1:$pod_port" --worker-threads 1 --log-level warn \
  > /dev/null 2>&1 &
${WICKET_WRAP:-} "$WICKET" --worker-threads 1 run --manifests "$work/manifests" \
  --http-addr "$http" --https-addr "$https" --admin-addr "$admin" --access-log off \
  > /dev/null 2> "$work/wicket.log" &
launcher=$!
# The wicket process itself (a wrapper such as `env` execs it; valgrind stays the parent
# pid too), so /proc/$pid is the measured process.
pid=$launcher

start=$SECONDS
until curl -s -o /dev/null "http://127.0.0.1:$pod_port/"; do
  [ $((SECONDS - start)) -lt 30 ] || { echo "the echo pod did not start" >&2; exit 1; }
  sleep 0.1
done
until curl -sf "http://$admin/readyz" > /dev/null 2>&1; do
  kill -0 "$launcher" 2>/dev/null || { echo "wicket exited:" >&2; tail -20 "$work/wicket.log" >&2; exit 1; }
  [ $((SECONDS - start)) -lt 300 ] || { echo "not ready after 300 s" >&2; exit 1; }
  sleep 0.1
done
wait_generation 1
loaded=$(routes_of 1)
[ "$loaded" = "$routes" ] || { echo "generation 1 has ${loaded:-?} routes, not $routes" >&2; exit 1; }
echo "first load: $routes routes ($ingresses Ingresses) in $((SECONDS - start)) s"
if [ "$requests" -gt 0 ]; then send "$requests" 0; fi
sleep 1
first=$(rss_kib)
first_anon=$(anon_kib)
if [ "${HEAP_STATS:-0}" = 1 ]; then read -r first_live first_held < <(heap_stats); fi
printf 'generation\trss_kib\tanon_kib\n1\t%s\t%s\n' "$first" "$first_anon" > "$work/rss.tsv"

gen=1
for ((e = 1; e <= edits; e++)); do
  i=$(( (e * 37) % ingresses ))
  versions[$i]=$e
  ingress_file "$i" "$e"
  gen=$((gen + 1))
  wait_generation "$gen"
  if [ "$requests" -gt 0 ]; then send "$requests" "$e"; fi
  printf '%s\t%s\t%s\n' "$gen" "$(rss_kib)" "$(anon_kib)" >> "$work/rss.tsv"
done
now=$(routes_of "$gen")
[ "$now" = "$routes" ] || { echo "generation $gen has ${now:-?} routes, not $routes" >&2; exit 1; }
after=$(rss_kib)
sleep "$settle"
settled=$(rss_kib)
settled_anon=$(anon_kib)

ratio=$(awk -v a="$after" -v f="$first" 'BEGIN {printf "%.2f", a / f}')
ratio_settled=$(awk -v a="$settled" -v f="$first" 'BEGIN {printf "%.2f", a / f}')
echo "edits: $edits (generation $gen, $now routes)"
echo "RSS after first load:   $(mib "$first")  (anonymous $(mib "$first_anon"))"
echo "RSS after $edits edits:  $(mib "$after")  ratio $ratio"
echo "RSS after ${settle} s settle: $(mib "$settled")  ratio $ratio_settled  (anonymous $(mib "$settled_anon"))"
if [ "${HEAP_STATS:-0}" = 1 ]; then
  read -r live held < <(heap_stats)
  echo "glibc heap, in use / held: first load $(mib "$first_live") / $(mib "$first_held");" \
    "after edits $(mib "$live") / $(mib "$held")"
  trim
  sleep 0.5
  echo "RSS after malloc_trim(0): $(mib "$(rss_kib)")  (anonymous $(mib "$(anon_kib)"))"
fi
if [ -n "${MAX_RATIO:-}" ]; then
  awk -v r="$ratio_settled" -v m="$MAX_RATIO" 'BEGIN {exit !(r <= m)}' \
    || { echo "FAIL: ratio $ratio_settled > $MAX_RATIO" >&2; exit 1; }
fi
