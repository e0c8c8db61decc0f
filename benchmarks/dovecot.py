"""python -m benchmarks --dovecot: whole-mailbox retrieval from a real
Dovecot, stdlib poplib against cpoplib's retr(), fetch() and fetch_many(),
and a raw pipelined socket client (the ceiling).

A private Dovecot is started with tests/dovecot_server.py (the tests'
fixture; its temporary directory, 127.0.0.1 only) with one more user,
"bench", whose Maildir holds --messages messages of about --size bytes
(default 2000 x 20 KiB; cpoplib._server.make_mailbox text with LF line
ends, dot-led and 8-bit lines).  Every client fetches all of them, over
plain POP3 and over POP3S (a TLS context trusting the fixture's CA).

Clients (each on a fresh connection; connecting, logging in and QUIT are
not timed, exactly as in the in-memory benchmarks):

* ``stdlib retr``: ``[poplib.retr(n) for n in 1..N]``
* ``cpoplib retr``: the same with cpoplib
* ``cpoplib fetch``: ``[conn.fetch(n) for n in 1..N]``
* ``cpoplib fetch_many``: ``list(conn.fetch_many(range(1, N + 1)))``,
  default window (the timed part includes its one CAPA)
* ``raw pipelined``: a minimal client written here: keeps --raw-window
  RETR commands in flight, reads with ``recv_into`` into one reused
  buffer and counts ``\\r\\n.\\r\\n`` terminators; no parsing, no
  unstuffing, no per-message objects: the ceiling for a Python client.

Before timing, every client runs once (the warm-up) and what it got is
reduced to (message count, total bytes, SHA-256 of the messages joined as
fetch() returns them; the raw client's stream is parsed for this, outside
its timing): all must agree.  Then the clients run in alternating rounds,
A B C D E A B C D E ..., and the medians are reported with the spread
(min-max).  The window sweep runs fetch_many(window=w) and the raw client
with the same w, for w in --windows, in alternating rounds too.
"""

import argparse
import gc
import hashlib
import json
import os
import ssl
import subprocess
import sys
import time

from . import _ceiling, runner, wan

ROOT = runner.ROOT
TESTS = os.path.join(ROOT, "tests")
BENCH_USER = "bench"
BENCH_PASSWORD = "bench-secret"
DEFAULT_WINDOWS = (1, 2, 4, 8, 16, 32, 64)
RAW_WINDOW = 64
LINK_WINDOWS = (8, 32, 128)
MEMORY_LINK = "200:20"
MEMORY_USER = "benchmem"


# The targets of issue 10 (reported, never enforced).
TARGET_PLAIN_VS_STDLIB = 2.8
TARGET_RAW_WITHIN = 1.1
TARGET_TLS_VS_STDLIB = 2.0


def _dovecot_server():
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    import dovecot_server
    return dovecot_server


def bench_messages(count, size, seed=2000):
    """The bench user's messages: [(key, bytes with LF line ends)]."""
    from cpoplib._server import make_mailbox
    return [("bench-%d" % (i + 1), m.replace(b"\r\n", b"\n"))
            for i, m in enumerate(make_mailbox(count, size, line_len=70,
                                               seed=seed))]


# --------------------------------------------------------------------------
# the raw pipelined client

TERMINATOR = _ceiling.TERMINATOR


class RawClient:
    """Just enough POP3 to log in, then pipelined RETR over a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray(1 << 20)

    def login(self, user, password):
        _ceiling.login(self.sock, user, password)

    def quit(self):
        try:
            _ceiling.command(self.sock, b"QUIT")
        finally:
            self.sock.close()

    def retr_all(self, numbers, window, keep=None):
        """RETR every number, `window` in flight; returns the bytes read.
        With keep (a bytearray) the whole stream is appended to it."""
        cmds = [b"RETR %d\r\n" % n for n in numbers]
        n = len(cmds)
        sock, buf = self.sock, self.buf
        mv = memoryview(buf)
        recv_into, count = sock.recv_into, buf.count
        sent = min(window, n)
        sock.sendall(b"".join(cmds[:sent]))
        done = carry = total = 0
        while done < n:
            got = recv_into(mv[carry:])
            if not got:
                raise EOFError("server closed the connection")
            end = carry + got
            total += got
            if keep is not None:
                keep += mv[carry:end]
            # a terminator straddling two reads is seen through the carry
            done += count(TERMINATOR, 0, end)
            if sent < n and sent - done < window:
                new = min(n, done + window)
                sock.sendall(b"".join(cmds[sent:new]))
                sent = new
            if end >= 4:
                buf[0:4] = buf[end - 4:end]
                carry = 4
            else:
                carry = end
        return total


def parse_raw_stream(stream, count):
    """The messages (as fetch() gives them) in a kept raw RETR stream."""
    out = []
    pos = 0
    for _ in range(count):
        eol = stream.index(b"\r\n", pos)
        if not stream.startswith(b"+OK", pos):
            raise RuntimeError("not +OK: %r" % bytes(stream[pos:eol]))
        end = stream.index(TERMINATOR, eol)     # eol: the +OK line's CRLF
        body = bytes(stream[eol + 2:end + 2])
        lines = body.split(b"\r\n")[:-1]
        out.append(b"".join((line[1:] if line.startswith(b".") else line)
                            + b"\r\n" for line in lines))
        pos = end + len(TERMINATOR)
    if pos != len(stream):
        raise RuntimeError("%d bytes after the last message"
                           % (len(stream) - pos))
    return out


# --------------------------------------------------------------------------
# clients

class Target:
    """Where and how to connect: one transport of the Dovecot server."""

    def __init__(self, server, transport, ca_file):
        self.server = server
        self.transport = transport
        self.ctx = (ssl.create_default_context(cafile=ca_file)
                    if transport == "pop3s" else None)

    def pop3(self, module):
        srv = self.server
        if self.transport == "pop3s":
            conn = module.POP3_SSL(srv.tls_hostname, srv.pop3s_port,
                                   context=self.ctx, timeout=120)
        else:
            conn = module.POP3(srv.host, srv.pop3_port, timeout=120)
        conn.user(BENCH_USER)
        conn.pass_(BENCH_PASSWORD)
        return conn

    def raw(self):
        import socket
        srv = self.server
        if self.transport == "pop3s":
            sock = socket.create_connection((srv.host, srv.pop3s_port),
                                            timeout=120)
            sock = self.ctx.wrap_socket(sock,
                                        server_hostname=srv.tls_hostname)
        else:
            sock = socket.create_connection((srv.host, srv.pop3_port),
                                            timeout=120)
        client = RawClient(sock)
        client.login(BENCH_USER, BENCH_PASSWORD)
        return client


def joined(lines):
    return b"".join(line + b"\r\n" for line in lines)


class Client:
    """One client: connect() (untimed), run(conn) (timed, returns what
    it got), canonical(result) -> list of message bytes, close(conn)."""

    def __init__(self, label, kind, module=None, window=None):
        self.label = label
        self.kind = kind
        self.module = module
        self.window = window

    def connect(self, target):
        if self.kind in ("raw", "ceiling"):
            return target.raw()
        return target.pop3(self.module)

    def run(self, conn, numbers, keep=None):
        kind = self.kind
        if kind == "retr":
            retr = conn.retr
            return [retr(n) for n in numbers]
        if kind == "fetch":
            fetch = conn.fetch
            return [fetch(n) for n in numbers]
        if kind == "fetch_many":
            if self.window is None:
                return list(conn.fetch_many(numbers))
            return list(conn.fetch_many(numbers, window=self.window))
        if kind == "raw":
            return conn.retr_all(numbers, self.window or RAW_WINDOW, keep)
        if kind == "ceiling":
            return _ceiling.retr_all(conn.sock, numbers, conn.buf, keep)
        raise ValueError(kind)

    def canonical(self, result, numbers, keep):
        if self.kind == "retr":
            return [joined(r[1]) for r in result]
        if self.kind == "fetch":
            return result
        if self.kind == "fetch_many":
            if [n for n, _ in result] != list(numbers):
                raise runner.Mismatch("%s: message numbers out of order"
                                      % self.label)
            return [data for _, data in result]
        return parse_raw_stream(keep, len(numbers))

    def close(self, conn):
        conn.quit()


def digest(messages):
    h = hashlib.sha256()
    total = 0
    for m in messages:
        h.update(m)
        total += len(m)
    return len(messages), total, h.hexdigest()


def verify(clients, target, numbers, log):
    """Runs each client once (the warm-up); all must get the same bytes.
    Returns (count, total bytes, sha256, bytes of RETR replies on the
    wire as a raw client read them, or None without one)."""
    ref = None
    wire = None
    for c in clients:
        conn = c.connect(target)
        keep = bytearray() if c.kind in ("raw", "ceiling") else None
        result = c.run(conn, numbers, keep)
        c.close(conn)
        d = digest(c.canonical(result, numbers, keep))
        if keep is not None:
            wire = len(keep)
        del result, keep
        if ref is None:
            ref = (c.label, d)
        elif d != ref[1]:
            raise runner.Mismatch(
                "%s over %s: %s got %r, %s got %r" % (
                    target.transport, "Dovecot", ref[0], ref[1], c.label, d))
    log.write("  %s: all %d clients got %d messages, %d bytes, sha256 %s...\n"
              % (target.transport, len(clients), ref[1][0], ref[1][1],
                 ref[1][2][:16]))
    return ref[1] + (wire,)


def timed_rounds(clients, target, numbers, rounds, log, verbose=False):
    """Alternating rounds; returns {label: {"times": [...], "cpu": [...]}}."""
    out = {c.label: {"times": [], "cpu": []} for c in clients}
    for r in range(rounds):
        for c in clients:
            conn = c.connect(target)
            gc.collect()
            c0 = time.process_time()
            t0 = time.perf_counter()
            result = c.run(conn, numbers)
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - c0
            del result
            c.close(conn)
            out[c.label]["times"].append(elapsed)
            out[c.label]["cpu"].append(cpu)
        if verbose:
            log.write("  %s round %d/%d: %s\n" % (
                target.transport, r + 1, rounds, ", ".join(
                    "%s %s" % (c.label, fmt_s(out[c.label]["times"][-1]))
                    for c in clients)))
        else:
            log.write("  %s round %d/%d done\n"
                      % (target.transport, r + 1, rounds))
    return runner.summarize(out)


# --------------------------------------------------------------------------
# reporting

fmt_s = runner.fmt_time


def spread(d):
    return "%s–%s" % (fmt_s(d["min"]), fmt_s(d["max"]))


def main_table(results, nbytes):
    transports = list(results)
    lines = ["| client | " + " | ".join(
        "%s median (min–max) | %s vs stdlib | %s MB/s | %s client CPU"
        % (t, t, t, t) for t in transports) + " |",
        "|---|" + "--:|--:|--:|--:|" * len(transports)]
    labels = list(results[transports[0]])
    for label in labels:
        cells = []
        for t in transports:
            d = results[t][label]
            base = results[t]["stdlib retr"]["median"]
            cells.append("%s (%s) | %.2f× | %s | %s" % (
                fmt_s(d["median"]), spread(d), base / d["median"],
                runner.fmt_mbs(nbytes, d["median"]), fmt_s(d["cpu_median"])))
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    return lines


def sweep_table(sweep, nbytes):
    lines = []
    for t, res in sweep.items():
        windows = sorted({int(k.split("=")[1]) for k in res})
        lines += ["", "Window sweep, %s:" % t, "",
                  "| window | fetch_many median (min–max) | MB/s "
                  "| raw median (min–max) | fetch_many ÷ raw "
                  "| fetch_many client CPU |",
                  "|--:|--:|--:|--:|--:|--:|"]
        for w in windows:
            f, r = res["fetch_many w=%d" % w], res["raw w=%d" % w]
            lines.append("| %d | %s (%s) | %s | %s (%s) | %.2f | %s |" % (
                w, fmt_s(f["median"]), spread(f),
                runner.fmt_mbs(nbytes, f["median"]), fmt_s(r["median"]),
                spread(r), f["median"] / r["median"], fmt_s(f["cpu_median"])))
    return lines


def targets(results):
    out = []
    plain, tls = results.get("plain"), results.get("pop3s")
    if plain:
        std = plain["stdlib retr"]["median"]
        fm = plain["cpoplib fetch_many"]["median"]
        raw = plain["raw pipelined"]["median"]
        out.append("plain: fetch_many %.2f× stdlib retr loop (target ≥ %.1f×: "
                   "%s); fetch_many ÷ raw pipelined %.2f (target ≤ %.1f: %s)"
                   % (std / fm, TARGET_PLAIN_VS_STDLIB,
                      "met" if std / fm >= TARGET_PLAIN_VS_STDLIB
                      else "MISSED", fm / raw, TARGET_RAW_WITHIN,
                      "met" if fm / raw <= TARGET_RAW_WITHIN else "MISSED"))
    if tls:
        std = tls["stdlib retr"]["median"]
        fm = tls["cpoplib fetch_many"]["median"]
        out.append("POP3S: fetch_many %.2f× stdlib retr loop (target ≥ %.1f×: "
                   "%s); fetch_many ÷ raw pipelined %.2f"
                   % (std / fm, TARGET_TLS_VS_STDLIB,
                      "met" if std / fm >= TARGET_TLS_VS_STDLIB
                      else "MISSED", fm / tls["raw pipelined"]["median"]))
    return out


def markdown(report):
    info = report["machine"]
    nbytes = report["payload_bytes"]
    lines = [runner.header_line(info) + " · Dovecot: %s" % report["dovecot"],
             "",
             "Dovecot mode: %d messages, %s bytes of message data (as fetch() "
             "returns them), user %r; %d alternating rounds, medians with "
             "(min–max); vs stdlib = stdlib median ÷ client median; MB/s in "
             "10^6 bytes of message data; client CPU = the benchmark "
             "process's CPU time (time.process_time), Dovecot runs in its "
             "own processes.  fetch_many: default window; raw pipelined: "
             "window %d."
             % (report["count"], "{:,}".format(nbytes), BENCH_USER,
                report["rounds"], report["raw_window"]), ""]
    if not report["results"]:
        lines[2] = ("Dovecot mode, window sweep only: %d messages, %s bytes "
                    "of message data, user %r; medians with (min–max); "
                    "client CPU = this process's time.process_time()."
                    % (report["count"], "{:,}".format(nbytes), BENCH_USER))
    if report["results"]:
        lines += main_table(report["results"], nbytes)
    if report.get("sweep"):
        lines += sweep_table(report["sweep"], nbytes)
        lines += ["", "Sweep rounds: %d." % report["sweep_rounds"]]
    lines += [""] + ["Targets: " + t for t in targets(report["results"])]
    if report.get("memory"):
        lines += [""] + memory_table(report)
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# through emulated links (--rtt, --links) and the memory probe (--memory)

def link_clients(args, poplib, cpoplib):
    """The clients run through every link: fetch_many() with its default
    window and with each --link-windows window, the ceiling, and with
    --serial the one-message-per-round-trip loops."""
    clients = []
    if args.serial:
        clients += [Client("stdlib retr", "retr", poplib),
                    Client("cpoplib retr", "retr", cpoplib),
                    Client("cpoplib fetch", "fetch", cpoplib)]
    clients.append(Client("fetch_many, default window", "fetch_many",
                          cpoplib))
    clients += [Client("fetch_many, window=%d" % w, "fetch_many", cpoplib,
                       window=w) for w in args.link_windows]
    clients.append(Client(wan.CEILING, "ceiling"))
    return clients


def run_links(args, server, report, numbers, log):
    """Every client through every link (loopback: straight to Dovecot),
    in alternating rounds per link; one table, clients x links.  The
    server has been started."""
    import poplib
    import cpoplib
    clients = link_clients(args, poplib, cpoplib)
    report.update(mode="dovecot-links", links=[l.as_dict() for l in
                                               args.links],
                  clients=[c.label for c in clients], link_results={},
                  wire_bytes={}, transports=args.transports)
    ports = tuple({"plain": "pop3_port", "pop3s": "pop3s_port"}[t]
                  for t in args.transports)
    if args.links:
        # verified (and warmed up) straight on Dovecot, untimed
        for transport in args.transports:
            target = Target(server, transport, server.ca_file)
            _, nbytes, sha, wire = verify(clients, target, numbers, log)
            report["payload_bytes"] = nbytes
            report["wire_bytes"][transport] = wire
            report.setdefault("sha256", {})[transport] = sha
            report["link_results"][transport] = {}
    for link, ld in zip(args.links, report["links"]):
        log.write("link %s:\n" % link.label)
        with wan.Through(server, link, ports) as via:
            with wan.cpu_share(via, ld):
                for transport in args.transports:
                    target = Target(via, transport, server.ca_file)
                    report["link_results"][transport][link.label] = \
                        timed_rounds(clients, target, numbers, args.rounds,
                                     log, verbose=True)
        ld["emulator"] = via.stats


def memory_messages(args):
    """The memory probe's mailbox: --memory-messages messages of --size,
    every 20th one of --memory-large MiB instead."""
    n = args.memory_messages
    large = [m for _, m in bench_messages(n // 20,
                                          int(args.memory_large * 2 ** 20),
                                          seed=77)]
    small = [m for _, m in bench_messages(n - len(large), args.size,
                                          seed=78)]
    out = []
    for i in range(n):
        src = large if (i + 1) % 20 == 0 and large else small
        out.append(("mem-%d" % (i + 1), src.pop()))
    return out


def memory_probes(args, server, log):
    """Peak RSS of fetch_many() over the memory mailbox through
    --memory-link, default window and each --link-windows window, each in
    a fresh process (benchmarks/_fetchmanyprobe.py)."""
    rows = []
    env = dict(os.environ, CPOPLIB_BENCH_PASSWORD=BENCH_PASSWORD)
    link = args.memory_link
    with wan.Through(server, link) as via:
        for w in [None] + list(args.link_windows):
            log.write("memory, %s, window %s...\n"
                      % (link.label, w or "default"))
            cmd = [sys.executable, "-m", "benchmarks._fetchmanyprobe",
                   "--host", via.host, "--port", str(via.pop3_port),
                   "--user", MEMORY_USER, "--password-env",
                   "CPOPLIB_BENCH_PASSWORD",
                   "--count", str(args.memory_messages)]
            if w:
                cmd += ["--window", str(w)]
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=3600)
            if proc.returncode != 0:
                log.write(proc.stderr)
                raise RuntimeError("memory probe failed (window %s)" % w)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["link"] = link.label
            rows.append(row)
    return rows


def memory_table(report):
    rows = report["memory"]
    lines = ["Peak memory of fetch_many() through %s: a fresh process "
             "per window iterates fetch_many() over %d messages (%s bytes; "
             "every 20th is a large one), dropping each; peak = VmHWM "
             "after a reset to the RSS before (%s), minus that RSS."
             % (rows[0]["link"], rows[0]["messages"],
                "{:,}".format(rows[0]["bytes"]), rows[0]["method"]), "",
             "| window | peak RSS over start | largest message | peak ÷ "
             "largest | time |", "|---|--:|--:|--:|--:|"]
    for r in rows:
        lines.append("| %s | %s | %s | %.2f | %s |" % (
            r["window"] or "default", runner.fmt_mem(r["delta_kib"]),
            runner.fmt_mem(r["largest"] / 1024),
            r["delta_kib"] * 1024 / r["largest"] if r["largest"] else 0,
            fmt_s(r["elapsed"])))
    return lines


def links_markdown(report):
    info = report["machine"]
    links = [wan.Link.from_dict(d) for d in report["links"]]
    lines = [runner.header_line(info) + " · Dovecot: %s" % report["dovecot"],
             ""]
    if links:
        lines += [
            "Dovecot through emulated links (benchmarks/linkemu.py, a proxy "
            "in its own process): %d messages, %s bytes of message data, "
            "user %r; each link %d alternating rounds, medians with "
            "(min–max); connecting and logging in are not timed; **×** = "
            "client median ÷ the ceiling's median on the same link.  The "
            "ceiling is a raw client with every RETR in flight (writer "
            "thread; counts bytes, parses nothing)."
            % (report["count"], "{:,}".format(report["payload_bytes"]),
               BENCH_USER, report["rounds"]), ""]
    for transport, res in report.get("link_results", {}).items():
        if len(report["link_results"]) > 1:
            lines += ["%s:" % transport, ""]
        lines += wan.matrix_table(res, links, report["clients"]) + [""]
        lines += wan.cpu_table(res, links, report["clients"]) + [""]
        lines += wan.link_lines(report["links"],
                                report["wire_bytes"][transport]) + [""]
    if report.get("memory"):
        lines += memory_table(report)
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# main

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks --dovecot",
        description="Whole-mailbox retrieval from a private Dovecot: stdlib "
                    "retr() loop, cpoplib retr()/fetch()/fetch_many(), and "
                    "a raw pipelined client; plus a fetch_many window sweep.")
    p.add_argument("--rounds", type=int,
                   help="alternating rounds (default 7; through links 3)")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--size", type=int, default=20 * 1024,
                   help="bytes per message (default 20 KiB)")
    p.add_argument("--transports",
                   help="comma-separated: plain, pop3s (default both; "
                        "through links: plain)")
    p.add_argument("--windows", default=",".join(map(str, DEFAULT_WINDOWS)),
                   help="window sweep (comma-separated; empty: no sweep)")
    p.add_argument("--sweep-rounds", type=int,
                   help="rounds of the sweep (default: --rounds)")
    p.add_argument("--raw-window", type=int, default=RAW_WINDOW)
    p.add_argument("--sweep-only", action="store_true",
                   help="only the window sweep (no client comparison)")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--markdown", metavar="PATH")
    g = wan.add_arguments(
        p, "fetch_many windows run through the links besides the default "
           "(default %s)" % ",".join(map(str, LINK_WINDOWS)))
    g.add_argument("--serial", action="store_true",
                   help="through links, also the one-at-a-time clients "
                        "(stdlib and cpoplib retr(), fetch()): each "
                        "message costs them a round trip")
    m = p.add_argument_group("peak memory of fetch_many() through a link")
    m.add_argument("--memory", action="store_true",
                   help="also measure it (a fresh process per window)")
    m.add_argument("--memory-only", action="store_true",
                   help="measure only that")
    m.add_argument("--memory-link", default=MEMORY_LINK, metavar="RTT:RATE",
                   help="the link (default %s)" % MEMORY_LINK)
    m.add_argument("--memory-messages", type=int, default=200,
                   help="messages in its mailbox (default 200: of "
                        "--size, every 20th one of --memory-large)")
    m.add_argument("--memory-large", type=float, default=4.0, metavar="MIB",
                   help="size of its large messages (default 4 MiB)")
    a = p.parse_args(argv)
    a.links = wan.links_from_args(a, p)
    if a.transports is None:
        a.transports = "plain" if a.links else "plain,pop3s"
    a.transports = [t.strip() for t in a.transports.split(",") if t.strip()]
    if not set(a.transports) <= {"plain", "pop3s"}:
        p.error("--transports: plain, pop3s")
    a.windows = [int(w) for w in a.windows.split(",") if w.strip()]
    a.link_windows = (wan.parse_windows(a.link_windows)
                      if a.link_windows is not None else list(LINK_WINDOWS))
    a.memory = a.memory or a.memory_only
    try:
        a.memory_link = wan.parse_link(a.memory_link, a.queue, a.nagle)
    except ValueError as exc:
        p.error(str(exc))
    if a.rounds is None:
        a.rounds = 3 if a.links else 7
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    if a.sweep_rounds is None:
        a.sweep_rounds = a.rounds
    return a


def main(argv=None):
    global RAW_WINDOW
    args = parse_args(argv)
    log = sys.stderr
    t_start = time.perf_counter()
    import poplib
    import cpoplib
    if not hasattr(cpoplib.POP3, "fetch_many"):
        log.write("benchmarks --dovecot: this cpoplib has no fetch_many()\n")
        return 2
    RAW_WINDOW = args.raw_window
    ds = _dovecot_server()
    if ds.find_dovecot() is None:
        log.write("benchmarks --dovecot: dovecot is not installed "
                  "(apt-get install dovecot-core dovecot-pop3d)\n")
        return 2
    info = runner.machine_info()
    info["cpoplib"] = getattr(cpoplib, "__version__", None)
    report = {"machine": info, "mode": "dovecot", "rounds": args.rounds,
              "sweep_rounds": args.sweep_rounds, "count": args.messages,
              "size": args.size, "raw_window": args.raw_window,
              "argv": sys.argv[1:], "results": {}, "sweep": {}, "notes": [],
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    log.write("generating %d messages of %d bytes...\n"
              % (args.messages, args.size))
    users = {BENCH_USER: (BENCH_PASSWORD,
                          bench_messages(args.messages, args.size))}
    if args.memory:
        users[MEMORY_USER] = (BENCH_PASSWORD, memory_messages(args))
    log.write("starting Dovecot...\n")
    server = ds.DovecotServer(large_size=4096, extra_users=users)
    del users
    numbers = list(range(1, args.messages + 1))
    links_mode = bool(args.links or args.memory_only)
    main_clients = [
        Client("stdlib retr", "retr", poplib),
        Client("cpoplib retr", "retr", cpoplib),
        Client("cpoplib fetch", "fetch", cpoplib),
        Client("cpoplib fetch_many", "fetch_many", cpoplib),
        Client("raw pipelined", "raw", window=args.raw_window),
    ]
    sweep_clients = []
    for w in args.windows:
        sweep_clients += [Client("fetch_many w=%d" % w, "fetch_many",
                                 cpoplib, window=w),
                          Client("raw w=%d" % w, "raw", window=w)]
    try:
        server.start()
        report["dovecot"] = "%d.%d.%d" % server.version
        if links_mode:
            run_links(args, server, report, numbers, log)
        for transport in args.transports if not links_mode else ():
            target = Target(server, transport, server.ca_file)
            count, nbytes, sha, _ = verify(main_clients + sweep_clients,
                                           target, numbers, log)
            report["payload_bytes"] = nbytes
            report.setdefault("sha256", {})[transport] = sha
            if not args.sweep_only:
                report["results"][transport] = timed_rounds(
                    main_clients, target, numbers, args.rounds, log)
        for transport in args.transports if not links_mode else ():
            if sweep_clients:
                target = Target(server, transport, server.ca_file)
                report["sweep"][transport] = timed_rounds(
                    sweep_clients, target, numbers, args.sweep_rounds, log)
        if args.memory:
            report["memory"] = memory_probes(args, server, log)
    except runner.Mismatch as exc:
        log.write("MISMATCH: %s\n" % exc)
        return 1
    finally:
        server.stop()
    return runner.finish_report(report, "--dovecot", argv,
                                links_markdown if links_mode else markdown,
                                args, log, t_start)


if __name__ == "__main__":
    sys.exit(main())
