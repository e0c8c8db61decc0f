"""The crash exploration of `cpoplib fetch --delete`: record a workload
(a few fetcher runs, some killed at a fault point, one against a server
that is down) under strace, enumerate the crash states of every point of
it (tests/crash/model.py), and for each distinct state run the next
fetch on it against the server as it was at that point and check the
invariants.

``Config``   a destination (maildir, eml, mbox) and a --sync mode
``Workload`` the recorded runs, their trace and the server's history
``explore``  the exploration of a workload: a Report of every state
             checked, the violations and the findings

Invariants checked after the next run on each crash state (exit 0):

* every message the server ever had (up to the crash) is in the
  destination exactly once, byte for byte as the fetcher stores it
  (Maildir and mbox: LF line ends; .eml: as received);
* nothing else is there (a torn or foreign message is a violation);
* the server is empty (the run deleted everything, so nothing was left
  undeleted or deleted without being on disk);
* no staged file is left over and, for an mbox, no dot lock.

A run that refuses the state (exit 5, "damaged") passes if every message
the server had deleted by the crash is in the destination; the state is
then moved away, as the message says, and a run after that must leave
every message in the destination at least once.  A run that exits 4
because the mbox's dot lock is still there, stale, is a finding (see
README: it needs the lock removed by hand); the lock is removed and the
run repeated, so the data invariants are checked all the same.
"""
import collections
import contextlib
import io
import mailbox
import os
import re
import shutil
import sys
import time

from cpoplib._server import make_mailbox
from cpoplib.fetch import cli, durable, state as fetch_state

from . import model, trace as tracing
from .server import ExpungingServer

PASSWORD_ENV = "CPOPLIB_CRASH_PW"
BATCH = 2


class Config:
    """A destination kind and a --sync mode (None for the mbox, which
    --sync does not concern: it always fsyncs the file)."""

    def __init__(self, dest, sync):
        self.dest, self.sync = dest, sync

    @property
    def name(self):
        return self.dest + ("-" + self.sync if self.sync else "")

    def __repr__(self):
        return self.name


CONFIGS = [Config("maildir", "fs"), Config("maildir", "file"),
           Config("eml", "fs"), Config("eml", "file"), Config("mbox", None)]
BY_NAME = {c.name: c for c in CONFIGS}


def messages(first, count, seed):
    """(uidl, bytes) messages, CRLF, of assorted sizes (one over 8 KiB)."""
    sizes = [700, 3000, 1200, 9000, 500, 2000, 1500, 800][:count]
    return [("uid-%d" % (first + i), m) for i, m in
            enumerate(make_mailbox(count, sizes, seed=seed))]


class Step:
    """One run of the workload: the messages that arrive on the server
    before it, whether the server is down, the fault point that kills it
    (CPOPLIB_FETCH_FAULT) and the exit status it must have."""

    def __init__(self, arrive=(), fault=None, down=False, code=0):
        self.arrive, self.fault, self.down = list(arrive), fault, down
        self.code = 97 if fault else code


def steps_for(config):
    """The workload of a configuration.

    Maildir and .eml, --batch 2: run 1 creates the directories and the
    state and is killed when the third message is staged (batch 1
    published, an orphan staged); run 2 removes the orphan, publishes
    batch 2 and is killed once batch 3 is committed (renames pending);
    run 3 finishes those renames, fetches a message that arrived since,
    deletes everything and QUITs.

    mbox: run 1 creates the mbox and is killed once batch 2 is appended
    and synced but not committed; run 2 meets a server that is down, but
    first cuts the uncommitted tail and removes the dot lock run 1 left;
    run 3 fetches the rest and a new message, deletes, QUITs.
    """
    first = messages(1, 6, seed=11)
    late = messages(7, 1, seed=12)
    if config.dest == "mbox":
        return [Step(first, fault="synced:2"), Step(down=True, code=6),
                Step(late)]
    return [Step(first, fault="delivered:3"), Step(fault="committed:2"),
            Step(late)]


class Paths:
    def __init__(self, base, config):
        self.base = os.path.abspath(base)
        self.root = os.path.join(self.base, "root")
        self.home = os.path.join(self.base, "home")
        self.state = os.path.join(self.root, "state", "account.state")
        mail = os.path.join(self.root, "mail")
        self.dest = os.path.join(mail, {"maildir": "Maildir", "eml": "eml",
                                        "mbox": "inbox.mbox"}[config.dest])


def fetch_args(config, paths, server):
    args = ["--host", server.host, "--port", str(server.port),
            "--user", "u", "--password-env", PASSWORD_ENV,
            "--allow-plaintext", "--timeout", "10", "--state", paths.state,
            "--delete", "--batch", str(BATCH), "-q",
            "--" + {"maildir": "maildir", "eml": "eml-dir",
                    "mbox": "mbox"}[config.dest], paths.dest]
    if config.sync:
        args += ["--sync", config.sync]
    return args


class Point:
    """A crash point: after trace.ops[:index]; the server's mailbox then
    (QUIT expunges when the server gets it: before the QUIT is sent the
    messages are all there) and every message it ever had."""

    def __init__(self, index, server, ever):
        self.index, self.server, self.ever = index, server, ever


class Workload:
    """A recorded workload: its trace (model.Trace, durability computed)
    and the crash points with the server state at each."""

    def __init__(self, config, base, server, skip=()):
        self.config = config
        self.paths = Paths(base, config)
        self.server = server
        self.skip = tuple(skip)
        self.args = fetch_args(config, self.paths, server)
        self.steps = steps_for(config)
        self.points = []
        self.seconds = 0.0

    def record(self):
        started = time.monotonic()
        p = self.paths
        for d in (p.root, p.home):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        tr = model.Trace(p.root, p.base, on_write=_note_dotlock)
        env = dict(os.environ)
        for var in ("CPOPLIB_FETCH_FAULT", "CPOPLIB_FETCH_SKIP_SYNC",
                    "LD_PRELOAD"):
            env.pop(var, None)
        env.update({PASSWORD_ENV: "pw", "HOME": p.home})
        if self.skip:
            env["CPOPLIB_FETCH_SKIP_SYNC"] = ",".join(self.skip)
        if os.environ.get("LD_PRELOAD"):
            # a sanitizer runtime: the fetcher needs it, strace does not,
            # and LeakSanitizer cannot run under ptrace (the runs in this
            # process still have it)
            env["CPOPLIB_CRASH_LD_PRELOAD"] = os.environ["LD_PRELOAD"]
            env["ASAN_OPTIONS"] = ":".join(filter(None, [
                env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
        self.server.reset([])
        ever = []
        runs = []
        for n, step in enumerate(self.steps, 1):
            self.server.reset(self.server.snapshot() + step.arrive)
            ever = ever + step.arrive
            self.server.down = step.down
            run_env = dict(env)
            if step.fault:
                run_env["CPOPLIB_FETCH_FAULT"] = step.fault
            before = self.server.snapshot()
            tr.new_run("%d%s" % (n, " (killed at %s)" % step.fault
                                 if step.fault else
                                 " (server down)" if step.down else ""))
            out = os.path.join(p.base, "trace-%d.txt" % n)
            code, err = tracing.record(_fetcher_argv(self.args), out,
                                       env=run_env, cwd=p.base)
            self.server.down = False
            if code != step.code:
                raise AssertionError("recorded run %d exited %d, not %d: %s"
                                     % (n, code, step.code, err[-2000:]))
            tr.add_calls(tracing.parse(out))
            runs.append((len(tr.ops), before, self.server.snapshot(),
                         list(ever)))
        tr.finish()
        self.trace = tr
        start = 0
        for end, before, after, ever in runs:
            quit_at = next((op.index for op in tr.ops[start:end]
                            if op.kind == "quit"), None)
            for k in range(start + 1, end + 1):
                done = quit_at is not None and quit_at < k
                self.points.append(Point(k, after if done else before,
                                         ever))
            start = end
        self.seconds = time.monotonic() - started
        return self


def _fetcher_argv(args):
    code = ("import os, sys\n"
            "pre = os.environ.pop('CPOPLIB_CRASH_LD_PRELOAD', None)\n"
            "if pre:\n"
            "    os.environ['LD_PRELOAD'] = pre\n"
            "    os.execv(sys.executable, [sys.executable, '-c', CODE]\n"
            "             + sys.argv[1:])\n"
            "from cpoplib.fetch import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    code = "CODE = %r\n%s" % (code, code)
    return [sys.executable, "-c", code, *args]


_DOTLOCK = re.compile(rb'"dotlock":\[(\d+),(\d+)\]')


def _note_dotlock(trace, ino, chunk):
    """A state record naming the mbox's dot lock by (st_ino, mtime_ns):
    the file at the mbox's path + ".lock" now is that dot lock."""
    for line in chunk.splitlines():
        m = _DOTLOCK.search(line)
        if not m:
            continue
        record = fetch_state._parse(line + b"\n")
        if record is None or not (record.get("mbox") or {}).get("path"):
            continue
        trace.note_identity(record["mbox"]["path"] + ".lock",
                            int(m.group(1)), int(m.group(2)))


def translate_identities(state_path, translated):
    """Rewrite the state records that name a materialised inode by its
    recorded st_ino to name it by its new one (everything else in the
    file, a torn last line included, stays byte for byte)."""
    if not translated:
        return
    try:
        with open(state_path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return
    out = []
    for line in raw.splitlines(keepends=True):
        record = fetch_state._parse(line)
        lock = ((record or {}).get("mbox") or {}).get("dotlock")
        if lock and lock[0] in translated:
            if fetch_state._line(record) != line:
                raise AssertionError("state line does not round-trip: %r"
                                     % line)
            record["mbox"]["dotlock"] = [translated[lock[0]], lock[1]]
            line = fetch_state._line(record)
        out.append(line)
    with open(state_path, "wb") as f:
        f.write(b"".join(out))


# --------------------------------------------------------------------------
# the next run and the invariants

def stored_form(config, data):
    return data if config.dest == "eml" else data.replace(b"\r\n", b"\n")


def visible(config, paths):
    """The messages in the destination, as a mail reader would see them
    (a list: duplicates count)."""
    found = []
    if config.dest == "mbox":
        if os.path.exists(paths.dest):
            box = mailbox.mbox(paths.dest, create=False)
            try:
                found = [box.get_bytes(k) for k in box.keys()]
            finally:
                box.close()
        return found
    subs = ("new", "cur") if config.dest == "maildir" else ("",)
    for sub in subs:
        d = os.path.join(paths.dest, sub)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if config.dest == "eml" and (name.startswith(".")
                                         or not name.endswith(".eml")):
                continue
            with open(os.path.join(d, name), "rb") as f:
                found.append(f.read())
    return found


def leftovers(config, paths):
    if config.dest == "mbox":
        return [n for n in [paths.dest + ".lock"] if os.path.exists(n)]
    d = os.path.join(paths.dest, "tmp") if config.dest == "maildir" \
        else paths.dest
    if not os.path.isdir(d):
        return []
    return [n for n in os.listdir(d) if config.dest == "maildir"
            or n.startswith(".cpoplib-tmp-")]


def run_fetch(args):
    """One `cpoplib fetch` in this process, not crashed, so its syncs
    cannot matter: they are all turned off to save time."""
    saved = {k: os.environ.get(k) for k in (
        "CPOPLIB_FETCH_FAULT", "CPOPLIB_FETCH_SKIP_SYNC", PASSWORD_ENV)}
    os.environ.pop("CPOPLIB_FETCH_FAULT", None)
    os.environ["CPOPLIB_FETCH_SKIP_SYNC"] = ",".join(durable.SYNC_SITES)
    os.environ[PASSWORD_ENV] = "pw"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            code = cli.main(list(args))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, err.getvalue()


def compare(config, found, ever):
    """What is wrong with `found` (the destination's messages) given
    `ever` (every message the server had), as a list of strings."""
    want = {stored_form(config, data): uid for uid, data in ever}
    problems = []
    counts = collections.Counter(found)
    for data, uid in want.items():
        n = counts.pop(data, 0)
        if n == 0:
            problems.append("lost %s" % uid)
        elif n > 1:
            problems.append("%s is there %d times" % (uid, n))
    for data, n in counts.items():
        problems.append("%d message(s) of %d bytes that the server never "
                        "had (torn or damaged): %r" % (n, len(data),
                                                       data[:60]))
    return problems


class Outcome:
    def __init__(self):
        self.problems = []          # violations
        self.findings = []          # not a violation: see explore()
        self.refused = False


def _next_run(work, outcome):
    """The next `cpoplib fetch`; a stale dot lock that stops it is noted
    as a finding and removed, as its user would, and the run repeated."""
    code, err = run_fetch(work.args)
    lock = work.paths.dest + ".lock"
    if code == 4 and "locked by another program" in err \
            and os.path.exists(lock):
        outcome.findings.append("stale dot lock: the next run exits 4 (%s)"
                                % err.strip().splitlines()[-1])
        os.unlink(lock)
        code, err = run_fetch(work.args)
    return code, err


def check_state(work, crash, point):
    """Materialise `crash`, run the next fetch on it against the server
    of `point`, check the invariants; an Outcome."""
    config, paths = work.config, work.paths
    outcome = Outcome()
    translate_identities(paths.state, crash.materialise(paths.root))
    work.server.reset(point.server)
    on_server = {uid for uid, _ in point.server}
    gone = [(u, d) for u, d in point.ever if u not in on_server]
    code, err = _next_run(work, outcome)
    if code == 5 and "damaged" in err:
        outcome.refused = True
        found = set(visible(config, paths))
        lost = [u for u, d in gone if stored_form(config, d) not in found]
        if lost:
            outcome.problems.append("state refused (%s) and %s, deleted on "
                                    "the server, not in the destination"
                                    % (err.strip(), ", ".join(lost)))
        os.rename(paths.state, paths.state + ".damaged")
        code, err = _next_run(work, outcome)
        found = set(visible(config, paths))
        lost = [u for u, d in point.ever
                if stored_form(config, d) not in found]
        if code != 0 or lost:
            outcome.problems.append("after moving the damaged state away: "
                                    "exit %d (%s), lost %s"
                                    % (code, err.strip(), lost))
        return outcome
    if code != 0:
        outcome.problems.append("the next run exited %d: %s"
                                % (code, err.strip()))
        return outcome
    outcome.problems += compare(config, visible(config, paths), point.ever)
    left = work.server.snapshot()
    if left:
        outcome.problems.append("still on the server: %s"
                                % ", ".join(u for u, _ in left))
    stray = leftovers(config, paths)
    if stray:
        outcome.problems.append("left over: %s" % ", ".join(stray))
    return outcome


class Report:
    def __init__(self, work):
        self.work = work
        self.points = 0
        self.generated = 0          # crash states enumerated
        self.checked = 0            # distinct ones, each run and checked
        self.refused = 0
        self.violations = []        # (description, [problems])
        self.findings = []          # (description, [findings])
        self.seconds = 0.0

    def summary(self):
        return ("%s%s: %d ops, %d crash points, %d crash states, %d "
                "distinct checked (%d refused with exit 5), %d violating, "
                "%d findings; recorded in %.1f s, explored in %.1f s"
                % (self.work.config.name,
                   " without " + ",".join(self.work.skip)
                   if self.work.skip else "",
                   len(self.work.trace.ops), self.points, self.generated,
                   self.checked, self.refused, len(self.violations),
                   len(self.findings), self.work.seconds, self.seconds))


def explore(work, stop_at_first=False, every=1):
    """Check every distinct crash state of the recorded workload `work`
    (of every `every`-th crash point); stop at the first violation or
    finding if asked (the mutation check)."""
    started = time.monotonic()
    report = Report(work)
    seen = set()
    try:
        for point in work.points[::every]:
            report.points += 1
            server_key = tuple(u for u, _ in point.server)
            for crash in model.crash_states(work.trace, point.index):
                report.generated += 1
                key = (crash.key(), server_key, len(point.ever))
                if key in seen:
                    continue
                seen.add(key)
                report.checked += 1
                outcome = check_state(work, crash, point)
                report.refused += outcome.refused
                if outcome.findings:
                    report.findings.append((crash.describe(),
                                            outcome.findings))
                if outcome.problems:
                    report.violations.append((crash.describe(),
                                              outcome.problems))
                if stop_at_first and (outcome.problems or outcome.findings):
                    return report
    finally:
        report.seconds = time.monotonic() - started
    return report


def main(argv=None):
    """python -m crash.explore [CONFIG...] [--skip SITE] [--every N]:
    explore and print the reports (from tests/, for people)."""
    import argparse
    import tempfile
    p = argparse.ArgumentParser(prog="python -m crash.explore")
    p.add_argument("configs", nargs="*", default=[c.name for c in CONFIGS])
    p.add_argument("--skip", action="append", default=[])
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--first", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    opts = p.parse_args(argv)
    with ExpungingServer() as server, \
            tempfile.TemporaryDirectory() as base:
        for name in opts.configs:
            work = Workload(BY_NAME[name], os.path.join(base, name), server,
                            opts.skip).record()
            report = explore(work, stop_at_first=opts.first,
                             every=opts.every)
            print(report.summary())
            for what, items in report.violations[:None if opts.verbose
                                                 else 3]:
                print("  VIOLATION %s\n    %s" % (what, "\n    ".join(items)))
            for what, items in report.findings[:None if opts.verbose
                                               else 3]:
                print("  finding %s\n    %s" % (what, "\n    ".join(items)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
