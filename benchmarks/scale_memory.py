"""python -m benchmarks --scale-memory: what ``cpoplib fetch`` holds for a
mailbox of very many messages -- peak RSS with N UIDLs listed by the
server and none, or all N, known to the state (default N = 500,000).

The server is the in-memory one (cpoplib._server, a SyntheticMailbox:
sizes and UIDLs known up front, no body made unless asked for) in
another process, so that half a million messages need neither a
Maildir on the server side nor a first run that fetches them all.  The
state of the "all known" runs is written through the fetcher's own
state code (cpoplib.fetch.state: batches of 10,000 recorded, then
compacted into one snapshot, as a run that fetched them would leave
it); that set-up is not timed.  Runs, each a process measured by GNU
time (%M, %e):

* ``interpreter``: ``python -c pass`` (the baseline);
* ``listed N, state empty``: ``--max-messages 1`` into an empty Maildir
  (the listing, one message fetched);
* ``listed N, all known``: a rerun with nothing new (the listing and the
  state, nothing fetched).

Reported, never enforced.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from . import runner

GNU_TIME = "/usr/bin/time"
PASSWORD = "memory-secret"


def make_state(path, uids):
    from cpoplib.fetch.state import State
    state = State.load(path, "memory@127.0.0.1")
    state.open()
    for i in range(0, len(uids), 10000):
        state.record_batch([u.encode("ascii") for u in uids[i:i + 10000]],
                           [])
    state.compact()
    state.close()


def measure(argv, env):
    out = tempfile.NamedTemporaryFile(delete=False)
    out.close()
    try:
        proc = subprocess.run([GNU_TIME, "-f", "%M %e", "-o", out.name]
                              + argv, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise runner.Mismatch("%s exited with %d: %s" % (
                " ".join(argv[:4]), proc.returncode,
                proc.stdout.decode(errors="replace")[-1500:]))
        with open(out.name) as f:
            kib, wall = f.read().split()[-2:]
        return int(kib), float(wall), proc.stdout.decode(errors="replace")
    finally:
        os.unlink(out.name)


def run(args, log):
    from cpoplib._server import SyntheticMailbox
    n = args.uidls
    spec = {"mailboxes": {"memory": {"kind": "synthetic", "count": n,
                                     "size": 1024, "seed": 25}},
            "servers": [{"name": "memory", "mailbox": "memory",
                         "tls": False}]}
    server = runner.ServerProcess(spec)
    work = tempfile.mkdtemp(prefix="cpoplib-scale-memory-")
    env = dict(os.environ, CPOPLIB_BENCH_PASSWORD=PASSWORD)
    rows = []
    try:
        port = server.ports["memory"]
        box = SyntheticMailbox(n, size=1024, seed=25)
        uids = [box.uid_of(i) for i in range(n)]

        def fetch(state, dest, *more):
            return [sys.executable, "-m", "cpoplib", "fetch",
                    "--host", "127.0.0.1", "--port", str(port),
                    "--user", "memory", "--password-env",
                    "CPOPLIB_BENCH_PASSWORD", "--allow-plaintext",
                    "--state", state, "--quiet", "--maildir", dest] + list(more)

        kib, wall, _ = measure([sys.executable, "-c", "pass"], env)
        rows.append({"run": "interpreter (python -c pass)", "rss_kib": kib,
                     "wall": wall})
        log.write("baseline %d KiB\n" % kib)
        for r in range(args.rounds):
            empty = os.path.join(work, "empty-%d.state" % r)
            kib, wall, _ = measure(fetch(empty, os.path.join(
                work, "md-empty-%d" % r), "--max-messages", "1"), env)
            rows.append({"run": "listed %d, state empty (--max-messages 1)"
                         % n, "rss_kib": kib, "wall": wall})
            known = os.path.join(work, "known-%d.state" % r)
            t0 = time.perf_counter()
            make_state(known, uids)
            log.write("state of %d UIDLs written in %.1f s (%d bytes)\n"
                      % (n, time.perf_counter() - t0,
                         os.path.getsize(known)))
            kib, wall, _ = measure(fetch(known, os.path.join(
                work, "md-known-%d" % r)), env)
            rows.append({"run": "listed %d, all known (rerun, nothing new)"
                         % n, "rss_kib": kib, "wall": wall})
            log.write("round %d: %s\n" % (r + 1, rows[-2:]))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {"machine": runner.machine_info(), "mode": "scale-memory",
            "uidls": n, "rows": rows}


def markdown(report, argv):
    base = report["rows"][0]["rss_kib"]
    lines = [runner.header_line(report["machine"]), "",
             "### cpoplib fetch: peak RSS with %s UIDLs (in-memory server, "
             "another process)" % "{:,}".format(report["uidls"]), "",
             "| run | peak RSS | above the interpreter | wall |",
             "|---|--:|--:|--:|"]
    seen = {}
    for row in report["rows"]:
        seen.setdefault(row["run"], []).append(row)
    for i, (name, rows) in enumerate(seen.items()):
        kib = max(r["rss_kib"] for r in rows)
        wall = sorted(r["wall"] for r in rows)[len(rows) // 2]
        lines.append("| %s | %s | %s | %.2f s |" % (
            name, runner.fmt_mem(kib),
            runner.fmt_mem(kib - base) if i else "—", wall))
    lines += ["", "Peak RSS by GNU time (%M), the largest of the rounds; "
              "wall the median.", "",
              "Run: python -m benchmarks --scale-memory " + " ".join(argv)]
    return "\n".join(lines) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks --scale-memory")
    p.add_argument("--uidls", type=int, default=500000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--markdown", metavar="PATH")
    return p.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if not os.access(GNU_TIME, os.X_OK):
        sys.exit("%s (GNU time) is needed: apt-get install time" % GNU_TIME)
    report = run(args, sys.stderr)
    text = markdown(report, argv)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    sys.stdout.write(text)
    return 0
