"""What a slow or hostile server can make login() and auth() cost.

* SCRAM's key derivation (PBKDF2 with the server's iteration count) runs
  without the GIL, so other threads keep running, and stops for a
  signal (Ctrl-C) or the connection's deadline;
* cpoplib.SCRAM_MAX_ITERATIONS lowers the largest count accepted;
* the connection's timeout bounds the whole exchange, not each read: a
  server that answers every line just in time is cut off;
* a challenge line too long to read leaves the exchange where neither
  side knows it, so the connection is closed (the next command would
  otherwise reach the server as a SASL response).
"""
import base64
import signal
import threading
import time

import pytest

import cpoplib
from scram_server import scram_server
from scripted_server import ScriptedServer, Step

GREETING = b"+OK ready\r\n"


def b64(data):
    return base64.b64encode(data)


def scram_first_only(iterations):
    """A server that sends SCRAM's server-first message asking for
    `iterations`, then waits for whatever comes."""
    def handler(conn):
        conn.send(GREETING)
        ir = base64.b64decode(conn.recv_line().split()[2])
        nonce = ir.split(b"r=")[1] + b"S"
        conn.send(b"+ " + b64(b"r=%s,s=c2FsdA==,i=%d" % (nonce, iterations))
                  + b"\r\n")
        try:
            conn.recv_line(timeout=15)
        except Exception:
            pass
    return handler


def test_key_derivation_releases_the_gil():
    """While login() derives a SCRAM key for a server that asked for four
    million iterations (about a second of SHA-256), a ticking thread
    never stalls for long: before, it stalled for the whole
    derivation."""
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.002)

    with ScriptedServer(scram_server("u", "p", iterations=4000000)) as srv:
        conn = cpoplib.POP3(srv.host, srv.port, timeout=30)
        t = threading.Thread(target=ticker)
        t.start()
        time.sleep(0.05)
        start = time.perf_counter()
        try:
            assert conn.login("u", "p", mechanism="SCRAM-SHA-256") \
                == b"+OK Logged in."
        finally:
            took = time.perf_counter() - start
            stop.set()
            t.join()
        conn.quit()
    gaps = [b - a for a, b in zip(ticks, ticks[1:]) if b > start]
    assert max(gaps) < min(0.2, took / 4), (max(gaps), took)


def test_a_signal_stops_the_key_derivation():
    """A signal handler's exception (as Ctrl-C's KeyboardInterrupt) is
    raised during the derivation, not after it; the connection, whose
    server waits for a response, is closed."""
    class Interrupted(Exception):
        pass

    def on_alarm(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        with ScriptedServer(scram_first_only(10000000)) as srv:
            conn = cpoplib.POP3(srv.host, srv.port, timeout=60)
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            start = time.perf_counter()
            with pytest.raises(Interrupted):
                conn.login("u", "p", mechanism="SCRAM-SHA-256")
            took = time.perf_counter() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert took < 2.0, took
    assert conn.sock is None and conn.file is None


def test_the_deadline_stops_the_key_derivation():
    with ScriptedServer(scram_first_only(10000000)) as srv:
        conn = cpoplib.POP3(srv.host, srv.port, timeout=0.5)
        start = time.perf_counter()
        with pytest.raises(TimeoutError, match="key derivation"):
            conn.login("u", "p", mechanism="SCRAM-SHA-256")
        took = time.perf_counter() - start
    assert took < 2.0, took
    assert conn.sock is None and conn.file is None


def test_trickling_server_is_cut_off_at_the_deadline():
    """Each byte of the challenge arrives well within the socket's
    timeout (1 s), the whole line would take 10 s: login() gives up once
    the exchange has taken the timeout, and closes the connection."""
    challenge = b"+ " + b64(b"<1896.697170952@postoffice.example>") + b"\r\n"
    script = [Step(None, GREETING),
              Step(b"AUTH CRAM-MD5", challenge, splits=1,
                   pause=10.0 / len(challenge))]
    with ScriptedServer(script, timeout=30) as srv:
        conn = cpoplib.POP3(srv.host, srv.port, timeout=1.0)
        start = time.perf_counter()
        with pytest.raises(TimeoutError):
            conn.login("u", "p", mechanism="CRAM-MD5")
        took = time.perf_counter() - start
    assert took < 3.0, took
    assert conn.sock is None and conn.file is None


def test_the_socket_timeout_is_restored_after_login():
    with ScriptedServer(scram_server("u", "p")) as srv:
        conn = cpoplib.POP3(srv.host, srv.port, timeout=7.5)
        conn.login("u", "p", mechanism="SCRAM-SHA-256")
        assert conn.sock.gettimeout() == 7.5
        conn.quit()


def test_authobject_time_is_not_the_servers():
    """auth() with an authobject: the caller's own time (here 1.5 s, past
    the 1 s timeout) does not count against the exchange's deadline."""
    script = [Step(None, GREETING), Step(b"AUTH X-SLOW", b"+ \r\n"),
              Step(b64(b"answer"), b"+OK welcome\r\n")]

    def authobject(challenge):
        time.sleep(1.5)
        return b"answer"

    with ScriptedServer(script) as srv:
        conn = cpoplib.POP3(srv.host, srv.port, timeout=1.0)
        assert conn.auth("X-SLOW", authobject) == b"+OK welcome"
        assert conn.sock.gettimeout() == 1.0
        conn.close()
    assert not srv.mismatches


@pytest.mark.parametrize("cap, asked, outcome", [
    (4096, 4096, "ok"), (4096, 4097, "refused"), (1, 2, "refused")])
def test_iteration_cap_can_be_lowered(cap, asked, outcome):
    def handler(conn):
        inner = scram_server("u", "p", iterations=asked)
        if outcome == "ok":
            return inner(conn)
        conn.send(GREETING)
        ir = base64.b64decode(conn.recv_line().split()[2])
        nonce = ir.split(b"r=")[1] + b"S"
        conn.send(b"+ " + b64(b"r=%s,s=c2FsdA==,i=%d" % (nonce, asked))
                  + b"\r\n")
        if conn.recv_line() == b"*\r\n":
            conn.send(b"-ERR cancelled\r\n")
        if conn.recv_line() == b"NOOP\r\n":
            conn.send(b"+OK still here\r\n")

    saved = cpoplib.SCRAM_MAX_ITERATIONS
    cpoplib.SCRAM_MAX_ITERATIONS = cap
    try:
        with ScriptedServer(handler) as srv:
            conn = cpoplib.POP3(srv.host, srv.port, timeout=10)
            if outcome == "ok":
                assert conn.login("u", "p", mechanism="SCRAM-SHA-256") \
                    == b"+OK Logged in."
                conn.quit()
            else:
                with pytest.raises(cpoplib.error_proto,
                                   match=r"out of range \(1 to %d\)" % cap):
                    conn.login("u", "p", mechanism="SCRAM-SHA-256")
                assert conn.noop() == b"+OK still here"
                conn.close()
    finally:
        cpoplib.SCRAM_MAX_ITERATIONS = saved


def test_the_default_cap_is_ten_million():
    assert cpoplib.SCRAM_MAX_ITERATIONS == 10000000


@pytest.mark.parametrize("cap, error", [(0, ValueError), (10**9, ValueError),
                                        (-5, ValueError), (10**30, ValueError),
                                        ("4096", TypeError),
                                        (4096.0, TypeError),
                                        (True, TypeError)])
def test_a_bad_cap_is_refused_before_sending(cap, error):
    script = [Step(None, GREETING), Step(b"NOOP", b"+OK untouched\r\n")]
    saved = cpoplib.SCRAM_MAX_ITERATIONS
    cpoplib.SCRAM_MAX_ITERATIONS = cap
    try:
        with ScriptedServer(script) as srv:
            conn = cpoplib.POP3(srv.host, srv.port, timeout=10)
            with pytest.raises(error, match="SCRAM_MAX_ITERATIONS"):
                conn.login("u", "p", mechanism="SCRAM-SHA-256")
            assert conn.noop() == b"+OK untouched"
            conn.close()
    finally:
        cpoplib.SCRAM_MAX_ITERATIONS = saved
    assert [c.rstrip(b"\r\n") for c in srv.commands] == [b"NOOP"]


def test_overlong_challenge_closes_the_connection():
    """A 1 MB challenge line: error_proto('line too long'), and the
    connection is closed -- before, it stayed open and the next noop()
    reached the server as the SASL response."""
    script = [Step(None, GREETING),
              Step(b"AUTH CRAM-MD5", b"+ " + b"A" * 1000000 + b"\r\n"),
              Step(b"NOOP", b"+OK never\r\n")]
    with ScriptedServer(script) as srv:
        conn = cpoplib.POP3(srv.host, srv.port, timeout=10)
        with pytest.raises(cpoplib.error_proto, match="line too long"):
            conn.login("u", "p", mechanism="CRAM-MD5")
        assert conn.sock is None and conn.file is None
        srv.join()
    assert b"NOOP\r\n" not in srv.commands


def test_a_server_err_mid_exchange_keeps_the_session():
    """The other side of the rule: a -ERR ends the exchange for both
    sides, the session goes on."""
    script = [Step(None, GREETING),
              Step(b"AUTH CRAM-MD5", b"-ERR [SYS/TEMP] not now\r\n"),
              Step(b"NOOP", b"+OK here\r\n")]
    with ScriptedServer(script) as srv:
        conn = cpoplib.POP3(srv.host, srv.port, timeout=10)
        with pytest.raises(cpoplib.SysTempError):
            conn.login("u", "p", mechanism="CRAM-MD5")
        assert conn.noop() == b"+OK here"
        conn.close()
