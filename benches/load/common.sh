# Shared by the load scripts (sourced): the one-route world they all measure.

# bench_manifests FILE CERT KEY PORT [ANNOTATIONS]: bench.test routed to Service pod, whose
# one endpoint is 127.0.0.1:PORT (the backend standing in for the pod), served over HTTP and
# over HTTPS with the certificate CERT/KEY, without the redirect to HTTPS. ANNOTATIONS: more
# entries for the Ingress's annotations map, as YAML flow entries (`k: "v", k2: "v2"`).
bench_manifests() {
  local file=$1 cert=$2 key=$3 port=$4 extra=${5:-}
  cat > "$file" <<YAML
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: wicket}
spec: {controller: wicket.dev/ingress-controller}
---
apiVersion: v1
kind: Secret
metadata: {name: bench-tls}
type: kubernetes.io/tls
stringData:
  tls.crt: |
$(sed 's/^/    /' "$cert")
  tls.key: |
$(sed 's/^/    /' "$key")
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
ports: [{name: http, port: $port}]
endpoints:
- addresses: ["127.0.0.1"]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  annotations: {wicket.dev/ssl-redirect: "false"${extra:+, $extra}}
spec:
  ingressClassName: wicket
  tls:
  - hosts: [bench.test]
    secretName: bench-tls
  rules:
  - host: bench.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: pod, port: {number: 80}}}}
YAML
}

# bench_cert DIR: an ECDSA P-256 certificate for bench.test, DIR/cert.pem and DIR/key.pem.
bench_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -keyout "$1/key.pem" -out "$1/cert.pem" -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test 2>/dev/null
}
