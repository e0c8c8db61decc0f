"""Hostile-server tests.

Each test is run against the standard library's poplib and cpoplib
(fixture `mod`); the assertions hold for the stdlib too wherever the
stdlib is safe, so that they describe poplib's behaviour rather than an
implementation.  Where the stdlib's behaviour is the specification, the
test compares the two modules directly.
"""
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import time

import pytest

import poplib
import cpoplib          # deliberately not importorskip: missing == failure

from scripted_server import (ANY, ScriptedServer, Step, client_tls_context,
                             exc_signature, canon)

MAXLINE = 2048


GREETING = (None, b"+OK hostile POP3 server ready <1.2@evil>\r\n")
CAPA_STLS = (b"CAPA", b"+OK\r\nUSER\r\nSTLS\r\n.\r\n")


def connect(mod, srv, timeout=5.0):
    return mod.POP3(srv.host, srv.port, timeout=timeout)


def outcome(mod, fn, *args):
    try:
        return ("ok", canon(fn(*args)))
    except Exception as exc:
        return exc_signature(exc, mod)


# ---------------------------------------------------------------------------
# STARTTLS

@pytest.mark.parametrize("splits", [None, "bytes"], ids=["one-segment", "bytewise"])
def test_stls_injection_forged_line_never_returned(mod, splits):
    """Plaintext pipelined after the STLS reply must not survive into TLS.

    Motivation: curl CVE-2021-22947 (STARTTLS read-ahead: responses a
    man-in-the-middle sent before the handshake were processed after it),
    Mutt CVE-2020-14954 (the same buffering flaw in IMAP/SMTP/POP3) and
    MailKit advisory GHSA-9j88-vvj5-vhgr (STARTTLS response injection:
    read-ahead buffer not flushed on the TLS switch).

    The server answers STLS with "+OK\\r\\n+OK forged\\r\\n" -- in one TCP
    segment, or one byte at a time -- then does a real TLS handshake and
    answers the next NOOP with "+OK real".  poplib discards its buffered
    reader on stls(), so the forged line is never returned: either the
    handshake fails (the forged bytes reached the TLS layer) or the NOOP
    gets the real reply.
    """
    script = [GREETING, CAPA_STLS,
              Step(b"STLS", b"+OK\r\n+OK forged\r\n", splits=splits,
                   pause=0.002 if splits else 0.0, after="tls"),
              (b"NOOP", b"+OK real\r\n"),
              (b"QUIT", b"+OK bye\r\n")]
    with ScriptedServer(script) as srv:
        client = connect(mod, srv)
        try:
            resp = client.stls(context=client_tls_context(verify=True))
        except (ssl.SSLError, OSError):
            # the forged bytes were fed to the handshake: refused, fine.
            # (poplib's close() may then fail on the detached socket.)
            try:
                client.close()
            except OSError:
                pass
            return
        assert resp == b"+OK"
        assert client._tls_established is True
        assert client.noop() == b"+OK real"
        assert client.quit() == b"+OK bye"
        srv.join()
    assert srv.commands[-2:] == [b"NOOP\r\n", b"QUIT\r\n"]


def test_stls_injection_one_segment_is_deterministic(mod):
    """Same as above, one segment: the handshake must succeed and the
    first reply after it must be the real one (curl CVE-2021-22947)."""
    script = [GREETING, CAPA_STLS,
              Step(b"STLS", b"+OK\r\n+OK forged\r\n", after="tls"),
              (b"NOOP", b"+OK real\r\n")]
    with ScriptedServer(script) as srv:
        client = connect(mod, srv)
        assert client.stls(context=client_tls_context(verify=False)) == b"+OK"
        assert client.noop() == b"+OK real"
        assert isinstance(client.sock, ssl.SSLSocket) or mod is cpoplib
        client.close()
        srv.join()


def test_stls_err_with_pipelined_ok(mod):
    """-ERR to STLS followed by pipelined "+OK" lines: stls() raises
    error_proto and no TLS is started (Mutt CVE-2020-14954: a client must
    not act on injected plaintext around STARTTLS)."""
    script = [GREETING, CAPA_STLS,
              (b"STLS", b"-ERR [SYS/PERM] no TLS\r\n+OK\r\n+OK begin TLS\r\n")]
    with ScriptedServer(script) as srv:
        client = connect(mod, srv)
        with pytest.raises(mod.error_proto) as info:
            client.stls(context=client_tls_context(verify=False))
        assert info.value.args == (b"-ERR [SYS/PERM] no TLS",)
        assert client._tls_established is False
        client.close()
        srv.join()
    assert not srv.tls_done.is_set()


def test_stls_not_advertised(mod):
    """A server without STLS in CAPA: stls() raises before sending STLS
    (RFC 2595 section 4; curl CVE-2021-22947's lesson: never start the
    switch on the server's say-so alone)."""
    script = [GREETING, (b"CAPA", b"+OK\r\nUSER\r\nTOP\r\n.\r\n"),
              (ANY, b"+OK\r\n")]
    with ScriptedServer(script) as srv:
        client = connect(mod, srv)
        with pytest.raises(mod.error_proto) as info:
            client.stls(context=client_tls_context(verify=False))
        assert info.value.args == ("-ERR STLS not supported by server",)
        assert client._tls_established is False
        client.close()
        srv.join()
    assert srv.commands == [b"CAPA\r\n"]


def test_stls_twice(mod):
    """After a successful STLS, a second stls() raises error_proto."""
    script = [GREETING, CAPA_STLS, Step(b"STLS", b"+OK\r\n", after="tls")]
    with ScriptedServer(script) as srv:
        client = connect(mod, srv)
        client.stls(context=client_tls_context(verify=False))
        with pytest.raises(mod.error_proto) as info:
            client.stls(context=client_tls_context(verify=False))
        assert info.value.args == ("-ERR TLS session already established",)
        client.close()


# ---------------------------------------------------------------------------
# EOF anywhere

RETR_REPLIES = {
    "crlf": b"+OK 3 lines\r\nSubject: x\r\n..dot\r\n\r\n.\r\n",
    "lf": b"+OK 3 lines\nSubject: x\n..dot\n\n.\n",
    "cr-led": b"+OK\r\n\rSubject: x\n\r.\n",
}


def _expected_retr_at_cut(reply, k):
    """What the stdlib does when the server sends reply[:k] then EOF.

    An unterminated last line still counts as a line, stripped by the
    usual rules: so b".\r" at EOF is a terminator (b".\r"[:-1] == b"."),
    but b"." alone strips to b"" and is not.  Returns ("result",) or
    ("error", args)."""
    data = reply[:k]
    lines = data.split(b"\n")
    raw = [ln + b"\n" for ln in lines[:-1]] + ([lines[-1]] if lines[-1] else [])

    def strip(line):
        if line[-2:] == b"\r\n":
            return line[:-2]
        if line[:1] == b"\r":
            return line[1:-1]
        return line[:-1]

    if not raw:
        return ("error", ("-ERR EOF",))
    status = strip(raw[0])
    if not status.startswith(b"+"):
        return ("error", (status,))
    for line in raw[1:]:
        if strip(line) == b".":
            return ("result",)
    return ("error", ("-ERR EOF",))


def _retr_with_cut(m, reply, k):
    with ScriptedServer([GREETING, Step(ANY, reply, cut=k)]) as srv:
        client = connect(m, srv)
        got = outcome(m, client.retr, 1)
        client.close()
    return got


@pytest.mark.parametrize("variant", sorted(RETR_REPLIES))
def test_eof_at_every_offset_of_multiline_reply(mod, variant):
    """EOF at every byte of a RETR reply, terminator included.

    The result is error_proto('-ERR EOF') (or the truncated status line
    as error_proto when it no longer starts with '+'), never a partial
    result -- except where the stdlib itself returns one: an unterminated
    last line is still a line, so EOF right after b".\r" of the
    terminator, or right after the b".." of a dot-stuffed line
    (b"..dot" cut to b".."), ends the response; there cpoplib must return
    exactly what the stdlib returns.  Motivated by fetchmail
    CVE-2005-2335 (a client trusting the shape of a truncated, hostile
    listing)."""
    reply = RETR_REPLIES[variant]
    full = None
    for k in range(len(reply) + 1):
        got = _retr_with_cut(mod, reply, k)
        expected = _expected_retr_at_cut(reply, k)
        if expected[0] == "result":
            assert got == _retr_with_cut(poplib, reply, k), k
            assert got[0] == "ok", k
            if k == len(reply):
                full = got
        else:
            assert got == ("raise", "error_proto", canon(expected[1])), k
            assert expected[1] == ("-ERR EOF",) or k <= 2, k
    assert full is not None          # the complete reply did succeed


def test_eof_after_dot_matches_stdlib(mod):
    """The ragged terminators at EOF, spelled out: b'.\\r' and b'..'
    terminate (they strip to b'.'), b'.' and b'\\r.' do not."""
    cases = {b".\r": True, b"..": True, b".": False, b"\r.": False,
             b".\r\n": True, b".\n": True, b"\r.\n": True}
    for tail, ok in cases.items():
        reply = b"+OK\r\nbody\r\n" + tail
        with ScriptedServer([GREETING, Step(ANY, reply, after="eof")]) as srv:
            client = connect(mod, srv)
            got = outcome(mod, client.retr, 1)
            client.close()
        if ok:
            assert got == ("ok", canon((b"+OK", [b"body"], 6))), tail
        else:
            assert got == ("raise", "error_proto", canon(("-ERR EOF",))), tail


# ---------------------------------------------------------------------------
# Long lines and memory

def test_long_uidl_line(mod):
    """A UIDL listing line far beyond _MAXLINE: error_proto('line too
    long'), no overflow (fetchmail CVE-2005-2335: stack overflow on a long
    UIDL reply; curl CVE-2013-0249: overflow on a long server challenge)."""
    reply = b"+OK\r\n1 " + b"U" * 100000 + b"\r\n.\r\n"
    with ScriptedServer([GREETING, Step(ANY, reply, splits=[3, 7, 4000])]) as srv:
        client = connect(mod, srv)
        with pytest.raises(mod.error_proto) as info:
            client.uidl()
        assert info.value.args == ("line too long",)
        client.close()


@pytest.mark.parametrize("length", range(MAXLINE - 2, MAXLINE + 3))
def test_line_length_boundary(mod, length):
    """Lines of 2046..2050 bytes (CRLF included): up to _MAXLINE bytes is
    a line, one more is 'line too long' (same as stdlib)."""
    line = b"+OK " + b"x" * (length - 6) + b"\r\n"
    with ScriptedServer([GREETING, Step(ANY, line, splits="bytes")]) as srv:
        client = connect(mod, srv)
        got = outcome(mod, client.noop)
        client.close()
    if length <= MAXLINE:
        assert got == ("ok", canon(line[:-2]))
    else:
        assert got == ("raise", "error_proto", canon(("line too long",)))


_RSS_CLIENT = textwrap.dedent("""
    import importlib, sys
    mod = importlib.import_module(sys.argv[1])
    def hwm_kb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    c = mod.POP3("127.0.0.1", int(sys.argv[2]), timeout=30)
    before = hwm_kb()
    try:
        c.noop()
        print("NO ERROR")
    except mod.error_proto as e:
        print("ARGS", e.args)
    print("GROWTH_KB", hwm_kb() - before)
    c.close()
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_1gb_line_bounded_memory(mod):
    """A 1 GB reply line without LF, generated lazily: error_proto('line
    too long') and the client's peak RSS grows by at most a few MB (curl
    CVE-2013-0249, fetchmail CVE-2005-2335: unbounded server-controlled
    lengths)."""
    sent = {"n": 0}

    def gigabyte():
        chunk = b"A" * 65536
        for _ in range((1 << 30) // len(chunk)):
            sent["n"] += len(chunk)
            yield chunk

    with ScriptedServer([(None, b"+OK\r\n"), Step(ANY, gigabyte())],
                        timeout=60) as srv:
        proc = subprocess.run(
            [sys.executable, "-c", _RSS_CLIENT, mod.__name__, str(srv.port)],
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = dict(ln.split(" ", 1) for ln in proc.stdout.splitlines())
    assert lines.get("ARGS") == "('line too long',)", proc.stdout
    assert int(lines["GROWTH_KB"]) < 4 * 1024, proc.stdout
    assert sent["n"] < 512 * 1024 * 1024   # stopped long before 1 GB


# ---------------------------------------------------------------------------
# Timeouts, stalls, resets

def test_multiline_reply_that_never_ends(mod):
    """A multi-line reply without terminator.

    Both modules keep reading for as long as lines arrive: poplib has no
    limit on the number of lines or the total size of a multi-line
    response (only on one line's length), and the socket timeout applies
    to each read, not to the whole call.  Only a stall ends it: here the
    server drips a line every 0.1 s for ~1.5 s (client timeout 0.7 s:
    no timeout while lines flow), then stalls; the call raises
    TimeoutError (socket.timeout) after the drip, and nothing partial is
    returned.  An endless fast stream must be bounded by the caller
    (e.g. by closing the connection from another thread)."""
    def drip(conn):
        conn.send(b"+OK\r\n")
        assert conn.recv_line() == b"RETR 1\r\n"
        conn.send(b"+OK message follows\r\n")
        for i in range(15):
            conn.send(b"line %d\r\n" % i)
            conn.stall(0.1)
        conn.stall(30)

    with ScriptedServer(drip) as srv:
        client = connect(mod, srv, timeout=0.7)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            client.retr(1)
        elapsed = time.monotonic() - start
        client.close()
    assert 1.4 < elapsed < 6, elapsed


@pytest.mark.parametrize("where", ["status", "body"])
def test_stall_times_out_without_spinning(mod, where):
    """A server that stalls mid-response: the socket timeout fires as
    TimeoutError (socket.timeout) within about the timeout, and the
    process uses almost no CPU meanwhile (no busy-wait on EAGAIN)."""
    partial = b"+OK mess" if where == "status" else b"+OK\r\nhalf a li"
    with ScriptedServer([GREETING, Step(ANY, partial, after=("stall", 30))]) as srv:
        client = connect(mod, srv, timeout=1.0)
        cpu0, wall0 = time.process_time(), time.monotonic()
        with pytest.raises(socket.timeout) as info:
            client.retr(1)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        client.close()
    assert isinstance(info.value, TimeoutError)
    assert 0.9 < wall < 3.0, wall
    assert cpu < 0.3, cpu


def _reset_outcome(m, reply):
    with ScriptedServer([GREETING, Step(ANY, reply, after="reset")]) as srv:
        client = connect(m, srv)
        try:
            client.retr(1)
            result = ("ok",)
        except Exception as exc:
            result = (type(exc).__name__ if not isinstance(exc, m.error_proto)
                      else "error_proto", exc.args)
        client.close()
    return result


@pytest.mark.parametrize("reply", [b"", b"+OK\r\n", b"+OK\r\npartial"])
def test_connection_reset_mid_command(reply):
    """A TCP RST in the middle of a command: an OSError
    (ConnectionResetError) or error_proto -- the same type (and args)
    from both modules."""
    ref = _reset_outcome(poplib, reply)
    got = _reset_outcome(cpoplib, reply)
    assert ref[0] in ("ConnectionResetError", "error_proto"), ref
    assert got == ref


# ---------------------------------------------------------------------------
# Use after close

CALLS_AFTER_CLOSE = [("noop", ()), ("retr", (1,)), ("list", ()), ("list", (1,)),
                     ("stat", ()), ("capa", ()), ("uidl", ()), ("user", ("u",)),
                     ("apop", ("u", "p")), ("quit", ()), ("stls", ()),
                     ("getwelcome", ()), ("close", ())]


def _after_close(m, name, args):
    with ScriptedServer([GREETING, (b"QUIT", b"+OK bye\r\n")]) as srv:
        client = connect(m, srv)
        client.close()
        client.close()                    # twice: no error
        try:
            getattr(client, name)(*args)
            return ("ok",)
        except Exception as exc:
            if isinstance(exc, m.error_proto):
                return ("error_proto", exc.args)
            return (type(exc),)


@pytest.mark.parametrize("name,args", CALLS_AFTER_CLOSE,
                         ids=[c[0] + str(len(c[1])) for c in CALLS_AFTER_CLOSE])
def test_calls_after_close(name, args):
    """close() twice is fine; a call after close() raises the same
    exception type as the stdlib (AttributeError: 'NoneType' object has
    no attribute 'sendall' for commands)."""
    assert _after_close(cpoplib, name, args) == _after_close(poplib, name, args)


def test_quit_then_close(mod):
    with ScriptedServer([GREETING, (b"QUIT", b"+OK bye\r\n")]) as srv:
        client = connect(mod, srv)
        assert client.quit() == b"+OK bye"
        client.close()
        with pytest.raises(AttributeError):
            client.noop()


# ---------------------------------------------------------------------------
# Numbers and bytes returned as-is

def test_huge_and_negative_numbers(mod):
    """Huge (2**70) and negative numbers in STAT, LIST and UIDL are
    returned as the stdlib returns them: STAT as Python ints, listings as
    raw bytes (fetchmail CVE-2001-1009: negative message index in a LIST
    reply used to index memory)."""
    huge = str(2 ** 70).encode()
    script = [GREETING,
              (b"STAT", b"+OK " + huge + b" -5\r\n"),
              (b"LIST", b"+OK\r\n-1 " + huge + b"\r\n1 -300\r\n" + huge
               + b" 0\r\n.\r\n"),
              (b"LIST -1", b"+OK -1 " + huge + b"\r\n"),
              (b"UIDL", b"+OK\r\n-7 " + b"u" * 72 + b"\r\n.\r\n"),
              (b"UIDL 1", b"+OK 1 " + b"\xff" * 75 + b"\r\n")]
    with ScriptedServer(script) as srv:
        client = connect(mod, srv)
        assert client.stat() == (2 ** 70, -5)
        assert client.list() == (b"+OK", [b"-1 " + huge, b"1 -300", huge + b" 0"],
                                 3 + len(huge) + 2 + 8 + len(huge) + 4)
        assert client.list(-1) == b"+OK -1 " + huge
        assert client.uidl() == (b"+OK", [b"-7 " + b"u" * 72], 77)
        assert client.uidl(1) == b"+OK 1 " + b"\xff" * 75
        client.close()


def test_8bit_and_ansi_escapes_byte_exact(mod):
    """8-bit bytes, NUL and ANSI escape sequences in replies are returned
    byte-exact (never decoded, never filtered) -- a terminal-injection
    concern for callers, not for the library."""
    body = [b"\x1b[2J\x1b[31mred\x1b[0m", b"\x00\x01\x7f\x80\xff", b"\xc3\xa9",
            b"\x1b]0;title\x07"]
    reply = b"+OK \x1b[1m\r\n" + b"".join(ln + b"\r\n" for ln in body) + b".\r\n"
    with ScriptedServer([GREETING, (b"RETR 1", reply),
                         (b"NOOP", b"+OK \x9b31m\xff\r\n")]) as srv:
        client = connect(mod, srv)
        assert client.retr(1) == (b"+OK \x1b[1m", body,
                                  sum(len(ln) + 2 for ln in body))
        assert client.noop() == b"+OK \x9b31m\xff"
        client.close()


def test_long_apop_timestamp(mod):
    """A greeting whose APOP timestamp fills the whole line: the digest
    covers exactly the timestamp (curl CVE-2013-0249: server-controlled
    challenge length)."""
    import hashlib
    ts = b"<" + b"t" * (MAXLINE - 8) + b">"
    greeting = b"+OK " + ts + b"\r\n"
    assert len(greeting) == MAXLINE
    digest = hashlib.md5(ts + b"secret").hexdigest().encode()
    with ScriptedServer([(None, greeting), (b"APOP bob " + digest, b"+OK\r\n")]) as srv:
        client = connect(mod, srv)
        assert client.apop("bob", "secret") == b"+OK"
        client.close()
    assert not srv.mismatches
