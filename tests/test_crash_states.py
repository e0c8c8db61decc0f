"""Crash-state exploration of `cpoplib fetch --delete` (tests/crash/).

* the model: what it makes of small hand-written traces, so that the
  persistence model of tests/crash/__init__.py is what the code does;
* the recording: strace of a real workload replays to exactly the files
  the runs left;
* the exploration: for Maildir and .eml with --sync fs and --sync file,
  and for an mbox, every distinct crash state of every point of the
  workload, each handed to the next fetch, keeps every message exactly
  once and intact;
* the mutation check: with any one sync site of cpoplib.fetch.durable
  turned off (CPOPLIB_FETCH_SKIP_SYNC), the exploration finds a crash
  state that loses, duplicates or damages mail.

CPOPLIB_CRASH_FULL=1 (CI sets it for the system interpreter's job) runs the mutation
check of each site in every configuration where the site is necessary
(30 recorded workloads); without it each site is checked in one (13),
and not at all in the sanitizer job (CPOPLIB_SANITIZED=1), which
explores the unchanged fetcher only.  Without a working strace the tests
are skipped, saying why, unless CPOPLIB_CRASH_FULL=1, where they fail.
"""
import os

import pytest

from crash import explore, model, trace as tracing
from crash.server import ExpungingServer

from cpoplib.fetch import durable

FULL = os.environ.get("CPOPLIB_CRASH_FULL") == "1"

_NO_STRACE = tracing.strace_works()
needs_strace = pytest.mark.skipif(
    _NO_STRACE is not None and not FULL,
    reason="strace cannot trace here: %s" % _NO_STRACE)

# Where each sync site is necessary under the model, the cheapest first.
# Not listed: a configuration that does not reach the site, or where the
# workload shows it redundant -- in --sync fs, mkdir-parent, maildir-dirs
# and state-dir make durable only names that the first batch's syncfs
# makes durable anyway before anything is committed.
NECESSARY = {
    "mkdir-parent": ["maildir-file", "eml-file", "mbox"],
    "maildir-dirs": ["maildir-file"],
    "batch-syncfs": ["maildir-fs", "eml-fs"],
    "batch-files": ["maildir-file", "eml-file"],
    "batch-staging-dir": ["maildir-file", "eml-file"],
    "publish-dirs": ["maildir-fs", "maildir-file", "eml-fs", "eml-file"],
    "recover-dirs": ["maildir-fs", "maildir-file", "eml-fs", "eml-file"],
    "state-file": ["maildir-fs", "maildir-file", "eml-fs", "eml-file",
                   "mbox"],
    "state-dir": ["maildir-file", "eml-file", "mbox"],
    "mbox-file": ["mbox"],
    "mbox-truncate": ["mbox"],
    "mbox-dir": ["mbox"],
    "mbox-lock-dir": ["mbox"],
}


def test_every_sync_site_is_in_the_mutation_check():
    assert sorted(NECESSARY) == sorted(durable.SYNC_SITES)
    assert all(set(c) <= set(explore.BY_NAME) for c in NECESSARY.values())


# --------------------------------------------------------------------------
# the model, on hand-written traces

ROOT = "/crash-root"


def calls(*lines):
    """Syscalls from (name, args, ret) tuples, pid 1."""
    return [tracing.Syscall(1, name, list(args), ret, None, name)
            for name, args, ret in lines]


def build(*lines):
    tr = model.Trace(ROOT, "/")
    tr.new_run("1")
    tr.add_calls(calls(*lines))
    return tr.finish()


def outcomes(tr, point=None, path="f"):
    """{content of `path` (None: absent)} over the crash states at
    `point` (default: the end)."""
    point = len(tr.ops) if point is None else point
    return {cs.tree().get(path) for cs in model.crash_states(tr, point)}


CREATE_F = ("openat", [-100, ROOT.encode() + b"/f", "O_WRONLY|O_CREAT", 0o600],
            3)
OPEN_ROOT = ("openat", [-100, ROOT.encode(), "O_RDONLY|O_DIRECTORY"], 4)


def test_unsynced_data_is_any_prefix_with_a_torn_last_write():
    tr = build(CREATE_F, OPEN_ROOT, ("fsync", [4], 0),
               ("write", [3, b"abcd", 4], 4), ("write", [3, b"efgh", 4], 4))
    assert outcomes(tr) == {b"", b"abcd", b"abcdefgh", b"ab", b"\0\0\0\0",
                            b"abcdef", b"abcd\0\0\0\0"}


def test_fsync_of_a_file_does_not_make_its_name_durable():
    tr = build(CREATE_F, ("write", [3, b"abc", 3], 3), ("fsync", [3], 0))
    assert outcomes(tr) == {None, b"abc"}
    tr = build(CREATE_F, ("write", [3, b"abc", 3], 3), ("fsync", [3], 0),
               OPEN_ROOT, ("fsync", [4], 0))
    assert outcomes(tr) == {b"abc"}


def test_fsync_of_a_directory_does_not_make_the_data_durable():
    tr = build(CREATE_F, ("write", [3, b"abc", 3], 3), OPEN_ROOT,
               ("fsync", [4], 0))
    assert outcomes(tr) == {b"", b"abc", b"a", b"\0\0\0"}


def test_a_rename_is_durable_with_its_destination_directory():
    d = ROOT.encode()
    tr = build(("mkdir", [d + b"/tmp", 0o700], 0),
               ("mkdir", [d + b"/new", 0o700], 0),
               OPEN_ROOT, ("fsync", [4], 0),
               ("openat", [-100, d + b"/tmp/m", "O_WRONLY|O_CREAT"], 3),
               ("write", [3, b"mail", 4], 4), ("fsync", [3], 0),
               ("openat", [-100, d + b"/tmp", "O_RDONLY|O_DIRECTORY"], 5),
               ("fsync", [5], 0),
               ("rename", [d + b"/tmp/m", d + b"/new/m"], 0))
    names = {tuple(sorted(p for p in cs.tree() if "/" in p))
             for cs in model.crash_states(tr, len(tr.ops))}
    # atomic: in one place or the other, never both or neither
    assert names == {("new/m",), ("tmp/m",)}
    tr.add_calls(calls(("openat", [-100, d + b"/new",
                                   "O_RDONLY|O_DIRECTORY"], 6),
                       ("fsync", [6], 0)))
    tr.finish()
    names = {tuple(sorted(p for p in cs.tree() if "/" in p))
             for cs in model.crash_states(tr, len(tr.ops))}
    assert names == {("new/m",)}


def test_syncfs_is_a_barrier_for_everything_before_it():
    tr = build(CREATE_F, ("write", [3, b"abc", 3], 3),
               ("syncfs", [3], 0), ("write", [3, b"d", 1], 1))
    assert outcomes(tr) == {b"abc", b"abcd"}


def test_descriptors_relative_opens_appends_and_seeks():
    d = ROOT.encode()
    tr = build(("mkdir", [d + b"/dir", 0o700], 0),
               ("openat", [-100, d + b"/dir", "O_RDONLY|O_DIRECTORY"], 5),
               ("openat", [5, b"f", "O_WRONLY|O_CREAT|O_EXCL"], 6),
               ("write", [6, b"hello", 5], 5),
               ("lseek", [6, 1, "SEEK_SET"], 1), ("write", [6, b"EL", 2], 2),
               ("close", [6], 0),
               ("openat", [-100, d + b"/dir/f", "O_WRONLY|O_APPEND"], 6),
               ("dup", [6], 7), ("write", [7, b"!", 1], 1),
               ("ftruncate", [6, 7], 0))
    assert tr.live_tree() == {"dir": None, "dir/f": b"hELlo!\0"}


def test_calls_the_model_cannot_replay_are_refused():
    with pytest.raises(model.Unsupported):
        build(CREATE_F, ("writev", [3, "[...]", 1], 3))
    with pytest.raises(model.Unsupported):
        build(("chdir", [b"/tmp"], 0))
    # outside the root: ignored
    build(("openat", [-100, b"/elsewhere", "O_WRONLY|O_CREAT"], 3),
          ("writev", [3, "[...]", 1], 3))


def test_strace_output_is_parsed(tmp_path):
    path = tmp_path / "t"
    path.write_text(
        '7 openat(AT_FDCWD, "\\x2f\\x61", O_WRONLY|O_CREAT, 0600) = 3\n'
        '7 write(3, "\\x68\\x69", 2 <unfinished ...>\n'
        '8 fsync(4)                          = 0\n'
        '7 <... write resumed>)              = 2\n'
        '7 unlink("\\x2f\\x62") = -1 ENOENT (No such file or directory)\n'
        '7 fcntl(3, F_GETFD)                 = 0x1 (flags FD_CLOEXEC)\n'
        '7 +++ exited with 97 +++\n')
    parsed = [(c.pid, c.name, c.args, c.ret, c.err)
              for c in tracing.parse(path)]
    assert parsed == [
        (7, "openat", [-100, b"/a", "O_WRONLY|O_CREAT", 0o600], 3,
         None),
        (8, "fsync", [4], 0, None),
        (7, "write", [3, b"hi", 2], 2, None),
        (7, "unlink", [b"/b"], -1, "ENOENT"),
        (7, "fcntl", [3, "F_GETFD"], 1, None)]
    path.write_text('7 write(3, "\\x68\\x69"..., 9) = 9\n')
    with pytest.raises(ValueError):
        tracing.parse(path)


# --------------------------------------------------------------------------
# the fetcher

@pytest.fixture(scope="module")
def server():
    with ExpungingServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def recorded(server, tmp_path_factory):
    """Workloads recorded once per module, by configuration name."""
    cache = {}

    def get(name):
        if name not in cache:
            base = tmp_path_factory.mktemp("crash-" + name)
            cache[name] = explore.Workload(explore.BY_NAME[name], base,
                                           server).record()
        return cache[name]
    return get


def real_tree(root):
    tree = {}
    for d, dirs, files in os.walk(root):
        for name in dirs:
            tree[os.path.relpath(os.path.join(d, name), root)] = None
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                tree[os.path.relpath(os.path.join(d, name), root)] = f.read()
    return tree


CONFIG_NAMES = [c.name for c in explore.CONFIGS]


@pytest.fixture(scope="module")
def explored(recorded):
    """The exploration of each recorded workload, run once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = explore.explore(recorded(name))
            print(cache[name].summary())
        return cache[name]
    return get


@needs_strace
@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_recorded_trace_replays_to_what_the_runs_left(recorded, name):
    """The model's replay of the trace is exactly the directory the three
    recorded runs left: no file operation was missed or misread.  And the
    workload did what it is for: all seven messages on disk once, the
    server empty, the syncs of its --sync mode in the trace."""
    work = recorded(name)
    assert work.trace.live_tree() == real_tree(work.paths.root)
    found = explore.visible(work.config, work.paths)
    assert explore.compare(work.config, found, work.points[-1].ever) == []
    assert len(found) == 7 and work.server.snapshot() == []
    kinds = [op.kind for op in work.trace.ops]
    assert ("barrier" in kinds) == (work.config.sync == "fs")
    assert kinds.count("run") == 3 and kinds.count("quit") == 1


@needs_strace
@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_crash_state_keeps_every_message(recorded, explored, name):
    """Every distinct crash state of every point of the workload, handed
    to the next `cpoplib fetch --delete` against the server as it was at
    that point: every message ends in the destination exactly once and
    intact, and none is left on the server."""
    work = recorded(name)
    report = explored(name)
    assert report.violations == []
    assert report.points == len(work.trace.ops)
    assert report.checked >= 80            # the exploration explores
    kinds = {f for _, items in report.findings for f in items}
    assert all(f.startswith("stale dot lock") for f in kinds)
    if work.config.dest != "mbox":
        assert report.findings == []


@needs_strace
def test_no_crash_state_leaves_a_stale_mbox_dot_lock(explored):
    """No crash state leaves a dot lock that keeps the next run out: a
    crash between taking the lock and recording it (the state recorded
    "locking" first), or one that brings back a lock whose removal was
    not yet durable (the directory is synced before the state says the
    mbox is closed)."""
    report = explored("mbox")
    assert report.findings == [], "%d states, first: %s" % (
        len(report.findings), report.findings[0][0])


MUTATIONS = [(site, config) for site, configs in sorted(NECESSARY.items())
             for config in (configs if FULL else configs[:1])]


@needs_strace
@pytest.mark.skipif(os.environ.get("CPOPLIB_SANITIZED") == "1" and not FULL,
                    reason="the mutation check runs in the other CI jobs; "
                           "the sanitizer job explores the unchanged "
                           "fetcher only")
@pytest.mark.parametrize("site, name", MUTATIONS)
def test_without_the_sync_some_crash_state_loses_mail(server,
                                                      tmp_path, site, name):
    """The mutation check: the fetcher with sync site `site` turned into
    a no-op; the exploration must find a crash state after which mail is
    lost, duplicated or damaged, or (mbox-lock-dir) after which the
    account is stuck behind a stale dot lock."""
    work = explore.Workload(explore.BY_NAME[name], tmp_path, server,
                            skip=[site]).record()
    report = explore.explore(work, stop_at_first=True)
    print(report.summary())
    for what, problems in report.violations + report.findings:
        print("  %s\n    %s" % (what, "\n    ".join(problems)))
    assert report.violations or report.findings, \
        "no crash state shows %s is needed" % site
