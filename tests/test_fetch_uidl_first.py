"""A state that knows a big mailbox: the fetcher lists STAT and UIDL, and
asks LIST only for the new messages (LIST n for a few, one LIST for
many); with a small state, LIST and UIDL go together as before.

The threshold (session.UIDL_FIRST_STATE_BYTES, 512 KiB of state) is
lowered here so that a few messages take that path.
"""
import pytest

from scripted_server import ScriptedServer
from fetch_helpers import (  # noqa: F401  (pw: a fixture)
    Mailbox, Server, args, delivered, dovecot_args, keyed, lf,
    maildir_files, message, pw, run)

from cpoplib.fetch import session

pytestmark = pytest.mark.usefixtures("isolated_home")


@pytest.fixture
def big(monkeypatch):
    """Any state file counts as a big mailbox's."""
    monkeypatch.setattr(session, "UIDL_FIRST_STATE_BYTES", 1)


def two_runs(tmp_path, capsys, first, then, *more):
    """A run on the messages `first`, then one on `then` (the first ones
    still there, in order): the second run's (exit code, stderr, server
    mailbox)."""
    md, state = tmp_path / "Mail", tmp_path / "state"
    with ScriptedServer(Mailbox(first)) as srv:
        code, err = run(args(srv, "--maildir", md, "--state", state),
                        capsys)
    assert code == 0, err
    box = Mailbox(then)
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", md, "--state", state,
                             *more), capsys)
    return code, err, box


def test_a_rerun_with_nothing_new_sends_no_list(tmp_path, capsys, pw, big):
    msgs = [message(i) for i in range(1, 11)]
    code, err, box = two_runs(tmp_path, capsys, msgs, msgs)
    assert code == 0, err
    assert box.listings == ["STAT"]
    assert ": 0 messages" in err


def test_a_dry_run_says_what_stat_says(tmp_path, capsys, pw, big):
    msgs = [message(i) for i in range(1, 11)]
    code, err, box = two_runs(tmp_path, capsys, msgs[:9], msgs, "--dry-run")
    assert code == 0, err
    assert box.listings == ["STAT", "LIST 10"]
    assert "the server has 10 messages, %d bytes" % sum(map(len, msgs)) \
        in err


def test_a_small_state_lists_sizes_with_uidl(tmp_path, capsys, pw):
    msgs = [message(i) for i in range(1, 11)]
    code, err, box = two_runs(tmp_path, capsys, msgs, msgs)
    assert code == 0, err
    assert box.listings == ["LIST"]


def test_the_new_ones_are_listed_one_by_one(tmp_path, capsys, pw, big):
    """Two new of 18: LIST 17 and LIST 18, and their sizes are what
    --skip-larger goes by."""
    msgs = [message(i) for i in range(1, 17)]
    new = [message(17), message(18, size=5000)]
    code, err, box = two_runs(tmp_path, capsys, msgs, msgs + new,
                              "--skip-larger", "2k")
    assert code == 0, err
    assert box.listings == ["STAT", "LIST 17", "LIST 18"]
    assert sorted(maildir_files(tmp_path / "Mail")) == sorted(
        lf(m) for m in msgs + new[:1])
    assert b"uid-18" not in delivered(tmp_path / "state")


def test_many_new_ones_get_one_list(tmp_path, capsys, pw, big):
    msgs = [message(i) for i in range(1, 11)]
    code, err, box = two_runs(tmp_path, capsys, msgs[:2], msgs)
    assert code == 0, err
    assert box.listings == ["STAT", "LIST"]
    assert len(maildir_files(tmp_path / "Mail")) == 10


def test_delete_takes_what_earlier_runs_fetched(tmp_path, capsys, pw, big):
    """--delete after a run without it: the messages the state knows are
    deleted with the new one, though their sizes were never listed."""
    msgs = [message(i) for i in range(1, 17)]
    code, err, box = two_runs(tmp_path, capsys, msgs[:15], msgs, "--delete")
    assert code == 0, err
    assert box.listings == ["STAT", "LIST 16"]
    assert sorted(box.deleted) == list(range(1, 17))
    assert len(maildir_files(tmp_path / "Mail")) == 16


def test_dovecot_new_ones_by_list_n(server, carol, carol_pw, tmp_path,
                                    capsys, big):
    added = carol("uf", 5)
    md = tmp_path / "Maildir"
    assert run(dovecot_args(server, "--maildir", md), capsys)[0] == 0
    more = carol("uf-new", 2)
    code, err = run(dovecot_args(server, "--maildir", md, "--verbose"),
                    capsys)
    assert code == 0, err
    assert ": 2 messages" in err and "7 messages on the server" in err
    assert keyed(maildir_files(md)) == {**added, **more}
    code, err = run(dovecot_args(server, "--maildir", md), capsys)
    assert code == 0 and ": 0 messages" in err


def test_a_reconnection_lists_the_rest_again(tmp_path, capsys, pw, big):
    """Message 25 says 100 octets in LIST 25 and has a 2 MiB line: past
    the cap the connection is out of step, the fetcher reconnects, lists
    STAT and UIDL there and asks the sizes of the rest (LIST n) on the
    new connection before fetching them."""
    old = [message(i) for i in range(1, 25)]
    liar = (b"From: a@example.org\r\nSubject: long\r\n\r\n<p>"
            + b"x" * (2 << 20) + b"</p>\r\n")
    new = [liar, message(26), message(27)]
    md, state = tmp_path / "Mail", tmp_path / "state"
    with ScriptedServer(Mailbox(old)) as srv:
        assert run(args(srv, "--maildir", md, "--state", state),
                   capsys)[0] == 0
    msgs = old + new
    box = Mailbox(msgs, sizes=[len(m) for m in old] + [100] + [
        len(m) for m in new[1:]])
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", md, "--state", state,
                             "--max-message-size", 1, "--window", 1),
                        capsys)
    assert code == 7, err       # the liar skipped, the rest fetched
    assert box.listings == ["STAT", "LIST 25", "LIST 26", "LIST 27",
                            "STAT", "LIST 26", "LIST 27"]
    assert sorted(maildir_files(md)) == sorted(
        lf(m) for m in old + new[1:])
