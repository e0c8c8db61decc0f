"""python -m benchmarks --tools: the whole job, ``cpoplib fetch`` against
mpop and getmail6, each downloading the same Dovecot mailbox.

A private Dovecot is started with tests/dovecot_server.py (127.0.0.1 only,
in a temporary directory) with the user "bench" holding --messages messages
of about --size bytes (default 2000 x 20 KiB, the mailbox of
``--dovecot``).  Every tool is a separate process started from here, and
everything it does is timed: start-up, connecting, logging in, fetching,
delivering, syncing, QUIT.

Groups, each in alternating rounds (A B C A B C ...):

* ``maildir``: delivery to an empty Maildir over plain POP3, every message,
  each tool with its default durability:

  - ``mpop``: mpop 1.4 (Debian package ``mpop``), ``delivery maildir``,
    ``pipelining on``, ``keep on`` and ``only_new off`` (so it fetches
    everything every round and deletes nothing), a fresh UIDL file;
    it fsyncs every message;
  - ``cpoplib fetch``: ``python -m cpoplib fetch --maildir`` with a fresh
    state file (a first run), default batch and sync mode (on Linux 5.8+
    one syncfs per batch of 100); and the same with ``--sync file``
    (fsync of each file, once per batch);
  - ``getmail6`` (``--getmail-rounds`` rounds, default 1: it is slow),
    its ``Maildir`` destination, ``read_all``, no delete; and the same
    getmail run on cpoplib through ``python -m cpoplib run getmail``.
    Run as root, getmail delivers as ``nobody`` through its ``user``
    setting, as the tests do (it refuses to deliver as root).

* ``discard``: the same download with nothing kept: mpop delivering to
  ``mbox /dev/null`` against ``cpoplib fetch --dry-run``.

Before each run the destination is made afresh and ``os.sync()`` flushes
what the previous round left dirty, outside the timing: a batch sync then
writes back only the tool's own files, its best case (in real use a
syncfs also writes back whatever else is dirty on the filesystem).  After
each run (untimed) the destination is checked: exactly --messages
messages, whose bodies (line ends normalised) are those in the mailbox,
one each; in the discard group cpoplib's summary line must count every
message and byte (mpop's /dev/null cannot be checked beyond its exit
status).  The destinations live under --workdir (default: the system's
temporary directory); its filesystem type is reported, and a tmpfs,
where syncing costs nothing, is refused.

Durability differs in kind, not only in cost: mpop 1.4 fsyncs each
message file before linking it into new/, but neither the directories
nor its UIDL file; cpoplib fetch makes each batch durable, then its
state file and the renames (see Lib/cpoplib/fetcher.py); getmail6's
Maildir delivery fsyncs each message file.

Wall time is measured around the process (``time.perf_counter``); client
CPU is the process's user + system time from ``os.wait4`` (it includes
children the tool waited for, e.g. getmail's delivery processes).  Dovecot
runs in its own processes and is not counted.
"""

import argparse
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter

from . import runner
from .dovecot import BENCH_PASSWORD, BENCH_USER, _dovecot_server, \
    bench_messages

# The targets of the fetcher issue (reported, never enforced).
TARGET_MAILDIR_VS_MPOP = 0.7
TARGET_DISCARD_VS_MPOP = 1.1
TARGET_CPU_VS_MPOP = 2.0


def body_digest(data):
    """SHA-256 of a message's body (after the first blank line), LF line
    ends: the part every tool stores unchanged (each adds its own
    headers)."""
    data = data.replace(b"\r\n", b"\n")
    head, sep, body = data.partition(b"\n\n")
    return hashlib.sha256(body if sep else head).hexdigest()


def maildir_messages(path):
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                out.append(f.read())
    return out


def make_maildir(path, owner=None):
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(path, sub), mode=0o700)
    if owner is not None:
        for root, _, _ in os.walk(path):
            os.chown(root, owner.pw_uid, owner.pw_gid)


# --------------------------------------------------------------------------
# the tools

class Tool:
    """One command line to time.  prepare() makes a new destination (and
    whatever names it) for each run; nothing is deleted between runs, so
    that no deletion's journal and discard work falls into the next timed
    run; the whole work directory goes at the end."""

    group = "maildir"
    env = None

    def __init__(self, label, work, server, count):
        self.label = label
        self.work = os.path.join(work, "".join(
            c if c.isalnum() else "-" for c in label))
        os.mkdir(self.work)
        os.chmod(self.work, 0o755)
        self.server = server
        self.count = count
        self.runs = 0
        self.dest = None
        self.argv = None

    def prepare(self):
        self.runs += 1
        self.run_dir = os.path.join(self.work, "run-%d" % self.runs)
        os.mkdir(self.run_dir)
        os.chmod(self.run_dir, 0o755)
        self.dest = os.path.join(self.run_dir, "Maildir")
        self.configure()

    def configure(self):
        raise NotImplementedError

    def messages(self):
        return maildir_messages(self.dest)


class Mpop(Tool):
    delivery = None

    def configure(self):
        rc = os.path.join(self.run_dir, "mpoprc")
        delivery = self.delivery or "maildir %s" % self.dest
        with open(rc, "w") as f:
            f.write("defaults\n"
                    "host %s\nport %d\ntls off\nauth user\n"
                    "user %s\npassword %s\n"
                    "keep on\nonly_new off\npipelining on\n"
                    "uidls_file %s\n"
                    "account bench\n"
                    "delivery %s\n"
                    "account default : bench\n"
                    % (self.server.host, self.server.pop3_port, BENCH_USER,
                       BENCH_PASSWORD, os.path.join(self.run_dir, "uidls"),
                       delivery))
        os.chmod(rc, 0o600)
        self.argv = ["mpop", "-C", rc, "-q"]
        if self.delivery is None:
            make_maildir(self.dest)


class MpopDiscard(Mpop):
    group = "discard"
    delivery = "mbox /dev/null"

    def messages(self):
        return None


class CpoplibFetch(Tool):

    def __init__(self, *a, sync=None, **kw):
        super().__init__(*a, **kw)
        self.sync = sync
        self.env = dict(os.environ, CPOPLIB_BENCH_PASSWORD=BENCH_PASSWORD)

    def configure(self):
        self.argv = [sys.executable, "-m", "cpoplib", "fetch",
                     "--host", self.server.host,
                     "--port", str(self.server.pop3_port),
                     "--user", BENCH_USER, "--password-env",
                     "CPOPLIB_BENCH_PASSWORD", "--allow-plaintext",
                     "--state", os.path.join(self.run_dir, "state.json")]
        if self.group == "maildir":
            self.argv += ["--quiet", "--maildir", self.dest]
        else:
            self.argv += ["--dry-run", "--all"]   # summary line checked
        if self.sync:
            self.argv += ["--sync", self.sync]


class CpoplibDryRun(CpoplibFetch):
    group = "discard"

    def messages(self):
        return None

    def check_output(self, output, count, nbytes):
        want = "%d messages, %d bytes" % (count, nbytes)
        if want not in output:
            raise runner.Mismatch("%s: expected %r in its summary, got %r"
                                  % (self.label, want, output[-300:]))


class Getmail(Tool):
    """getmail6 on stdlib poplib, or on cpoplib through `cpoplib run`."""

    def __init__(self, label, work, server, count, script, on_cpoplib):
        super().__init__(label, work, server, count)
        self.owner = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        self.prefix = ([sys.executable, "-m", "cpoplib", "run", "getmail"]
                       if on_cpoplib else [sys.executable, script])
        self.env = dict(os.environ, HOME=self.work)

    def configure(self):
        rc = os.path.join(self.run_dir, "getmailrc")
        with open(rc, "w") as f:
            f.write("[retriever]\ntype = SimplePOP3Retriever\n"
                    "server = %s\nport = %d\nusername = %s\npassword = %s\n"
                    "\n[destination]\ntype = Maildir\npath = %s/\n%s"
                    "\n[options]\nverbose = 0\nread_all = true\n"
                    "delete = false\nmessage_log_syslog = false\n"
                    % (self.server.host, self.server.pop3_port, BENCH_USER,
                       BENCH_PASSWORD, self.dest,
                       "user = nobody\n" if self.owner else ""))
        os.chmod(rc, 0o600)
        state = os.path.join(self.run_dir, "getmail-state")
        os.mkdir(state)
        make_maildir(self.dest, self.owner)
        self.argv = self.prefix + ["--getmaildir", state, "--rcfile", rc,
                                   "--quiet"]


def getmail_script():
    """getmail6's script of this interpreter's environment (it is run with
    this interpreter, directly and through `cpoplib run`), or None."""
    path = os.path.join(os.path.dirname(sys.executable), "getmail")
    return path if os.path.exists(path) else None


TMPFS_MAGIC = 0x01021994


def filesystem_of(path):
    """(name, is tmpfs) of the filesystem holding `path`, from
    /proc/self/mountinfo (the longest mount point above it)."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                mount, fstype = fields[4], fields[sep + 1]
                if ((path == mount or path.startswith(mount.rstrip("/")
                                                      + "/"))
                        and len(mount) >= len(best)):
                    best, kind = mount, fstype
    except (OSError, ValueError, IndexError):
        pass
    return kind, kind == "tmpfs"


# --------------------------------------------------------------------------
# running

class ToolFailed(Exception):
    pass


def run_once(tool):
    """Run the tool once on a fresh destination: (wall s, cpu s, output)."""
    tool.prepare()
    os.sync()
    t0 = time.perf_counter()
    proc = subprocess.Popen(tool.argv, env=tool.env, cwd=tool.work,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    if proc.returncode != 0:
        raise ToolFailed("%s exited with %d:\n%s" % (
            tool.label, proc.returncode, out.decode(errors="replace")[-2000:]))
    return wall, usage.ru_utime + usage.ru_stime, out.decode(
        errors="replace")


def check(tool, expected, output, nbytes):
    if hasattr(tool, "check_output"):
        tool.check_output(output, sum(expected.values()), nbytes)
    got = tool.messages()
    if got is None:
        return
    digests = Counter(body_digest(m) for m in got)
    if digests != expected:
        raise runner.Mismatch(
            "%s delivered %d messages (%d distinct bodies); expected %d"
            % (tool.label, len(got), len(digests), sum(expected.values())))


def timed_rounds(tools, rounds, expected, nbytes, log):
    out = {t.label: {"times": [], "cpu": []} for t in tools}
    for r in range(rounds):
        for t in tools:
            wall, cpu, output = run_once(t)
            check(t, expected, output, nbytes)
            out[t.label]["times"].append(wall)
            out[t.label]["cpu"].append(cpu)
        log.write("  round %d/%d: %s\n" % (r + 1, rounds, ", ".join(
            "%s %.2f s" % (t.label, out[t.label]["times"][-1])
            for t in tools)))
    return runner.summarize(out)


# --------------------------------------------------------------------------
# reporting

fmt_s = runner.fmt_time


def table(results, base, nbytes):
    lines = ["| tool | wall median (min–max) | ÷ %s | MB/s | client CPU "
             "(user+sys) | CPU ÷ %s | rounds |" % (base, base),
             "|---|--:|--:|--:|--:|--:|--:|"]
    b = results[base]
    for label, d in results.items():
        lines.append("| %s | %s (%s–%s) | %.2f | %s | %s | %.2f | %d |" % (
            label, fmt_s(d["median"]), fmt_s(d["min"]), fmt_s(d["max"]),
            d["median"] / b["median"], runner.fmt_mbs(nbytes, d["median"]),
            fmt_s(d["cpu_median"]), d["cpu_median"] / b["cpu_median"],
            len(d["times"])))
    return lines


def targets(report):
    out = []
    md = report["results"].get("maildir", {})
    dc = report["results"].get("discard", {})
    if "mpop" in md and "cpoplib fetch" in md:
        r = md["cpoplib fetch"]["median"] / md["mpop"]["median"]
        c = md["cpoplib fetch"]["cpu_median"] / md["mpop"]["cpu_median"]
        out.append("Maildir: cpoplib fetch wall %.2f× mpop's (target ≤ "
                   "%.1f×: %s); client CPU %.2f× mpop's (target ≤ %.1f×: %s)"
                   % (r, TARGET_MAILDIR_VS_MPOP,
                      "met" if r <= TARGET_MAILDIR_VS_MPOP else "MISSED",
                      c, TARGET_CPU_VS_MPOP,
                      "met" if c <= TARGET_CPU_VS_MPOP else "MISSED"))
    if "mpop → /dev/null" in dc and "cpoplib fetch --dry-run" in dc:
        r = (dc["cpoplib fetch --dry-run"]["median"]
             / dc["mpop → /dev/null"]["median"])
        out.append("Nothing kept: cpoplib fetch --dry-run wall %.2f× mpop's "
                   "to /dev/null (target ≤ %.1f×: %s)"
                   % (r, TARGET_DISCARD_VS_MPOP,
                      "met" if r <= TARGET_DISCARD_VS_MPOP else "MISSED"))
    return out


def markdown(report):
    info = report["machine"]
    lines = [runner.header_line(info) + " · Dovecot %s · %s · destination "
             "filesystem: %s" % (report["dovecot"], report["mpop"],
                                 report["filesystem"]), "",
             "Tools mode: %d messages of %s bytes each from Dovecot over "
             "plain POP3 (%s bytes of mailbox), each tool a process of its "
             "own, timed whole (start-up to exit); alternating rounds, "
             "medians with (min–max); ÷ = median ÷ mpop's median; client "
             "CPU = user + system time of the process and the children it "
             "waited for (os.wait4).  Every run's destination was checked: "
             "all messages, each once (mpop → /dev/null: exit status "
             "only).  Each run starts after os.sync(), so a batch sync "
             "writes back only the tool's own files.  Durability: mpop "
             "fsyncs each message file (not the directories or its UIDL "
             "file); cpoplib fetch syncs each batch, then its state file "
             "and the renames; getmail6 fsyncs each message file."
             % (report["count"], "{:,}".format(report["size"]),
                "{:,}".format(report["mailbox_bytes"])), ""]
    titles = {"maildir": "Delivery to an empty Maildir, every message, "
                         "each tool's default durability:",
              "discard": "Nothing kept (mpop: mbox /dev/null; cpoplib: "
                         "--dry-run):"}
    for group, res in report["results"].items():
        lines += [titles[group], ""]
        base = next(iter(res))
        lines += table(res, base, report["mailbox_bytes"]) + [""]
    lines += ["Targets: " + t for t in targets(report)]
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# main

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks --tools",
        description="cpoplib fetch against mpop and getmail6 on a private "
                    "Dovecot: the whole download, to a Maildir and to "
                    "nowhere.")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--getmail-rounds", type=int, default=1,
                   help="rounds of the getmail6 rows (default 1; 0: none)")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--size", type=int, default=20 * 1024,
                   help="bytes per message (default 20 KiB)")
    p.add_argument("--groups", default="maildir,discard",
                   help="comma-separated: maildir, discard")
    p.add_argument("--workdir", metavar="DIR",
                   help="where the destinations are made (default: the "
                        "system's temporary directory); not a tmpfs")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--markdown", metavar="PATH")
    a = p.parse_args(argv)
    a.groups = [g.strip() for g in a.groups.split(",") if g.strip()]
    if not set(a.groups) <= {"maildir", "discard"}:
        p.error("--groups: maildir, discard")
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    return a


def tool_version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


def main(argv=None):
    args = parse_args(argv)
    log = sys.stderr
    t_start = time.perf_counter()
    ds = _dovecot_server()
    if ds.find_dovecot() is None:
        log.write("benchmarks --tools: dovecot is not installed "
                  "(apt-get install dovecot-core dovecot-pop3d)\n")
        return 2
    mpop = tool_version(["mpop", "--version"])
    if mpop is None:
        log.write("benchmarks --tools: mpop is not installed "
                  "(apt-get install mpop)\n")
        return 2
    getmail = getmail_script() if args.getmail_rounds > 0 else None
    parent = args.workdir or ds._pick_tmp_parent() or tempfile.gettempdir()
    fstype, tmpfs = filesystem_of(parent)
    if tmpfs:
        log.write("benchmarks --tools: %s is a tmpfs, where syncing costs "
                  "nothing; give --workdir on a disk filesystem\n" % parent)
        return 2
    info = runner.machine_info()
    import cpoplib
    info["cpoplib"] = getattr(cpoplib, "__version__", None)
    report = {"machine": info, "mode": "tools", "rounds": args.rounds,
              "count": args.messages, "size": args.size, "mpop": mpop,
              "filesystem": fstype,
              "argv": sys.argv[1:], "results": {}, "notes": [],
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if args.getmail_rounds > 0 and getmail is None:
        report["notes"].append("getmail6 rows skipped: getmail6 is not "
                               "installed in this environment (pip "
                               "install getmail6).")
    log.write("generating %d messages of %d bytes...\n"
              % (args.messages, args.size))
    messages = bench_messages(args.messages, args.size)
    expected = Counter(body_digest(m) for _, m in messages)
    report["mailbox_bytes"] = nbytes = sum(len(m.replace(b"\n", b"\r\n"))
                                           for _, m in messages)
    log.write("starting Dovecot...\n")
    server = ds.DovecotServer(
        large_size=4096,
        extra_users={BENCH_USER: (BENCH_PASSWORD, messages)})
    del messages
    work = tempfile.mkdtemp(prefix="cpoplib-bench-tools-", dir=parent)
    os.chmod(work, 0o755)
    try:
        server.start()
        report["dovecot"] = "%d.%d.%d" % server.version
        n = args.messages
        for group in args.groups:
            if group == "maildir":
                tools = [Mpop("mpop", work, server, n),
                         CpoplibFetch("cpoplib fetch", work, server, n),
                         CpoplibFetch("cpoplib fetch --sync file", work,
                                      server, n, sync="file")]
                slow = []
                if getmail is not None:
                    slow = [Getmail("getmail6", work, server, n, getmail,
                                    False),
                            Getmail("getmail6 on cpoplib", work, server, n,
                                    getmail, True)]
            else:
                tools = [MpopDiscard("mpop → /dev/null", work, server, n),
                         CpoplibDryRun("cpoplib fetch --dry-run", work,
                                       server, n)]
                slow = []
            log.write("%s: warm-up and check...\n" % group)
            for t in tools + slow:
                _, _, output = run_once(t)
                check(t, expected, output, nbytes)
            res = timed_rounds(tools, args.rounds, expected, nbytes, log)
            if slow:
                res.update(timed_rounds(slow, args.getmail_rounds, expected,
                                        nbytes, log))
            report["results"][group] = res
    except (runner.Mismatch, ToolFailed) as exc:
        log.write("FAILED: %s\n" % exc)
        return 1
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    report["notes"].append("Run: python -m benchmarks --tools %s"
                           % " ".join(argv if argv is not None
                                      else sys.argv[1:]))
    report["elapsed_s"] = time.perf_counter() - t_start
    runner.emit_report(report, markdown(report), args, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
