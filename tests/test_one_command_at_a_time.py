"""One command at a time per connection.

Another thread, or a signal handler, that issues a command while one is
in progress gets RuntimeError and nothing is sent; the command in
progress completes and the connection stays in step (cpoplib only:
poplib has no guard).  Legitimate nesting (overrides calling the other
hooks, as poplib's own methods do) keeps working, with the same calls,
results and wire traffic as with poplib.
"""
import poplib
import signal
import socket
import threading
import time

import pytest

import cpoplib          # deliberately not importorskip: missing == failure

from scripted_server import ScriptedServer, client_tls_context
from side_by_side import crlf_lines, outcome


SLOW_BODY = [b"".join(b"slow %03d %02d " % (i, j) + b"s" * 50 + b"\r\n"
                     for j in range(20)) for i in range(40)]
SLOW_LINES = crlf_lines(b"".join(SLOW_BODY))
SLOW_RESULT = (b"+OK slow message", SLOW_LINES,
               sum(len(ln) + 2 for ln in SLOW_LINES))


def _slow_server(started):
    """Greets, then answers commands; RETR 1 is sent in 40 pieces 25 ms
    apart (about one second); `started` is set after the first piece."""

    def handler(conn):
        conn.send(b"+OK hi\r\n")
        while True:
            try:
                line = conn.recv_line(timeout=5)
            except socket.timeout:
                return
            cmd = line.strip()
            if cmd == b"RETR 1":
                conn.send(b"+OK slow message\r\n")
                for i, piece in enumerate(SLOW_BODY):
                    conn.send(piece)
                    if i == 0:
                        started.set()
                    conn.stall(0.025)
                conn.send(b".\r\n")
            elif cmd == b"NOOP":
                conn.send(b"+OK noop\r\n")
            elif cmd == b"QUIT":
                conn.send(b"+OK bye\r\n")
                return
            else:
                conn.send(b"+OK " + cmd + b"\r\n")

    return handler


INTRUDERS = [("dele", (5,)), ("noop", ()), ("retr", (2,)), ("stat", ()),
             ("list", ()), ("quit", ())]


@pytest.mark.parametrize("name,args", INTRUDERS,
                         ids=[n for n, _ in INTRUDERS])
def test_command_from_other_thread_during_retr(name, args):
    started = threading.Event()
    with ScriptedServer(_slow_server(started)) as srv:
        client = cpoplib.POP3(srv.host, srv.port, timeout=10)
        result = []
        worker = threading.Thread(
            target=lambda: result.append(outcome(cpoplib, client.retr, 1)))
        worker.start()
        assert started.wait(5)
        time.sleep(0.1)
        intruder = outcome(cpoplib, getattr(client, name), *args)
        worker.join(10)
        assert not worker.is_alive()
        after = [outcome(cpoplib, client.noop), outcome(cpoplib, client.quit)]
        srv.join()
    assert srv.commands == [b"RETR 1\r\n", b"NOOP\r\n", b"QUIT\r\n"]
    assert intruder[0] == "RuntimeError", intruder
    assert result == [("ok", SLOW_RESULT)]
    assert after == [("ok", b"+OK noop"), ("ok", b"+OK bye")]   # in step


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_command_from_signal_handler_during_retr():
    started = threading.Event()
    seen = []
    in_retr = []

    def handler(signum, frame):
        seen.append(("during retr", bool(in_retr)))
        try:
            seen.append(("ok", client.dele(5)))
        except Exception as exc:
            seen.append((type(exc).__name__,))

    with ScriptedServer(_slow_server(started)) as srv:
        client = cpoplib.POP3(srv.host, srv.port, timeout=10)
        old = signal.signal(signal.SIGALRM, handler)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            in_retr.append(1)
            got = client.retr(1)
            in_retr.clear()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        after = [outcome(cpoplib, client.noop), outcome(cpoplib, client.quit)]
        srv.join()
    assert srv.commands == [b"RETR 1\r\n", b"NOOP\r\n", b"QUIT\r\n"]
    assert seen == [("during retr", True), ("RuntimeError",)]
    assert got == SLOW_RESULT
    assert after == [("ok", b"+OK noop"), ("ok", b"+OK bye")]   # in step


def _nested_session(module):
    calls = []

    class Nested(module.POP3):
        def _getresp(self):
            calls.append("getresp")
            return super()._getresp()

        def _shortcmd(self, line):
            calls.append(("shortcmd", line))
            self._putcmd(line)
            return self._getresp()

        def _longcmd(self, line):
            calls.append(("longcmd", line))
            return super()._longcmd(line)

        def capa(self):
            calls.append("capa")
            caps = super().capa()
            caps.setdefault("STLS", [])
            return caps

    def handler(conn):
        conn.send(b"+OK hi\r\n")
        replies = {b"NOOP": b"+OK noop\r\n",
                   b"RETR 1": b"+OK\r\nbody\r\n..dot\r\n.\r\n",
                   b"STAT": b"+OK 1 12\r\n",
                   b"CAPA": b"+OK\r\nUSER\r\n.\r\n",   # no STLS: capa adds it
                   b"QUIT": b"+OK bye\r\n"}
        while True:
            try:
                cmd = conn.recv_line(timeout=5).strip()
            except socket.timeout:
                return
            if cmd == b"STLS":
                conn.send(b"+OK begin TLS\r\n")
                conn.start_tls()
                continue
            conn.send(replies.get(cmd, b"-ERR what\r\n"))
            if cmd == b"QUIT":
                return

    with ScriptedServer(handler) as srv:
        client = Nested(srv.host, srv.port, timeout=10)
        results = [client.noop(), client.retr(1), client.stat(),
                   client.stls(context=client_tls_context(verify=False)),
                   client._tls_established, client.noop(), client.quit()]
        srv.join()
    return results, calls, srv.commands


def test_legit_nesting_still_works():
    """_getresp calling super()._getresp(), _shortcmd calling
    self._putcmd()/self._getresp(), a capa override used by stls(): the
    same calls, results and wire traffic as with poplib (the guard against
    concurrent commands must not refuse these)."""
    ref = _nested_session(poplib)
    got = _nested_session(cpoplib)
    assert got == ref
    assert ref[0][-3:] == [True, b"+OK noop", b"+OK bye"]
