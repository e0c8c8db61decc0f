"""python -m benchmarks --fetch: cpoplib's fetch(), fetch_into() and the
GIL-released copy, against the floor of a bare recv_into() loop.

The server is the benchmarks' usual one (cpoplib._server in another
process, benchmarks/_serverproc.py).  Messages are made of a 1 MiB block
(cpoplib._server.make_mailbox text: ~70-byte CRLF lines, dot-led and
8-bit lines) repeated, so a 1 GiB message is cheap to make.

Groups, each in alternating rounds (A B C A B C ...), medians with the
spread (min-max); connecting and logging in are not timed:

* ``4 MiB`` and ``100 MiB``: ``fetch(1)``, ``fetch_into(1, null sink)``,
  cpoplib and stdlib ``retr(1)`` (for context), and the floor: a raw
  socket client that sends ``RETR 1`` and ``recv_into()``\\ s the reply
  into one buffer of the reply's size until it ends in ``\\r\\n.\\r\\n``
  (no parsing, no unstuffing), with that buffer allocated once (reused
  across rounds: the floor) and allocated afresh each run (what a
  client that must return a new object at least pays).
* ``1 GiB``: ``fetch_into(1, null sink)`` against a streaming floor
  (``recv_into()`` into a reused 1 MiB buffer); peak RSS of each in a
  fresh process (benchmarks/_fetchprobe.py, the method of _memprobe.py).
* ``threads``: 32 messages of 4 MiB, fetched by 1 thread on 1 connection
  against 2 threads on 2 connections (16 each), with fetch(), retr() and
  the raw floor; the server process serves both connections.
"""

import argparse
import gc
import hashlib
import json
import subprocess
import sys
import threading
import time

from . import runner
from . import workloads as W
from .dovecot import TERMINATOR, RawClient

MiB = 1 << 20
SEED = 7

TARGET_FETCH_VS_FLOOR = 1.15
TARGET_RSS_KIB = 16 * 1024
TARGET_THREADS = 1.6

MAILBOXES = {
    "f4": dict(kind="repeat", count=1, blocks=4, seed=SEED),
    "f100": dict(kind="repeat", count=1, blocks=100, seed=SEED),
    "f1g": dict(kind="repeat", count=1, blocks=1024, seed=SEED),
    "thr": dict(kind="repeat", count=32, blocks=4, seed=SEED),
}


class NullSink:
    """fetch_into()'s target: counts and drops."""

    def __init__(self):
        self.n = 0

    def write(self, data):
        n = len(data)
        self.n += n
        return n


class HashSink:
    def __init__(self):
        self.h = hashlib.sha256()

    def write(self, data):
        self.h.update(data)
        return len(data)


class Expected:
    """Length and digest of a repeat message (as fetch() returns it) and
    the length of its RETR reply on the wire, without building it."""

    def __init__(self, blocks):
        from cpoplib._server import render_wire
        block = W.repeat_block(MiB, SEED)
        self.blocks = blocks
        h = hashlib.sha256()
        for _ in range(blocks):
            h.update(block)
        self.length = len(block) * blocks
        self.sha = h.hexdigest()
        stuffed = render_wire(block)[:-3]         # without ".\r\n"
        self.wire = (len(b"+OK %d octets\r\n" % self.length)
                     + len(stuffed) * blocks + 3)


# --------------------------------------------------------------------------
# floors

def floor_contiguous(client, which, buf):
    """RETR into buf (at least the reply's size); returns bytes read."""
    sock = client.sock
    sock.sendall(b"RETR %d\r\n" % which)
    mv = memoryview(buf)
    recv_into = sock.recv_into
    pos = 0
    while True:
        got = recv_into(mv[pos:])
        if not got:
            raise EOFError("server closed the connection")
        pos += got
        if pos >= 5 and mv[pos - 5:pos] == TERMINATOR:
            return pos


def floor_stream(client, which, buf):
    """RETR through a reused buffer (any size): bytes read."""
    sock = client.sock
    sock.sendall(b"RETR %d\r\n" % which)
    mv = memoryview(buf)
    recv_into = sock.recv_into
    total = 0
    tail = b""
    while True:
        got = recv_into(mv)
        if not got:
            raise EOFError("server closed the connection")
        total += got
        if got >= 5:
            if mv[got - 5:got] == TERMINATOR:
                return total
        else:
            tail = (tail + bytes(mv[:got]))[-5:]
            if tail == TERMINATOR:
                return total
            continue
        tail = bytes(mv[got - 5:got])


# --------------------------------------------------------------------------
# clients

class Conn:
    def __init__(self, port):
        self.port = port

    def pop3(self, module):
        c = module.POP3("127.0.0.1", self.port, timeout=300)
        c.user("bench")
        c.pass_("bench")
        return c

    def raw(self):
        import socket
        client = RawClient(socket.create_connection(("127.0.0.1", self.port),
                                                    timeout=300))
        client.login("bench", "bench")
        return client


def single_clients(exp, reused):
    """(label, kind, run(conn) -> (nbytes, digest or None)) for one message."""
    import poplib
    import cpoplib

    def fetch(c):
        data = c.fetch(1)
        return len(data), data

    def fetch_into(c):
        sink = NullSink()
        n = c.fetch_into(1, sink)
        assert n == sink.n
        return n, None

    def retr(c):
        r = c.retr(1)
        return r[2], r[1]

    def floor_reused(c):
        return floor_contiguous(c, 1, reused), None

    def floor_fresh(c):
        return floor_contiguous(c, 1, bytearray(exp.wire)), None

    return [
        ("recv_into floor (reused buffer)", "raw", None, floor_reused),
        ("recv_into floor (fresh buffer)", "raw", None, floor_fresh),
        ("cpoplib fetch()", "pop3", cpoplib, fetch),
        ("cpoplib fetch_into(null)", "pop3", cpoplib, fetch_into),
        ("cpoplib retr()", "pop3", cpoplib, retr),
        ("stdlib retr()", "pop3", poplib, retr),
    ]


def connect(port, kind, module):
    conn = Conn(port)
    return conn.raw() if kind == "raw" else conn.pop3(module)


def verify_single(port, exp, clients, log):
    import cpoplib
    c = Conn(port).pop3(cpoplib)
    try:
        data = c.fetch(1)
        assert len(data) == exp.length, (len(data), exp.length)
        assert hashlib.sha256(data).hexdigest() == exp.sha
        del data
        sink = HashSink()
        assert c.fetch_into(1, sink) == exp.length
        assert sink.h.hexdigest() == exp.sha
    finally:
        c.quit()
    for label, kind, module, run in clients:
        conn = connect(port, kind, module)
        n, data = run(conn)
        conn.quit()
        if kind == "raw":
            assert n == exp.wire, (label, n, exp.wire)
        elif isinstance(data, list):                  # retr lines
            h = hashlib.sha256()
            for line in data:
                h.update(line)
                h.update(b"\r\n")
            assert h.hexdigest() == exp.sha, label
        elif data is not None:
            assert hashlib.sha256(data).hexdigest() == exp.sha, label
        else:
            assert n == exp.length, (label, n)
        del data
    log.write("  verified: %d bytes, sha256 %s...; reply %d bytes on the "
              "wire\n" % (exp.length, exp.sha[:16], exp.wire))


def rounds_single(port, clients, rounds, log, name):
    out = {label: {"times": []} for label, _, _, _ in clients}
    for r in range(rounds):
        for label, kind, module, run in clients:
            conn = connect(port, kind, module)
            gc.collect()
            t0 = time.perf_counter()
            res = run(conn)
            elapsed = time.perf_counter() - t0
            del res
            conn.quit()
            out[label]["times"].append(elapsed)
        log.write("  %s round %d/%d\n" % (name, r + 1, rounds))
    return runner.summarize(out)


# ---- threads ----

def thread_clients():
    import cpoplib

    def fetch(c, numbers):
        return sum(len(c.fetch(n)) for n in numbers)

    def retr(c, numbers):
        return sum(c.retr(n)[2] for n in numbers)

    buf_size = 8 * MiB

    def floor(c, numbers):
        buf = bytearray(buf_size)
        return sum(floor_contiguous(c, n, buf) for n in numbers)

    return [("fetch()", "pop3", cpoplib, fetch),
            ("retr()", "pop3", cpoplib, retr),
            ("recv_into floor", "raw", None, floor)]


def run_threads(port, kind, module, func, numbers, nthreads):
    """Seconds for nthreads threads, each on its own connection, to
    fetch their share of numbers (connections made before timing)."""
    shares = [numbers[i::nthreads] for i in range(nthreads)]
    conns = [connect(port, kind, module) for _ in range(nthreads)]
    results = [None] * nthreads
    errors = []
    if nthreads == 1:
        gc.collect()
        t0 = time.perf_counter()
        results[0] = func(conns[0], shares[0])
        elapsed = time.perf_counter() - t0
    else:
        barrier = threading.Barrier(nthreads + 1)

        def work(i):
            try:
                barrier.wait()
                results[i] = func(conns[i], shares[i])
            except BaseException as exc:        # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,))
                   for i in range(nthreads)]
        for t in threads:
            t.start()
        gc.collect()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    for c in conns:
        c.quit()
    if errors:
        raise errors[0]
    return elapsed, sum(results)


def rounds_threads(port, count, rounds, log):
    numbers = list(range(1, count + 1))
    out = {}
    clients = thread_clients()
    ref = {}
    for label, kind, module, func in clients:          # warm-up, check
        for nt in (1, 2):
            _, nbytes = run_threads(port, kind, module, func, numbers, nt)
            ref.setdefault(label, nbytes)
            assert nbytes == ref[label], (label, nt, nbytes, ref[label])
    for r in range(rounds):
        for label, kind, module, func in clients:
            for nt in (1, 2):
                key = "%s, %d thread%s" % (label, nt, "s" if nt > 1 else "")
                elapsed, _ = run_threads(port, kind, module, func, numbers,
                                         nt)
                out.setdefault(key, {"times": []})["times"].append(elapsed)
        log.write("  threads round %d/%d\n" % (r + 1, rounds))
    return runner.summarize(out), ref


# ---- peak RSS ----

def probe(port, what, log):
    cmd = [sys.executable, "-m", "benchmarks._fetchprobe", what,
           "--port", str(port)]
    proc = subprocess.run(cmd, cwd=runner.ROOT, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        log.write(proc.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# report

fmt_s = runner.fmt_time


def row(label, d, nbytes, ref=None):
    cells = [label, "%s (%s–%s)" % (fmt_s(d["median"]), fmt_s(d["min"]),
                                     fmt_s(d["max"])),
             runner.fmt_mbs(nbytes, d["median"])]
    cells.append("%.2f" % (d["median"] / ref) if ref else "—")
    return "| " + " | ".join(cells) + " |"


def markdown(report):
    lines = [runner.header_line(report["machine"]), "",
             "Fetch mode: in-memory server (cpoplib._server) in another "
             "process, messages of a repeated 1 MiB block; alternating "
             "rounds (%d; 1 GiB: %d), medians with (min–max); MB/s in 10^6 "
             "bytes of message data; ÷ floor = median ÷ the reused-buffer "
             "recv_into floor's median (1 GiB: the streaming floor's)."
             % (report["rounds"], report["rounds_1g"])]
    targets = []
    for name in ("4 MiB", "100 MiB", "1 GiB"):
        res = report["results"].get(name)
        if not res:
            continue
        nbytes = report["sizes"][name]
        floor_key = ("recv_into floor (reused buffer)" if name != "1 GiB"
                     else "recv_into floor (1 MiB buffer)")
        ref = res[floor_key]["median"]
        lines += ["", "%s message:" % name, "",
                  "| client | median (min–max) | MB/s | ÷ floor |",
                  "|---|--:|--:|--:|"]
        for label, d in res.items():
            lines.append(row(label, d, nbytes, ref))
        if name == "100 MiB":
            f = res["cpoplib fetch()"]["median"] / ref
            targets.append("fetch() of 100 MiB: %.2f× the recv_into floor "
                           "(target ≤ %.2f×: %s); %.2f× the fresh-buffer "
                           "floor" % (
                               f, TARGET_FETCH_VS_FLOOR,
                               "met" if f <= TARGET_FETCH_VS_FLOOR
                               else "MISSED",
                               res["cpoplib fetch()"]["median"]
                               / res["recv_into floor (fresh buffer)"]
                               ["median"]))
    mem = report.get("memory")
    if mem:
        lines += ["", "Peak RSS, fresh process, one run (VmHWM after "
                  "resetting it, minus RSS before):", "",
                  "| what | peak − before | time | bytes |",
                  "|---|--:|--:|--:|"]
        for what, p in mem.items():
            if p is None:
                lines.append("| %s | probe failed | | |" % what)
                continue
            lines.append("| %s | %s | %s | %s |" % (
                what, runner.fmt_mem(p["delta_kib"]), fmt_s(p["elapsed"]),
                "{:,}".format(p["nbytes"])))
        p = mem.get("fetch_into 1 GiB (null sink)")
        if p:
            targets.append("fetch_into() of 1 GiB: peak RSS + %s (target ≤ "
                           "+16 MiB: %s)" % (
                               runner.fmt_mem(p["delta_kib"]),
                               "met" if p["delta_kib"] <= TARGET_RSS_KIB
                               else "MISSED"))
    thr = report.get("threads")
    if thr:
        nbytes = report["threads_bytes"]
        lines += ["", "Threads: %d messages of 4 MiB (%s bytes of message "
                  "data in all), 1 thread on 1 connection vs 2 threads on 2 "
                  "connections (half each); speed-up = 1-thread median ÷ "
                  "2-thread median:" % (report["threads_count"],
                                        "{:,}".format(nbytes)), "",
                  "| client | 1 thread median (min–max) | 2 threads median "
                  "(min–max) | speed-up | 2-thread MB/s |",
                  "|---|--:|--:|--:|--:|"]
        for label in ("fetch()", "retr()", "recv_into floor"):
            one = thr["%s, 1 thread" % label]
            two = thr["%s, 2 threads" % label]
            lines.append("| %s | %s (%s–%s) | %s (%s–%s) | %.2f× | %s |" % (
                label, fmt_s(one["median"]), fmt_s(one["min"]),
                fmt_s(one["max"]), fmt_s(two["median"]), fmt_s(two["min"]),
                fmt_s(two["max"]), one["median"] / two["median"],
                runner.fmt_mbs(nbytes, two["median"])))
        s = (thr["fetch(), 1 thread"]["median"]
             / thr["fetch(), 2 threads"]["median"])
        targets.append("2 threads × 2 connections: %.2f× one thread "
                       "(target ≥ %.1f×: %s)" % (
                           s, TARGET_THREADS,
                           "met" if s >= TARGET_THREADS else "MISSED"))
    lines += [""] + ["Targets: " + t for t in targets]
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# main

GROUPS = ("4mib", "100mib", "1gib", "threads")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks --fetch",
        description="fetch()/fetch_into() against a bare recv_into loop, "
                    "fetch_into() of 1 GiB with its peak RSS, 2 threads vs "
                    "1 (in-memory server in another process).")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--rounds-1g", type=int, default=5)
    p.add_argument("--only", default=",".join(GROUPS),
                   help="comma-separated subset of: " + ", ".join(GROUPS))
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-RSS processes")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--markdown", metavar="PATH")
    a = p.parse_args(argv)
    a.only = [g.strip() for g in a.only.split(",") if g.strip()]
    if not set(a.only) <= set(GROUPS):
        p.error("--only: choose from " + ", ".join(GROUPS))
    return a


def main(argv=None):
    args = parse_args(argv)
    log = sys.stderr
    t_start = time.perf_counter()
    import cpoplib
    if not hasattr(cpoplib.POP3, "fetch_into"):
        log.write("benchmarks --fetch: this cpoplib has no fetch_into()\n")
        return 2
    info = runner.machine_info()
    info["cpoplib"] = getattr(cpoplib, "__version__", None)
    report = {"machine": info, "mode": "fetch", "rounds": args.rounds,
              "rounds_1g": args.rounds_1g, "argv": sys.argv[1:],
              "results": {}, "sizes": {}, "notes": [],
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    wanted = {"4mib": ["f4"], "100mib": ["f100"], "1gib": ["f1g"],
              "threads": ["thr"]}
    boxes = sorted({b for g in args.only for b in wanted[g]})
    spec = {"mailboxes": {b: MAILBOXES[b] for b in boxes},
            "servers": [{"name": b, "mailbox": b, "tls": False}
                        for b in boxes]}
    log.write("starting server process (mailboxes: %s)...\n"
              % ", ".join(boxes))
    server = runner.ServerProcess(spec)
    ports = server.ports
    try:
        for group, box, name in (("4mib", "f4", "4 MiB"),
                                 ("100mib", "f100", "100 MiB")):
            if group not in args.only:
                continue
            exp = Expected(MAILBOXES[box]["blocks"])
            reused = bytearray(exp.wire)
            clients = single_clients(exp, reused)
            log.write("%s:\n" % name)
            verify_single(ports[box], exp, clients, log)
            report["sizes"][name] = exp.length
            report["results"][name] = rounds_single(
                ports[box], clients, args.rounds, log, name)
            del reused
        if "1gib" in args.only:
            import cpoplib
            exp = Expected(MAILBOXES["f1g"]["blocks"])
            log.write("1 GiB:\n")
            c = Conn(ports["f1g"]).pop3(cpoplib)
            sink = HashSink()
            assert c.fetch_into(1, sink) == exp.length
            assert sink.h.hexdigest() == exp.sha
            c.quit()
            buf = bytearray(MiB)

            def stream(conn):
                return floor_stream(conn, 1, buf), None

            def into(conn):
                return conn.fetch_into(1, NullSink()), None
            clients = [("recv_into floor (1 MiB buffer)", "raw", None, stream),
                       ("cpoplib fetch_into(null)", "pop3", cpoplib, into)]
            for label, kind, module, run in clients:      # check
                conn = connect(ports["f1g"], kind, module)
                n, _ = run(conn)
                conn.quit()
                assert n == (exp.wire if kind == "raw" else exp.length), \
                    (label, n)
            log.write("  verified: %d bytes, sha256 %s...\n"
                      % (exp.length, exp.sha[:16]))
            report["sizes"]["1 GiB"] = exp.length
            report["results"]["1 GiB"] = rounds_single(
                ports["f1g"], clients, args.rounds_1g, log, "1 GiB")
            if not args.no_memory:
                log.write("  peak RSS probes...\n")
                report["memory"] = {
                    "fetch_into 1 GiB (null sink)": probe(
                        ports["f1g"], "fetch_into", log),
                    "recv_into floor 1 GiB (1 MiB buffer)": probe(
                        ports["f1g"], "floor", log),
                }
        if "threads" in args.only:
            log.write("threads:\n")
            count = MAILBOXES["thr"]["count"]
            thr, ref = rounds_threads(ports["thr"], count, args.rounds, log)
            report["threads"] = thr
            report["threads_count"] = count
            exp = Expected(MAILBOXES["thr"]["blocks"])
            report["threads_bytes"] = exp.length * count
    finally:
        server.stop()
    report["notes"].append("Run: python -m benchmarks --fetch %s" % " ".join(
        argv if argv is not None else sys.argv[1:]))
    report["elapsed_s"] = time.perf_counter() - t_start
    runner.emit_report(report, markdown(report), args, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
