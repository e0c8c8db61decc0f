"""python -m benchmarks --aio: cpoplib.aio's three targets (issue 23).

1. Concurrent sessions: --sessions (1000) sessions, each connect, USER/
   PASS, STAT, fetch_many() of its --session-messages (20) messages,
   QUIT, against the in-memory server (cpoplib._server) in another
   process -- not Dovecot, whose per-connection processes and login
   limits get in the way at 1000 connections on 2 cores.  cpoplib.aio
   runs them all at once on one event loop (the default one, and uvloop
   where installed); blocking cpoplib (fetch_many) and stdlib poplib (a
   retr() loop) run the same sessions in a 64-thread pool.  Wall time of
   the whole batch, every session checked (count and bytes).  With
   --rtt MS (and --rate MBIT) every session goes through an emulated link
   (benchmarks/linkemu.py) in front of the server: where each round trip
   costs what it costs on a real network, not the 0.1 ms of loopback.
2. Memory per idle session: --idle (300) cpoplib.aio sessions connected
   and logged in, nothing fetched; tracemalloc's count of what they hold
   (Python heap, which includes the engines' buffers: an idle one has
   none) and the process's RSS growth, each divided by the sessions.
3. Single connection: fetch_many() of 2000 x 20 KiB from a private
   Dovecot (tests/dovecot_server.py, as --dovecot) with cpoplib.aio
   against blocking cpoplib, alternating rounds, medians.

Reported, never enforced.
"""

import argparse
import asyncio
import concurrent.futures
import gc
import os
import statistics
import sys
import time
import tracemalloc

from . import dovecot, runner

SESSION_MAILBOX = "sessions"


def _loops():
    loops = [("asyncio", asyncio.run)]
    try:
        import uvloop
    except ImportError:
        return loops
    loops.append(("uvloop", uvloop.run))
    return loops


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---- 1. concurrent sessions ----

async def _aio_session(port, count):
    import cpoplib.aio as aio
    conn = aio.POP3("127.0.0.1", port, timeout=120)
    await conn.connect()
    await conn.user("bench")
    await conn.pass_("bench")
    n, _ = await conn.stat()
    total = 0
    got = 0
    async for _, message in conn.fetch_many(range(1, count + 1)):
        total += len(message)
        got += 1
    await conn.quit()
    return got, total, n


async def _aio_batch(port, sessions, count):
    return await asyncio.gather(*[_aio_session(port, count)
                                  for _ in range(sessions)])


def _blocking_session(module, port, count):
    conn = module.POP3("127.0.0.1", port, timeout=120)
    conn.user("bench")
    conn.pass_("bench")
    n, _ = conn.stat()
    total = got = 0
    if hasattr(conn, "fetch_many"):
        for _, message in conn.fetch_many(range(1, count + 1)):
            total += len(message)
            got += 1
    else:
        for i in range(1, count + 1):
            lines = conn.retr(i)[1]
            total += sum(len(line) + 2 for line in lines)
            got += 1
    conn.quit()
    return got, total, n


def _pool_batch(module, port, sessions, count, threads):
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda _: _blocking_session(module, port, count),
                             range(sessions)))


def concurrent_sessions(args, log):
    import poplib
    import cpoplib
    spec = {"mailboxes": {SESSION_MAILBOX: {
                "kind": "make", "count": args.session_messages,
                "size": args.session_size, "seed": 23}},
            "servers": [{"name": SESSION_MAILBOX, "mailbox": SESSION_MAILBOX,
                         "tls": False}]}
    server = runner.ServerProcess(spec)
    port = server.ports[SESSION_MAILBOX]
    link = None
    try:
        if args.rtt:
            from .linkemu import LinkEmulator
            link = LinkEmulator(("127.0.0.1", port), rtt_ms=args.rtt,
                                rate_mbit=args.rate)
            link.start()
            port = link.port
    except BaseException:
        server.stop()
        raise
    clients = [("cpoplib.aio (%s)" % name, lambda run=run: run(_aio_batch(
                   port, args.sessions, args.session_messages)))
               for name, run in _loops()]
    clients += [
        ("cpoplib, %d threads" % args.threads,
         lambda: _pool_batch(cpoplib, port, args.sessions,
                             args.session_messages, args.threads)),
        ("stdlib poplib, %d threads" % args.threads,
         lambda: _pool_batch(poplib, port, args.sessions,
                             args.session_messages, args.threads)),
    ]
    out = {}
    try:
        reference = None
        for label, run in clients:                      # check, warm up
            log.write("sessions: %s (check)\n" % label)
            results = run()
            assert len(results) == args.sessions, label
            if reference is None:
                reference = results[0]
            assert all(r == reference for r in results), (label, results[0])
            out[label] = {"times": []}
        for _ in range(args.rounds):
            for label, run in clients:
                gc.collect()
                t0 = time.perf_counter()
                run()
                out[label]["times"].append(time.perf_counter() - t0)
        out["bytes_per_session"] = reference[1]
        if link is not None:
            out["link"] = str(link)
    finally:
        if link is not None:
            link.stop()
        server.stop()
    for label, d in out.items():
        if isinstance(d, dict):
            d["median"] = statistics.median(d["times"])
    return out


# ---- 2. memory per idle session ----

async def _idle_sessions(port, count):
    import cpoplib.aio as aio
    conns = []
    for _ in range(count):
        conn = aio.POP3("127.0.0.1", port, timeout=60)
        await conn.connect()
        await conn.user("bench")
        await conn.pass_("bench")
        conns.append(conn)
    return conns


def idle_memory(args, log):
    spec = {"mailboxes": {SESSION_MAILBOX: {
                "kind": "make", "count": 5, "size": 4096, "seed": 23}},
            "servers": [{"name": SESSION_MAILBOX, "mailbox": SESSION_MAILBOX,
                         "tls": False}]}
    server = runner.ServerProcess(spec)
    port = server.ports[SESSION_MAILBOX]

    async def measure():
        warm = await _idle_sessions(port, 20)       # imports, first buffers
        gc.collect()
        rss0 = _rss_kib()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        conns = await _idle_sessions(port, args.idle)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        rss1 = _rss_kib()
        buffers = sum(c._engine.capacity for c in conns)
        for c in conns + warm:
            await c.quit()
        return after - before, (rss1 - rss0) * 1024, buffers
    try:
        traced, rss, buffers = asyncio.run(measure())
    finally:
        server.stop()
    return {"sessions": args.idle, "traced_bytes": traced,
            "rss_bytes": rss, "engine_buffer_bytes": buffers,
            "per_session_traced": traced / args.idle,
            "per_session_rss": rss / args.idle}


# ---- 3. one connection over Dovecot ----

async def _aio_fetch_many(server, numbers):
    import cpoplib.aio as aio
    conn = aio.POP3(server.host, server.pop3_port, timeout=120)
    await conn.connect()
    await conn.user(dovecot.BENCH_USER)
    await conn.pass_(dovecot.BENCH_PASSWORD)
    t0 = time.perf_counter()
    total = 0
    async for _, message in conn.fetch_many(numbers):
        total += len(message)
    elapsed = time.perf_counter() - t0
    await conn.quit()
    return elapsed, total


def _blocking_fetch_many(server, numbers):
    import cpoplib
    conn = cpoplib.POP3(server.host, server.pop3_port, timeout=120)
    conn.user(dovecot.BENCH_USER)
    conn.pass_(dovecot.BENCH_PASSWORD)
    t0 = time.perf_counter()
    total = sum(len(m) for _, m in conn.fetch_many(numbers))
    elapsed = time.perf_counter() - t0
    conn.quit()
    return elapsed, total


def single_connection(args, log):
    ds = dovecot._dovecot_server()
    if ds.find_dovecot() is None:
        return {"error": "dovecot is not installed"}
    users = {dovecot.BENCH_USER: (dovecot.BENCH_PASSWORD,
                                  dovecot.bench_messages(args.messages,
                                                         args.size))}
    server = ds.DovecotServer(large_size=4096, extra_users=users)
    numbers = list(range(1, args.messages + 1))
    clients = [("blocking fetch_many", lambda: _blocking_fetch_many(
        server, numbers))]
    clients += [("cpoplib.aio fetch_many (%s)" % name,
                 lambda run=run: run(_aio_fetch_many(server, numbers)))
                for name, run in _loops()]
    out = {label: {"times": []} for label, _ in clients}
    try:
        server.start()
        sizes = {label: run()[1] for label, run in clients}
        assert len(set(sizes.values())) == 1, sizes
        for _ in range(args.rounds):
            for label, run in clients:
                gc.collect()
                out[label]["times"].append(run()[0])
    finally:
        server.stop()
    for d in out.values():
        d["median"] = statistics.median(d["times"])
    return out


# ---- report ----

def markdown(report):
    lines = [runner.header_line(report["machine"]), ""]
    s = report.get("sessions")
    if s:
        lines += ["### %d concurrent sessions (in-memory server, another "
                  "process%s): connect, USER/PASS, STAT, fetch_many of %d "
                  "messages, QUIT" % (report["args"]["sessions"],
                                      ", through a link of %s" % s["link"]
                                      if s.get("link") else "",
                                      report["args"]["session_messages"]),
                  "", "| client | wall time (median) | min-max |",
                  "|---|--:|--:|"]
        for label, d in s.items():
            if isinstance(d, dict):
                lines.append("| %s | %.3f s | %.3f-%.3f s |" % (
                    label, d["median"], min(d["times"]), max(d["times"])))
        aio_t = min(d["median"] for k, d in s.items()
                    if isinstance(d, dict) and k.startswith("cpoplib.aio"))
        cp = next(d["median"] for k, d in s.items() if k.startswith("cpoplib,"))
        std = next(d["median"] for k, d in s.items() if k.startswith("stdlib"))
        lines += ["", "cpoplib.aio / blocking cpoplib in the pool: %.2fx "
                  "(target <= 0.5x); / stdlib poplib in the pool: %.2fx "
                  "(target <= 0.2x)" % (aio_t / cp, aio_t / std)]
    m = report.get("idle")
    if m:
        lines += ["", "### Memory per idle session (%d sessions logged in)"
                  % m["sessions"], "",
                  "tracemalloc (Python heap, engine buffers included: %d "
                  "bytes in all): %.0f bytes per session; RSS growth: %.0f "
                  "bytes per session (target <= 16 KiB)"
                  % (m["engine_buffer_bytes"], m["per_session_traced"],
                     m["per_session_rss"])]
    one = report.get("single")
    if one and "error" not in one:
        lines += ["", "### One connection: fetch_many of %d x %d bytes from "
                  "Dovecot" % (report["args"]["messages"],
                               report["args"]["size"]), "",
                  "| client | median | min-max |", "|---|--:|--:|"]
        for label, d in one.items():
            lines.append("| %s | %.3f s | %.3f-%.3f s |" % (
                label, d["median"], min(d["times"]), max(d["times"])))
        base = one["blocking fetch_many"]["median"]
        best = min(d["median"] for k, d in one.items() if "aio" in k)
        lines += ["", "cpoplib.aio / blocking: %.2fx (target <= 1.1x)"
                  % (best / base)]
    elif one:
        lines += ["", "one connection over Dovecot: %s" % one["error"]]
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks --aio")
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--session-messages", type=int, default=20)
    p.add_argument("--session-size", type=int, default=20 * 1024)
    p.add_argument("--threads", type=int, default=64)
    p.add_argument("--idle", type=int, default=300)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--size", type=int, default=20 * 1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rtt", type=float, default=0, metavar="MS",
                   help="the sessions through an emulated link of this "
                        "round-trip time (benchmarks/linkemu.py)")
    p.add_argument("--rate", type=float, default=None, metavar="MBIT",
                   help="with --rtt: the link's rate each way, Mbit/s")
    p.add_argument("--only", choices=["sessions", "idle", "single"],
                   action="append")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--markdown", metavar="PATH")
    args = p.parse_args(argv)
    if args.rate and not args.rtt:
        p.error("--rate is the rate of the --rtt link: give --rtt too")
    return args


def main(argv=None):
    args = parse_args(argv)
    log = sys.stderr
    t_start = time.perf_counter()
    parts = args.only or ["sessions", "idle", "single"]
    report = {"machine": runner.machine_info(), "mode": "aio",
              "args": vars(args), "notes": []}
    # 1000 sockets on each side: the server process is a child of this one
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)),
                                                    hard))
    except (ImportError, ValueError, OSError):
        pass
    if "sessions" in parts:
        report["sessions"] = concurrent_sessions(args, log)
    if "idle" in parts:
        report["idle"] = idle_memory(args, log)
    if "single" in parts:
        report["single"] = single_connection(args, log)
    return runner.finish_report(report, "--aio", argv, markdown, args, log,
                                t_start)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
