"""A small, fast, in-memory POP3 server on the loopback interface.

It exists for cpoplib's demo, benchmarks and tests: it serves a fixed
mailbox from memory so that the client under test, not the server, is the
bottleneck.  Each message is rendered once to its final wire form (CRLF
line ends, dot-stuffed, ``.\\r\\n`` terminator, preceded by its ``+OK``
line), so RETR is a single ``sendall`` of a prepared ``bytes`` object.

    >>> from cpoplib._server import Server, make_mailbox
    >>> with Server(make_mailbox(10, 4096, seed=1)) as srv:
    ...     client = poplib.POP3("127.0.0.1", srv.port)

Behaviour worth knowing:

* any USER/PASS pair and any APOP digest is accepted;
* DELE marks a message for the current session only and QUIT does not
  expunge: every connection sees the same mailbox;
* connections are served each on its own thread; with an
  ``ssl.SSLContext`` (server side) every accepted connection is wrapped
  in TLS straight away (POP3S style, no STLS);
* a mailbox may be "synthetic" (see :class:`SyntheticMailbox`): message
  sizes and unique ids are known up front, bodies are generated only when
  RETR or TOP asks for them, so LIST/UIDL of 100,000 messages costs no
  body rendering.

Standard library only (socket, threading, ssl).
"""

import os
import random
import socket
import threading
import zlib

__all__ = ["Server", "Mailbox", "SyntheticMailbox", "make_mailbox",
           "render_wire"]

_MAXLINE = 4096          # longest command line accepted

_CAPABILITIES = (b"TOP", b"UIDL", b"USER", b"PIPELINING", b"RESP-CODES",
                 b"UTF8", b"EXPIRE NEVER", b"IMPLEMENTATION cpoplib-test")


# --------------------------------------------------------------------------
# Message generation
# --------------------------------------------------------------------------

_WORDS = (b"the quick brown fox jumps over lazy dog mail post office "
          b"protocol message server client line octet header body "
          b"retrieve delete list unique identifier mailbox transfer "
          b"latency throughput buffer socket loopback reply").split()
_LATIN1 = bytes(range(0xA0, 0x100))          # accented letters etc.
_HIGH = bytes(range(0x80, 0x100))
_DOT_LINES = (b".", b"..", b"...", b". a line led by a dot",
              b".. two dots lead this line", b".\t", b". ",
              b"...and an ellipsis")


class _LineSource:
    """A pool of body lines drawn from a seeded RNG, shared by messages."""

    def __init__(self, rng, line_len, dot_lines):
        if line_len < 1:
            raise ValueError("line_len must be >= 1")
        self.line_len = line_len
        lo = max(1, line_len - 8)
        hi = line_len + 8
        pool = []
        for _ in range(480):
            pool.append(self._text_line(rng, rng.randint(lo, hi)))
        for _ in range(48):                      # 8-bit lines
            line = bytearray(self._text_line(rng, rng.randint(lo, hi)))
            for _ in range(rng.randint(1, 6)):
                pos = rng.randrange(len(line))
                src = _LATIN1 if rng.random() < 0.8 else _HIGH
                line[pos] = src[rng.randrange(len(src))]
            pool.append(bytes(line))
        pool.extend([b""] * 24)                   # empty lines
        if dot_lines:
            for i in range(16):
                base = _DOT_LINES[i % len(_DOT_LINES)]
                if i >= len(_DOT_LINES):
                    base = b"." + self._text_line(rng, rng.randint(1, hi))
                pool.append(base)
        rng.shuffle(pool)
        self.pool = pool
        self.mean = sum(map(len, pool)) / len(pool) + 2

    @staticmethod
    def _text_line(rng, n):
        out = bytearray()
        while len(out) < n:
            if out:
                out += b" "
            out += rng.choice(_WORDS)
        del out[n:]
        if out.endswith(b" "):
            out[-1:] = b"x"          # exactly n bytes, no trailing blank
        return bytes(out)

    def header(self, index, rng, seed):
        day = 1 + rng.randrange(28)
        hour, minute, sec = rng.randrange(24), rng.randrange(60), \
            rng.randrange(60)
        subject = b" ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 7)))
        lines = [
            b"Return-Path: <sender%d@example.org>" % (index % 97),
            b"Received: from mail.example.org (mail.example.org [127.0.0.1])",
            b"\tby localhost with ESMTP id %08X" % rng.getrandbits(32),
            b"From: Sender %d <sender%d@example.org>" % (index % 97,
                                                         index % 97),
            b"To: user@localhost",
            b"Subject: [%d] %s" % (index + 1, subject),
            b"Date: Mon, %02d Jan 2024 %02d:%02d:%02d +0000"
            % (day, hour, minute, sec),
            b"Message-ID: <%d.%s@example.org>" % (index + 1,
                                                  str(seed).encode()),
            b"MIME-Version: 1.0",
            b"Content-Type: text/plain; charset=iso-8859-1",
            b"Content-Transfer-Encoding: 8bit",
            b"",
        ]
        return b"\r\n".join(lines) + b"\r\n"

    def message(self, index, size, rng, seed):
        """One message of exactly `size` bytes when `size` leaves room for
        the header block (else just the header block)."""
        head = self.header(index, rng, seed)
        room = size - len(head)
        if room <= 0:
            return head
        lines = rng.choices(self.pool, k=max(0, int(room / self.mean)))
        total = sum(map(len, lines)) + 2 * len(lines)
        while lines and total > room - 3:
            total -= len(lines.pop()) + 2
        rest = room - total
        width = self.line_len
        while rest >= 2:
            n = min(width, rest - 2)
            if rest - (n + 2) == 1:
                n -= 1
            filler = self._text_line(rng, n) if n else b""
            lines.append(filler)
            rest -= n + 2
        lines.append(b"")                        # final CRLF
        return head + b"\r\n".join(lines)


def make_mailbox(count, size, line_len=70, dot_lines=True, seed=0):
    """Return `count` deterministic messages as bytes with CRLF line ends.

    `size` is the size of each message in bytes (an int) or a sequence
    of `count` sizes; each message is exactly that long unless it is
    smaller than the header block.  Bodies are lines of about `line_len`
    bytes with empty lines, some 8-bit bytes and, when `dot_lines`, lines
    that start with '.' (so the wire form needs dot-stuffing).  The same
    arguments always give the same messages.
    """
    if isinstance(size, int):
        sizes = [size] * count
    else:
        sizes = list(size)
        if len(sizes) != count:
            raise ValueError("need one size per message")
    rng = random.Random(seed)
    src = _LineSource(rng, line_len, dot_lines)
    return [src.message(i, sizes[i], rng, seed) for i in range(count)]


class SyntheticMailbox:
    """A mailbox whose bodies exist only on demand.

    Sizes and unique ids are known without generating anything; indexing
    generates message `i` (0-based) deterministically.  Sizes vary a
    little around `size` so that listings are not all alike.
    """

    def __init__(self, count, size=512, line_len=70, dot_lines=True,
                 seed=0):
        self.count = count
        self.size = size
        self.seed = seed
        self._src = None
        self._line_len = line_len
        self._dot_lines = dot_lines

    def __len__(self):
        return self.count

    def size_of(self, i):
        return self.size + (i * 2654435761) % (self.size // 4 + 1)

    def uid_of(self, i):
        return "s%s-%07d" % (self.seed, i + 1)

    def __getitem__(self, i):
        if not 0 <= i < self.count:
            raise IndexError(i)
        if self._src is None:
            self._src = _LineSource(random.Random(self.seed),
                                    self._line_len, self._dot_lines)
        rng = random.Random("%s:%d" % (self.seed, i))
        return self._src.message(i, self.size_of(i), rng, self.seed)


# --------------------------------------------------------------------------
# Mailbox: messages rendered to their wire form
# --------------------------------------------------------------------------

def _normalize(msg):
    """`msg` with CRLF line ends throughout and a final CRLF."""
    msg = bytes(msg)
    if msg.count(b"\n") != msg.count(b"\r\n") or \
            msg.count(b"\r") != msg.count(b"\r\n"):
        msg = msg.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        msg = msg.replace(b"\n", b"\r\n")
    if msg and not msg.endswith(b"\r\n"):
        msg += b"\r\n"
    return msg


def render_wire(msg):
    """The bytes a POP3 server sends for `msg` after its +OK line:
    CRLF line ends, dot-stuffed, with the terminating '.\\r\\n'."""
    msg = _normalize(msg)
    stuffed = msg.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


class Mailbox:
    """The server-side view of a list of messages.

    A plain sequence of bytes is rendered at once (and not kept);
    a :class:`SyntheticMailbox` (anything with ``size_of``) is rendered
    lazily, message by message, and cached.  A Mailbox may be shared by
    several servers (e.g. a plain and a TLS one).
    """

    def __init__(self, messages):
        self.count = len(messages)
        self._rendered = [None] * self.count
        if hasattr(messages, "size_of"):
            self._source = messages
            self.sizes = [messages.size_of(i) for i in range(self.count)]
            uid_of = getattr(messages, "uid_of", None)
            if uid_of is not None:
                self.uids = [uid_of(i) for i in range(self.count)]
            else:
                self.uids = ["m%07d" % (i + 1) for i in range(self.count)]
        else:
            self._source = None
            self.sizes = []
            self.uids = []
            for i, msg in enumerate(messages):
                msg = _normalize(msg)
                self.sizes.append(len(msg))
                self.uids.append("m%07d-%08x" % (i + 1, zlib.crc32(msg)))
                self._rendered[i] = self._render(msg, len(msg))
                del msg
        self.total = sum(self.sizes)
        self._lock = threading.Lock()
        self._list_all = None
        self._uidl_all = None

    @staticmethod
    def _render(msg, size):
        first = b"+OK %d octets\r\n" % size
        resp = first + render_wire(msg)
        body = len(first)
        if resp.startswith(b"\r\n", body):
            hdr_end = body + 2
        else:
            j = resp.find(b"\r\n\r\n", body)
            hdr_end = len(resp) - 3 if j < 0 else j + 4
        return resp, body, hdr_end

    def rendered(self, i):
        """(RETR response bytes, body offset, header end offset) of
        message i (0-based)."""
        r = self._rendered[i]
        if r is None:
            msg = _normalize(self._source[i])
            r = self._render(msg, len(msg))
            with self._lock:
                self._rendered[i] = r
        return r

    def listing(self, deleted, uids):
        """Lines of a LIST (or UIDL) multi-line response, terminator
        included, leaving out `deleted` numbers (1-based)."""
        if not deleted:
            attr = "_uidl_all" if uids else "_list_all"
            cached = getattr(self, attr)
            if cached is None:
                cached = self._listing((), uids)
                setattr(self, attr, cached)
            return cached
        return self._listing(deleted, uids)

    def _listing(self, deleted, uids):
        vals = self.uids if uids else self.sizes
        fmt = b"%d %s\r\n" if uids else b"%d %d\r\n"
        out = []
        for i, v in enumerate(vals, 1):
            if i not in deleted:
                out.append(fmt % (i, v.encode() if uids else v))
        out.append(b".\r\n")
        return b"".join(out)


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------

class _Session:
    __slots__ = ("srv", "box", "sock", "rfile", "user", "authed", "deleted",
                 "closing")

    def __init__(self, srv, sock):
        self.srv = srv
        self.box = srv.mailbox
        self.sock = sock
        self.rfile = None
        self.user = None
        self.authed = False
        self.deleted = set()
        self.closing = False

    # ---- helpers
    def _msgno(self, arg):
        try:
            n = int(arg)
        except (TypeError, ValueError):
            return None, b"-ERR invalid message number\r\n"
        if not 1 <= n <= self.box.count:
            return None, b"-ERR no such message\r\n"
        if n in self.deleted:
            return None, b"-ERR message %d already deleted\r\n" % n
        return n, None

    def run(self):
        send = self.sock.sendall
        send(b"+OK cpoplib test server ready <%d.%d@localhost>\r\n"
             % (os.getpid(), self.srv._next_stamp()))
        self.rfile = self.sock.makefile("rb")
        readline = self.rfile.readline
        commands = self.COMMANDS
        while not self.closing:
            line = readline(_MAXLINE)
            if not line:
                break
            if not line.endswith(b"\n"):
                send(b"-ERR line too long\r\n")
                break
            parts = line.strip().split(None, 2)
            if not parts:
                send(b"-ERR empty command\r\n")
                continue
            handler = commands.get(parts[0].upper())
            if handler is None:
                send(b"-ERR unknown command\r\n")
                continue
            if handler[1] and not self.authed:
                send(b"-ERR not authenticated\r\n")
                continue
            send(handler[0](self, parts[1:]))

    # ---- commands: each returns the whole response
    def c_user(self, args):
        if self.authed:
            return b"-ERR already authenticated\r\n"
        if not args:
            return b"-ERR USER needs a name\r\n"
        self.user = args[0]
        return b"+OK send PASS\r\n"

    def c_pass(self, args):
        if self.authed:
            return b"-ERR already authenticated\r\n"
        if self.user is None:
            return b"-ERR USER first\r\n"
        self.authed = True
        return b"+OK %d messages ready\r\n" % self.box.count

    def c_apop(self, args):
        if self.authed:
            return b"-ERR already authenticated\r\n"
        if len(args) < 2:
            return b"-ERR APOP needs a name and a digest\r\n"
        self.user = args[0]
        self.authed = True
        return b"+OK %d messages ready\r\n" % self.box.count

    def c_stat(self, args):
        box = self.box
        count, total = box.count, box.total
        for n in self.deleted:
            count -= 1
            total -= box.sizes[n - 1]
        return b"+OK %d %d\r\n" % (count, total)

    def c_list(self, args):
        box = self.box
        if args:
            n, err = self._msgno(args[0])
            return err or b"+OK %d %d\r\n" % (n, box.sizes[n - 1])
        count = box.count - len(self.deleted)
        total = box.total - sum(box.sizes[n - 1] for n in self.deleted)
        return (b"+OK %d messages (%d octets)\r\n" % (count, total)
                + box.listing(self.deleted, False))

    def c_uidl(self, args):
        box = self.box
        if args:
            n, err = self._msgno(args[0])
            return err or b"+OK %d %s\r\n" % (n, box.uids[n - 1].encode())
        return b"+OK unique-id listing follows\r\n" + \
            box.listing(self.deleted, True)

    def c_retr(self, args):
        n, err = self._msgno(args[0] if args else None)
        if err:
            return err
        return self.box.rendered(n - 1)[0]

    def c_top(self, args):
        if len(args) < 2:
            return b"-ERR TOP needs a message number and a line count\r\n"
        n, err = self._msgno(args[0])
        if err:
            return err
        try:
            k = int(args[1])
            if k < 0:
                raise ValueError
        except ValueError:
            return b"-ERR invalid line count\r\n"
        resp, body, end = self.box.rendered(n - 1)
        limit = len(resp) - 3
        find = resp.find
        while k and end < limit:
            j = find(b"\r\n", end, limit)
            if j < 0:
                end = limit
                break
            end = j + 2
            k -= 1
        return b"".join((b"+OK top of message follows\r\n",
                         resp[body:end], b".\r\n"))

    def c_dele(self, args):
        n, err = self._msgno(args[0] if args else None)
        if err:
            return err
        self.deleted.add(n)
        return b"+OK message %d deleted\r\n" % n

    def c_noop(self, args):
        return b"+OK\r\n"

    def c_rset(self, args):
        self.deleted.clear()
        return b"+OK maildrop has %d messages\r\n" % self.box.count

    def c_quit(self, args):
        self.closing = True
        return b"+OK cpoplib test server signing off\r\n"

    def c_capa(self, args):
        return (b"+OK capability list follows\r\n"
                + b"".join(c + b"\r\n" for c in _CAPABILITIES) + b".\r\n")

    def c_utf8(self, args):
        return b"+OK UTF8 enabled\r\n"

    # name -> (handler, needs authentication)
    COMMANDS = {
        b"USER": (c_user, False), b"PASS": (c_pass, False),
        b"APOP": (c_apop, False), b"STAT": (c_stat, True),
        b"LIST": (c_list, True), b"UIDL": (c_uidl, True),
        b"RETR": (c_retr, True), b"TOP": (c_top, True),
        b"DELE": (c_dele, True), b"NOOP": (c_noop, False),
        b"RSET": (c_rset, True), b"QUIT": (c_quit, False),
        b"CAPA": (c_capa, False), b"UTF8": (c_utf8, False),
    }


class Server:
    """An in-memory POP3 server on 127.0.0.1 (port chosen by the OS).

    `messages` is a sequence of message bytes, a :class:`SyntheticMailbox`
    or a prepared :class:`Mailbox`.  `ssl_context` (server side, with its
    certificate loaded) makes every connection TLS from the first byte.

        with Server(messages) as srv:
            poplib.POP3("127.0.0.1", srv.port)
    """

    def __init__(self, messages, ssl_context=None, host="127.0.0.1",
                 port=0):
        self.mailbox = (messages if isinstance(messages, Mailbox)
                        else Mailbox(messages))
        self.ssl_context = ssl_context
        self.host = host
        self._want_port = port
        self._listener = None
        self._accept_thread = None
        self._lock = threading.Lock()
        self._conns = {}           # thread -> socket (for stop())
        self._stamp = 0
        self._stopping = threading.Event()

    @property
    def port(self):
        return self.address[1]

    @property
    def address(self):
        if self._listener is None:
            raise RuntimeError("server not started")
        return self._listener.getsockname()[:2]

    def _next_stamp(self):
        with self._lock:
            self._stamp += 1
            return self._stamp

    def start(self):
        if self._listener is not None:
            raise RuntimeError("server already started")
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind((self.host, self._want_port))
            lsock.listen(1024)       # 1000 clients connecting at once
            lsock.settimeout(0.5)     # so stop() is noticed promptly
        except BaseException:
            lsock.close()
            raise
        self._listener = lsock
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="cpoplib-test-server", daemon=True)
        self._accept_thread.start()
        return self

    def _accept_loop(self):
        lsock = self._listener
        while not self._stopping.is_set():
            try:
                conn, _ = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            if self._stopping.is_set():
                conn.close()
                break
            t = threading.Thread(target=self._serve, args=(conn,),
                                 name="cpoplib-test-conn", daemon=True)
            with self._lock:
                self._conns[t] = conn
            t.start()

    def _serve(self, conn):
        me = threading.current_thread()
        session = None
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                conn = self.ssl_context.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._conns[me] = conn
                    stopping = self._stopping.is_set()
                if stopping:
                    return
            session = _Session(self, conn)
            session.run()
        except Exception:
            pass                      # client went away / server stopping
        finally:
            try:
                if session is not None and session.rfile is not None:
                    session.rfile.close()
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass
            with self._lock:
                self._conns.pop(me, None)

    def stop(self, timeout=5.0):
        """Stop accepting, close every connection, join all threads."""
        if self._listener is None or self._stopping.is_set():
            return
        self._stopping.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._accept_thread.join(timeout)
        self._listener.close()
        with self._lock:
            conns = list(self._conns.items())
        for _, sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t, _ in conns:
            t.join(timeout)

    close = stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
