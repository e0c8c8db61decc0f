"""The differential tests' engine (tests/test_differential.py; also
tests/test_aio.py, which runs the same transcripts through cpoplib.aio):
the Hypothesis strategies that generate POP3 server transcripts and client
calls, the model of what a client may send next, the hand-written nasty
transcripts (NASTY), and run_session()/assert_same(), which play a
transcript through tests/scripted_server.py to a client of each module
and compare what they return, raise and send."""
import gc
import os
import re

from hypothesis import strategies as st

import poplib
import cpoplib          # deliberately not importorskip: missing == failure

from scripted_server import (ANY, ScriptedServer, Step, canon, exc_signature,
                             reference_pop3_class)

RefPOP3 = reference_pop3_class()
MAXLINE = 2048
DEEP = os.environ.get("CPOPLIB_DEEP", "") not in ("", "0")
MAX_EXAMPLES = 4000 if DEEP else 300
CLIENT_TIMEOUT = 10.0
IDLE_EOF = 3.0

TIMESTAMP = re.compile(br'\+OK.[^<]*(<.*>)')


# ---------------------------------------------------------------------------
# Running one session against one module

def run_session(pop3_class, module, script, ops):
    """Connect, run ops until the first exception, close.  Returns
    (outcomes, bytes received by the server, server diagnostics)."""
    outcomes = []
    with ScriptedServer(script, idle_eof=IDLE_EOF) as srv:
        client = None
        try:
            client = pop3_class(srv.host, srv.port, timeout=CLIENT_TIMEOUT)
            outcomes.append(("welcome", canon(client.welcome),
                             canon(client.getwelcome())))
            for name, args in ops:
                result = getattr(client, name)(*args)
                outcomes.append((name, canon(result)))
        except Exception as exc:
            outcomes.append(exc_signature(exc, module))
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception as exc:
                    outcomes.append(("close",) + exc_signature(exc, module))
            else:
                gc.collect()      # a failed constructor: drop the socket
        received = srv.join(timeout=15)
        diag = (srv.idle_timeouts, srv.mismatches, srv.error)
    return outcomes, received, diag


def assert_same(script, ops):
    ref = run_session(RefPOP3, poplib, script, ops)
    got = run_session(cpoplib.POP3, cpoplib, script, ops)
    assert ref[2][2] is None, "server error: %r" % (ref[2][2],)
    assert got[0] == ref[0], "outcomes differ"
    assert got[1] == ref[1], "bytes received by the server differ"
    assert got[2] == ref[2], "server diagnostics differ (idle EOF?)"
    return ref


# ---------------------------------------------------------------------------
# A model of how many bytes a poplib client consumes, used only to build
# transcripts that never leave the client waiting for bytes the server
# will not send (which would otherwise cost an idle timeout).

class _Stop(Exception):
    pass


class _Blocked(Exception):
    pass


class _Model:
    def __init__(self, data, eof):
        self.data, self.eof, self.pos = data, eof, 0

    def line(self):
        window = self.data[self.pos:self.pos + MAXLINE + 1]
        i = window.find(b"\n")
        if i >= 0:
            window = window[:i + 1]
        elif len(window) <= MAXLINE and not self.eof:
            raise _Blocked
        self.pos += len(window)
        if len(window) > MAXLINE or not window:
            raise _Stop
        if window[-2:] == b"\r\n":
            return window[:-2]
        if window[:1] == b"\r":
            return window[1:-1]
        return window[:-1]

    def resp(self):
        if not self.line().startswith(b"+"):
            raise _Stop

    def longresp(self):
        self.resp()
        while self.line() != b".":
            pass


def _command(name, args):
    """The command line poplib sends for a call, or None (no I/O)."""
    fmt = {"user": "USER %s", "pass_": "PASS %s", "list": "LIST %s",
           "retr": "RETR %s", "dele": "DELE %s", "rpop": "RPOP %s",
           "top": "TOP %s %s", "uidl": "UIDL %s"}
    fixed = {"stat": "STAT", "noop": "NOOP", "rset": "RSET", "quit": "QUIT",
             "capa": "CAPA", "utf8": "UTF8", "list": "LIST", "uidl": "UIDL"}
    if name == "getwelcome":
        return None
    if name == "apop":
        return "APOP %s %s" % (args[0], "0" * 32)
    if name in fixed and not args:
        return fixed[name]
    return fmt[name] % args


def _is_long(name, args):
    return name in ("retr", "top", "capa") or (name in ("list", "uidl")
                                               and not args)


def settle(greeting, replies, ops, cut):
    """Turn drawn replies into a script the client can never block on.

    cut: None, or (step index, fraction): EOF inside that step's reply.
    Returns (chunks, cut_at): chunk 0 is the greeting, chunk i answers
    the i-th command sent; cut_at (or None) cuts the last chunk."""
    sending = []
    for name, args in ops:
        cmd = _command(name, args)
        if cmd is None:
            continue
        if re.search(b"[\x00-\x1f\x7f]", cmd.encode("utf-8", "surrogatepass")):
            break                  # raises ValueError before sending
        sending.append((name, args))
        if name == "quit":
            break
    chunks = [greeting] + list(replies[:len(sending)])
    kinds = [("greeting", ())] + sending
    final, cut_at = len(chunks) - 1, None
    if cut is not None:
        final = cut[0] % len(chunks)
        cut_at = int(len(chunks[final]) * cut[1])
    for i in range(final + 1):
        eof = i == final and cut_at is not None
        for _ in range(4):
            data = b"".join(chunks[:i]) + (chunks[i][:cut_at] if eof else chunks[i])
            model = _Model(data, eof)
            try:
                for j, (name, args) in enumerate(kinds[:i + 1]):
                    if j and _is_long(name, args):
                        model.longresp()
                    else:
                        model.resp()
                    if name == "quit":
                        raise _Stop
            except _Stop:
                return chunks[:i + 1], (cut_at if eof else None)
            except _Blocked:
                chunks[i] += b"\r\n.\r\n" if i and _is_long(*kinds[i]) else b"\r\n"
                continue
            break
        else:
            return chunks[:i + 1], len(chunks[i])      # EOF right after
    return chunks[:final + 1], cut_at


# ---------------------------------------------------------------------------
# Strategies

ENDINGS = [b"\r\n", b"\n", b"\n\r"]   # "\n\r": LF, then CR leading the next line
# the last line of a reply: an LF-CR there makes the next reply CR-led,
# which usually ends the session, so keep it rare
final_ending = st.sampled_from([b"\r\n"] * 6 + [b"\n"] * 3 + [b"\n\r"])

SPECIAL = [b"", b".", b"..", b"...", b". ", b".x", b"..x", b"a.b", b" .",
           b"\r", b"\r.", b".\r", b"\r\r", b"\x00", b"\xff\xfe\x80",
           b"\x1b[31mred\x1b[0m", b"From: a@b", b"Subject: hi", b"+OK",
           b"-ERR", b"1 120", b"2 " + b"U" * 70, b"STLS", b"TOP",
           b"SASL PLAIN LOGIN", b"IMPLEMENTATION x y", b"\x0bA\x0c",
           b"A\x1cB", b"\xc3\xa9t\xc3\xa9", b"\t.\t"]

no_lf = st.binary(max_size=16).map(lambda b: b.replace(b"\n", b""))


@st.composite
def long_line(draw, ending):
    """A line whose raw length (terminator included) is 2046..2050."""
    total = draw(st.integers(MAXLINE - 2, MAXLINE + 2))
    fill = draw(st.sampled_from([b"x", b"."]))
    head = draw(st.sampled_from([b"", b".", b"..", b"+OK ", b"\r"]))
    size = total - (1 if ending == b"\n\r" else len(ending)) - len(head)
    return head + fill * max(size, 0)


@st.composite
def content_line(draw, ending):
    kind = draw(st.integers(0, 19))
    if kind == 19:
        return draw(long_line(ending))
    if kind < 8:
        return draw(st.sampled_from(SPECIAL))
    return draw(no_lf)


@st.composite
def status_line(draw, ok=None):
    if ok is None:
        ok = draw(st.integers(0, 9)) < 9
    if ok:
        tail = draw(st.sampled_from([b"", b" ", b" 2 320", b" message follows",
                                     b"OKAY", b" \xff\x00", b"\t1\t2"]))
        return b"+OK" + tail
    return draw(st.sampled_from([
        b"-ERR", b"-ERR [IN-USE] Mailbox locked", b"-ERR [AUTH] bad",
        b"-ERR [SYS/TEMP] try later", b"-ERR no such message", b"",
        b" +OK", b"+", b"OK", b"-ERR \xff", b"\x00+OK"]))


NUMBERS = [b"0", b"1", b"2", b"-5", b"+7", str(2 ** 70).encode(), b"1_000",
           b"x", b"\xff", b"\xd9\xa3", b"00012", b" ", b""]


@st.composite
def short_reply_line(draw, name):
    if name == "stat" and draw(st.booleans()):
        fields = draw(st.lists(st.sampled_from(NUMBERS), max_size=4))
        sep = draw(st.sampled_from([b" ", b"\t", b"  ", b"\x0b", b"\x1c"]))
        return sep.join([b"+OK"] + fields)
    if name in ("list", "uidl") and draw(st.booleans()):
        return b"+OK 1 " + draw(st.sampled_from(NUMBERS + [b"U" * 72]))
    if draw(st.integers(0, 12)) == 12:
        return draw(long_line(b"\r\n"))
    return draw(status_line())


@st.composite
def lines_block(draw, n_max=6):
    """Lines joined with drawn endings; returns bytes ending in an ending."""
    out = []
    for _ in range(draw(st.integers(0, n_max))):
        ending = draw(st.sampled_from(ENDINGS))
        out.append(draw(content_line(ending)) + ending)
    return b"".join(out)


def stuff(block):
    return b"".join(b"." + ln if ln.startswith(b".") else ln
                    for ln in block.splitlines(keepends=True))


def bulk_body(seed, size):
    """A deterministic pseudo-random body of about `size` bytes (lines of
    0..2048 bytes, stuffed and unstuffed dots, CRLF/LF/LF-CR endings),
    to cross the reader's internal buffer boundaries (64 KiB chunks)."""
    import random
    rnd = random.Random(seed)
    out, total = [], 0
    while total < size:
        n = rnd.choice([0, 1, 2, 70, 511, 2045, 2046, rnd.randrange(2048)])
        line = bytes(rnd.choice(b"..x\x00\xff\r ab") for _ in range(min(n, 8)))
        line = (line + b"y" * n)[:n].replace(b"\n", b"")
        ending = rnd.choice([b"\r\n", b"\r\n", b"\n", b"\n\r"])
        if line.startswith(b".") and rnd.random() < 0.7:
            line = b"." + line
        if line.rstrip(b"\r") in (b".", b""):
            line = b"z"
        out.append(line + ending)
        total += len(line) + len(ending)
    return b"".join(out)


@st.composite
def long_reply(draw, name):
    ending = draw(st.sampled_from(ENDINGS))
    if name == "retr" and draw(st.integers(0, 15)) == 15:
        size = draw(st.sampled_from([65536 - 3, 65536, 70000, 140000]))
        body = bulk_body(draw(st.integers(0, 2 ** 16)), size)
        return b"+OK bulk\r\n" + body + b".\r\n"
    status = draw(status_line()) if draw(st.integers(0, 6)) < 6 else \
        draw(long_line(ending))
    head = status + ending
    if not status.startswith(b"+"):
        # an error reply, sometimes followed by pipelined junk
        return head + (draw(lines_block(2)) if draw(st.booleans()) else b"")
    body = draw(lines_block())
    if draw(st.booleans()):
        body = stuff(body)
    term = draw(st.sampled_from([b".\r\n", b".\r\n", b".\r\n", b".\n",
                                 b"\r.\n", b".\n\r", b". \r\n", b"..\r\n"]))
    extra = draw(lines_block(2)) if draw(st.integers(0, 5)) == 5 else b""
    return head + body + term + extra


@st.composite
def short_reply(draw, name):
    ending = draw(final_ending)
    out = draw(short_reply_line(name)) + ending
    if draw(st.integers(0, 6)) == 6:     # pipelined extra lines
        out += draw(lines_block(2))
    return out


TIMESTAMPS = [b"<1896.697170952@dbc.mtview.ca.us>", b"<>", b"<a>b>",
              b"<<x>", b"< \xff\x00 >", b"<no-close", b"<a>\n<b>",
              b"<" + b"t" * 3000 + b">"]


@st.composite
def greeting(draw):
    kind = draw(st.integers(0, 15))
    ending = draw(final_ending)
    if kind == 15:
        return draw(status_line(ok=False)) + ending
    if kind == 14:
        return draw(long_line(ending)) + ending
    pre = draw(st.sampled_from([b"+OK ", b"+OK", b"+OK POP3 ready ",
                                b"+OK\t", b"+OK x<"]))
    if kind < 8:
        ts = draw(st.sampled_from(TIMESTAMPS))
        post = draw(st.sampled_from([b"", b" trailing", b" >"]))
        return pre + ts + post + ending
    return pre + b"Dovecot ready." + ending


WHICH = [1, "1", 2, 3, 1, 0, -1, 2 ** 70, "x", "1 2", "\u00e9", 1, 2, "7",
         "1\r\nDELE 2", "a\x00", "b\x7f"]
NAMES = ["alice", "bob smith", "", "\u00e9l\u00e8ve", "alice", "bob",
         "carol@example.org", "a\x00b", "a\r\nDELE 1", "x\x7f", "\t",
         "\ud800"]


@st.composite
def operation(draw):
    which = st.sampled_from(WHICH)
    name = draw(st.sampled_from(
        ["retr", "top", "list", "list", "uidl", "uidl", "stat", "capa",
         "apop", "user", "pass_", "dele", "noop", "rset", "quit", "rpop",
         "utf8", "getwelcome"]))
    if name in ("retr", "dele"):
        args = (draw(which),)
    elif name == "top":
        args = (draw(which), draw(st.sampled_from([0, 3, "1"])))
    elif name in ("list", "uidl"):
        args = draw(st.sampled_from([(), (), (1,), ("2",)]))
    elif name in ("user", "pass_", "rpop"):
        args = (draw(st.sampled_from(NAMES)),)
    elif name == "apop":
        args = (draw(st.sampled_from(NAMES[:4])),
                draw(st.sampled_from(["tanstaaf", "", "\u00e9"])))
    else:
        args = ()
    return name, args


splits = st.one_of(st.none(), st.just("bytes"),
                   st.lists(st.integers(0, 2100), max_size=6))


@st.composite
def transcript(draw):
    greet = draw(greeting())
    ops = draw(st.lists(operation(), min_size=2, max_size=7))
    replies = []
    for name, args in ops:
        if name == "getwelcome":
            continue
        if _is_long(name, args):
            replies.append(draw(long_reply(name)))
        else:
            replies.append(draw(short_reply(name)))
    cut = None
    if draw(st.integers(0, 4)) == 4:
        cut = (draw(st.integers(0, 7)), draw(st.floats(0, 1)))
    chunks, cut_at = settle(greet, replies, ops, cut)
    steps = []
    for i, chunk in enumerate(chunks):
        split = draw(splits)
        pause = 0.0
        if split is not None and split != "bytes" and draw(st.booleans()):
            pause = 0.001
        last_cut = cut_at if i == len(chunks) - 1 else None
        if i == len(chunks) - 1 and last_cut is None and _is_long_last(
                chunk, ops) and draw(st.integers(0, 4)) == 4:
            # a terminator without its newline, then EOF
            chunk = chunk.rstrip(b"\n")
        steps.append(Step(None if i == 0 else ANY, chunk, splits=split,
                          pause=pause, cut=last_cut))
    return steps, ops


def _is_long_last(chunk, ops):
    return chunk.endswith(b".\r\n") or chunk.endswith(b".\n")


# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Hand-picked nasty transcripts

G = (None, b"+OK ready <1.2@h>\r\n")
LONG_OK = b"+OK " + b"x" * (MAXLINE - 6) + b"\r\n"       # exactly 2048 bytes


NASTY = {
    "retr-stuffed": ([G, Step(ANY, b"+OK\r\n..a\r\n.\r\n...\r\n\r\n.\r\n",
                              splits="bytes")], [("retr", (1,))]),
    "retr-lf-cr": ([G, (ANY, b"+OK\n\rA\n\r.\n")], [("retr", (1,))]),
    "retr-eof-after-dot": ([G, Step(ANY, b"+OK\r\nbody\r\n.", after="eof")],
                           [("retr", (1,))]),
    "retr-eof-after-dot-cr": ([G, Step(ANY, b"+OK\r\nbody\r\n.\r",
                                       after="eof")], [("retr", (1,))]),
    "retr-eof-after-dotdot": ([G, Step(ANY, b"+OK\r\nbody\r\n..",
                                       after="eof")], [("retr", (1,))]),
    "retr-eof-after-cr-dot": ([G, Step(ANY, b"+OK\r\nbody\r\n\r.",
                                       after="eof")], [("retr", (1,))]),
    "line-2048": ([G, Step(ANY, LONG_OK, splits="bytes")], [("noop", ())]),
    "line-2049": ([G, (ANY, LONG_OK[:-2] + b"x\r\n")], [("noop", ())]),
    "line-2049-lf": ([G, (ANY, LONG_OK[:-2] + b"x\n")], [("noop", ())]),
    "line-2048-lf-then": ([G, (ANY, LONG_OK[:-2] + b"\n+OK\r\n")],
                          [("noop", ()), ("noop", ())]),
    "body-2048-crlf-split": ([G, Step(ANY, b"+OK\r\n" + b"." * 2046 + b"\r\n.\r\n",
                                      splits=[5, 2050, 2051, 2052])],
                             [("retr", (1,))]),
    "body-2049-dots": ([G, (ANY, b"+OK\r\n" + b"." * 2049 + b"\r\n.\r\n")],
                       [("retr", (1,))]),
    "err-in-use": ([G, (ANY, b"-ERR [IN-USE] locked\r\n")],
                   [("pass_", ("secret",))]),
    "err-greeting": ([(None, b"-ERR [SYS/TEMP] go away\r\n")], []),
    "empty-greeting-eof": ([Step(None, b"", after="eof")], []),
    "greeting-no-newline": ([Step(None, b"+OK hi", after="eof")],
                            [("noop", ())]),
    "apop-no-timestamp": ([(None, b"+OK hi\r\n")], [("apop", ("u", "p"))]),
    "apop-plus-ok-lt": ([(None, b"+OK<1@x>\r\n"), (ANY, b"+OK\r\n")],
                        [("apop", ("u", "p"))]),
    "apop-multi-gt": ([(None, b"+OK <a>b> >\r\n"), (ANY, b"+OK\r\n")],
                      [("apop", ("u", "p"))]),
    "apop-8bit": ([(None, b"+OK \xff<\xfe\x00>\r\n"), (ANY, b"+OK\r\n")],
                  [("apop", ("\u00e9", "\u00e9"))]),
    "stat-huge": ([G, (ANY, b"+OK 1180591620717411303424 -5\r\n")],
                  [("stat", ())]),
    "stat-short": ([G, (ANY, b"+OK 1\r\n")], [("stat", ())]),
    "stat-nonnumeric": ([G, (ANY, b"+OK x 1\r\n")], [("stat", ())]),
    "stat-x1c": ([G, (ANY, b"+OK\x1c1\x1c2\r\n")], [("stat", ())]),
    "stat-underscore": ([G, (ANY, b"+OK 1_0 2\r\n")], [("stat", ())]),
    "capa-empty-line": ([G, (ANY, b"+OK\r\n\r\n.\r\n")], [("capa", ())]),
    "capa-8bit": ([G, (ANY, b"+OK\r\nX-\xff\r\n.\r\n")], [("capa", ())]),
    "capa-dup": ([G, (ANY, b"+OK\r\nTOP\r\nTOP a\r\nUSER\r\n.\r\n")],
                 [("capa", ())]),
    "capa-err": ([G, (ANY, b"-ERR no\r\n")], [("capa", ())]),
    "control-chars": ([G, (ANY, b"+OK\r\n")], [("user", ("a\r\nDELE 1",))]),
    "nul-in-command": ([G, (ANY, b"+OK\r\n")], [("pass_", ("a\x00",))]),
    "del-in-command": ([G, (ANY, b"+OK\r\n")], [("dele", ("1\x7f",))]),
    "surrogate": ([G, (ANY, b"+OK\r\n")], [("user", ("\ud800",))]),
    "quit-then-noop": ([G, (ANY, b"+OK bye\r\n")], [("quit", ()), ("noop", ())]),
    "pipelined-extra": ([G, (ANY, b"+OK\r\n+OK second\r\n-ERR third\r\n")],
                        [("noop", ()), ("noop", ()), ("noop", ())]),
    "uidl-long-value": ([G, (ANY, b"+OK 1 " + b"U" * 80 + b"\r\n")],
                        [("uidl", (1,))]),
    "eof-mid-body": ([G, Step(ANY, b"+OK\r\nab", after="eof")],
                     [("retr", (1,))]),
    "reset-mid-body": ([G, Step(ANY, b"+OK\r\nab", after="reset")],
                       [("retr", (1,))]),
    "top-cr-only": ([G, (ANY, b"+OK\r\n\r\n\r.\n")], [("top", (1, 0))]),
    "lone-cr-lines": ([G, (ANY, b"+OK\r\n\r\r\n\r\n\n.\r\n")],
                      [("retr", (1,))]),
    "bulk-200k": ([G, Step(ANY, b"+OK\r\n" + bulk_body(1, 200000) + b".\r\n",
                           splits=[65535, 65536, 65537, 131071, 131073])],
                  [("retr", (1,)), ("noop", ())]),
    # CRLF of a 2048-byte line straddling the 64 KiB point of the stream
    "crlf-at-64k": ([G, (ANY, b"+OK\r\n" + b"a" * (65536 - 5 - 2) + b"\r\n"
                          + b"b" * 2046 + b"\r\n.\r\n")], [("retr", (1,))]),
    "too-long-at-64k": ([G, (ANY, b"+OK\r\n" + b"a" * (65536 - 5 - 2) + b"\r\n"
                              + b"b" * 2049 + b"\r\n.\r\n")], [("retr", (1,))]),
}
