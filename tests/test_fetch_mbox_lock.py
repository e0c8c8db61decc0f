"""The mbox destination's dot lock after a crash: which locks a run takes
for its own killed predecessor's (and removes), and which it leaves to
whoever holds them."""
import os
import subprocess
import sys
import time

import pytest

from cpoplib.fetch import destinations, errors
from cpoplib.fetch.state import State


def open_mbox(tmp_path):
    state = State.load(str(tmp_path / "state"), "acct")
    state.open()
    dest = destinations.MboxDestination(str(tmp_path / "inbox"), "tag")
    return state, dest


# another process holding the mbox's fcntl lock until its stdin ends (a
# process of its own: fork() of this multi-threaded one is deprecated)
HOLD_FCNTL = """\
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_lock_made_after_the_state_said_locking_is_the_crashed_runs(
        tmp_path):
    """A run killed between recording that it is taking the lock and
    recording the lock leaves one: the next run removes it."""
    state, dest = open_mbox(tmp_path)
    dest.open(state)
    dest.close()
    state.set_mbox({"path": dest.path, "open": False,
                    "locking": time.time_ns()})
    state.close()
    open(dest.path + ".lock", "w").close()
    state, dest = open_mbox(tmp_path)
    dest.open(state)                      # would raise EXIT_BUSY before
    dest.close()
    state.close()
    assert not os.path.exists(dest.path + ".lock")


def test_a_lock_whose_holder_holds_the_fcntl_lock_is_left(tmp_path):
    state, dest = open_mbox(tmp_path)
    dest.open(state)
    dest.close()
    state.set_mbox({"path": dest.path, "open": False,
                    "locking": time.time_ns()})
    state.close()
    open(dest.path + ".lock", "w").close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_FCNTL, dest.path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        state, dest = open_mbox(tmp_path)
        with pytest.raises(errors.FetchError) as info:
            dest.open(state)
        assert info.value.code == errors.EXIT_BUSY
        assert os.path.exists(dest.path + ".lock")
        # the lock was not taken: the state no longer says "locking"
        assert "locking" not in state.mbox
        state.close()
    finally:
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()


def test_an_older_lock_is_someone_elses(tmp_path):
    """A dot lock older than the run's "locking" record was there before
    it: refused (exit 4), left, and not taken for ours next time."""
    state, dest = open_mbox(tmp_path)
    dest.open(state)
    dest.close()
    open(dest.path + ".lock", "w").close()
    old = time.time_ns() - 10 * 10**9
    os.utime(dest.path + ".lock", ns=(old, old))
    state.set_mbox({"path": dest.path, "open": False,
                    "locking": time.time_ns()})
    state.close()
    for _ in range(2):
        state, dest = open_mbox(tmp_path)
        with pytest.raises(errors.FetchError) as info:
            dest.open(state)
        assert info.value.code == errors.EXIT_BUSY
        state.close()
        assert os.path.exists(dest.path + ".lock")
