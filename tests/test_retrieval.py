"""fetch(), fetch_into(), fetch_many(), uidl_map() and list_map().

A message as cpoplib returns it must be exactly what stdlib poplib's
retr() gives, joined: b"".join(line + b"\\r\\n" for line in lines).  Each
test plays a small POP3 mailbox server (tests/scripted_server.py) that
records the commands it gets, and whether a command arrived while it still
owed a reply (the client pipelined).
"""

import hashlib
import io
import poplib
import random
import socket
import sys
import threading
import tracemalloc

import pytest

import cpoplib

from scripted_server import ScriptedServer


def make_message(i, rng):
    """A message with the shapes that matter: dot-led lines, a lone dot in
    the text, CR-led and LF-only lines, empty lines, a long line."""
    lines = [b"Subject: message %d" % i, b"X-Seq: %d" % i, b""]
    for j in range(rng.randrange(0, 300)):
        kind = rng.randrange(8)
        if kind == 0:
            lines.append(b"." * rng.randrange(1, 4) + b"dot-led %d" % j)
        elif kind == 1:
            lines.append(b"")
        elif kind == 2:
            lines.append(b"x" * rng.randrange(500, 2000))
        else:
            lines.append(b"line %d of message %d" % (j, i))
    return lines


def wire_body(lines, rng):
    """The RETR body on the wire: dot-stuffed, mostly CRLF, some bare LF."""
    out = []
    for line in lines:
        if line.startswith(b"."):
            line = b"." + line
        out.append(line + (b"\n" if rng.random() < 0.1 else b"\r\n"))
    return b"".join(out) + b".\r\n"


class Mailbox:
    """A POP3 server's script: serves `bodies` (wire form), records the
    commands, and whether one arrived while a reply was still owed."""

    def __init__(self, count=12, seed=0, pipelining=True, capa=True,
                 errors=(), eof_in=None, split_seed=None):
        rng = random.Random(seed)
        self.bodies = {}
        for i in range(1, count + 1):
            self.bodies[i] = wire_body(make_message(i, rng), rng)
        self.pipelining = pipelining
        self.capa = capa
        self.errors = set(errors)
        self.eof_in = eof_in
        # cut each message at random byte positions (one send per piece)
        self.split_rng = (random.Random(split_seed)
                          if split_seed is not None else None)
        self.commands = []
        self.deleted = []
        self.pipelined = False

    def _reply(self, conn, data):
        # a command that is already waiting was sent before this reply
        try:
            conn._buf += conn._recv_some(0.02)
        except socket.timeout:
            pass
        if b"\n" in conn._buf:
            self.pipelined = True
        conn.sock.settimeout(30)
        conn.send(data)

    def __call__(self, conn):
        conn.send(b"+OK ready\r\n")
        while True:
            line = conn.recv_line()
            self.commands.append(line.rstrip(b"\r\n"))
            cmd, _, arg = line.strip().partition(b" ")
            cmd = cmd.upper()
            if cmd == b"CAPA" and self.capa:
                caps = b"+OK\r\nUIDL\r\nTOP\r\n"
                if self.pipelining:
                    caps += b"PIPELINING\r\n"
                self._reply(conn, caps + b".\r\n")
            elif cmd == b"RETR":
                n = int(arg)
                if n in self.errors or n not in self.bodies:
                    self._reply(conn, b"-ERR no such message %d\r\n" % n)
                elif n == self.eof_in:
                    body = self.bodies[n]
                    conn.send(b"+OK\r\n" + body[:len(body) // 2])
                    conn.eof()
                    return
                else:
                    body = self.bodies[n]
                    self._reply(conn, b"+OK %d octets\r\n" % len(body))
                    splits = None
                    if self.split_rng is not None:
                        splits = [self.split_rng.randrange(len(body))
                                  for _ in range(self.split_rng.randrange(1, 40))]
                    conn.send(body, splits=splits)
            elif cmd == b"DELE":
                self.deleted.append(int(arg))
                self._reply(conn, b"+OK deleted\r\n")
            elif cmd == b"UIDL":
                self._reply(conn, b"+OK\r\n" + b"".join(
                    b"%d uid-%d\r\n" % (n, n) for n in self.bodies) + b".\r\n")
            elif cmd == b"LIST":
                self._reply(conn, b"+OK\r\n" + b"".join(
                    b"%d %d\r\n" % (n, len(b)) for n, b in self.bodies.items())
                    + b".\r\n")
            elif cmd == b"QUIT":
                conn.send(b"+OK bye\r\n")
                return
            elif cmd in (b"NOOP", b"RSET"):
                self._reply(conn, b"+OK\r\n")
            else:
                self._reply(conn, b"-ERR unknown command\r\n")


def connect(module, box):
    """A connection of `module.POP3` (or of the class `module`)."""
    srv = ScriptedServer(box, idle_eof=10.0)
    srv.__enter__()
    cls = module if isinstance(module, type) else module.POP3
    conn = cls(*srv.address, timeout=10)
    return srv, conn


@pytest.fixture
def mailbox():
    servers = []

    def open_box(module=cpoplib, **kwargs):
        box = Mailbox(**kwargs)
        srv, conn = connect(module, box)
        servers.append((srv, conn))
        return box, conn

    yield open_box
    for srv, conn in servers:
        try:
            conn.close()
        finally:
            srv.__exit__(None, None, None)


def stdlib_messages(box_kwargs):
    """{n: bytes} as stdlib poplib's retr() gives them, joined."""
    box = Mailbox(**box_kwargs)
    srv, conn = connect(poplib, box)
    try:
        result = {}
        for n in box.bodies:
            lines = conn.retr(n)[1]
            result[n] = b"".join(line + b"\r\n" for line in lines)
        conn.quit()
        return result
    finally:
        srv.__exit__(None, None, None)


# ---- fetch() and fetch_into() --------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fetch_equals_joined_retr(mailbox, seed):
    expected = stdlib_messages({"seed": seed})
    box, conn = mailbox(seed=seed)
    for n in box.bodies:
        assert conn.fetch(n) == expected[n]
    assert conn.noop() == b"+OK"


@pytest.mark.parametrize("split_seed", [1, 2, 3, 4])
def test_fetch_and_fetch_many_with_packet_splits(mailbox, split_seed):
    """Messages cut at random byte positions (a TCP segment may end
    anywhere): the same bytes, whatever the cuts."""
    expected = stdlib_messages({"seed": 20})
    box, conn = mailbox(seed=20, split_seed=split_seed)
    for n in box.bodies:
        assert conn.fetch(n) == expected[n]
        f = io.BytesIO()
        conn.fetch_into(n, f)
        assert f.getvalue() == expected[n]
    assert dict(conn.fetch_many(sorted(box.bodies))) == expected


def test_fetch_through_overridden_hooks(mailbox):
    """A _getline override is called for every line, as by retr()."""
    expected = stdlib_messages({"seed": 3})
    calls = []

    class Counting(cpoplib.POP3):
        def _getline(self):
            calls.append(1)
            return super()._getline()

    box = Mailbox(seed=3)
    srv, conn = connect(Counting, box)
    try:
        assert conn.fetch(1) == expected[1]
        assert len(calls) > expected[1].count(b"\r\n")
    finally:
        conn.close()
        srv.__exit__(None, None, None)


def test_fetch_debug_output_as_retr(mailbox, capsys):
    box, conn = mailbox(seed=4)
    conn.set_debuglevel(2)
    conn.retr(1)
    retr_out = capsys.readouterr().out
    data = conn.fetch(1)
    fetch_out = capsys.readouterr().out
    assert fetch_out == retr_out
    assert data.count(b"\r\n") > 3


def test_fetch_error_reply(mailbox):
    box, conn = mailbox(errors={2})
    with pytest.raises(cpoplib.error_proto) as info:
        conn.fetch(2)
    assert info.value.args == (b"-ERR no such message 2",)
    assert conn.noop() == b"+OK"


def test_fetch_into_bytesio_and_hash(mailbox):
    expected = stdlib_messages({"seed": 5})
    box, conn = mailbox(seed=5)

    class Hashing:
        def __init__(self):
            self.h = hashlib.sha256()

        def write(self, data):            # returns None, like many do
            self.h.update(data)

    for n in box.bodies:
        f = io.BytesIO()
        assert conn.fetch_into(n, f) == len(expected[n])
        assert f.getvalue() == expected[n]
        h = Hashing()
        assert conn.fetch_into(n, h) == len(expected[n])
        assert h.h.digest() == hashlib.sha256(expected[n]).digest()


def test_fetch_into_short_writes(mailbox):
    """A raw file may take part of a chunk: the rest is written again."""
    expected = stdlib_messages({"seed": 6})
    box, conn = mailbox(seed=6)

    class Dribble:
        def __init__(self):
            self.parts = []

        def write(self, data):
            take = max(1, len(data) // 3)
            self.parts.append(bytes(data[:take]))
            return take

    f = Dribble()
    assert conn.fetch_into(1, f) == len(expected[1])
    assert b"".join(f.parts) == expected[1]
    assert conn.noop() == b"+OK"


@pytest.mark.parametrize("failure", ["raise", "zero"])
def test_fetch_into_failing_write_closes(mailbox, failure):
    box, conn = mailbox(seed=7)

    class Broken:
        def write(self, data):
            if failure == "raise":
                raise OSError(28, "No space left on device")
            return 0

    with pytest.raises(OSError):
        conn.fetch_into(1, Broken())
    # never half-read and open: the connection is closed
    assert conn.sock is None and conn.file is None
    with pytest.raises(AttributeError):
        conn.noop()


def test_fetch_into_bounded_memory(mailbox):
    """A 32 MiB message streamed to a sink that keeps nothing: the
    client's traced allocations stay far below the message size."""
    box = Mailbox(count=1)
    line = b"y" * 998 + b"\r\n"
    box.bodies[1] = line * (32 * 1024) + b".\r\n"
    srv, conn = connect(cpoplib, box)
    try:
        class Null:
            def write(self, data):
                return len(data)

        tracemalloc.start()
        try:
            written = conn.fetch_into(1, Null())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert written == len(line) * 32 * 1024
        assert peak < 4 * 1024 * 1024
    finally:
        conn.close()
        srv.__exit__(None, None, None)


def test_fetch_response_cap_closes(mailbox, monkeypatch):
    box, conn = mailbox(seed=8)
    monkeypatch.setattr(cpoplib, "MAX_RESPONSE_SIZE", 100)
    with pytest.raises(cpoplib.error_proto, match="response too long"):
        conn.fetch(1)
    assert conn.sock is None


# ---- fetch_many() ---------------------------------------------------------

@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize("seed", [0, 9])
def test_fetch_many_identical(mailbox, pipelining, seed):
    expected = stdlib_messages({"seed": seed})
    box, conn = mailbox(seed=seed, pipelining=pipelining)
    got = list(conn.fetch_many(sorted(box.bodies)))
    assert got == sorted(expected.items())
    assert box.pipelined == pipelining
    assert conn.noop() == b"+OK"
    assert box.deleted == []


def test_fetch_many_forced_and_refused_pipelining(mailbox):
    box, conn = mailbox(pipelining=False)
    assert len(list(conn.fetch_many([1, 2, 3, 4], pipeline=True))) == 4
    assert box.pipelined
    box2, conn2 = mailbox(pipelining=True)
    assert len(list(conn2.fetch_many([1, 2, 3, 4], pipeline=False))) == 4
    assert not box2.pipelined
    assert b"CAPA" not in box2.commands


def test_fetch_many_no_capa(mailbox):
    """A server without CAPA: one command at a time."""
    box, conn = mailbox(capa=False)
    assert [n for n, _ in conn.fetch_many([1, 2, 3])] == [1, 2, 3]
    assert not box.pipelined


def test_fetch_many_capa_asked_once(mailbox):
    box, conn = mailbox()
    list(conn.fetch_many([1, 2]))
    list(conn.fetch_many([3, 4]))
    assert box.commands.count(b"CAPA") == 1


@pytest.mark.parametrize("window", [1, 2, 8, 50])
def test_fetch_many_window(mailbox, window):
    expected = stdlib_messages({"seed": 10, "count": 20})
    box, conn = mailbox(seed=10, count=20)
    got = dict(conn.fetch_many(range(1, 21), window=window))
    assert got == expected
    assert box.pipelined == (window > 1)


@pytest.mark.parametrize("delete", [False, True])
@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize("bad", [1, 2, 5, 9, 12])
def test_fetch_many_error_at_every_position(mailbox, delete, pipelining, bad):
    """-ERR for one message: every earlier one handed over, the error
    carries the number, the connection stays in step, and exactly the
    messages the caller came back after are deleted."""
    expected = stdlib_messages({"seed": 11})
    box, conn = mailbox(seed=11, pipelining=pipelining, errors={bad})
    handed = []
    with pytest.raises(cpoplib.error_proto) as info:
        for which, data in conn.fetch_many(range(1, 13), delete=delete):
            assert data == expected[which]
            handed.append(which)
    assert info.value.which == bad
    assert info.value.args == (b"-ERR no such message %d" % bad,)
    assert handed == list(range(1, bad))
    assert conn.noop() == b"+OK"
    assert box.deleted == (list(range(1, bad)) if delete else [])


@pytest.mark.parametrize("stop", [1, 3, 12])
def test_fetch_many_early_break(mailbox, stop):
    box, conn = mailbox(seed=12)
    it = conn.fetch_many(range(1, 13), delete=True)
    for which, _ in it:
        if which == stop:
            with pytest.raises(RuntimeError, match="fetch_many"):
                conn.noop()
            break
    del it
    assert conn.noop() == b"+OK"
    # the caller never came back after `stop`: it is not deleted
    assert box.deleted == list(range(1, stop))


def test_fetch_many_close(mailbox):
    box, conn = mailbox(seed=13)
    it = conn.fetch_many(range(1, 13), delete=True)
    assert next(it)[0] == 1
    assert next(it)[0] == 2
    it.close()
    assert list(it) == []
    assert conn.noop() == b"+OK"
    assert box.deleted == [1]


def test_fetch_many_delete_all(mailbox):
    box, conn = mailbox(seed=14)
    assert len(list(conn.fetch_many(range(1, 13), delete=True))) == 12
    assert box.deleted == list(range(1, 13))
    assert conn.quit() == b"+OK bye"


def test_fetch_many_eof_mid_batch(mailbox):
    expected = stdlib_messages({"seed": 15})
    box, conn = mailbox(seed=15, eof_in=4)
    handed = []
    with pytest.raises(cpoplib.error_proto, match="EOF"):
        for which, data in conn.fetch_many(range(1, 13)):
            assert data == expected[which]
            handed.append(which)
    assert handed == [1, 2, 3]


def test_fetch_many_refuses_other_threads(mailbox):
    box, conn = mailbox(seed=16)
    it = conn.fetch_many(range(1, 13))
    next(it)
    errors = []

    def other():
        try:
            conn.noop()
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1
    assert len(list(it)) == 11
    assert box.commands.count(b"NOOP") == 0


def test_fetch_many_arguments(mailbox):
    box, conn = mailbox()
    with pytest.raises(ValueError):
        conn.fetch_many([1], window=0)
    with pytest.raises(TypeError):
        conn.fetch_many([1], True)          # delete is keyword-only
    assert list(conn.fetch_many([])) == []
    assert box.commands == []


# ---- uidl_map() and list_map() -----------------------------------------

def test_maps(mailbox):
    box, conn = mailbox(count=30)
    assert conn.uidl_map() == {n: b"uid-%d" % n for n in range(1, 31)}
    assert conn.list_map() == {n: len(b) for n, b in box.bodies.items()}


# ---- failures inside a pipelined batch ----------------------------------

def test_fetch_many_line_too_long_marks_out_of_step(mailbox):
    """A failure inside a message (not an -ERR reply) leaves the stream
    somewhere in that message: later commands must fail, never read a
    line of the message as their reply."""
    box, conn = mailbox(count=3)
    box.bodies[1] = b"x" * 3000 + b"\r\n+OK fake\r\nline\r\n.\r\n"
    with pytest.raises(cpoplib.error_proto, match="line too long"):
        list(conn.fetch_many([1, 2, 3], pipeline=True))
    for _ in range(2):
        with pytest.raises(cpoplib.error_proto, match="out of step"):
            conn.noop()
    assert b"NOOP" not in box.commands
    conn.close()


def test_fetch_many_hook_cannot_send_commands(mailbox):
    """A hook may call the hook primitives back, but not a command: that
    would send NOOP in the middle of the pipeline and take RETR 2's reply."""
    calls = []

    class Meddling(cpoplib.POP3):
        def _getresp(self):
            calls.append(1)
            if len(calls) == 3:
                self.noop()
            return super()._getresp()

    box = Mailbox(count=3)
    srv, conn = connect(Meddling, box)
    try:
        with pytest.raises(RuntimeError, match="reentrant"):
            list(conn.fetch_many([1, 2, 3], pipeline=True))
        assert b"NOOP" not in box.commands
        with pytest.raises(cpoplib.error_proto, match="out of step"):
            conn.stat()
    finally:
        conn.close()
        srv.__exit__(None, None, None)


def test_fetch_many_dropped_after_close_is_quiet(mailbox):
    box, conn = mailbox(count=5)
    it = conn.fetch_many(range(1, 6), pipeline=True)
    next(it)
    conn.close()
    seen = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        del it
    finally:
        sys.unraisablehook = old_hook
    assert seen == []
