#!/usr/bin/env python3
"""A loopback fleet: nats-server -js, one shield and four edges in front of
an origin that counts its fetches. Drives a Zipf workload over 10,000
objects through all edges, with and without the shield tier, measures purge
propagation (publish to applied on every node), then stops one edge, sends
1,000 purges, starts it again and measures its catch-up.

Usage: cluster.py --outpost target/release/outpost [--requests 40000]
"""

import argparse
import bisect
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "cluster.example"
OBJECTS = 10_000
BODY = b"x" * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15.0):
    t = time.time()
    while time.time() - t < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port} after {timeout} s")


class Origin:
    """Answers every GET with 1 KiB, cacheable for an hour; counts fetches."""

    def __init__(self):
        self.counts = {}
        self.lock = threading.Lock()
        origin = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One write per response, sent at once (no Nagle and delayed-ACK
            # stall between head and body).
            disable_nagle_algorithm = True

            def do_GET(self):
                with origin.lock:
                    origin.counts[self.path] = origin.counts.get(self.path, 0) + 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                self.send_header("Cache-Control", "max-age=3600")
                self.end_headers()
                self.wfile.write(BODY)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self):
        with self.lock:
            self.counts = {}

    def fetches(self, paths=None):
        with self.lock:
            if paths is None:
                return sum(self.counts.values()), len(self.counts)
            return sum(self.counts.get(p, 0) for p in paths), len(paths)


class Node:
    def __init__(self, binary, name, root, origin_port, cluster):
        self.binary, self.name = binary, name
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.proxy, self.admin = free_port(), free_port()
        self.config = os.path.join(self.dir, "outpost.toml")
        with open(self.config, "w") as f:
            f.write(
                f'[listen]\nproxy = "127.0.0.1:{self.proxy}"\nadmin = "127.0.0.1:{self.admin}"\n'
                f'[storage]\npath = "{self.dir}/cache"\nmemory = "64MiB"\ndisk = "256MiB"\n'
                f'[log]\naccess_log = false\n[admin]\ntoken = "bench"\n'
                f'[cluster]\nnode = "{name}"\n{cluster}\n'
                f'[[site]]\nname = "default"\norigins = ["http://127.0.0.1:{origin_port}"]\n'
            )
        self.proc = None
        self.conn = {}

    def start(self):
        log = open(os.path.join(self.dir, "outpost.log"), "a")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", self.config],
            stdout=log,
            stderr=log,
            env={**os.environ, "RUST_LOG": "info"},
        )
        wait_port(self.proxy)
        wait_port(self.admin)

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
            self.proc = None
        self.conn = {}

    def _conn(self, port):
        key = (threading.get_ident(), port)
        c = self.conn.get(key)
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            self.conn[key] = c
        return c

    def request(self, port, method, path, body=None, headers=None):
        for attempt in range(2):
            c = self._conn(port)
            try:
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                data = r.read()
                return r.status, r.getheader("cache-status") or "", data
            except (http.client.HTTPException, OSError):
                c.close()
                self.conn.pop((threading.get_ident(), port), None)
                if attempt:
                    raise

    def get(self, path):
        return self.request(self.proxy, "GET", path, headers={"Host": HOST})

    def stats(self):
        _, _, b = self.request(self.admin, "GET", "/stats")
        return json.loads(b)

    def purge(self, paths):
        body = json.dumps({"urls": [f"http://{HOST}{p}" for p in paths]})
        s, _, b = self.request(
            self.admin,
            "POST",
            "/purge",
            body=body,
            headers={"Authorization": "Bearer bench", "Content-Type": "application/json"},
        )
        if s != 200:
            raise SystemExit(f"purge on {self.name}: {s} {b!r}")
        return json.loads(b)


def zipf_sampler(n, s=1.0, seed=7):
    weights = [1.0 / (k**s) for k in range(1, n + 1)]
    cdf, total = [], 0.0
    for w in weights:
        total += w
        cdf.append(total)
    rng = random.Random(seed)
    return lambda: bisect.bisect_left(cdf, rng.random() * total)


def drive(edges, requests, threads=16):
    """Zipf GETs spread over the edges; returns (errors, edge hits)."""
    sample = zipf_sampler(OBJECTS)
    paths = [f"/obj/{sample()}" for _ in range(requests)]
    errors, hits = [0], [0]
    lock = threading.Lock()

    def worker(i):
        e, h = 0, 0
        for j in range(i, requests, threads):
            edge = edges[j % len(edges)]
            s, cs, _ = edge.get(paths[j])
            if s != 200:
                e += 1
            # The last member is the edge's own (RFC 9211 §2).
            if cs.split(", ")[-1].split(";")[1:2] == [" hit"]:
                h += 1
        with lock:
            errors[0] += e
            hits[0] += h

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    seen = {}
    for j, p in enumerate(paths):
        seen.setdefault(p, set()).add(j % len(edges))
    everywhere = [p for p, e in seen.items() if len(e) == len(edges)]
    return errors[0], hits[0], len(seen), everywhere


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--outpost", required=True)
    ap.add_argument("--requests", type=int, default=40_000)
    ap.add_argument("--purges", type=int, default=200)
    ap.add_argument("--missed", type=int, default=1_000)
    a = ap.parse_args()
    nats_bin = shutil.which("nats-server") or "/usr/sbin/nats-server"
    root = tempfile.mkdtemp(prefix="outpost-cluster-")
    procs = []
    try:
        nats_port = free_port()
        nats = subprocess.Popen(
            [nats_bin, "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", f"{root}/nats"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(nats)
        wait_port(nats_port)
        origin = Origin()
        nats_line = f'nats = ["nats://127.0.0.1:{nats_port}"]\ncatch_up_timeout = "10s"'

        # Without the shield tier: four edges, each on its own.
        plain = [Node(a.outpost, f"plain-{i}", root, origin.port, "") for i in range(4)]
        for n in plain:
            n.start()
        errors, hits, distinct, everywhere = drive(plain, a.requests)
        total, objs = origin.fetches()
        hot, nhot = origin.fetches(everywhere)
        print(f"without shields: {a.requests} requests, {distinct} objects, errors {errors}, "
              f"edge hit ratio {hits / a.requests:.3f}, origin fetches per object "
              f"{total / objs:.3f} ({hot / nhot:.3f} for the {nhot} objects asked at all 4 edges)")
        for n in plain:
            n.stop()
        origin.reset()

        # With it: one shield, four edges, purges on NATS.
        shield = Node(a.outpost, "shield", root, origin.port, f'tier = "shield"\n{nats_line}')
        shield.start()
        shields = f'shields = [{{ name = "shield", url = "http://127.0.0.1:{shield.proxy}" }}]'
        edges = [Node(a.outpost, f"edge-{i}", root, origin.port, f"{nats_line}\n{shields}")
                 for i in range(4)]
        for n in edges:
            n.start()
        s0 = shield.stats()
        errors, hits, distinct, everywhere = drive(edges, a.requests)
        total, objs = origin.fetches()
        hot, nhot = origin.fetches(everywhere)
        s1 = shield.stats()
        sh_hits = s1["hits"] - s0["hits"]
        sh_all = sh_hits + s1["misses"] - s0["misses"]
        with_ = total / objs
        print(f"with the shield: {a.requests} requests, {distinct} objects, errors {errors}, "
              f"edge hit ratio {hits / a.requests:.3f}, shield hit ratio "
              f"{sh_hits / max(sh_all, 1):.3f}, origin fetches per object {with_:.3f} "
              f"({hot / nhot:.3f} for the {nhot} objects asked at all 4 edges)")

        # Purge propagation: publish on one node, applied on all five.
        nodes = edges + [shield]
        times = []
        for i in range(a.purges):
            t0 = time.perf_counter()
            seq = nodes[i % 5].purge([f"/obj/{i}"])["seq"]
            left = list(nodes)
            while left:
                left = [n for n in left if n.stats()["fleet"]["applied_seq"] < seq]
            times.append((time.perf_counter() - t0) * 1000)
        print(f"purge propagation to 5 nodes over {a.purges} purges: "
              f"p50 {pct(times, 50):.1f} ms, p99 {pct(times, 99):.1f} ms")

        # Catch-up: edge-3 down while 1,000 of its objects are purged.
        down = edges[3]
        mine = [f"/own/{i}" for i in range(a.missed)]
        for p in mine:
            down.get(p)
        cached = sum(1 for p in mine if " hit" in down.get(p)[1])
        down.stop()
        for i in range(0, len(mine), 1):
            edges[i % 3].purge([mine[i]])
        t0 = time.perf_counter()
        down.start()
        up = (time.perf_counter() - t0) * 1000
        served_from_cache = sum(1 for p in mine if " hit" in down.get(p)[1].split(", ")[-1])
        wall = (time.perf_counter() - t0) * 1000
        f = down.stats()["fleet"]
        print(f"catch-up: {f['last_catch_up_purges']} purges applied in {f['last_catch_up_ms']} ms "
              f"after the restart ({cached} of {a.missed} objects were cached before; "
              f"{served_from_cache} served from the cache afterwards; process start to listening "
              f"{up:.0f} ms, then the 1,000 GETs done at {wall:.0f} ms; hits served past the "
              f"deadline: {f['late_hits']})")
        for n in edges + [shield]:
            n.stop()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
