"""What fetch(), fetch_into() and fetch_many() do when the code they call
misbehaves: a destination whose write() reads the connection's file,
another thread reading it meanwhile, a consumer of fetch_many() reading
it between two steps, a bad MAX_RESPONSE_SIZE, a destination that is no
file at all.

The rule each test checks: nothing is read from the middle of a response
by anybody but the C core (the connection's file refuses with
RuntimeError while the core holds it), an argument that cannot work is
refused before anything is sent, and afterwards the connection is either
in step (the next command gets its own reply) or closed -- never out of
step, never handing out bytes the server did not send.
"""
import threading
import time

import pytest

import cpoplib
from scripted_server import ScriptedServer, Step

GREETING = b"+OK ready\r\n"
SHORT = b"x" * 62 + b"\r\n"          # 64 bytes out: 4096 fill 256 KiB


def connect(srv):
    return cpoplib.POP3(srv.host, srv.port, timeout=10)


def sent(srv):
    return [c.rstrip(b"\r\n") for c in srv.commands]


def _stalled_retr(tail):
    """A RETR reply whose first 4096 lines (exactly fetch_into()'s 256 KiB
    chunk) arrive, then -- after a pause, while the destination's write()
    runs -- a 1 MB line and `tail`."""
    head = b"+OK\r\n" + SHORT * 4096
    rest = b"L" * 1000000 + b"\r\n" + tail + b".\r\n"
    return Step(b"RETR 1", head + rest, splits=[len(head)], pause=0.3)


def test_write_that_reads_the_file_is_refused_and_closes():
    """write() reading conn.file in the middle of the body used to take a
    long line out of the message, after which the reader shrank its
    buffer below what it held: OSError('recv_into() returned 0, outside
    0..-N') and heap memory handed out by the next read.  Now the read
    is refused, the failed write() closes the connection."""
    script = [Step(None, GREETING), _stalled_retr(SHORT * 30000)]
    with ScriptedServer(script) as srv:
        conn = connect(srv)
        refused = []

        class Thief:
            def write(self, data):
                time.sleep(0.4)          # the rest of the body arrives
                try:
                    conn.file.readline()
                except RuntimeError as exc:
                    refused.append(exc)
                    raise
                return len(data)

        with pytest.raises(RuntimeError, match="middle of a message"):
            conn.fetch_into(1, Thief())
        assert len(refused) == 1
        assert conn.sock is None and conn.file is None


def test_other_thread_cannot_read_while_write_blocks():
    """Another thread reading conn.file while the destination's write()
    blocks gets RuntimeError, and the message arrives whole."""
    tail = SHORT * 3000
    body = SHORT * 4096 + b"L" * 1000000 + b"\r\n" + tail
    expected = body
    script = [Step(None, GREETING), _stalled_retr(tail),
              Step(b"NOOP", b"+OK still in step\r\n")]
    with ScriptedServer(script) as srv:
        conn = connect(srv)
        cpoplib._MAXLINE, saved = 2 << 20, cpoplib._MAXLINE
        outcome = []

        def intruder():
            try:
                outcome.append(conn.file.read(150000))
            except Exception as exc:
                outcome.append(exc)

        class Slow:
            def __init__(self):
                self.parts = []

            def write(self, data):
                if not self.parts:
                    t = threading.Thread(target=intruder)
                    t.start()
                    t.join()
                self.parts.append(bytes(data))
                return len(data)

        try:
            dest = Slow()
            assert conn.fetch_into(1, dest) == len(expected)
        finally:
            cpoplib._MAXLINE = saved
        assert b"".join(dest.parts) == expected
        assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError)
        assert conn.noop() == b"+OK still in step"
        conn.close()


def _mailbox_script(bodies, then=()):
    def reply(n):
        return b"+OK\r\n" + bodies[n - 1] + b".\r\n"

    def handler(c):
        c.send(GREETING)
        while True:
            try:
                line = c.recv_line(timeout=5)
            except Exception:
                return
            cmd = line.strip().split()
            if not cmd:
                continue
            if cmd[0] == b"CAPA":
                c.send(b"+OK\r\nPIPELINING\r\n.\r\n")
            elif cmd[0] == b"RETR":
                c.send(reply(int(cmd[1])))
            elif cmd[0] == b"NOOP":
                c.send(b"+OK in step\r\n")
            elif cmd[0] == b"QUIT":
                c.send(b"+OK bye\r\n")
                return
            else:
                c.send(b"-ERR what\r\n")
    return handler


@pytest.mark.parametrize("read", ["readline", "read", "read1", "peek",
                                  "readinto"])
def test_consumer_cannot_read_between_fetch_many_steps(read):
    """Between two steps of fetch_many() responses are in flight: the
    connection's file refuses to be read (it would take bytes out of the
    next message), and the iteration goes on with every message whole."""
    bodies = [b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i) for i in range(1, 7)]
    with ScriptedServer(_mailbox_script(bodies)) as srv:
        conn = connect(srv)
        got = []
        for n, message in conn.fetch_many(range(1, 7), window=4):
            with pytest.raises(RuntimeError, match="fetch_many"):
                if read == "readinto":
                    conn.file.readinto(bytearray(10))
                else:
                    getattr(conn.file, read)(5)
            got.append(message)
        assert got == bodies
        assert conn.noop() == b"+OK in step"
        conn.quit()


def test_file_readable_again_after_fetch_many_closed():
    bodies = [b"one\r\n", b"two\r\n", b"three\r\n"]
    with ScriptedServer(_mailbox_script(bodies)) as srv:
        conn = connect(srv)
        it = conn.fetch_many([1, 2, 3], window=2)
        assert next(it) == (1, b"one\r\n")
        it.close()
        conn._putcmd("NOOP")
        assert conn.file.readline() == b"+OK in step\r\n"
        conn.quit()


@pytest.mark.parametrize("value, error", [("x", TypeError),
                                          (-1, ValueError),
                                          (1.5, TypeError)])
def test_fetch_many_checks_max_response_size_before_sending(value, error):
    """A bad MAX_RESPONSE_SIZE used to be found only after RETR went
    out, leaving the connection out of step; now fetch_many() refuses at
    the call and the connection is untouched."""
    script = [Step(None, GREETING), Step(b"NOOP", b"+OK untouched\r\n")]
    with ScriptedServer(script) as srv:
        conn = connect(srv)
        saved = cpoplib.MAX_RESPONSE_SIZE
        cpoplib.MAX_RESPONSE_SIZE = value
        try:
            with pytest.raises(error):
                conn.fetch_many([1, 2], pipeline=True)
        finally:
            cpoplib.MAX_RESPONSE_SIZE = saved
        assert conn.noop() == b"+OK untouched"
        conn.close()
    assert sent(srv) == [b"NOOP"]


def test_fetch_many_keeps_the_cap_it_was_called_with():
    """MAX_RESPONSE_SIZE is read when fetch_many() is called: changing it
    to a bad value during the iteration does not break the batch."""
    bodies = [b"a" * 100 + b"\r\n", b"b" * 100 + b"\r\n"]
    with ScriptedServer(_mailbox_script(bodies)) as srv:
        conn = connect(srv)
        saved = cpoplib.MAX_RESPONSE_SIZE
        try:
            it = conn.fetch_many([1, 2], pipeline=True)
            assert next(it) == (1, bodies[0])
            cpoplib.MAX_RESPONSE_SIZE = "not a size"
            assert next(it) == (2, bodies[1])
            assert list(it) == []
        finally:
            cpoplib.MAX_RESPONSE_SIZE = saved
        assert conn.noop() == b"+OK in step"
        conn.quit()


@pytest.mark.parametrize("dest", [None, "out.eml", 42, object()])
def test_fetch_into_refuses_a_non_file_before_sending(dest):
    """fetch_into(n, None) or a path used to send RETR and then close the
    connection on the failed write; now TypeError before anything is
    sent."""
    script = [Step(None, GREETING), Step(b"NOOP", b"+OK untouched\r\n")]
    with ScriptedServer(script) as srv:
        conn = connect(srv)
        with pytest.raises(TypeError, match="write"):
            conn.fetch_into(1, dest)
        assert conn.noop() == b"+OK untouched"
        conn.close()
    assert sent(srv) == [b"NOOP"]


def test_fetch_into_write_looked_up_once():
    """write is looked up before RETR is sent, once: a destination that
    hands out a new bound method per lookup sees one lookup."""
    body = b"line\r\n" * 100000
    script = [Step(None, GREETING), Step(b"RETR 1", b"+OK\r\n" + body +
                                         b".\r\n")]

    class Counting:
        lookups = 0
        total = 0

        def __getattribute__(self, name):
            if name == "write":
                type(self).lookups += 1
            return object.__getattribute__(self, name)

        def write(self, data):
            type(self).total += len(data)
            return len(data)

    with ScriptedServer(script) as srv:
        conn = connect(srv)
        dest = Counting()
        assert conn.fetch_into(1, dest) == len(body)
        conn.close()
    assert Counting.lookups == 1 and Counting.total == len(body)
