"""python -m benchmarks --tools --scale: big mailboxes of small messages,
``cpoplib fetch`` against mpop, each delivering to an empty Maildir.

One private Dovecot (tests/dovecot_server.py) with a user per size in
--scale-sizes (default 2,000, 20,000 and 100,000 messages of about
--scale-message-size bytes, default 1 KiB; cpoplib._server.make_mailbox
text, LF line ends).  The Maildirs are written straight into cur/, one
file per message named as Dovecot's own delivery names them
(``<time>.M<n>P<pid>.<host>,S=<size>,W=<CRLF size>:2,``), before
Dovecot first looks at them; that set-up is not timed.  Dovecot indexes
a mailbox on its first login, which the warm-up run (untimed) does.

For each size, after one untimed warm-up run of each tool (checked as
the timed ones are), alternating rounds of

* ``mpop, first run``: mpop 1.4 (``delivery maildir``, ``pipelining
  on``, ``keep on``, ``only_new on``, ``auth scram-sha-256``: the
  mechanism ``cpoplib fetch`` chooses) with a fresh UIDL file into an
  empty Maildir; checked: every message, once;
* ``mpop, rerun``: the same command again on the same UIDL file and
  Maildir: nothing is new; checked: nothing more delivered;
* ``cpoplib fetch, first run`` / ``rerun``: ``python -m cpoplib fetch
  --maildir`` with a fresh state file, then again on it.

Each run is a process timed whole, after os.sync() (untimed): wall
(``time.perf_counter``), client CPU = user + system time of the process
and the children it waited for, peak RSS = ``ru_maxrss`` (both from
``os.wait4``), and wall and CPU per message in the mailbox.  Through
``--rtt MS [--rate MBIT]`` the tools connect through one emulated link.
"""

import os
import socket
import time
from collections import Counter

from . import runner, wan
from .dovecot import bench_messages
from .tools import (CpoplibFetch, Mpop, body_digest, check, header,
                    run_again, run_once)

SCALE_PASSWORD = "scale-secret"


def scale_user(n):
    return "scale%d" % n


class ScaleMpop(Mpop):
    only_new = "on"
    # the mechanism cpoplib fetch chooses against this Dovecot: at 100,000
    # messages a rerun is short enough (~0.5 s) for the login's key
    # derivation (~30 ms with Dovecot's) to show, so both pay it
    auth = "scram-sha-256"


def write_maildir(server, user, messages):
    """The messages (bytes, LF line ends) as files of user's Maildir cur/,
    owned by the mail user, named as Dovecot's delivery would."""
    cur = os.path.join(server.maildir(user), "cur")
    stamp, pid = int(time.time()), os.getpid()
    host = socket.gethostname().replace("/", "_").replace(":", "_")
    uid, gid = server.mail_uid, server.mail_gid
    chown = os.geteuid() == 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for i, data in enumerate(messages):
        name = "%d.M%dP%d.%s,S=%d,W=%d:2," % (
            stamp, i, pid, host, len(data), len(data) + data.count(b"\n"))
        fd = os.open(os.path.join(cur, name), flags, 0o600)
        try:
            os.write(fd, data)
            if chown:
                os.fchown(fd, uid, gid)
        finally:
            os.close(fd)


def maildir_count(path):
    return sum(len(os.listdir(os.path.join(path, sub)))
               for sub in ("new", "cur"))


def run(args, argv, setup, log, t_start):
    report = setup.report
    link = args.links[0] if args.links else wan.Link()
    report.update(sizes=args.scale_sizes, size=args.scale_message_size,
                  link=link.as_dict(), results={}, mailbox_bytes={})
    users = {scale_user(n): (SCALE_PASSWORD, []) for n in args.scale_sizes}
    server = setup.ds.DovecotServer(large_size=4096, extra_users=users)

    def body(work):
        expected = {}
        for n in args.scale_sizes:
            t0 = time.perf_counter()
            messages = [m for _, m in bench_messages(
                n, args.scale_message_size, seed=n)]
            write_maildir(server, scale_user(n), messages)
            expected[n] = Counter(body_digest(m) for m in messages)
            report["mailbox_bytes"][n] = sum(len(m) + m.count(b"\n")
                                             for m in messages)
            del messages
            log.write("mailbox of %d messages written in %.1f s\n"
                      % (n, time.perf_counter() - t0))
        with wan.Through(server, link) as via:
            for n in args.scale_sizes:
                report["results"][n] = scale_rounds(
                    args, via, work, n, expected[n],
                    report["mailbox_bytes"][n], log)
        if not link.loopback:
            report["link"]["emulator"] = via.stats

    return setup.serve(server, body, markdown, args, argv, log, t_start)


def scale_rounds(args, endpoint, work, n, expected, nbytes, log):
    account = (scale_user(n), SCALE_PASSWORD)
    dest = os.path.join(work, "n%d" % n)
    os.mkdir(dest)
    os.chmod(dest, 0o755)
    tools = [ScaleMpop("mpop", dest, endpoint, n, account=account),
             CpoplibFetch("cpoplib fetch", dest, endpoint, n,
                          account=account)]
    out = {}
    for t in tools:
        for run_kind in ("first run", "rerun"):
            out["%s, %s" % (t.label, run_kind)] = {
                "times": [], "cpu": [], "rss_kib": []}
    log.write("%d messages: warm-up and check...\n" % n)
    for t in tools:
        check(t, expected, run_once(t)[2], nbytes)
        run_again(t)
    for r in range(args.rounds):
        summary = []
        for t in tools:
            for run_kind, runner_fn in (("first run", run_once),
                                        ("rerun", run_again)):
                wall, cpu, output, rss = runner_fn(t, rss=True)
                if run_kind == "first run":
                    check(t, expected, output, nbytes)
                elif maildir_count(t.dest) != n:
                    raise runner.Mismatch(
                        "%s: the rerun left %d messages in the Maildir, "
                        "not %d" % (t.label, maildir_count(t.dest), n))
                d = out["%s, %s" % (t.label, run_kind)]
                d["times"].append(wall)
                d["cpu"].append(cpu)
                d["rss_kib"].append(rss)
                summary.append("%s %s %.2f s" % (t.label, run_kind, wall))
        log.write("  %d messages, round %d/%d: %s\n"
                  % (n, r + 1, args.rounds, ", ".join(summary)))
    runner.summarize(out)
    for d in out.values():
        d["rss_max_kib"] = (None if None in d["rss_kib"]
                            else max(d["rss_kib"]))
    return out


def markdown(report):
    link = report["link"]
    lines = [header(report), "",
             "Scale mode: mailboxes of many messages of ~%s bytes from "
             "Dovecot over plain POP3 (%s), each tool a process timed whole; "
             "first run = empty Maildir and a fresh UIDL/state file, rerun "
             "= the same command again right after (nothing new); "
             "%d alternating rounds, medians with (min–max); ÷ mpop "
             "= median ÷ mpop's for the same run; client CPU = user + system "
             "of the process and the children it waited for (os.wait4); "
             "peak RSS = the largest of the rounds, measured by GNU time "
             "(%%M), which the command runs under (— where it is missing)."
             % ("{:,}".format(report["size"]),
                "on loopback" if link["rtt_ms"] is None
                else "through an emulated link of " + link["label"],
                report["rounds"]), "",
             "| messages | tool, run | wall median (min–max) | per message "
             "| ÷ mpop | client CPU | CPU per message | peak RSS |",
             "|--:|---|--:|--:|--:|--:|--:|--:|"]
    fmt = runner.fmt_time
    for n, res in report["results"].items():
        n = int(n)
        for label, d in res.items():
            run_kind = label.split(", ", 1)[1]
            base = res["mpop, " + run_kind]
            lines.append("| %s | %s | %s (%s–%s) | %s | %.2f | %s | %s | "
                         "%s |" % (
                             "{:,}".format(n), label, fmt(d["median"]),
                             fmt(d["min"]), fmt(d["max"]),
                             fmt(d["median"] / n),
                             d["median"] / base["median"],
                             fmt(d["cpu_median"]), fmt(d["cpu_median"] / n),
                             runner.fmt_mem(d["rss_max_kib"])))
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"
