"""Crash tests of the deleting paths of issue 21's selection, against the
private Dovecot (user carol): --delete-larger, the filter's exit 2 and
--keep-days (a faked clock, CPOPLIB_FETCH_NOW), and the MDA's
record-after-exit.

The fetcher runs as a subprocess killed at a fault point
(CPOPLIB_FETCH_FAULT, faults.py) and is run again.  After every run,
killed or not:

* nothing is deleted that the settings do not ask for: the messages
  --skip-larger or the filter's exit 1 leave are on the server, and so is
  every fetched message younger than --keep-days;
* nothing is deleted before it is durable or explicitly discarded: a
  message gone from the server is in the Maildir (once, byte for byte) or
  is one the settings discard (larger than --delete-larger, or the
  filter's 2);
* nothing is on disk twice, nothing discarded is on disk.

These are killed processes only: the crash-state exploration of
tests/crash/explore.py (every state a crash of the machine could leave)
has no configuration with these settings yet.
"""
import os
import shutil
import subprocess
import sys

import pytest

from fetch_helpers import (DAY, MDA, PROCMAILRC, T0, carol_numbers,
                           delivered, dovecot_args, keyed, mail,
                           maildir_files)

pytestmark = pytest.mark.usefixtures("isolated_home")

PROCMAIL = shutil.which("procmail")

SELECT_FILTER = r"""#!/bin/sh
headers=$(cat)
case "$headers" in
  *"Subject: spam"*) exit 2 ;;
  *"Subject: later"*) exit 1 ;;
esac
exit 0
"""

# (key, subject, size): fetched (ok-*), left (mid: --skip-larger, later:
# the filter's 1), discarded (huge: --delete-larger, spam: the filter's 2)
MAILBOX = ([("ok-%d" % i, "fine %d" % i, 0) for i in range(1, 4)]
           + [("mid", "mid", 20_000), ("huge", "huge", 80_000),
              ("spam", "spam", 0), ("later", "later", 0)]
           + [("ok-%d" % i, "fine %d" % i, 0) for i in range(4, 7)])
FETCHED = {k for k, _, _ in MAILBOX if k.startswith("ok-")}
LEFT = {"mid", "later"}
DISCARDED = {"huge", "spam"}


def select_args(server, md, filter_path, state):
    return dovecot_args(server, "--maildir", md, "--state", state,
                        "--delete", "--batch", 2, "--skip-larger", "10k",
                        "--delete-larger", "50k", "--keep-days", 2,
                        "--filter", "exec %s" % filter_path)


def fetch(argv, fault=None, now=T0):
    env = dict(os.environ)
    env.pop("CPOPLIB_FETCH_FAULT", None)
    if fault:
        env["CPOPLIB_FETCH_FAULT"] = fault
    env["CPOPLIB_FETCH_NOW"] = str(now)
    proc = subprocess.run([sys.executable, "-m", "cpoplib", "fetch",
                           *map(str, argv)], env=env, capture_output=True,
                          text=True, timeout=120)
    return proc.returncode, proc.stderr


def check(server, md, added, young=()):
    """The invariants after any run; (on disk, on the server)."""
    files = maildir_files(md)
    on_disk = keyed(files)
    assert len(on_disk) == len(files), "a message is on disk twice"
    for key, data in on_disk.items():
        assert data == added[key], key
    assert not set(on_disk) & DISCARDED, "a discarded message is on disk"
    on_server = set(carol_numbers(server))
    gone = set(added) - on_server
    assert gone <= set(on_disk) | DISCARDED, \
        "deleted before it was on disk: %s" % (gone - set(on_disk))
    assert LEFT <= on_server, "deleted what the settings leave"
    assert set(young) <= on_server, "deleted before --keep-days"
    return set(on_disk), on_server


@pytest.fixture
def select_box(server, carol, carol_pw, tmp_path):
    added = server.add_messages("carol", [mail(k, subject, size)
                                          for k, subject, size in MAILBOX])
    path = tmp_path / "filter.sh"
    path.write_text(SELECT_FILTER)
    path.chmod(0o755)
    return added, select_args(server, tmp_path / "Maildir", path,
                              tmp_path / "state.json"), tmp_path / "Maildir"


# the points of a run that fetches: after the filter (nothing fetched),
# around each batch's sync and record, after the DELEs before QUIT
FAULTS = ["chosen:1", "delivered:1", "delivered:4", "synced:1",
          "committed:1", "published:2", "deleted:1", "before-quit:1",
          "committed:2,deleted:1"]


@pytest.mark.parametrize("faults", FAULTS)
def test_kill_while_selecting_and_discarding(server, select_box, faults):
    """Killed at `faults` (one crashed run per point) on the first day:
    the discards are deleted only by a run that reaches QUIT, nothing
    fetched is deleted before --keep-days, what the settings leave is
    never deleted; then a clean run and one two days later end with
    exactly the fetched messages on disk and the left ones on the
    server."""
    added, argv, md = select_box
    for fault in faults.split(","):
        code, err = fetch(argv, fault)
        assert code == 97, err
        check(server, md, added, young=FETCHED)
    code, err = fetch(argv)
    assert code == 0, err
    on_disk, on_server = check(server, md, added, young=FETCHED)
    assert on_disk == FETCHED and on_server == FETCHED | LEFT
    # the discards go with the first run that reaches QUIT
    assert "2 deleted (2 unfetched)" in err and ("2 not fetched (1 larger "
                                                 "than --skip-larger 10k, 1 "
                                                 "left by the filter)") in err
    code, err = fetch(argv, now=T0 + 2 * DAY)
    assert code == 0, err
    on_disk, on_server = check(server, md, added)
    assert on_disk == FETCHED and on_server == LEFT
    assert "6 deleted" in err


@pytest.mark.parametrize("fault", ["delivered:1", "committed:1",
                                   "deleted:1", "before-quit:1"])
def test_kill_in_the_run_that_keep_days_deletes(server, select_box,
                                                fault):
    """Fetched on day 0; on day 2 a new message arrives and the run that
    would delete the six old ones is killed: none is deleted unless that
    run's QUIT went out, the new one never is; a rerun deletes the old
    ones only."""
    added, argv, md = select_box
    code, err = fetch(argv)
    assert code == 0, err
    new = server.add_messages("carol", [mail("ok-new", "fine new")])
    added = {**added, **new}
    code, err = fetch(argv, fault, now=T0 + 2 * DAY)
    assert code == 97, err
    on_disk, on_server = check(server, md, added, young=["ok-new"])
    assert FETCHED <= on_server      # no QUIT: Dovecot deleted nothing
    code, err = fetch(argv, now=T0 + 2 * DAY)
    assert code == 0, err
    on_disk, on_server = check(server, md, added, young=["ok-new"])
    assert on_disk == FETCHED | {"ok-new"}
    assert on_server == LEFT | {"ok-new"}


# --------------------------------------------------------------------------
# the MDA: recorded right after it exited 0

@pytest.fixture
def mda(tmp_path, monkeypatch):
    """An MDA command: procmail into tmp_path/Maildir if installed, else
    test_fetch_select's shell MDA (its files in tmp_path/delivered)."""
    if PROCMAIL:
        rc = tmp_path / "procmailrc"
        rc.write_text(PROCMAILRC.format(dir=tmp_path))
        return ("%s -f %%F %s" % (PROCMAIL, rc),
                lambda: maildir_files(tmp_path / "Maildir"))
    if os.environ.get("CPOPLIB_REQUIRE_DOVECOT") == "1":
        pytest.fail("procmail is not installed (apt-get install procmail)")
    script = tmp_path / "mda.sh"
    script.write_text(MDA)
    out = tmp_path / "delivered"
    out.mkdir()
    monkeypatch.setenv("MDA_DIR", str(out))
    return ("sh %s %%F" % script,
            lambda: [(out / n).read_bytes() for n in os.listdir(out)])


@pytest.mark.parametrize("fault, recorded, duplicates", [
    # killed after the 3rd MDA exited 0, before its record: two recorded
    # (each right after its MDA, not at the end of a batch), and the third
    # delivered again by the rerun -- a duplicate, never a loss
    ("delivered:3", 2, 1),
    # killed after the 3rd record: nothing twice
    ("committed:3", 3, 0),
    ("published:3", 3, 0),
    # after the DELEs, before QUIT: all recorded, nothing deleted yet
    ("deleted:1", 6, 0),
])
def test_mda_kill_and_rerun(server, carol, carol_pw, tmp_path, mda, fault,
                            recorded, duplicates):
    command, delivered_files = mda
    added = carol("mda-crash", 6)
    state = tmp_path / "state.json"
    argv = dovecot_args(server, "--mda", command, "--delete", "--state",
                        state)
    code, err = fetch(argv, fault)
    assert code == 97, err
    assert len(delivered(state)) == recorded
    assert len(delivered_files()) == (
        6 if fault == "deleted:1" else int(fault.split(":")[1]))
    assert len(carol_numbers(server)) == 6      # no QUIT: none deleted
    code, err = fetch(argv)
    assert code == 0, err
    files = delivered_files()
    assert keyed(files) == added
    assert len(files) == len(added) + duplicates
    assert carol_numbers(server) == {}
