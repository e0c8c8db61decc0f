"""Pipelined commands: fetch_many()'s adaptive window and its caps, one
write per refill, top_many(), dele_many(), listing_maps(),
stat_and_uidl_map(), list_many(), and the round trips of a whole
`cpoplib fetch` run.

The server here (PipelineServer, tests/pipeline_server.py) answers one
command at a time, as POP3 servers do, and records what the client's
pipelining looked like from the other end: how many commands were
waiting unanswered at most, how many arrived in one read, and how often
it had answered everything and had to wait for the client (a round
trip).
"""
import os

import pytest

import cpoplib
from cpoplib.fetch import cli

from pipeline_server import PipelineServer, connect, mailbox, top_of


def test_adaptive_window_grows_and_every_message_is_whole():
    msgs = mailbox(600, size=1500)
    with PipelineServer(msgs) as srv:
        conn = connect(srv)
        it = conn.fetch_many(range(1, 601))
        windows, got = set(), {}
        for n, message in it:
            windows.add(it.window)
            got[n] = message
        conn.quit()
    assert got == msgs
    # it starts at 8 and grows after the first round at least (how far
    # depends on the throughput each round measures)
    assert min(windows) == 8 and len(windows) >= 2, windows
    assert max(windows) <= 128
    assert srv.max_waiting <= 128


def test_window_cap_and_one_write_per_refill():
    """Never more than 128 commands waiting at the server, and the
    commands of a refill arrive together (one write), not one per
    segment."""
    msgs = mailbox(1000, size=300)
    with PipelineServer(msgs) as srv:
        conn = connect(srv)
        assert dict(conn.fetch_many(range(1, 1001))) == msgs
        conn.quit()
    assert srv.max_waiting <= 128
    assert max(srv.reads) >= 2              # several commands in one read


def test_a_fixed_window_is_kept():
    msgs = mailbox(100, size=300)
    with PipelineServer(msgs) as srv:
        conn = connect(srv)
        it = conn.fetch_many(range(1, 101), window=3)
        assert [it.window for _ in it] == [3] * 100
        conn.quit()
    assert srv.max_waiting <= 3


def test_without_pipelining_one_at_a_time():
    msgs = mailbox(20, size=300)
    with PipelineServer(msgs, pipelining=False) as srv:
        conn = connect(srv)
        it = conn.fetch_many(range(1, 21))
        assert dict(it) == msgs
        assert it.window == 1
        conn.quit()
    assert srv.max_waiting == 1


def test_sizes_keep_the_bytes_in_flight_bounded():
    """With sizes saying each message is 10 MiB, at most 32 MiB of
    replies are asked for at a time: 3 messages (4 with the first)."""
    msgs = mailbox(40, size=300)
    sizes = {n: 10 << 20 for n in msgs}
    with PipelineServer(msgs) as srv:
        conn = connect(srv)
        assert dict(conn.fetch_many(range(1, 41), sizes=sizes)) == msgs
        conn.quit()
    assert srv.max_waiting <= 3


@pytest.mark.parametrize("bad", [{}, [1, 2]])
def test_sizes_unknown_or_not_a_mapping(bad):
    """Sizes not known for a message count as unknown; something that
    cannot be looked up is refused before anything is sent."""
    msgs = mailbox(3, size=300)
    with PipelineServer(msgs) as srv:
        conn = connect(srv)
        assert dict(conn.fetch_many([1, 2, 3], sizes=bad)) == msgs
        with pytest.raises(TypeError, match="mapping"):
            conn.fetch_many([1, 2, 3], sizes=42)
        conn.quit()


def test_a_server_that_reads_only_when_it_has_answered():
    """A small receive buffer and a server that reads nothing until it
    has written every reply owed: the client's refills must still fit,
    or both sides would wait on full buffers."""
    msgs = mailbox(400, size=20000)
    with PipelineServer(msgs, rcvbuf=2048) as srv:
        conn = connect(srv)
        assert dict(conn.fetch_many(range(1, 401))) == msgs
        conn.quit()


@pytest.mark.parametrize("where", [3, 10, 30])
def test_err_mid_growth_drains_and_deletes_what_was_handed_over(where):
    msgs = mailbox(200, size=500)
    with PipelineServer(msgs, errors=[where]) as srv:
        conn = connect(srv)
        got = []
        with pytest.raises(cpoplib.error_proto) as info:
            for n, message in conn.fetch_many(range(1, 201), delete=True):
                assert message == msgs[n]
                got.append(n)
        assert info.value.which == where
        assert conn.noop() == b"+OK"           # in step
        conn.quit()
    assert got == list(range(1, where))
    assert srv.deleted == got


@pytest.mark.parametrize("where", [2, 9, 33])
def test_eof_mid_growth(where):
    """The server hangs up in the middle of message `where`: an error,
    every message handed over before it whole and in order (a reset may
    take the last ones with it), and no command afterwards gets a stale
    reply."""
    msgs = mailbox(100, size=500)
    with PipelineServer(msgs, eof_in=where) as srv:
        conn = connect(srv)
        got = []
        with pytest.raises((cpoplib.error_proto, OSError)):
            for n, message in conn.fetch_many(range(1, 101), delete=True):
                assert message == msgs[n]
                got.append(n)
        assert got == list(range(1, len(got) + 1)) and len(got) < where
        # DELEs the server read before it hung up: never one for a
        # message not handed over
        assert srv.deleted == got[:len(srv.deleted)]
        with pytest.raises((cpoplib.error_proto, OSError)):
            conn.noop()                       # refused: never a stale reply
        conn.close()


@pytest.mark.parametrize("stop_after", [1, 6, 40])
def test_early_break_drains(stop_after):
    msgs = mailbox(300, size=500)
    with PipelineServer(msgs) as srv:
        conn = connect(srv)
        it = conn.fetch_many(range(1, 301), delete=True)
        for i, (n, message) in enumerate(it, 1):
            if i == stop_after:
                break
        it.close()
        assert conn.noop() == b"+OK"
        conn.quit()
    assert srv.deleted == list(range(1, stop_after))


# ---- login() and CAPA ----

def test_login_capa_spares_fetch_many_its_own():
    msgs = mailbox(5, size=300)
    with PipelineServer(msgs) as srv:
        conn = cpoplib.POP3("127.0.0.1", srv.port, timeout=20)
        conn.login("u", "p", allow_plaintext=True)
        assert dict(conn.fetch_many(range(1, 6))) == msgs
        conn.quit()
    assert srv.commands.count(b"CAPA") == 1
    assert srv.max_waiting > 1


# ---- top_many() ----

@pytest.mark.parametrize("lines", [0, 2])
def test_top_many_pipelines_and_matches_top(lines):
    """top_many(): the replies to TOP n LINES in order, each as fetch()
    gives a message -- exactly top()'s lines joined with CRLF -- with
    several commands in flight, in one write per refill."""
    msgs = mailbox(300, size=400)
    with PipelineServer(msgs) as srv:
        conn = connect(srv)
        it = conn.top_many(range(1, 301), lines)
        got = dict(it)
        one = {n: b"".join(x + b"\r\n" for x in conn.top(n, lines)[1])
               for n in (1, 150, 300)}
        conn.quit()
    assert got == {n: top_of(m, lines) for n, m in msgs.items()}
    assert all(got[n] == text for n, text in one.items())
    assert got[1].startswith(b"Subject: message 1\r\n\r\n")
    assert 1 < srv.max_waiting <= 128 and max(srv.reads) >= 2
    tops = [c for c in srv.commands if c.startswith(b"TOP")]
    assert tops[:300] == [b"TOP %d %d" % (n, lines) for n in range(1, 301)]
    assert not any(c.startswith((b"RETR", b"DELE")) for c in srv.commands)


def test_top_many_without_pipelining_one_at_a_time():
    msgs = mailbox(10, size=300)
    with PipelineServer(msgs, pipelining=False) as srv:
        conn = connect(srv)
        assert dict(conn.top_many(range(1, 11), 0)) == {
            n: top_of(m, 0) for n, m in msgs.items()}
        conn.quit()
    assert srv.max_waiting == 1


def test_top_many_err_in_step_with_which():
    """A -ERR for one TOP: everything before it handed over, what was in
    flight drained, error_proto with `which`; the connection in step."""
    msgs = mailbox(100, size=300)
    with PipelineServer(msgs, errors=[40]) as srv:
        conn = connect(srv)
        got = []
        with pytest.raises(cpoplib.error_proto) as info:
            for n, text in conn.top_many(range(1, 101), 0):
                got.append(n)
        assert info.value.which == 40
        assert info.value.args == (b"-ERR no such message 40",)
        assert got == list(range(1, 40))
        assert conn.noop() == b"+OK"
        conn.quit()


def test_top_many_refuses_a_bad_howmuch_before_sending():
    msgs = mailbox(3, size=300)
    with PipelineServer(msgs) as srv:
        conn = connect(srv)
        for bad, kind in (("0", TypeError), (True, TypeError),
                          (1.0, TypeError), (-1, ValueError)):
            with pytest.raises(kind):
                conn.top_many([1, 2], bad)
        it = conn.top_many([1, 2, 3], 0)
        assert next(it)[0] == 1
        with pytest.raises(RuntimeError):
            conn.noop()                     # TOPs in flight
        it.close()                          # drains them
        assert conn.noop() == b"+OK"
        conn.quit()
    assert [c for c in srv.commands if c.startswith(b"TOP")][:1] == [
        b"TOP 1 0"]


# ---- dele_many() and listing_maps() ----

def test_dele_many_pipelines():
    msgs = mailbox(300, size=100)
    with PipelineServer(msgs) as srv:
        conn = connect(srv)
        responses = conn.dele_many(range(1, 301))
        assert responses == [b"+OK deleted"] * 300
        conn.quit()
    assert srv.deleted == list(range(1, 301))
    assert 1 < srv.max_waiting <= 128


def test_dele_many_stops_at_err_in_step():
    msgs = mailbox(300, size=100)
    with PipelineServer(msgs, errors=[50]) as srv:
        conn = connect(srv)
        with pytest.raises(cpoplib.error_proto) as info:
            conn.dele_many(range(1, 301))
        assert info.value.which == 50
        assert info.value.args == (b"-ERR no such message 50",)
        assert conn.noop() == b"+OK"
        conn.quit()
    assert 49 in srv.deleted and 50 not in srv.deleted
    # nothing after the -ERR was sent once it was seen
    assert len(srv.deleted) < 299


def test_dele_many_without_pipelining():
    msgs = mailbox(10, size=100)
    with PipelineServer(msgs, pipelining=False) as srv:
        conn = connect(srv)
        assert len(conn.dele_many(range(1, 11))) == 10
        conn.quit()
    assert srv.max_waiting == 1 and srv.deleted == list(range(1, 11))


@pytest.mark.parametrize("pipelining", [True, False])
def test_listing_maps(pipelining):
    msgs = mailbox(7, size=100)
    with PipelineServer(msgs, pipelining=pipelining) as srv:
        conn = connect(srv)
        sizes, uidls = conn.listing_maps()
        assert sizes == conn.list_map() and uidls == conn.uidl_map()
        conn.quit()
    assert sizes == {n: len(m) for n, m in msgs.items()}
    assert srv.max_waiting == (2 if pipelining else 1)


def test_listing_maps_without_uidl():
    msgs = mailbox(3, size=100)
    with PipelineServer(msgs, uidl=False) as srv:
        conn = connect(srv)
        sizes, uidls = conn.listing_maps()
        assert uidls is None and sorted(sizes) == [1, 2, 3]
        assert conn.noop() == b"+OK"
        conn.quit()


def test_listing_maps_through_a_longcmd_override():
    """An overridden _longcmd is used, so the commands go one by one."""
    calls = []

    class Traced(cpoplib.POP3):
        def _longcmd(self, line):
            calls.append(line)
            return super()._longcmd(line)

    msgs = mailbox(3, size=100)
    with PipelineServer(msgs) as srv:
        conn = Traced("127.0.0.1", srv.port, timeout=20)
        sizes, uidls = conn.listing_maps()
        conn.quit()
    assert calls[-2:] == ["LIST", "UIDL"] and len(sizes) == len(uidls) == 3


# ---- stat_and_uidl_map() and list_many() ----

@pytest.mark.parametrize("pipelining", [True, False])
def test_stat_and_uidl_map(pipelining):
    msgs = mailbox(7, size=100)
    with PipelineServer(msgs, pipelining=pipelining) as srv:
        conn = connect(srv)
        counts, uidls = conn.stat_and_uidl_map()
        assert counts == conn.stat() and uidls == conn.uidl_map()
        conn.quit()
    assert counts == (7, sum(map(len, msgs.values())))
    assert srv.max_waiting == (2 if pipelining else 1)
    assert [c for c in srv.commands if c.startswith(b"LIST")] == []


def test_stat_and_uidl_map_without_uidl():
    msgs = mailbox(3, size=100)
    with PipelineServer(msgs, uidl=False) as srv:
        conn = connect(srv)
        counts, uidls = conn.stat_and_uidl_map()
        assert uidls is None and counts[0] == 3
        assert conn.noop() == b"+OK"
        conn.quit()


def test_stat_and_uidl_map_through_a_shortcmd_override():
    """An overridden _shortcmd sends STAT, so the two go one by one."""
    calls = []

    class Traced(cpoplib.POP3):
        def _shortcmd(self, line):
            calls.append(line)
            return super()._shortcmd(line)

    msgs = mailbox(3, size=100)
    with PipelineServer(msgs) as srv:
        conn = Traced("127.0.0.1", srv.port, timeout=20)
        counts, uidls = conn.stat_and_uidl_map()
        conn.quit()
    assert "STAT" in calls and counts[0] == len(uidls) == 3


@pytest.mark.parametrize("pipelining", [True, False])
def test_list_many(pipelining):
    msgs = mailbox(300, size=100)
    with PipelineServer(msgs, pipelining=pipelining) as srv:
        conn = connect(srv)
        wanted = [5, 1, 300] + list(range(100, 250))
        sizes = conn.list_many(wanted)
        assert conn.list_many([]) == {}
        conn.quit()
    assert sizes == {n: len(msgs[n]) for n in wanted}
    assert list(sizes) == wanted                # in the order asked
    assert (1 < srv.max_waiting <= 128) if pipelining \
        else srv.max_waiting == 1


def test_list_many_stops_at_err_in_step():
    msgs = mailbox(300, size=100)
    with PipelineServer(msgs, errors=[50]) as srv:
        conn = connect(srv)
        with pytest.raises(cpoplib.error_proto) as info:
            conn.list_many(range(1, 301))
        assert info.value.which == 50
        assert info.value.args == (b"-ERR no such message 50",)
        assert conn.noop() == b"+OK"
        conn.quit()


def test_list_many_refuses_a_reply_for_another_message():
    """LIST 4 answered "+OK 5 ...": the sizes would be another message's;
    error_proto, and the replies in flight were read (still in step)."""
    msgs = mailbox(9, size=100)
    with PipelineServer(msgs, lying_list=4) as srv:
        conn = connect(srv)
        with pytest.raises(cpoplib.error_proto,
                           match="LIST 4 answered for another message"):
            conn.list_many(range(1, 10))
        assert conn.noop() == b"+OK"
        conn.quit()


# ---- a whole fetch run ----

def test_round_trips_of_a_fetch_run(tmp_path, monkeypatch):
    """A `cpoplib fetch --delete` of 60 messages: around the transfer,
    one round trip each for CAPA, USER, PASS, LIST with UIDL, all the
    DELEs, and QUIT -- six, where one per command would be 66 (CAPA
    twice, LIST, UIDL, 60 DELEs)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CPOPLIB_TEST_PW", "p")
    msgs = mailbox(60, size=3000)
    with PipelineServer(msgs) as srv:
        code = cli.main(["--host", "127.0.0.1", "--port", str(srv.port),
                         "--user", "u", "--password-env", "CPOPLIB_TEST_PW",
                         "--allow-plaintext", "--delete", "--quiet",
                         "--maildir", str(tmp_path / "Mail"),
                         "--state", str(tmp_path / "state")])
    assert code == 0
    assert srv.quit and srv.deleted == list(range(1, 61))
    assert len(os.listdir(tmp_path / "Mail" / "new")) == 60
    assert srv.commands.count(b"CAPA") == 1
    around = [t for t in srv.turns if t != b"RETR"]
    assert around == [b"CAPA", b"USER", b"PASS", b"LIST", b"DELE", b"QUIT"]
