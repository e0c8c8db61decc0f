"""Odd objects where poplib expects sockets, files and settings: each case
runs through the interpreter's poplib and through cpoplib, and the two
must end the same way -- the same value, or the same exception type with
the same text.

* a socket whose recv_into() returns None, a float, a str, an int too
  large or a negative one (poplib reads through socket.SocketIO and
  io.BufferedReader, which define what each means);
* a file whose readline() returns a bytearray, a memoryview, a str or a
  list (poplib slices and compares whatever it gets);
* _MAXLINE set to sys.maxsize, a float, None, a str, a negative int;
* self.file set to None by a signal handler in the middle of retr();
* conn.sock.close() while the file made from it is still open (the file
  keeps the descriptor open, as socket.makefile() files do).
"""
import re
import signal
import socket
import sys

import pytest

import poplib

import cpoplib
from scripted_server import ScriptedServer, Step

GREETING = b"+OK hi\r\n"
MODULES = [poplib, cpoplib]


def outcome(module, script, action):
    """('ok', value) or (exception type name, str(exception))."""
    with ScriptedServer(script) as srv:
        try:
            return ("ok", action(module, srv))
        except Exception as exc:
            return (type(exc).__name__, str(exc))


def side_by_side(script, action):
    return [outcome(m, script, action) for m in MODULES]


def _odd_socket_client(module, srv, result):
    class OddSocket(socket.socket):
        def recv_into(self, *args, **kwargs):
            return result

    class Client(module.POP3):
        def _create_socket(self, timeout):
            sock = OddSocket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect((self.host, self.port))
            return sock

    return Client(srv.host, srv.port, timeout=5).getwelcome()


@pytest.mark.parametrize("result", [None, 1.5, "3", 2**70],
                         ids=["None", "float", "str", "huge"])
def test_recv_into_returning_odd_values(result):
    got = side_by_side([Step(None, GREETING)],
                       lambda m, srv: _odd_socket_client(m, srv, result))
    assert got[0] == got[1]


def test_recv_into_returning_a_negative_length():
    """Both raise OSError with io.BufferedReader's text; the buffer size
    it names is each reader's own (8192 there, 65536 here)."""
    got = side_by_side([Step(None, GREETING)],
                       lambda m, srv: _odd_socket_client(m, srv, -1))
    pattern = (r"raw readinto\(\) returned invalid length -1 \(should have "
               r"been between 0 and \d+\)")
    assert [kind for kind, _ in got] == ["OSError", "OSError"]
    assert all(re.fullmatch(pattern, text) for _, text in got)


class _OddFile:
    def __init__(self, line):
        self.line = line

    def readline(self, limit=-1):
        return self.line

    def close(self):
        pass


@pytest.mark.parametrize("line", [
    bytearray(b"+OK bytearray\r\n"), memoryview(b"+OK memoryview\r\n"),
    "+OK str\r\n", [43, 79, 75, 10], bytearray(b"-ERR bytearray\r\n"),
    memoryview(b"-ERR memoryview\r\n"), "-ERR str\r\n",
    bytearray(b"\r+OK cr-led\n"), bytearray(b""), ""],
    ids=["bytearray", "memoryview", "str", "list", "bytearray-err",
         "memoryview-err", "str-err", "bytearray-cr", "bytearray-empty",
         "str-empty"])
def test_readline_returning_odd_objects(line):
    def action(module, srv):
        conn = module.POP3(srv.host, srv.port, timeout=5)
        conn.file = _OddFile(line)
        resp = conn.noop()
        return type(resp).__name__, resp

    got = side_by_side([Step(None, GREETING), Step(b"NOOP", b"")], action)
    assert got[0] == got[1]


def test_bytearray_lines_pass_through_retr():
    lines = [bytearray(b"+OK\r\n"), bytearray(b"one\r\n"),
             bytearray(b"..two\r\n"), bytearray(b".\r\n")]

    class Lines:
        def readline(self, limit=-1):
            return lines.pop(0)

        def close(self):
            pass

    def action(module, srv):
        conn = module.POP3(srv.host, srv.port, timeout=5)
        saved = list(lines)
        conn.file = Lines()
        try:
            resp, got, octets = conn.retr(1)
        finally:
            lines[:] = saved
        return ([type(x).__name__ for x in [resp] + got], resp, got, octets)

    got = side_by_side([Step(None, GREETING), Step(b"RETR 1", b"")], action)
    assert got[0] == got[1]
    assert got[1][1][0] == ["bytearray"] * 3


@pytest.mark.parametrize("value", [sys.maxsize, sys.maxsize - 1, 2048.0,
                                   None, "2048", -1, -5, 2**70, True],
                         ids=["maxsize", "maxsize-1", "float", "None", "str",
                              "-1", "-5", "huge", "True"])
def test_maxline_values(value):
    def action(module, srv):
        conn = module.POP3(srv.host, srv.port, timeout=5)
        saved = module._MAXLINE
        module._MAXLINE = value
        try:
            return conn.noop()
        finally:
            module._MAXLINE = saved

    got = side_by_side([Step(None, GREETING),
                        Step(b"NOOP", b"+OK n\r\n")], action)
    assert got[0] == got[1]


def test_file_replaced_by_a_signal_handler_during_retr():
    """poplib reads self.file for every line, so a signal handler that
    sets it to None stops retr() at the next line with AttributeError;
    cpoplib's bulk path checks after every read from the socket."""
    head = b"+OK\r\n" + b"line\r\n" * 1000
    body = head + b"more\r\n" * 1000 + b".\r\n"

    def action(module, srv):
        conn = module.POP3(srv.host, srv.port, timeout=5)

        def handler(signum, frame):
            conn.file = None

        previous = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        try:
            return len(conn.retr(1)[1])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    got = side_by_side([Step(None, GREETING),
                        Step(b"RETR 1", body, splits=[len(head)],
                             pause=0.5)], action)
    assert got[0] == got[1]
    assert got[0][0] == "AttributeError"


def test_connection_outlives_sock_close_while_its_file_is_open():
    """Commands keep working; quit()'s close() then fails alike (the
    file's close() closes the descriptor, shutdown() finds it gone)."""
    def action(module, srv):
        conn = module.POP3(srv.host, srv.port, timeout=5)
        conn.sock.close()
        done = [conn.noop(), conn.stat()]
        try:
            conn.quit()
        except OSError as exc:
            done.append(type(exc).__name__)
        return done

    script = [Step(None, GREETING), Step(b"NOOP", b"+OK n\r\n"),
              Step(b"STAT", b"+OK 2 320\r\n"), Step(b"QUIT", b"+OK bye\r\n")]
    got = side_by_side(script, action)
    assert got[0] == got[1]
    assert got[1][1][:2] == [b"+OK n", (2, 320)]


def test_closing_the_file_then_the_socket_closes_the_descriptor():
    """The other half of the count: once the file is closed too, the
    descriptor is closed (fileno() -1), for both modules."""
    def action(module, srv):
        conn = module.POP3(srv.host, srv.port, timeout=5)
        sock = conn.sock
        sock.close()
        before = sock.fileno() != -1 or sock._closed
        conn.file.close()
        return before, sock.fileno()

    got = side_by_side([Step(None, GREETING)], action)
    assert got[0] == got[1] == ("ok", (True, -1))
