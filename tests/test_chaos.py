"""Chaos test: Python code running wherever the C core calls into Python.

A POP3 subclass intercepts every attribute the C core reads (``file``,
``sock``, ``_debugging``, ``encoding``, ``welcome``, ...) and, for some
seeds, overrides any subset of the hooks (``_putline`` ... ``close``).  At
points chosen by a seeded random.Random, each interception does one of:
nothing, ``file.read(k)``, ``file.readline()``, ``file.peek()``,
``file.close()``, ``sock.close()`` or ``self.close()``.  Two variants:

* "properties": class-level properties (so the type keeps its generic
  getattr and the C fast paths stay in use), values kept in
  ``self.__dict__['_chaos_<name>']``;
* "getattribute": a ``__getattribute__`` override that also hands out
  hook wrappers.

A mixed command sequence (stat, list, uidl, retr, top, noop, dele, rset,
capa, apop, getwelcome, quit) runs against a fake server (one end of a
socketpair, fed by a thread) whose replies are computed from a known
mailbox.  The retrieval variants add cpoplib's fetch(), and one entry
point with chaos of its own: fetch_into() into a destination whose
write() is a chaos point, or fetch_many() whose consumer is one between
two steps.  Each outcome must be

* an exception that is an instance of error_proto, OSError, ValueError,
  RuntimeError, AttributeError or TypeError (IndexError too for capa(),
  as poplib raises it for an empty capability line) whose error_proto
  text, if any, is a reply line of the stream or one of poplib's own
  messages; or
* exactly the correct result, as long as no chaos action has consumed
  bytes and no command has failed on this connection; after that, a
  result whose every line is a line (or the tail of a line, after a
  chaos read) of what the server sent, in stream order: never bytes that
  the server did not send.

Seeds: range(CHAOS_SEED_START, CHAOS_SEED_START + CHAOS_SEEDS), from the
environment (defaults 0 and 300).  CHAOS_LOG=<file> appends each seed
to that file before running it, flushed, so that the last line names the
seed of a crash (pytest's capture loses stderr when the process dies).  A
failure message names the seed; rerun it alone with
CHAOS_SEED_START=<seed> CHAOS_SEEDS=1.
"""
import os
import random
import socket
import threading

import pytest

import poplib
import cpoplib          # deliberately not importorskip: missing == failure

CHAOS_SEED_START = int(os.environ.get("CHAOS_SEED_START", "0"))
CHAOS_SEEDS = int(os.environ.get("CHAOS_SEEDS", "300"))
CHAOS_LOG = os.environ.get("CHAOS_LOG", "")

SEEDS = range(CHAOS_SEED_START, CHAOS_SEED_START + CHAOS_SEEDS)

ATTRS = ("_debugging", "encoding", "file", "sock", "welcome", "timestamp",
         "_tls_established", "host", "port")
HOOKS = ("_putline", "_putcmd", "_getline", "_getresp", "_getlongresp",
         "_shortcmd", "_longcmd", "capa", "close")
ACTIONS = ("read", "readline", "peek", "file.close", "sock.close",
           "self.close")
ACTION_WEIGHTS = (3, 3, 2, 1, 1, 1)
READ_SIZES = (1, 2, 5, 17, 100, 1000, 70000, 300000)

KNOWN_MESSAGES = {
    "-ERR EOF", "line too long", "response too long",
    "-ERR CAPA not supported by server", "Invalid STAT response format",
    "Invalid STAT response data: non-numeric values",
    "-ERR APOP not supported by server",
    # after a fetch_many() batch whose responses could not all be read,
    # every command is refused with this (cpoplib only)
    "connection out of step: responses of a fetch_many() batch could not "
    "be read; close() it and reconnect",
}


# ---------------------------------------------------------------------------
# The mailbox and the server's replies

def _build_mailbox():
    rng = random.Random(20240601)
    messages = []
    for i in range(1, 7):
        lines = [b"From: sender%d@example.org" % i,
                 b"Subject: chaos message %d" % i, b""]
        count = 150 if i == 4 else rng.randint(3, 25)
        for j in range(count):
            kind = rng.random()
            if kind < 0.15:
                lines.append(b".m%d dot-led line %04d" % (i, j))
            elif kind < 0.2:
                lines.append(b"")
            elif kind < 0.25:
                lines.append(b"m%d long %04d " % (i, j) + b"w" * 1500)
            elif i == 4:
                lines.append(b"m%d big body %04d " % (i, j) + b"b" * 700)
            else:
                lines.append(b"m%d body line %04d %s"
                             % (i, j, b"t" * rng.randint(0, 60)))
        messages.append(lines)
    # message 7, about 600 KiB: more than fetch_into() hands to one
    # write(), so a destination runs in the middle of its body
    messages.append([b"Subject: chaos message 7", b""]
                    + [b"m7 line %05d %s" % (j, b"z" * (j % 200))
                       for j in range(6000)])
    return messages


MAILBOX = _build_mailbox()       # message 4 ~120 KiB, message 7 ~640 KiB
GREETING = b"+OK chaos POP3 server ready <1.2@chaos>"
CAPA_LINES = [b"USER", b"UIDL", b"TOP", b"PIPELINING",
              b"IMPLEMENTATION chaos server"]


def _size(lines):
    return sum(len(ln) + 2 for ln in lines)


def _wire(lines):
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n"
                    for ln in lines) + b".\r\n"


def _joined(lines):
    """A message as fetch() returns it."""
    return b"".join(ln + b"\r\n" for ln in lines)


def _uid(n):
    return b"uid-%08x" % (n * 2654435761 % 2 ** 32)


class _Mailbox:
    """The server's state: which messages are marked deleted."""

    def __init__(self):
        self.deleted = set()
        self.quit = False

    def live(self):
        return [n for n in range(1, len(MAILBOX) + 1)
                if n not in self.deleted]

    def reply(self, cmd, args):
        """(bytes on the wire, expected outcome)"""
        def short(line):
            return line + b"\r\n", ("ok", line)

        def err(line):
            return line + b"\r\n", ("error_proto", (line,))

        def long(status, lines):
            return (status + b"\r\n" + _wire(lines),
                    ("ok", (status, lines, _size(lines))))

        def bad(n):
            if not 1 <= n <= len(MAILBOX):
                return err(b"-ERR no such message")
            if n in self.deleted:
                return err(b"-ERR message %d already deleted" % n)
            return None

        if cmd == "stat":
            live = self.live()
            total = sum(_size(MAILBOX[n - 1]) for n in live)
            return (b"+OK %d %d\r\n" % (len(live), total),
                    ("ok", (len(live), total)))
        if cmd in ("list", "uidl") and args:
            n = args[0]
            if bad(n):
                return bad(n)
            value = (_size(MAILBOX[n - 1]) if cmd == "list" else _uid(n))
            return short(b"+OK %d %s" % (n, str(value).encode()
                                         if cmd == "list" else value))
        if cmd == "list":
            return long(b"+OK scan listing follows",
                        [b"%d %d" % (n, _size(MAILBOX[n - 1]))
                         for n in self.live()])
        if cmd == "uidl":
            return long(b"+OK unique-id listing follows",
                        [b"%d %s" % (n, _uid(n)) for n in self.live()])
        if cmd == "retr":
            n = args[0]
            if bad(n):
                return bad(n)
            lines = MAILBOX[n - 1]
            return long(b"+OK %d octets" % _size(lines), lines)
        if cmd in ("fetch", "fetch_into"):
            n = args[0]
            if bad(n):
                return bad(n)
            lines = MAILBOX[n - 1]
            return (b"+OK %d octets\r\n" % _size(lines) + _wire(lines),
                    ("ok", _joined(lines)))
        if cmd == "fetch_many":
            wire, out, failed = b"", [], None
            for n in args:
                if failed is None and bad(n):
                    failed = bad(n)[1]
                if bad(n):
                    wire += bad(n)[0]
                    continue
                lines = MAILBOX[n - 1]
                wire += b"+OK %d octets\r\n" % _size(lines) + _wire(lines)
                out.append((n, _joined(lines)))
            return wire, failed or ("ok", out)
        if cmd == "top":
            n, k = args
            if bad(n):
                return bad(n)
            return long(b"+OK top of message follows", MAILBOX[n - 1][:3 + k])
        if cmd == "dele":
            n = args[0]
            if bad(n):
                return bad(n)
            self.deleted.add(n)
            return short(b"+OK message %d deleted" % n)
        if cmd == "noop":
            return short(b"+OK")
        if cmd == "rset":
            self.deleted.clear()
            return short(b"+OK maildrop has %d messages" % len(MAILBOX))
        if cmd == "capa":
            wire = b"+OK capability list follows\r\n" + _wire(CAPA_LINES)
            caps = {}
            for line in CAPA_LINES:
                words = line.decode("ascii").split()
                caps[words[0]] = words[1:]
            return wire, ("ok", caps)
        if cmd == "apop":
            return short(b"+OK maildrop locked and ready")
        if cmd == "getwelcome":
            return b"", ("ok", GREETING)     # nothing sent, nothing read
        if cmd == "quit":
            self.quit = True
            return short(b"+OK bye")
        raise AssertionError(cmd)


COMMAND_WEIGHTS = {"stat": 2, "list": 2, "list1": 1, "uidl": 2, "uidl1": 1,
                   "retr": 4, "top": 2, "noop": 3, "dele": 2, "rset": 1,
                   "capa": 2, "apop": 1, "getwelcome": 1}


# cpoplib's retrieval methods: fetch() in every retrieval variant, the
# variant's own entry point weighted up
RETRIEVAL_ENTRIES = ("fetch_into", "fetch_many")


def make_session(rng, entry=None):
    """A command sequence and, for each command, the expected outcome and
    the end offset of its reply in the stream; plus the whole stream.
    With `entry` (one of RETRIEVAL_ENTRIES), fetch() and `entry` are among
    the commands."""
    weights_of = dict(COMMAND_WEIGHTS)
    if entry is not None:
        weights_of.update({"fetch": 2, entry: 5})
    names = list(weights_of)
    weights = [weights_of[n] for n in names]
    commands = []
    for _ in range(rng.randint(3, 12)):
        name = rng.choices(names, weights)[0]
        n = rng.randint(0, len(MAILBOX) + 1) if rng.random() < 0.1 \
            else rng.randint(1, len(MAILBOX))
        if name in ("list1", "uidl1"):
            commands.append((name[:-1], (n,)))
        elif name in ("retr", "dele", "fetch", "fetch_into"):
            commands.append((name, (n,)))
        elif name == "fetch_many":
            # at most 3: all of them in flight at once (the window is 8),
            # so a -ERR among them drains the rest and stays in step
            commands.append((name, tuple(rng.randint(1, len(MAILBOX))
                                         for _ in range(rng.randint(1, 3)))))
        elif name == "top":
            commands.append((name, (n, rng.randint(0, 5))))
        elif name == "apop":
            commands.append((name, ("chaos", "secret")))
        else:
            commands.append((name, ()))
    if rng.random() < 0.6:
        commands.append(("quit", ()))
        if rng.random() < 0.3:
            commands.append(("noop", ()))        # after quit: closed
    box = _Mailbox()
    stream = bytearray(GREETING + b"\r\n")
    plan = []
    for name, args in commands:
        if box.quit:
            plan.append((name, args, ("closed",), len(stream)))
            continue
        wire, expected = box.reply(name, args)
        stream += wire
        plan.append((name, args, expected, len(stream)))
    return plan, bytes(stream)


# ---------------------------------------------------------------------------
# The chaos

class ChaosState:
    def __init__(self, rng, rate, hooks):
        self.rng = rng
        self.rate = rate
        self.hooks = hooks
        self.armed = False
        self.busy = False
        self.consumed = False       # a chaos action took bytes off the stream
        self.events = []
        self.bad_action_errors = []


def _state(conn):
    return object.__getattribute__(conn, "__dict__").get("_chaos")


def chaos_point(conn, where):
    st = _state(conn)
    if st is None or not st.armed or st.busy:
        return
    if st.rng.random() >= st.rate:
        return
    action = st.rng.choices(ACTIONS, ACTION_WEIGHTS)[0]
    st.busy = True
    try:
        if action == "read":
            size = st.rng.choice(READ_SIZES)
            data = conn.file.read(size)
            st.events.append((where, "read(%d)" % size, len(data)))
            st.consumed |= bool(data)
        elif action == "readline":
            data = conn.file.readline()
            st.events.append((where, "readline()", len(data)))
            st.consumed |= bool(data)
        elif action == "peek":
            st.events.append((where, "peek()", len(conn.file.peek())))
        elif action == "file.close":
            st.events.append((where, action))
            conn.file.close()
        elif action == "sock.close":
            st.events.append((where, action))
            conn.sock.close()
        else:
            st.events.append((where, action))
            conn.close()
    except Exception as exc:
        st.events.append((where, action, "raised %r" % (exc,)))
        if action in ("read", "readline"):
            st.consumed = True      # it may have taken bytes before failing
        if not isinstance(exc, ALLOWED):     # reported as a failure
            st.bad_action_errors.append((where, action, exc))
    finally:
        st.busy = False


def _chaos_property(name):
    key = "_chaos_" + name

    def fget(self):
        chaos_point(self, "get " + name)
        d = self.__dict__
        if key in d:
            return d[key]
        try:
            return getattr(type(self), key)    # encoding, timestamp
        except AttributeError:
            raise AttributeError(name) from None

    def fset(self, value):
        self.__dict__[key] = value

    def fdel(self):
        del self.__dict__[key]

    return property(fget, fset, fdel)


def _hook_override(cls_cell, name):
    def hook(self, *args):
        chaos_point(self, "pre " + name)
        result = getattr(super(cls_cell[0], self), name)(*args)
        chaos_point(self, "post " + name)
        return result
    hook.__name__ = name
    return hook


def _base_init(self, sock, state):
    self.__dict__["_chaos"] = state
    self.__dict__["_chaos_socket"] = sock


def _create_socket(self, timeout):
    return self.__dict__["_chaos_socket"]


def make_class(module, variant, hooks):
    """A POP3 subclass for one seed: chaos in attribute reads (and, for
    `hooks`, in overridden hooks)."""
    base = module.POP3
    cell = []

    def __init__(self, sock, state):
        _base_init(self, sock, state)
        super(cell[0], self).__init__("chaos.invalid", 110, 10)

    namespace = {"__init__": __init__, "_create_socket": _create_socket}
    if variant == "properties":
        for name in ATTRS:
            namespace[name] = _chaos_property(name)
        # the class-level defaults poplib/cpoplib define
        namespace["_chaos_encoding"] = base.encoding
        namespace["_chaos_timestamp"] = base.timestamp
        for name in hooks:
            namespace[name] = _hook_override(cell, name)

        def raw(self, name):
            d = self.__dict__
            key = "_chaos_" + name
            return d[key] if key in d else getattr(type(self), key)
    else:
        def __getattribute__(self, name):
            if name in ATTRS:
                chaos_point(self, "get " + name)
            value = super(cell[0], self).__getattribute__(name)
            if name in hooks:
                def hook(*args):
                    chaos_point(self, "pre " + name)
                    result = value(*args)
                    chaos_point(self, "post " + name)
                    return result
                return hook
            return value
        namespace["__getattribute__"] = __getattribute__

        def raw(self, name):
            d = object.__getattribute__(self, "__dict__")
            return d[name] if name in d else getattr(type(self), name)
    namespace["_chaos_raw"] = raw
    cls = type("Chaos%s" % variant.title(), (base,), namespace)
    cell.append(cls)
    return cls


# ---------------------------------------------------------------------------
# The fake server

def _serve(sock, pieces):
    """Send the whole stream (the replies to every command, in order), then
    EOF; read and drop whatever the client sends until it closes."""
    try:
        for piece in pieces:
            sock.sendall(piece)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(15)
        while sock.recv(65536):
            pass
    except OSError:
        pass
    finally:
        sock.close()


def _pieces(rng, stream):
    cuts = sorted(rng.sample(range(1, len(stream)), min(8, len(stream) - 1)))
    out, last = [], 0
    for cut in cuts + [len(stream)]:
        out.append(stream[last:cut])
        last = cut
    return out


# ---------------------------------------------------------------------------
# The oracle

class Verdict(Exception):
    pass


def stdlib_reference():
    """poplib as the specification, with the two CPython-main security
    fixes cpoplib applies on every interpreter (so that a malformed STAT
    reply is error_proto, not IndexError/ValueError): see
    scripted_server.reference_pop3_class()."""
    import types
    from scripted_server import reference_pop3_class
    return types.SimpleNamespace(POP3=reference_pop3_class(),
                                 error_proto=poplib.error_proto,
                                 __name__="poplib")


def _allowed(module):
    return (module.error_proto, OSError, ValueError, RuntimeError,
            AttributeError, TypeError)


ALLOWED = (poplib.error_proto, OSError, ValueError, RuntimeError,
           AttributeError, TypeError)   # cpoplib.error_proto subclasses it


class Cursor:
    """A lower bound of the client's position in the stream; locate()
    finds where a returned line can have come from."""

    def __init__(self, stream, pos):
        self.stream = stream
        self.pos = pos

    def locate(self, line, what):
        if not isinstance(line, bytes):
            raise Verdict("%s: %r is not bytes" % (what, line))
        s = self.stream
        ends = []
        q = s.find(line + b"\r\n", self.pos)
        if q >= 0:
            ends.append(q + len(line) + 2)
        if line == b"":
            q = s.find(b"\n", self.pos)      # the LF of a CRLF, alone
            if q >= 0:
                ends.append(q + 1)
        if not ends:
            raise Verdict("%s: %r was never sent (at or after offset %d)"
                          % (what, line[:200], self.pos))
        self.pos = min(ends)


def check_exception(module, exc, name, cursor):
    allowed = _allowed(module)
    if name == "capa":
        allowed += (IndexError,)     # poplib: empty capability line
    if not isinstance(exc, allowed):
        raise Verdict("%s raised %r (type not allowed)" % (name, exc))
    if isinstance(exc, module.error_proto):
        if len(exc.args) != 1:
            raise Verdict("%s raised %r" % (name, exc))
        arg = exc.args[0]
        if isinstance(arg, bytes):
            if arg.startswith(b"+"):
                raise Verdict("%s raised error_proto(%r)" % (name, arg))
            cursor.locate(arg, name + " error_proto")
        elif arg not in KNOWN_MESSAGES:
            raise Verdict("%s raised error_proto(%r)" % (name, arg))


def check_plausible(name, got, cursor):
    """A result obtained after the stream got out of step."""
    if name in ("fetch", "fetch_into"):
        got = [(None, got)]
    if name in ("fetch", "fetch_into", "fetch_many"):
        if type(got) is not list:
            raise Verdict("%s returned %r" % (name, got))
        for n, message in got:
            if type(message) is not bytes or (message
                                              and not message.endswith(
                                                  b"\r\n")):
                raise Verdict("%s returned %r" % (name, message[:200]))
            for i, line in enumerate(message.split(b"\r\n")[:-1]):
                cursor.locate(line, "%s %s line %d" % (name, n, i))
        return
    if name == "stat":
        if not (type(got) is tuple and len(got) == 2
                and all(type(v) is int for v in got)):
            raise Verdict("stat returned %r" % (got,))
        return
    if name == "capa":
        if type(got) is not dict or not all(
                type(k) is str and type(v) is list
                and all(type(w) is str for w in v) for k, v in got.items()):
            raise Verdict("capa returned %r" % (got,))
        return
    if isinstance(got, bytes):
        if not got.startswith(b"+"):
            raise Verdict("%s returned %r" % (name, got))
        cursor.locate(got, name)
        return
    if not (type(got) is tuple and len(got) == 3 and type(got[1]) is list
            and type(got[2]) is int):
        raise Verdict("%s returned %r" % (name, got))
    if not got[0].startswith(b"+"):
        raise Verdict("%s returned status %r" % (name, got[0]))
    cursor.locate(got[0], name + " status")
    for i, line in enumerate(got[1]):
        cursor.locate(line, "%s line %d" % (name, i))


class ChaosSink:
    """fetch_into()'s destination: every write() is a chaos point."""

    def __init__(self, conn):
        self.conn = conn
        self.data = bytearray()

    def write(self, data):
        chaos_point(self.conn, "write")
        self.data += data
        return len(data)


def call(conn, name, args):
    """conn.<name>(*args); fetch_into() into a ChaosSink, whose bytes it
    returns; fetch_many() consumed to the end with a chaos point after
    each message, as a list of its pairs."""
    if name == "fetch_into":
        sink = ChaosSink(conn)
        written = conn.fetch_into(args[0], sink)
        if written != len(sink.data):
            raise Verdict("fetch_into() returned %r for %d bytes written"
                          % (written, len(sink.data)))
        return bytes(sink.data)
    if name == "fetch_many":
        pairs = []
        for n, message in conn.fetch_many(list(args), pipeline=True):
            pairs.append((n, message))
            chaos_point(conn, "consumer")
        return pairs
    return getattr(conn, name)(*args)


def run_seed(module, variant, seed, entry=None):
    """Run one seed; raises Verdict (with the story) on a wrong outcome."""
    rng = random.Random(seed)
    plan, stream = make_session(rng, entry)
    hooks = tuple(h for h in HOOKS
                  if rng.random() < rng.choice((0.0, 0.0, 0.2, 0.5)))
    state = ChaosState(random.Random(rng.random()),
                       rng.choice((0.01, 0.03, 0.1, 0.3)), hooks)
    cls = make_class(module, variant, hooks)
    ours, theirs = socket.socketpair()
    ours.settimeout(15)
    server = threading.Thread(target=_serve,
                              args=(theirs, _pieces(rng, stream)),
                              daemon=True)
    server.start()
    story = []
    try:
        state.armed = rng.random() < 0.2        # chaos in __init__ too
        in_step = True
        try:
            conn = cls(ours, state)
        except BaseException as exc:
            story.append(("POP3()", repr(exc)))
            check_exception(module, exc, "POP3()", Cursor(stream, 0))
            return
        state.armed = True
        if state.consumed:
            in_step = False
        welcome = conn._chaos_raw("welcome")
        story.append(("POP3()", welcome))
        cursor = Cursor(stream, 0)
        if in_step and welcome != GREETING:
            raise Verdict("welcome %r" % (welcome,))
        cursor.locate(welcome, "welcome")
        quit_ok = False
        for name, args, expected, end in plan:
            if state.consumed:
                in_step = False
            # after a successful quit() the connection is closed: the
            # command must raise AttributeError, as with poplib
            closed = expected == ("closed",) and quit_ok
            try:
                got = ("ok", call(conn, name, args))
            except Verdict:
                raise
            except BaseException as exc:
                story.append((name, args, "raised %r" % (exc,)))
                if closed and not isinstance(exc, AttributeError):
                    raise Verdict("%s after quit raised %r" % (name, exc))
                if (in_step and not state.consumed
                        and isinstance(exc, module.error_proto)
                        and expected == ("error_proto", exc.args)):
                    cursor.pos = end           # the expected -ERR reply
                    continue
                check_exception(module, exc, name, cursor)
                in_step = False
                continue
            story.append((name, args, ("returned %r" % (got[1],))[:300]))
            if closed:
                raise Verdict("%s after quit returned %r" % (name, got))
            if in_step and not state.consumed:
                if got != expected:
                    raise Verdict("%s%r returned %r, expected %r"
                                  % (name, args, got, expected))
                cursor.pos = end
                quit_ok = quit_ok or name == "quit"
            elif name == "getwelcome":
                in_step = False
                if got[1] is not welcome:
                    raise Verdict("getwelcome() returned %r, not %r"
                                  % (got[1], welcome))
            else:
                in_step = False
                check_plausible(name, got[1], cursor)
        if state.bad_action_errors:
            raise Verdict("chaos action raised %r"
                          % (state.bad_action_errors,))
        try:
            conn.close()
        except ALLOWED:
            pass
    except Verdict as verdict:
        raise Verdict(
            "%s/%s seed %d: %s\n  hooks=%s rate=%s\n  commands=%s\n"
            "  story=%s\n  chaos=%s"
            % (module.__name__, variant, seed, verdict, hooks, state.rate,
               [(n, a) for n, a, _, _ in plan], story, state.events)
        ) from None
    finally:
        state.armed = False
        try:
            # poplib's makefile() keeps the descriptor open after close()
            ours.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        ours.close()
        server.join(15)


def _run_seeds(module, variant, seeds, limit=5, entry=None):
    failures = []
    log = open(CHAOS_LOG, "a") if CHAOS_LOG else None
    try:
        for seed in seeds:
            if log is not None:
                log.write("chaos %s %s seed %d\n"
                          % (module.__name__, variant, seed))
                log.flush()
            try:
                run_seed(module, variant, seed, entry)
            except Verdict as verdict:
                failures.append(str(verdict))
                if len(failures) >= limit:
                    break
    finally:
        if log is not None:
            log.close()
    return failures


# ---------------------------------------------------------------------------
# The tests

@pytest.mark.parametrize("variant", ["properties", "getattribute"])
def test_chaos(variant):
    failures = _run_seeds(cpoplib, variant, SEEDS)
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("entry", RETRIEVAL_ENTRIES)
@pytest.mark.parametrize("variant", ["properties", "getattribute"])
def test_chaos_retrieval(variant, entry):
    """fetch() and the entry point among the commands; the destination's
    write() (fetch_into) or the consumer between two steps (fetch_many)
    reads, closes or leaves the connection's file at random."""
    failures = _run_seeds(cpoplib, variant, SEEDS, entry=entry)
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("entry", RETRIEVAL_ENTRIES)
def test_model_matches_retrieval_without_chaos(entry):
    """With chaos off, the retrieval commands return what the model
    predicts (every message as retr() joins it)."""
    for seed in range(40):
        rng = random.Random(seed)
        plan, stream = make_session(rng, entry)
        cls = make_class(cpoplib, "properties", HOOKS if seed % 2 else ())
        state = ChaosState(random.Random(0), 0.0, ())
        ours, theirs = socket.socketpair()
        ours.settimeout(15)
        server = threading.Thread(target=_serve,
                                  args=(theirs, _pieces(rng, stream)),
                                  daemon=True)
        server.start()
        try:
            conn = cls(ours, state)
            for name, args, expected, _ in plan:
                try:
                    got = ("ok", call(conn, name, args))
                except cpoplib.error_proto as exc:
                    got = ("error_proto", exc.args)
                except AttributeError:
                    got = ("closed",)
                assert got == expected, (seed, name, args)
            conn.close()
        finally:
            ours.close()
            server.join(15)


@pytest.mark.parametrize("variant", ["properties", "getattribute"])
def test_chaos_oracle_accepts_stdlib(variant):
    """The same harness against the standard library's poplib (the first
    100 seeds): the oracle never rejects what poplib does."""
    failures = _run_seeds(stdlib_reference(), variant, SEEDS[:100])
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("which", ["poplib", "cpoplib"])
def test_model_matches_without_chaos(which):
    """With chaos off (rate 0), both modules return exactly the results
    the mailbox model predicts: the model is poplib's semantics."""
    module = poplib if which == "poplib" else cpoplib
    for seed in range(40):
        rng = random.Random(seed)
        plan, stream = make_session(rng)
        cls = make_class(module, "properties", HOOKS if seed % 2 else ())
        state = ChaosState(random.Random(0), 0.0, ())
        ours, theirs = socket.socketpair()
        ours.settimeout(15)
        server = threading.Thread(target=_serve,
                                  args=(theirs, _pieces(rng, stream)),
                                  daemon=True)
        server.start()
        try:
            conn = cls(ours, state)
            assert conn.welcome == GREETING
            for name, args, expected, _ in plan:
                try:
                    got = ("ok", getattr(conn, name)(*args))
                except module.error_proto as exc:
                    got = ("error_proto", exc.args)
                except AttributeError:
                    got = ("closed",)
                assert got == expected, (seed, name, args)
            conn.close()
        finally:
            ours.close()
            server.join(15)
