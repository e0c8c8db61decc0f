"""A scripted loopback POP3 server for cpoplib's tests.

The server accepts one connection on 127.0.0.1 (an ephemeral port), or
``connections`` of them one after the other, and plays a script on each
in a thread.  A script is either

* a list of steps: ``Step(expect, reply, ...)`` or plain tuples
  ``(expect, reply)``.  ``expect`` is ``None`` (send the reply without
  reading anything: greetings, pipelined data), ``ANY`` (read one command
  line, whatever it is) or the bytes of the expected command line without
  its CRLF (on a mismatch the server records it in ``mismatches`` and
  closes the connection).  ``reply`` is bytes, or an iterable of bytes
  chunks (lazily generated, e.g. a 1 GB line; sending stops quietly when
  the client goes away);
* or a callable ``handler(conn)`` receiving a :class:`Connection`, with
  ``recv_line()``, ``send()``, ``eof()``, ``reset()``, ``stall()`` and
  ``start_tls()``;
* or ``responder(respond)``: the greeting, then every command line is
  answered by ``respond(line)`` (``default_respond`` plays a small
  mailbox), optionally with TLS from the start or after the reply to STLS.

Every byte received from the client is recorded (``received``; after
STLS the decrypted bytes), as is each command line (``commands``), over
all connections; ``accepted`` counts the connections.

When the script ends the server half-closes the connection (the client
sees EOF) and keeps recording until the client closes; if it is waiting
for a command line for more than ``idle_eof`` seconds it does the same,
so that a client stuck waiting for a reply gets EOF instead of hanging.

Use it as a context manager::

    with ScriptedServer([(None, b"+OK hi\\r\\n"), (b"NOOP", b"+OK\\r\\n")]) as srv:
        c = poplib.POP3(*srv.address, timeout=5)
        ...
    assert srv.received == b"NOOP\\r\\n..."

TLS uses a throw-away certificate for "localhost" and the CA that signed
it (tests/pki.py; CERTFILE, KEYFILE, CAFILE): ``server_tls_context()`` is
what the server side presents, ``client_tls_context(verify=..., check_hostname=...)``
what a client of it uses.
"""

import socket
import ssl
import struct
import threading
import time

import pki

__all__ = ["ANY", "Step", "Connection", "ScriptedServer", "CERTFILE",
           "KEYFILE", "CAFILE", "server_tls_context", "client_tls_context",
           "split_positions", "responder", "default_respond", "MESSAGE"]


_PKI = pki.shared()
CERTFILE = _PKI.cert_file               # "localhost", signed by CAFILE
KEYFILE = _PKI.key_file
CAFILE = _PKI.ca_file


def server_tls_context():
    """The server side's SSLContext: the test certificate (tests/pki.py)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERTFILE, KEYFILE)
    return ctx


def client_tls_context(*, verify, check_hostname=False):
    """An SSLContext for clients of this server.

    verify=False: no check at all.  verify=True: the chain is checked
    against the test CA; with check_hostname=True also the host
    name, which is "localhost" (connect to "localhost", not 127.0.0.1).
    """
    if check_hostname and not verify:
        raise ValueError("check_hostname=True needs verify=True")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = check_hostname
    if verify:
        ctx.load_verify_locations(CAFILE)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Any:
    def __repr__(self):
        return "ANY"


ANY = _Any()


def split_positions(data, splits):
    """Cut data at the given positions.  splits: None (one piece), "bytes"
    (one byte per piece), an int n (pieces of n bytes) or an iterable of
    byte offsets."""
    if not data:
        return []
    if splits is None:
        return [data]
    if splits == "bytes":
        splits = 1
    if isinstance(splits, int):
        return [data[i:i + splits] for i in range(0, len(data), splits)]
    cuts = sorted({p for p in splits if 0 < p < len(data)})
    pieces, last = [], 0
    for p in cuts + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


class Step:
    """One exchange of a script.

    expect  -- None, ANY or the expected command line (bytes, no CRLF)
    reply   -- bytes, or an iterable of bytes chunks (sent as they come)
    splits  -- how to cut a bytes reply: see split_positions()
    pause   -- seconds to sleep between pieces (0: none)
    cut     -- send only reply[:cut], then act as if `after` were "eof"
    after   -- None, "eof" (half-close), "close", "reset" (RST via
               SO_LINGER 0), "tls" (server side TLS handshake), or
               ("stall", seconds)
    """

    def __init__(self, expect, reply=b"", splits=None, pause=0.0, cut=None,
                 after=None):
        self.expect = expect
        self.reply = reply
        self.splits = splits
        self.pause = pause
        self.cut = cut
        self.after = after
        if cut is not None and after is None:
            self.after = "eof"

    def __repr__(self):
        return ("Step(%r, %r, splits=%r, pause=%r, cut=%r, after=%r)"
                % (self.expect, self.reply, self.splits, self.pause,
                   self.cut, self.after))


class _Gone(Exception):
    """The client went away (or the server is shutting down)."""


class Connection:
    """The server's side of the accepted connection."""

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self._buf = b""
        self.tls = False
        self.write_closed = False
        self.bytes_sent = 0

    # -- receiving --------------------------------------------------------

    def _recv_some(self, timeout=None):
        try:
            self.sock.settimeout(max(timeout, 0.001) if timeout is not None
                                 else 0.2)
        except OSError as exc:         # already closed (reset/close)
            raise _Gone(repr(exc))
        while True:
            if self.server._stopping.is_set():
                raise _Gone("server stopping")
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                if timeout is not None:
                    raise
                continue
            except (OSError, ssl.SSLError) as exc:
                raise _Gone(repr(exc))
            if not data:
                raise _Gone("client closed")
            if self.server.record:
                with self.server._lock:
                    self.server._received += data
            return data

    def recv_line(self, timeout=None):
        """The next line the client sent, including its LF; raises
        socket.timeout after `timeout` seconds without a full line."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left == 0.0:
                raise socket.timeout("no command line")
            self._buf += self._recv_some(left)
        line, _, self._buf = self._buf.partition(b"\n")
        line += b"\n"
        if self.server.record:
            self.server.commands.append(line)
        return line

    def drain(self, limit=None):
        """Record what the client sends until it closes (or `limit` s)."""
        end = None if limit is None else time.monotonic() + limit
        while True:
            try:
                self._recv_some(0.2)
            except socket.timeout:
                if end is not None and time.monotonic() > end:
                    return
            except _Gone:
                return

    # -- sending ----------------------------------------------------------

    def send(self, data, splits=None, pause=0.0):
        """Send data, cut at `splits`; one sendall per piece."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            pieces = split_positions(bytes(data), splits)
        else:
            pieces = data          # an iterable of chunks
        for piece in pieces:
            if self.server._stopping.is_set():
                raise _Gone("server stopping")
            try:
                self.sock.sendall(piece)
            except (OSError, ssl.SSLError) as exc:
                raise _Gone(repr(exc))
            self.bytes_sent += len(piece)
            if pause:
                time.sleep(pause)

    # -- connection events ------------------------------------------------

    def eof(self):
        """Half-close: the client reads EOF, we keep recording."""
        if self.write_closed:
            return
        self.write_closed = True
        try:
            # At TCP level, also under TLS (SSLSocket.shutdown() would drop
            # the TLS layer and make us record ciphertext): the client sees
            # a ragged EOF, which its ssl module reports as b"".
            socket.socket.shutdown(self.sock, socket.SHUT_WR)
        except OSError:
            pass

    def reset(self):
        """Abort the connection with a TCP RST."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()
        raise _Gone("reset")

    def close(self):
        self.write_closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def stall(self, seconds):
        """Do nothing for `seconds` (cut short when the server stops)."""
        self.server._stopping.wait(seconds)

    def start_tls(self):
        """Server side TLS handshake with the stdlib test certificate."""
        if self._buf:
            # plaintext the client pipelined after STLS: keep it recorded
            # but it can never be part of the TLS stream
            self.server.plaintext_after_stls += self._buf
            self._buf = b""
        ctx = server_tls_context()
        self.sock.settimeout(self.server.timeout)
        try:
            self.sock = ctx.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self.server.tls_error = exc
            raise _Gone("TLS handshake failed: %r" % (exc,))
        self.tls = True
        self.server.tls_done.set()


class ScriptedServer:
    """See the module docstring.

    script      -- list of Step / (expect, reply) tuples, or
                   handler(conn) (e.g. responder(...))
    idle_eof    -- seconds to wait for a command line before half-closing
    timeout     -- overall safety timeout of blocking socket operations
    record      -- keep received bytes and commands (False for leak tests)
    connections -- how many connections to accept, one after the other
                   (each once the previous one is over), each playing
                   the script
    """

    def __init__(self, script, idle_eof=5.0, timeout=30.0, record=True,
                 connections=1):
        self.script = script
        self.connections = connections
        self.accepted = 0
        self.record = record      # False: keep no history (leak tests)
        self.idle_eof = idle_eof
        self.timeout = timeout
        self.commands = []
        self.mismatches = []
        self.plaintext_after_stls = b""
        self.tls_error = None
        self.tls_done = threading.Event()
        self.error = None          # unexpected exception in the thread
        self.idle_timeouts = 0
        self.conn = None
        self._received = bytearray()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self.address = self._listener.getsockname()
        self.host, self.port = self.address
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="ScriptedServer:%d" % self.port)
        self._thread.start()

    @property
    def received(self):
        with self._lock:
            return bytes(self._received)

    # -- thread -------------------------------------------------------------

    def _accept(self):
        self._listener.settimeout(0.2)
        deadline = time.monotonic() + self.timeout
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
                return sock
            except socket.timeout:
                if time.monotonic() > deadline:
                    return None
        return None

    def _run(self):
        try:
            for _ in range(self.connections):
                sock = self._accept()
                if sock is None:
                    return
                self.accepted += 1
                self._serve(sock)
        except BaseException as exc:       # reported by join()
            self.error = exc
        finally:
            self._finished.set()

    def _serve(self, sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn = Connection(self, sock)
        try:
            if callable(self.script):
                self.script(conn)
            else:
                self._play(conn)
            if not conn.write_closed:
                conn.eof()
            conn.drain(self.timeout)
        except _Gone:
            conn.drain(self.timeout)
        finally:
            conn.close()

    def _play(self, conn):
        for step in self.script:
            if not isinstance(step, Step):
                step = Step(*step)
            if step.expect is not None:
                try:
                    line = conn.recv_line(timeout=self.idle_eof)
                except socket.timeout:
                    self.idle_timeouts += 1
                    conn.eof()
                    return
                if step.expect is not ANY and line.rstrip(b"\r\n") != step.expect:
                    self.mismatches.append((step.expect, line))
                    conn.eof()
                    return
            reply = step.reply
            if step.cut is not None:
                reply = reply[:step.cut]
            conn.send(reply, step.splits, step.pause)
            after = step.after
            if after is None:
                continue
            if after == "eof":
                conn.eof()
                return
            if after == "close":
                conn.close()
                return
            if after == "reset":
                conn.reset()
            if after == "tls":
                conn.start_tls()
                continue
            if isinstance(after, tuple) and after[0] == "stall":
                conn.stall(after[1])
                continue
            raise ValueError("unknown step action %r" % (after,))

    # -- control ------------------------------------------------------------

    def join(self, timeout=10.0):
        """Wait until the connection is over (the client closed it).
        Returns the received bytes; re-raises a server-side error."""
        self._finished.wait(timeout)
        if self.error is not None:
            raise self.error
        return self.received

    def close(self):
        self._stopping.set()
        self._thread.join(10)
        try:
            self._listener.close()
        except OSError:
            pass
        if self.conn is not None:
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------------------
# A script that answers each command line with respond(line)

MESSAGE = (b"From: a@example.org\r\nSubject: test\r\n\r\n"
           b"line one\r\n..dot-stuffed\r\n\r\n.\r\n")


def default_respond(line):
    """The replies of a small mailbox of two messages (RETR and TOP give
    MESSAGE) that offers STLS; -ERR to any other command."""
    cmd = line.split(b" ", 1)[0].strip().upper()
    if cmd == b"QUIT":
        return b"+OK bye\r\n"
    if cmd in (b"USER", b"PASS", b"APOP", b"NOOP", b"RSET", b"DELE",
               b"RPOP", b"UTF8"):
        return b"+OK " + cmd + b"\r\n"
    if cmd == b"STAT":
        return b"+OK 2 320\r\n"
    if cmd in (b"LIST", b"UIDL"):
        if b" " in line.strip():
            return b"+OK 1 120\r\n"
        return b"+OK\r\n1 120\r\n2 200\r\n.\r\n"
    if cmd in (b"RETR", b"TOP"):
        return b"+OK message follows\r\n" + MESSAGE
    if cmd == b"CAPA":
        return b"+OK\r\nUSER\r\nTOP\r\nSTLS\r\nIMPLEMENTATION test server\r\n.\r\n"
    if cmd == b"STLS":
        return b"+OK Begin TLS\r\n"
    return b"-ERR unknown command\r\n"


def responder(respond=default_respond,
              greeting=b"+OK ready <1896.697170952@dbc.mtview.ca.us>\r\n",
              tls=None):
    """A script (handler) that sends `greeting`, then answers every
    command line (bytes, CRLF included) with the bytes respond(line)
    returns; None closes the connection.

    tls -- None: plain; "implicit": the TLS handshake first (POP3_SSL);
           "after-stls": the handshake right after the reply to a command
           line starting with STLS has been sent
    """
    if tls not in (None, "implicit", "after-stls"):
        raise ValueError("tls must be None, 'implicit' or 'after-stls'")

    def handler(conn):
        if tls == "implicit":
            conn.start_tls()
        conn.send(greeting)
        while True:
            line = conn.recv_line()
            reply = respond(line)
            if reply is None:
                conn.close()
                return
            conn.send(reply)
            if tls == "after-stls" and line.upper().startswith(b"STLS"):
                conn.start_tls()

    return handler


# ---------------------------------------------------------------------------
# Helpers shared by the differential and hostile tests: the reference
# implementation and a canonical form of call outcomes.

def reference_pop3_class():
    """The behaviour specification: the running stdlib poplib.POP3 plus
    the two security fixes from CPython main that cpoplib implements on
    purpose (the "expected divergence adapter"):

    (a) _putcmd raises ValueError('Control characters not allowed in
        commands') before sending if the encoded command contains a byte
        0x00-0x1F or 0x7F;
    (b) stat() raises error_proto('Invalid STAT response format') for
        fewer than 3 fields and error_proto('Invalid STAT response data:
        non-numeric values') when int() of field 1 or 2 fails.
    """
    import poplib
    import re

    class RefPOP3(poplib.POP3):
        def _putcmd(self, line):
            if self._debugging:
                print('*cmd*', repr(line))
            line = bytes(line, self.encoding)
            if re.search(b'[\x00-\x1f\x7f]', line):
                raise ValueError('Control characters not allowed in commands')
            self._putline(line)

        def stat(self):
            retval = self._shortcmd('STAT')
            rets = retval.split()
            if self._debugging:
                print('*stat*', repr(rets))
            if len(rets) < 3:
                raise poplib.error_proto("Invalid STAT response format")
            try:
                num = int(rets[1])
                size = int(rets[2])
            except ValueError:
                raise poplib.error_proto(
                    "Invalid STAT response data: non-numeric values")
            return (num, size)

    return RefPOP3


def canon(value):
    """A form of a return value that distinguishes types exactly (bytes
    vs bytearray, tuple vs list, dict order)."""
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(canon(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((canon(k), canon(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def exc_signature(exc, module, strict_attribute_error=False):
    """(family-qualified class name, args) of an exception raised by a
    client of `module`: module.error_proto and its subclasses (cpoplib
    raises one per RFC 2449 response code, with the same args; which one
    is tested in test_surface.py) become "error_proto", any other class
    keeps its module-qualified name.  AttributeError (calls after close())
    is compared by type only unless asked otherwise."""
    cls = type(exc)
    error_proto = getattr(module, "error_proto", None)
    if error_proto is not None and issubclass(cls, error_proto):
        name = "error_proto"
    else:
        name = "%s.%s" % (cls.__module__, cls.__qualname__)
    if isinstance(exc, AttributeError) and not strict_attribute_error:
        return ("raise", name)
    return ("raise", name, canon(exc.args))
