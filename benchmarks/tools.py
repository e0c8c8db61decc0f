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

from . import runner, wan
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
    user, password = BENCH_USER, BENCH_PASSWORD

    def __init__(self, label, work, server, count, account=None):
        if account is not None:
            self.user, self.password = account
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
    only_new = "off"
    auth = "user"

    def configure(self):
        rc = os.path.join(self.run_dir, "mpoprc")
        delivery = self.delivery or "maildir %s" % self.dest
        with open(rc, "w") as f:
            f.write("defaults\n"
                    "host %s\nport %d\ntls off\nauth %s\n"
                    "user %s\npassword %s\n"
                    "keep on\nonly_new %s\npipelining on\n"
                    "uidls_file %s\n"
                    "account bench\n"
                    "delivery %s\n"
                    "account default : bench\n"
                    % (self.server.host, self.server.pop3_port, self.auth,
                       self.user,
                       self.password, self.only_new,
                       os.path.join(self.run_dir, "uidls"), delivery))
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

    def __init__(self, *a, sync=None, window=None, **kw):
        super().__init__(*a, **kw)
        self.sync = sync
        self.window = window
        self.env = dict(os.environ, CPOPLIB_BENCH_PASSWORD=self.password)

    def configure(self):
        self.argv = [sys.executable, "-m", "cpoplib", "fetch",
                     "--host", self.server.host,
                     "--port", str(self.server.pop3_port),
                     "--user", self.user, "--password-env",
                     "CPOPLIB_BENCH_PASSWORD", "--allow-plaintext",
                     "--state", os.path.join(self.run_dir, "state.json")]
        if self.group == "maildir":
            self.argv += ["--quiet", "--maildir", self.dest]
        else:
            self.argv += ["--dry-run", "--all"]   # summary line checked
        if self.sync:
            self.argv += ["--sync", self.sync]
        if self.window:
            self.argv += ["--window", str(self.window)]


class CpoplibDryRun(CpoplibFetch):
    group = "discard"

    def messages(self):
        return None

    def check_output(self, output, count, nbytes):
        want = "%d messages, %d bytes" % (count, nbytes)
        if want not in output:
            raise runner.Mismatch("%s: expected %r in its summary, got %r"
                                  % (self.label, want, output[-300:]))


class Ceiling(Tool):
    """benchmarks/_ceiling.py as a process: every RETR in flight,
    nothing stored (the link's ceiling)."""

    group = "discard"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.env = dict(os.environ, CPOPLIB_BENCH_PASSWORD=self.password,
                        PYTHONPATH=runner.ROOT)

    def configure(self):
        self.argv = [sys.executable, "-m", "benchmarks._ceiling",
                     "--host", self.server.host,
                     "--port", str(self.server.pop3_port),
                     "--user", self.user, "--password-env",
                     "CPOPLIB_BENCH_PASSWORD", "--count", str(self.count)]

    def messages(self):
        return None

    def check_output(self, output, count, nbytes):
        words = output.split()
        if len(words) < 4 or words[:2] != [str(count), "messages,"]:
            raise runner.Mismatch("%s: expected %d messages, got %r"
                                  % (self.label, count, output[-300:]))
        self.wire_bytes = int(words[2])   # replies as read, QUIT's too


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
                    % (self.server.host, self.server.pop3_port, self.user,
                       self.password, self.dest,
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


def run_once(tool, rss=False):
    """Run the tool once on a fresh destination: see run_again()."""
    tool.prepare()
    return run_again(tool, rss)


GNU_TIME = "/usr/bin/time"


def run_again(tool, rss=False):
    """Run the tool once more on what its last run left (destination,
    state or UIDL file): (wall s, cpu s, output, peak RSS KiB or None).

    The peak is asked for with rss=True and measured by GNU time (%M),
    which the command then runs under, where it is installed: os.wait4's
    ru_maxrss cannot serve, it counts the resident set of the forking
    benchmark process itself (the child's memory before its exec)."""
    os.sync()
    argv, rss_file = tool.argv, None
    if rss and os.access(GNU_TIME, os.X_OK):
        rss_file = os.path.join(tool.run_dir, "maxrss")
        argv = [GNU_TIME, "-f", "%M", "-o", rss_file] + argv
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=tool.env, cwd=tool.work,
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
    peak = None
    if rss_file is not None:
        with open(rss_file) as f:
            peak = int(f.read().split()[-1])
    return (wall, usage.ru_utime + usage.ru_stime,
            out.decode(errors="replace"), peak)


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
            wall, cpu, output, _ = run_once(t)
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


def header(report):
    """The machine line of every --tools table."""
    return runner.header_line(report["machine"]) + (
        " · Dovecot %s · %s · destination filesystem: %s"
        % (report["dovecot"], report["mpop"], report["filesystem"]))


def markdown(report):
    lines = [header(report), "",
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
    p.add_argument("--rounds", type=int,
                   help="alternating rounds (default 7; through links 3)")
    p.add_argument("--getmail-rounds", type=int,
                   help="rounds of the getmail6 rows (default 1, through "
                        "links 0: it fetches one message per round trip; "
                        "0: none)")
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
    wan.add_arguments(p, "through links, also `cpoplib fetch --window W` "
                         "(Maildir) for each W (default: none)")
    sc = p.add_argument_group("scale (see benchmarks/README.md)")
    sc.add_argument("--scale", action="store_true",
                    help="instead: mailboxes of many small messages, "
                         "cpoplib fetch against mpop to a Maildir, first "
                         "run and a rerun with nothing new")
    sc.add_argument("--scale-sizes", metavar="N,...",
                    help="mailbox sizes (default 2000,20000,100000)")
    sc.add_argument("--scale-message-size", type=int, default=1024,
                    metavar="BYTES", help="bytes per message (default 1024)")
    a = p.parse_args(argv)
    a.links = wan.links_from_args(a, p)
    a.link_windows = wan.parse_windows(a.link_windows)
    a.groups = [g.strip() for g in a.groups.split(",") if g.strip()]
    if not set(a.groups) <= {"maildir", "discard"}:
        p.error("--groups: maildir, discard")
    if a.rounds is None:
        a.rounds = 3 if (a.links or a.scale) else 7
    if a.getmail_rounds is None:
        a.getmail_rounds = 0 if a.links else 1
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    if a.scale:
        if len(a.links) > 1:
            p.error("--scale runs on loopback or through one --rtt link")
        try:
            a.scale_sizes = [int(x) for x in (a.scale_sizes or
                                              "2000,20000,100000").split(",")
                             if x.strip()]
        except ValueError:
            p.error("--scale-sizes: numbers, comma-separated")
    return a


def tool_version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


class Setup:
    """What every --tools run needs: Dovecot's helper module, mpop's
    version, where destinations go and its filesystem, the report's
    start.  error: an exit status (after a message), or None."""

    def __init__(self, args, mode, log):
        self.error = None
        self.ds = _dovecot_server()
        if self.ds.find_dovecot() is None:
            log.write("benchmarks --tools: dovecot is not installed "
                      "(apt-get install dovecot-core dovecot-pop3d)\n")
            self.error = 2
            return
        self.mpop = tool_version(["mpop", "--version"])
        if self.mpop is None:
            log.write("benchmarks --tools: mpop is not installed "
                      "(apt-get install mpop)\n")
            self.error = 2
            return
        self.parent = (args.workdir or self.ds._pick_tmp_parent()
                       or tempfile.gettempdir())
        fstype, tmpfs = filesystem_of(self.parent)
        if tmpfs:
            log.write("benchmarks --tools: %s is a tmpfs, where syncing "
                      "costs nothing; give --workdir on a disk filesystem\n"
                      % self.parent)
            self.error = 2
            return
        info = runner.machine_info()
        import cpoplib
        info["cpoplib"] = getattr(cpoplib, "__version__", None)
        self.report = {"machine": info, "mode": mode, "rounds": args.rounds,
                       "mpop": self.mpop, "filesystem": fstype,
                       "argv": sys.argv[1:], "results": {}, "notes": [],
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def workdir(self):
        work = tempfile.mkdtemp(prefix="cpoplib-bench-tools-",
                                dir=self.parent)
        os.chmod(work, 0o755)
        return work

    def serve(self, server, body, text_of, args, argv, log, t_start):
        """Start `server`, run body(work) with a fresh work directory,
        stop and clean up; then the report (text_of(report): its
        Markdown).  Returns the exit status."""
        work = self.workdir()
        try:
            server.start()
            self.report["dovecot"] = "%d.%d.%d" % server.version
            body(work)
        except (runner.Mismatch, ToolFailed) as exc:
            log.write("FAILED: %s\n" % exc)
            return 1
        finally:
            server.stop()
            shutil.rmtree(work, ignore_errors=True)
        return runner.finish_report(self.report, "--tools", argv, text_of,
                                    args, log, t_start)


def group_tools(group, work, server, n, getmail=None, windows=()):
    """The tools of a group: (alternating ones, getmail6's slow ones)."""
    if group == "discard":
        return [MpopDiscard("mpop → /dev/null", work, server, n),
                CpoplibDryRun("cpoplib fetch --dry-run", work, server, n)], []
    tools = [Mpop("mpop", work, server, n),
             CpoplibFetch("cpoplib fetch", work, server, n)]
    if not windows:
        tools.append(CpoplibFetch("cpoplib fetch --sync file", work,
                                  server, n, sync="file"))
    tools += [CpoplibFetch("cpoplib fetch --window %d" % w, work, server, n,
                           window=w) for w in windows]
    slow = []
    if getmail is not None:
        slow = [Getmail("getmail6", work, server, n, getmail, False),
                Getmail("getmail6 on cpoplib", work, server, n, getmail,
                        True)]
    return tools, slow


def warm_up(tools, expected, nbytes, log, what):
    log.write("%s: warm-up and check...\n" % what)
    for t in tools:
        check(t, expected, run_once(t)[2], nbytes)


def main(argv=None):
    args = parse_args(argv)
    log = sys.stderr
    t_start = time.perf_counter()
    setup = Setup(args, "tools-scale" if args.scale else "tools", log)
    if setup.error is not None:
        return setup.error
    if args.scale:
        from . import scale
        return scale.run(args, argv, setup, log, t_start)
    report = setup.report
    report.update(count=args.messages, size=args.size)
    getmail = getmail_script() if args.getmail_rounds > 0 else None
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
    server = setup.ds.DovecotServer(
        large_size=4096,
        extra_users={BENCH_USER: (BENCH_PASSWORD, messages)})
    del messages

    def body(work):
        if args.links:
            run_links(args, report, server, work, getmail, expected, nbytes,
                      log)
            return
        for group in args.groups:
            tools, slow = group_tools(group, work, server, args.messages,
                                      getmail)
            warm_up(tools + slow, expected, nbytes, log, group)
            res = timed_rounds(tools, args.rounds, expected, nbytes, log)
            if slow:
                res.update(timed_rounds(slow, args.getmail_rounds, expected,
                                        nbytes, log))
            report["results"][group] = res

    return setup.serve(server, body, links_markdown if args.links
                       else markdown, args, argv, log, t_start)


# --------------------------------------------------------------------------
# through emulated links (--rtt, --links)

def run_links(args, report, server, work, getmail, expected, nbytes, log):
    """Every tool of every group, and the ceiling, through every link in
    alternating rounds (one set per link); checked first on loopback."""
    n = args.messages
    report.update(mode="tools-links",
                  links=[l.as_dict() for l in args.links], link_results={})

    def tools_for(dest, endpoint):
        os.mkdir(dest)
        os.chmod(dest, 0o755)
        tools, slow = [], []
        for group in args.groups:
            t, s = group_tools(group, dest, endpoint, n, getmail,
                               args.link_windows)
            tools += t
            slow += s
        tools.append(Ceiling(wan.CEILING, dest, endpoint, n))
        return tools, slow

    tools, slow = tools_for(os.path.join(work, "check"), server)
    report["tools"] = [t.label for t in tools + slow]
    warm_up(tools + slow, expected, nbytes, log, "all tools, on loopback")
    report["wire_bytes"] = tools[-1].wire_bytes
    for i, (link, ld) in enumerate(zip(args.links, report["links"])):
        log.write("link %s:\n" % link.label)
        with wan.Through(server, link) as via:
            tools, slow = tools_for(os.path.join(work, "link-%d" % i), via)
            with wan.cpu_share(via, ld):
                res = timed_rounds(tools, args.rounds, expected, nbytes, log)
                if slow:
                    res.update(timed_rounds(slow, args.getmail_rounds,
                                            expected, nbytes, log))
        ld["emulator"] = via.stats
        report["link_results"][link.label] = res


def links_markdown(report):
    links = [wan.Link.from_dict(d) for d in report["links"]]
    lines = [header(report), "",
             "Tools through emulated links (benchmarks/linkemu.py, a proxy "
             "in its own process): %d messages of %s bytes (%s bytes of "
             "mailbox) from Dovecot over plain POP3, each tool a process "
             "timed whole (start-up, connecting with the emulated "
             "handshake, logging in, fetching, delivering, syncing, QUIT); "
             "%d alternating rounds per link, medians with (min–max); "
             "**×** = tool median ÷ the ceiling's median on the same link.  "
             "The ceiling (benchmarks/_ceiling.py, also a process) logs in "
             "and sends every RETR and QUIT at once, reads and counts, "
             "stores nothing.  Maildir rows: each tool's default "
             "durability (see the loopback table's notes); every run's "
             "destination was checked."
             % (report["count"], "{:,}".format(report["size"]),
                "{:,}".format(report["mailbox_bytes"]), report["rounds"]),
             ""]
    lines += wan.matrix_table(report["link_results"], links,
                              report["tools"]) + [""]
    lines += ["Client CPU (user + system of the process and the children "
              "it waited for):", ""]
    lines += wan.cpu_table(report["link_results"], links,
                           report["tools"]) + [""]
    lines += wan.link_lines(
        report["links"], report["wire_bytes"], 5,
        "5 RTT: connect and greeting 2, USER, PASS, RETR…QUIT")
    lines += ["", "The ideal leaves out what no link adds: the interpreter's "
              "start-up and the server's own time (the loopback column "
              "shows both)."]
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
