#!/usr/bin/env python3
"""Edge measurements for wicket: what clients see while pods fail and connections pile up.

    benches/load/edge.py [idle|rolling|sigkill|flaky|shutdown|all]

  idle     10,000 idle keep-alive client connections and 100 silent ones, with
           --max-connections 10100 (the listener is full): wicket's memory (RSS) before and
           after, and how long a fresh client waits for its answer (it must make room).
  rolling  a rolling replacement of 3 pods at 200 requests/s for 30 s: each old pod is
           marked not ready, then removed, then killed, and a new pod is added.
  sigkill  200 requests/s for 30 s; at 5 s one of three pods is killed with SIGKILL and
           stays in the EndpointSlice until 10 s (as it would until Kubernetes notices).
  flaky    200 requests/s for 30 s to three pods, one of which answers 503 to everything:
           failed requests in the first 10 s and after.
  shutdown 200 requests/s from keep-alive clients; SIGTERM at 3 s with a 2 s shutdown
           delay: requests that fail while wicket still serves (none may), and how
           clients learn to leave (Connection: close) before the listener closes.

Pods are single-process nginx servers on their own loopback addresses; wicket serves a
manifests directory that the script rewrites, as the EndpointSlice controller would change
slices. Needs nginx and a release build of wicket (built if missing).
"""

import http.client
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WICKET = os.environ.get("WICKET_BINARY", os.path.join(ROOT, "target", "release", "wicket"))
HTTP, ADMIN = 18280, 18354
POD_PORT = 19200


class Pod:
    """One single-process nginx answering `status` on 127.0.0.<n>:19200."""

    def __init__(self, work, n, status=200):
        self.ip = f"127.0.0.{n}"
        conf = os.path.join(work, f"pod{n}.conf")
        with open(conf, "w") as f:
            f.write(
                f"""daemon off; master_process off; worker_processes 1;
pid {work}/pod{n}.pid; error_log {work}/pod{n}.err crit;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen {self.ip}:{POD_PORT} reuseport; location / {{ return {status} "pod {n}\\n"; }} }} }}
"""
            )
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", work])
        wait_for(lambda: can_connect(self.ip, POD_PORT), f"pod {self.ip}")

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        self.proc.wait()


def raise_file_limit():
    """As many open files as this process may have (10,100 client sockets need them)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def can_connect(host, port):
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_for(check, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def manifests(pods):
    """`pods`: (ip, ready, serving, terminating) for every endpoint of Service web."""
    eps = "".join(
        f"- addresses: [\"{ip}\"]\n  conditions: {{ready: {str(r).lower()}, serving: {str(s).lower()}, terminating: {str(t).lower()}}}\n"
        for ip, r, s, t in pods
    ) or "[]\n"
    return f"""apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: wicket}}
spec: {{controller: wicket.dev/ingress-controller}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {POD_PORT}}}]
endpoints:
{eps}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: site}}
spec:
  ingressClassName: wicket
  rules:
  - host: a.test
    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{name: http}}}}}}}}]}}
"""


class Wicket:
    def __init__(self, work, pods, *extra):
        self.dir = os.path.join(work, "manifests")
        os.makedirs(self.dir, exist_ok=True)
        self.generation = 0
        self.write(pods, wait=False)

        def more_files():
            raise_file_limit()

        self.proc = subprocess.Popen(
            [WICKET, "--worker-threads", "1", "run", "--manifests", self.dir,
             "--http-addr", f"127.0.0.1:{HTTP}", "--https-addr", "127.0.0.1:18643",
             "--admin-addr", f"127.0.0.1:{ADMIN}", "--access-log", "off", *extra],
            stderr=open(os.path.join(work, "wicket.log"), "w"),
            preexec_fn=more_files,
        )
        wait_for(lambda: self.get("/readyz") == 200, "wicket readiness")

    def get(self, path):
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}{path}", timeout=2).status
        except Exception:
            return 0

    def metrics(self):
        return urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics", timeout=5).read().decode()

    def write(self, pods, wait=True):
        before = self.published() if wait else None
        path = os.path.join(self.dir, "main.yaml")
        with open(path + ".tmp", "w") as f:
            f.write(manifests(pods))
        os.replace(path + ".tmp", path)
        if wait:
            wait_for(lambda: self.published() != before, "the new routing table")

    def published(self):
        try:
            for line in self.metrics().splitlines():
                if line.startswith("wicket_snapshot_generation "):
                    return line.split()[1]
        except Exception:
            return None

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


class Load:
    """`rate` GET requests per second from `threads` keep-alive clients; failures with the
    time they happened."""

    def __init__(self, rate=200, threads=4):
        self.rate, self.threads = rate, threads
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent, self.failed = 0, []
        self.start = time.time()

    def client(self):
        interval = self.threads / self.rate
        conn = None
        next_at = time.time()
        while not self.stop.is_set():
            next_at += interval
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=10)
                conn.request("GET", "/", headers={"Host": "a.test"})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:
                ok = False
                if conn:
                    conn.close()
                conn = None
                why = type(e).__name__
            else:
                why = None if ok else f"status {r.status}"
            with self.lock:
                self.sent += 1
                if not ok:
                    self.failed.append((time.time() - self.start, why))
            time.sleep(max(0.0, next_at - time.time()))

    def __enter__(self):
        self.workers = [threading.Thread(target=self.client) for _ in range(self.threads)]
        for w in self.workers:
            w.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for w in self.workers:
            w.join()

    def at(self):
        return time.time() - self.start

    def sleep_until(self, t):
        time.sleep(max(0.0, t - self.at()))


def report(name, load, extra=""):
    fails = load.failed
    kinds = {}
    for _, why in fails:
        kinds[why] = kinds.get(why, 0) + 1
    print(f"{name}: {load.sent} requests, {len(fails)} failed {kinds or ''}{extra}")


def rolling(work):
    pods = {i: Pod(work, 10 + i) for i in range(3)}
    state = {i: (pods[i].ip, True, True, False) for i in range(3)}
    w = Wicket(work, list(state.values()))
    with Load() as load:
        for k, i in enumerate(range(3)):
            load.sleep_until(5 + 8 * k)
            old = pods[i]
            state[i] = (old.ip, False, True, True)  # terminating, still serving
            w.write(list(state.values()))
            time.sleep(1)
            del state[i]  # removed from the slice
            w.write(list(state.values()))
            time.sleep(1)
            old.kill(signal.SIGTERM)
            new = Pod(work, 20 + i)  # the replacement
            pods[i] = new
            state[i] = (new.ip, True, True, False)
            w.write(list(state.values()))
        load.sleep_until(30)
    report("rolling replacement of 3 pods", load)
    w.stop()
    for p in pods.values():
        p.kill()


def sigkill(work):
    pods = [Pod(work, 30 + i) for i in range(3)]
    w = Wicket(work, [(p.ip, True, True, False) for p in pods])
    with Load() as load:
        load.sleep_until(5)
        pods[0].kill(signal.SIGKILL)
        load.sleep_until(10)
        w.write([(p.ip, True, True, False) for p in pods[1:]])
        load.sleep_until(30)
    report("SIGKILL of one pod of three", load)
    w.stop()
    for p in pods[1:]:
        p.kill()


def flaky(work):
    pods = [Pod(work, 40), Pod(work, 41, status=503), Pod(work, 42)]
    w = Wicket(work, [(p.ip, True, True, False) for p in pods])
    with Load() as load:
        load.sleep_until(30)
    early = sum(1 for t, _ in load.failed if t < 10)
    report("one pod of three answering 503", load,
           f"; {early} in the first 10 s, {len(load.failed) - early} after")
    ejected = [l for l in w.metrics().splitlines() if l.startswith("wicket_endpoint_ejected{")]
    print("  " + "\n  ".join(ejected))
    w.stop()
    for p in pods:
        p.kill()


def shutdown(work):
    pod = Pod(work, 60)
    w = Wicket(work, [(pod.ip, True, True, False)], "--shutdown-delay", "2s",
               "--shutdown-timeout", "5s")
    with Load() as load:
        load.sleep_until(3)
        sigterm_at = load.at()
        w.proc.send_signal(signal.SIGTERM)
        load.sleep_until(7)
    w.proc.wait(timeout=30)
    delay_end = sigterm_at + 2
    during = [(t, why) for t, why in load.failed if t < delay_end]
    after = [why for t, why in load.failed if t >= delay_end]
    refused = sum(1 for why in after if why == "ConnectionRefusedError")
    report("SIGTERM with a 2 s shutdown delay", load,
           f"; {len(during)} while wicket still served, {len(after)} after its listener closed "
           f"({refused} connection refused: no other replica here)")
    pod.kill()


def idle(work):
    raise_file_limit()
    pod = Pod(work, 50)
    w = Wicket(work, [(pod.ip, True, True, False)], "--max-connections", "10100")
    base = w.rss_kib()
    # One request on each connection, one connection at a time (a burst of 10,000
    # concurrent requests would measure the upstream pool and the allocator instead).
    idle_conns = []
    for _ in range(10_000):
        s = socket.create_connection(("127.0.0.1", HTTP))
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        s.settimeout(10)
        buf = b""
        while b"pod 50" not in buf:
            buf += s.recv(4096)
        idle_conns.append(s)
    silent = [socket.create_connection(("127.0.0.1", HTTP)) for _ in range(100)]
    time.sleep(1)
    loaded = w.rss_kib()
    waits = []
    for _ in range(50):
        t = time.time()
        c = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=10)
        c.request("GET", "/", headers={"Host": "a.test"})
        r = c.getresponse()
        r.read()
        assert r.status == 200
        waits.append((time.time() - t) * 1000)
        c.close()
    evicted = sum(float(l.split()[-1]) for l in w.metrics().splitlines()
                  if l.startswith("wicket_connections_closed_total{") and "evicted" in l)
    print(f"10,000 idle keep-alive + 100 silent connections, listener full: RSS {base / 1024:.1f} MiB before, "
          f"{loaded / 1024:.1f} MiB with them ({(loaded - base) / 10_100:.2f} KiB per connection); "
          f"a fresh client's request: median {statistics.median(waits):.2f} ms, max {max(waits):.2f} ms "
          f"({evicted:.0f} idle connections closed to make room)")
    for s in idle_conns + silent:
        s.close()
    w.stop()
    pod.kill()


def main():
    if not os.path.exists(WICKET):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    runs = {"idle": idle, "rolling": rolling, "sigkill": sigkill, "flaky": flaky,
            "shutdown": shutdown}
    for name, run in runs.items():
        if which in (name, "all"):
            with tempfile.TemporaryDirectory() as work:
                try:
                    run(work)
                finally:
                    # Whatever failed, leave no pod or wicket behind.
                    subprocess.run(["pkill", "-f", work], check=False)


if __name__ == "__main__":
    main()
