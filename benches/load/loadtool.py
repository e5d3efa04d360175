#!/usr/bin/env python3
"""Helpers for run.sh: warm a proxy with a list of paths, the miss storm
(N clients asking for one cold object at once: time to first byte, time to
last byte), and the results table (medians over rounds). Plain asyncio over
keep-alive HTTP/1.1, no third-party modules."""
import asyncio
import sys
import time


async def fetch(reader, writer, host, path):
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    first = time.monotonic()
    status = int(head.split(b" ", 2)[1])
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    n = 0
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            n += len(await reader.readexactly(size + 2)) - 2
    elif length:
        await reader.readexactly(length)
        n = length
    return status, n, first


def h2_frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def hpack_literal(index, value):
    """A literal header field without indexing, its name from the static table."""
    v = value.encode()
    assert index < 15 and len(v) < 127
    return bytes([index, len(v)]) + v


async def fetch_h2(reader, writer, host, path):
    """GET over HTTP/2 with prior knowledge (h2c): the preface, an empty SETTINGS, one
    HEADERS on stream 1; SETTINGS acknowledged; done at the stream's END_STREAM."""
    block = b"\x82\x86" + hpack_literal(4, path) + hpack_literal(1, host)
    writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0)
                 + h2_frame(1, 0x5, 1, block))
    await writer.drain()
    status, n, first = 0, 0, None
    while True:
        head = await reader.readexactly(9)
        length = int.from_bytes(head[:3], "big")
        kind, flags = head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        payload = await reader.readexactly(length)
        if kind == 4 and not flags & 1:
            writer.write(h2_frame(4, 1, 0))
            await writer.drain()
        elif kind == 6 and not flags & 1:
            writer.write(h2_frame(6, 1, 0, payload))
            await writer.drain()
        elif kind == 7:
            raise OSError("GOAWAY")
        elif stream == 1 and kind == 1:
            first = time.monotonic()
            # :status 200 is the static table's index 8.
            status = 200 if payload[:1] == b"\x88" else -1
            if flags & 1:
                return status, n, first
        elif stream == 1 and kind == 0:
            n += length
            if flags & 1:
                return status, n, first


async def warm(addr, paths, conc):
    host, port = addr.split(":")
    queue = list(reversed(paths))
    failures = 0

    async def worker():
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, int(port))
        while queue:
            p = queue.pop()
            status, _, _ = await fetch(reader, writer, addr, p)
            if status != 200:
                failures += 1
        writer.close()

    await asyncio.gather(*(worker() for _ in range(conc)))
    return failures


class _Storm(asyncio.Protocol):
    """One storm client. Times are taken in `data_received`, i.e. when the
    event loop reads the socket, not when a coroutine gets around to
    parsing: with 1,000 sockets streaming bodies into one Python process,
    coroutine wake-ups lag the wire by hundreds of milliseconds and would
    measure this client, not the proxy."""

    def __init__(self, request, done):
        self.request = request
        self.done = done
        self.first = None
        self.head = bytearray()
        self.status = 0
        self.length = None
        self.chunked = False
        self.n = 0
        # chunked decoding state: bytes left in the chunk, pending line
        self.left = 0
        self.line = bytearray()
        self.skip = 0

    def connection_made(self, transport):
        self.transport = transport

    def send(self):
        self.transport.write(self.request)

    def data_received(self, data):
        if self.first is None:
            self.first = time.monotonic()
        if self.status == 0:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = bytes(self.head[:end]), bytes(self.head[end + 4:])
            self.status = int(head.split(b" ", 2)[1])
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    self.length = int(v.strip())
                elif k == b"transfer-encoding" and b"chunked" in v.lower():
                    self.chunked = True
        if self.chunked:
            self._chunks(memoryview(data))
        else:
            self.n += len(data)
            if self.length is not None and self.n >= self.length:
                self._finish()

    def _chunks(self, mv):
        i = 0
        while i < len(mv) and not self.done.done():
            if self.skip:  # CRLF after a chunk's data
                k = min(self.skip, len(mv) - i)
                self.skip -= k
                i += k
            elif self.left:
                k = min(self.left, len(mv) - i)
                self.left -= k
                self.n += k
                i += k
                if self.left == 0:
                    self.skip = 2
            else:
                j = bytes(mv[i:]).find(b"\n")
                if j < 0:
                    self.line += mv[i:]
                    return
                self.line += mv[i:i + j + 1]
                i += j + 1
                size = int(bytes(self.line).strip().split(b";")[0], 16)
                self.line = bytearray()
                if size == 0:
                    self._finish()  # trailers, if any, are not awaited
                else:
                    self.left = size

    def _finish(self):
        if not self.done.done():
            self.done.set_result(time.monotonic())

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(time.monotonic())


async def storm(addr, path, clients):
    host, port = addr.split(":")
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n".encode()
    probes = []
    for _ in range(clients):
        done = loop.create_future()
        _, p = await loop.create_connection(lambda d=done: _Storm(request, d), host, int(port))
        probes.append(p)
    start = time.monotonic()
    for p in probes:
        p.send()
    ends = await asyncio.gather(*(p.done for p in probes))
    for p in probes:
        p.transport.close()
    ttfb = sorted((p.first or e) - start for p, e in zip(probes, ends))
    done = sorted(e - start for e in ends)
    ok = sum(1 for p in probes if p.status == 200 and
             (p.length is None or p.n == p.length))
    size = max(p.n for p in probes)

    def pct(v, q):
        return v[min(len(v) - 1, int(q * len(v)))]

    print(f"ok={ok} size={size} ttfb_p50_ms={pct(ttfb, .5) * 1000:.1f} "
          f"ttfb_p99_ms={pct(ttfb, .99) * 1000:.1f} done_p50_ms={pct(done, .5) * 1000:.1f} "
          f"done_p99_ms={pct(done, .99) * 1000:.1f}")


async def idle(addr, path, n, per_ip, conc, h2=False, tls=False):
    """Opens n keep-alive connections (up to per_ip from each of 127.0.0.2, .3, ...),
    over TLS (HTTP/1.1 by ALPN, the certificate not checked) when `tls`,
    sends one request on each, and keeps them open and silent. Prints the time from
    connect to the whole first answer (p50, p99, max), then 'ready', then waits for a
    line on stdin before it closes them."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < n + 64:
        sys.exit(f"idle: {n} connections need {n + 64} open files; the hard limit is {hard}")
    host, port = addr.split(":")
    conns = []
    lat = []
    failed = 0
    sem = asyncio.Semaphore(conc)
    ctx = None
    if tls:
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])

    async def one(i):
        nonlocal failed
        src = f"127.0.0.{2 + i // per_ip}"
        async with sem:
            t0 = time.monotonic()
            try:
                r, w = await asyncio.open_connection(
                    host, int(port), local_addr=(src, 0), ssl=ctx,
                    server_hostname="bench.test" if tls else None)
                status, _, _ = await (fetch_h2 if h2 else fetch)(r, w, addr, path)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                failed += 1
                return
            if status != 200:
                failed += 1
            lat.append(time.monotonic() - t0)
            conns.append((r, w))

    await asyncio.gather(*(one(i) for i in range(n)))
    lat.sort()

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    print(f"open={len(conns)} failed={failed} first_p50_ms={pct(.5):.2f} "
          f"first_p99_ms={pct(.99):.2f} first_max_ms={pct(1):.2f}", flush=True)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    # Still open? A connection the proxy closed reads EOF at once.
    alive = 0
    for r, w in conns:
        try:
            await asyncio.wait_for(r.read(1), 0.001)
        except asyncio.TimeoutError:
            alive += 1
        w.close()
    print(f"alive={alive}", flush=True)


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def table(raw_path):
    """Rows of `scenario|proxy|round|req/s|p50|p99|cpu|rss|errors[|steal[|probe[|busy[|memcpy[|user]]]]]`
    (one per wrk run) -> one markdown row per scenario and proxy: the median
    of each column over the rounds, the req/s range, the peak RSS, any
    errors, req/s as a ratio to Outpost's median, the same ratio taken round
    by round (median and range: each round runs the proxies back to back, so
    this pairs runs seconds apart and cancels the host's slower drifts), the
    largest share of CPU time the host stole from the VM in any round, the
    worst host probes around any round (pipe µs: the highest; memcpy GB/s:
    the lowest), and the median busy share of CPU 0 and CPU 1 (`b0/b1`)."""
    runs = {}
    order = []
    for line in open(raw_path):
        f = line.rstrip("\n").split("|")
        if len(f) < 9:
            continue
        key = (f[0], f[1])
        if key not in runs:
            runs[key] = []
            order.append(key)
        runs[key].append(f)

    def num(x):
        try:
            return float(x)
        except ValueError:
            return None

    med = {}
    for key, rs in runs.items():
        cols = {}
        for i, name in ((3, "rps"), (4, "p50"), (5, "p99"), (6, "cpu"), (7, "rss"), (9, "steal"), (10, "probe"), (12, "mem"), (13, "user")):
            vals = [v for v in (num(r[i]) for r in rs if len(r) > i) if v is not None]
            cols[name] = vals
        busy = [r[11].split("/") for r in rs if len(r) > 11 and "/" in r[11]]
        cols["busy0"] = [v for v in (num(b[0]) for b in busy) if v is not None]
        cols["busy1"] = [v for v in (num(b[1]) for b in busy) if v is not None]
        med[key] = cols
    print("| scenario | proxy | req/s (median) | req/s range | p50 ms | p99 ms "
          "| CPU µs/req | user µs/req | peak RSS MiB | req/s vs Outpost | same round: median (range) "
          "| errors | steal % (max) | pipe probe µs (max) | memcpy GB/s (min) | CPU 0/1 busy % |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|")

    def by_round(key):
        return {r[2]: v for r in runs.get(key, []) if (v := num(r[3])) is not None}

    for key in order:
        scen, px = key
        c = med[key]
        rps = median(c["rps"]) if c["rps"] else 0
        base = med.get((scen, "outpost"), {}).get("rps")
        ratio = f"{rps / median(base):.2f}×" if base and median(base) > 0 else "-"
        rng = f"{min(c['rps']):.0f}–{max(c['rps']):.0f}" if c["rps"] else "-"
        mine, ours = by_round(key), by_round((scen, "outpost"))
        paired = [mine[r] / ours[r] for r in mine if r in ours and ours[r] > 0]
        same_round = (f"{median(paired):.2f}× ({min(paired):.2f}–{max(paired):.2f})"
                      if paired and px != "outpost" else "-")
        errs = " ".join(sorted({r[8].strip() for r in runs[key] if r[8].strip()}))
        fmt = lambda name, spec: format(median(c[name]), spec) if c[name] else "-"
        print(f"| {scen} | {px} | {rps:.0f} | {rng} | {fmt('p50', '.3f')} | "
              f"{fmt('p99', '.3f')} | {fmt('cpu', '.1f')} | {fmt('user', '.1f')} | "
              f"{max(c['rss']) if c['rss'] else 0:.0f} | {ratio} | {same_round} | {errs} | "
              f"{format(max(c['steal']), '.1f') if c['steal'] else '-'} | "
              f"{format(max(c['probe']), '.2f') if c['probe'] else '-'} | "
              f"{format(min(c['mem']), '.1f') if c['mem'] else '-'} | "
              f"{fmt('busy0', '.0f')}/{fmt('busy1', '.0f')} |")


def main():
    cmd = sys.argv[1]
    if cmd == "table":
        table(sys.argv[2])
        return
    if cmd == "warm":
        addr, prefix, count, conc = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        paths = [f"{prefix}{i}.bin" for i in range(count)] if count > 0 else [prefix]
        failures = asyncio.run(warm(addr, paths, conc))
        if failures:
            print(f"warm: {failures} failures", file=sys.stderr)
            sys.exit(1)
    elif cmd == "idle":
        # idle ADDR PATH N [PER_IP] [CONCURRENCY] [h1|h2|h1tls]
        per_ip = int(sys.argv[5]) if len(sys.argv) > 5 else 20000
        conc = int(sys.argv[6]) if len(sys.argv) > 6 else 256
        proto = sys.argv[7] if len(sys.argv) > 7 else "h1"
        asyncio.run(idle(sys.argv[2], sys.argv[3], int(sys.argv[4]), per_ip, conc,
                         proto == "h2", proto == "h1tls"))
    elif cmd == "storm":
        asyncio.run(storm(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif cmd == "gen":
        # gen DIR NAME SIZE: a file of SIZE pseudo-random bytes
        import os
        d, name, size = sys.argv[2], sys.argv[3], int(sys.argv[4])
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "wb") as f:
            f.write(os.urandom(size))
    elif cmd == "genset":
        # genset DIR COUNT SIZE: COUNT files 0.bin .. of SIZE bytes each
        import os
        d, count, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        os.makedirs(d, exist_ok=True)
        blob = os.urandom(size + 4096)
        for i in range(count):
            p = os.path.join(d, f"{i}.bin")
            if not os.path.exists(p) or os.path.getsize(p) != size:
                with open(p, "wb") as f:
                    off = i % 4096
                    f.write(blob[off:off + size])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
