"""cpoplib as a drop-in for poplib: what the stdlib suite does not cover.

Where stdlib and cpoplib must agree, the test runs both (the `pop` fixture)
against the same scripted server (scripted_server.responder) and compares.
"""
import contextlib
import hashlib
import inspect
import io
import poplib
import socket
import sys
import threading

import pytest

import cpoplib
from cpoplib import _cpoplib

from scripted_server import (ScriptedServer, client_tls_context,
                             default_respond, responder)

MODULES = {"poplib": poplib, "cpoplib": cpoplib}


@pytest.fixture(params=sorted(MODULES))
def pop(request):
    """The module under test, stdlib and cpoplib in turn."""
    return MODULES[request.param]


def connect(module, server, cls="POP3", **kw):
    return getattr(module, cls)("127.0.0.1", server.port, timeout=10, **kw)


# ---- the C implementation is what runs ----

def test_c_types_are_in_use():
    assert cpoplib.POP3 is _cpoplib.POP3
    assert cpoplib.POP3_SSL is _cpoplib.POP3_SSL
    assert cpoplib.error_proto is _cpoplib.error_proto
    assert cpoplib.POP3.__module__ == "cpoplib._cpoplib"
    # built-in methods, not Python functions
    for name in ("retr", "_getline", "_getlongresp", "_putcmd", "capa"):
        assert type(vars(cpoplib.POP3)[name]).__name__ == "method_descriptor"
    assert _cpoplib.__file__.endswith((".so", ".pyd"))


def test_public_names_match_stdlib():
    assert cpoplib.__all__ == poplib.__all__
    for name in ("POP3_PORT", "POP3_SSL_PORT", "CR", "LF", "CRLF",
                 "_MAXLINE", "HAVE_SSL"):
        assert getattr(cpoplib, name) == getattr(poplib, name), name
    for cls in ("POP3", "POP3_SSL"):
        ours = {n for n in dir(getattr(cpoplib, cls)) if not n.startswith("__")}
        theirs = {n for n in dir(getattr(poplib, cls)) if not n.startswith("__")}
        assert theirs <= ours, theirs - ours
    assert cpoplib.POP3.encoding == "UTF-8"
    assert cpoplib.POP3.timestamp.pattern == poplib.POP3.timestamp.pattern


def test_error_proto_is_a_stdlib_error_proto():
    assert issubclass(cpoplib.error_proto, Exception)
    assert issubclass(cpoplib.error_proto, poplib.error_proto)


def test_constructor_signatures_match_stdlib():
    assert inspect.signature(cpoplib.POP3) == inspect.signature(poplib.POP3)
    assert (inspect.signature(cpoplib.POP3_SSL)
            == inspect.signature(poplib.POP3_SSL))

    class Sub(cpoplib.POP3):
        def __init__(self, host, *, flag=False):
            pass

    assert str(inspect.signature(Sub)) == "(host, *, flag=False)"


def test_method_signatures_match_stdlib():
    for name in ("user", "pass_", "list", "retr", "dele", "top", "uidl",
                 "apop", "rpop", "stls", "set_debuglevel", "_putline",
                 "_putcmd", "_shortcmd", "_longcmd", "_create_socket"):
        ours = inspect.signature(getattr(cpoplib.POP3, name))
        theirs = inspect.signature(getattr(poplib.POP3, name))
        assert ([(p.name, p.default) for p in ours.parameters.values()]
                == [(p.name, p.default) for p in theirs.parameters.values()]), name


# ---- same results as stdlib ----

def test_session_results(pop):
    with ScriptedServer(responder()) as srv:
        c = connect(pop, srv)
        assert c.getwelcome() == b"+OK ready <1896.697170952@dbc.mtview.ca.us>"
        assert c.user("bob") == b"+OK USER"
        assert c.pass_("secret") == b"+OK PASS"
        assert c.stat() == (2, 320)
        assert c.list() == (b"+OK", [b"1 120", b"2 200"], 14)
        assert c.list(1) == b"+OK 1 120"
        assert c.retr(1) == (b"+OK message follows",
                             [b"From: a@example.org", b"Subject: test", b"",
                              b"line one", b".dot-stuffed", b""], 64)
        assert c.top(1, 0)[1][0] == b"From: a@example.org"
        assert c.uidl(2) == b"+OK 1 120"
        assert c.capa() == {"USER": [], "TOP": [], "STLS": [],
                            "IMPLEMENTATION": ["test", "server"]}
        assert c.quit() == b"+OK bye"
        assert c.sock is None and c.file is None
    assert srv.commands == [b"USER bob\r\n", b"PASS secret\r\n", b"STAT\r\n",
                            b"LIST\r\n", b"LIST 1\r\n", b"RETR 1\r\n",
                            b"TOP 1 0\r\n", b"UIDL 2\r\n", b"CAPA\r\n",
                            b"QUIT\r\n"]


def test_apop_digest_matches_rfc1939_example(pop):
    # RFC 1939, section 7: the digest of the example greeting and "tanstaaf"
    with ScriptedServer(responder()) as srv:
        c = connect(pop, srv)
        c.apop("mrose", "tanstaaf")
        c.close()
    assert srv.commands == [b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"]


def test_apop_with_subclass_pattern(pop):
    class P(pop.POP3):
        timestamp = __import__("re").compile(rb"\+OK (\S+)")

    with ScriptedServer(responder(greeting=b"+OK stamp rest\r\n")) as srv:
        c = P("127.0.0.1", srv.port)
        c.apop("u", "pw")
        c.close()
    expected = hashlib.md5(b"stamppw").hexdigest()
    assert srv.commands == [b"APOP u " + expected.encode() + b"\r\n"]


@pytest.mark.parametrize("welcome", [
    b"+OK <>", b"+OK<a>", b"+OK <a> <b>", b"+OK x<a>b>c", b"+OK <a\n>",
    b"+OK \n<a>", b"+OK<<a>", b"+OK <a", b"+O <a>", b"+OK", b"+OK\n<a>",
    b"+OK >< <x>", b"+OK <" + b"<" * 5000, b"+OK <\xff\x00>",
])
def test_apop_timestamp_matches_the_regex(welcome):
    """The C matcher agrees with poplib's regular expression."""
    m = poplib.POP3.timestamp.match(welcome)
    with ScriptedServer(responder(greeting=b"+OK hi\r\n")) as srv:
        c = connect(cpoplib, srv)
        c.welcome = welcome
        if m is None:
            with pytest.raises(cpoplib.error_proto,
                               match="APOP not supported"):
                c.apop("u", "p")
            c.close()
            assert srv.commands == []
        else:
            c.apop("u", "p")
            c.close()
            digest = hashlib.md5(m.group(1) + b"p").hexdigest().encode()
            assert srv.commands == [b"APOP u " + digest + b"\r\n"]


def test_stat_validation():
    replies = {b"+OK\r\n": "Invalid STAT response format",
               b"+OK 1\r\n": "Invalid STAT response format",
               b"+OK one 2\r\n": "non-numeric values",
               b"+OK 1 2x\r\n": "non-numeric values"}
    for reply, message in replies.items():
        with ScriptedServer(responder(lambda line, r=reply: r)) as srv:
            c = connect(cpoplib, srv)
            with pytest.raises(cpoplib.error_proto, match=message) as info:
                c.stat()
            c.close()
        if "non-numeric" in message:
            assert isinstance(info.value.__context__, ValueError)
    reply = b"+OK 3 4 extra words\r\n"
    with ScriptedServer(responder(lambda line: reply)) as srv:
        c = connect(cpoplib, srv)
        assert c.stat() == (3, 4)
        c.close()


# ---- audit events, timeout=0, control characters ----

_audit_log = []
_audit_recording = False
_audit_installed = False


def _audit_hook(event, args):
    if _audit_recording and event.startswith("poplib."):
        _audit_log.append((event, args))


@pytest.fixture
def audit():
    """The poplib.* audit events raised during the test.  Audit hooks
    cannot be removed: the hook records only while a test uses this
    fixture, so that it keeps no connection of other tests alive."""
    global _audit_installed, _audit_recording
    if not _audit_installed:
        sys.addaudithook(_audit_hook)
        _audit_installed = True
    _audit_log.clear()
    _audit_recording = True
    try:
        yield _audit_log
    finally:
        _audit_recording = False
        _audit_log.clear()


def test_audit_events(pop, audit):
    with ScriptedServer(responder()) as srv:
        c = connect(pop, srv)
        c.noop()
        c.quit()
    assert [e for e, _ in audit] == ["poplib.connect", "poplib.putline",
                                     "poplib.putline"]
    assert audit[0][1] == (c, "127.0.0.1", srv.port)
    assert audit[1][1] == (c, b"NOOP")
    assert audit[2][1] == (c, b"QUIT")


def test_timeout_zero_refused_before_connecting(pop, audit):
    with ScriptedServer(responder()) as srv:
        with pytest.raises(ValueError, match=r"timeout=0"):
            pop.POP3("127.0.0.1", srv.port, timeout=0)
        with pytest.raises(ValueError, match=r"timeout=0"):
            pop.POP3_SSL("127.0.0.1", srv.port, timeout=0)
    assert srv.accepted == 0
    assert [e for e, _ in audit] == ["poplib.connect", "poplib.connect"]


@pytest.mark.parametrize("bad", ["a\r\nDELE 1", "a\nb", "a\rb", "a\x00b",
                                 "\x1b[31m", "a\x7f", "tab\there"])
def test_control_characters_refused(bad, audit):
    with ScriptedServer(responder()) as srv:
        c = connect(cpoplib, srv)
        for call in (lambda: c.user(bad), lambda: c.pass_(bad),
                     lambda: c.retr(bad), lambda: c._shortcmd(bad),
                     lambda: c.apop(bad, "x")):
            with pytest.raises(ValueError,
                               match="Control characters not allowed"):
                call()
        assert c.noop() == b"+OK NOOP"
        c.quit()
    assert srv.commands == [b"NOOP\r\n", b"QUIT\r\n"]
    assert [e for e, _ in audit].count("poplib.putline") == 2


def test_non_ascii_commands_are_encoded(pop):
    with ScriptedServer(responder()) as srv:
        c = connect(pop, srv)
        c.user("jörg")
        c.close()
    assert srv.commands == ["USER jörg\r\n".encode("utf-8")]


# ---- subclasses, hooks and patched objects ----

def test_instances_are_like_stdlib_instances():
    with ScriptedServer(responder()) as srv:
        c = connect(cpoplib, srv)
        assert set(vars(c)) >= {"host", "port", "sock", "file", "welcome",
                                "_debugging", "_tls_established"}
        c.extra = 1
        import weakref
        assert weakref.ref(c)() is c
        c.close()
        c.close()   # twice is fine
        assert c.sock is None and c.file is None


def _traced_retr(pop):
    calls = []

    class Traced(pop.POP3):
        def _putline(self, line):
            calls.append(("putline", line))
            return super()._putline(line)

        def _getline(self):
            line, octets = super()._getline()
            calls.append(("getline", line, octets))
            return line, octets

        def _getresp(self):
            calls.append(("getresp",))
            return super()._getresp()

    with ScriptedServer(responder()) as srv:
        c = Traced("127.0.0.1", srv.port)
        result = c.retr(1)
        c.close()
    assert result[1][4] == b".dot-stuffed"
    return calls


def test_overridden_hooks_called_like_stdlib():
    results = {}
    for name, module in MODULES.items():
        results[name] = _traced_retr(module)
    assert results["cpoplib"] == results["poplib"]
    assert ("putline", b"RETR 1") in results["cpoplib"]
    assert len([c for c in results["cpoplib"] if c[0] == "getline"]) == 9


def test_create_socket_override(pop):
    created = []

    class Proxy(pop.POP3):
        def _create_socket(self, timeout):
            created.append(timeout)
            return socket.create_connection((self.host, self.port), timeout)

    with ScriptedServer(responder()) as srv:
        c = Proxy("127.0.0.1", srv.port, timeout=7)
        assert c.noop() == b"+OK NOOP"
        c.close()
    assert created == [7]


def test_instance_and_class_patches(pop):
    with ScriptedServer(responder()) as srv:
        c = connect(pop, srv)
        c._getresp = lambda: b"+OK patched"
        assert c.noop() == b"+OK patched"
        del c._getresp
        assert c.user("x") == b"+OK NOOP"   # the reply left unread above
        c.close()


def test_canned_responses_through_replaced_sock_and_file(pop):
    """A common way to test code: fake socket, BytesIO file."""
    class FakeSock:
        def __init__(self):
            self.sent = b""

        def sendall(self, data):
            self.sent += data

        def makefile(self, mode):
            return io.BytesIO(b"+OK hello\r\n+OK\r\nx\r\n..y\r\n.\r\n")

    class Canned(pop.POP3):
        def _create_socket(self, timeout):
            return FakeSock()

    c = Canned("example.invalid")
    assert c.welcome == b"+OK hello"
    assert c.retr(3) == (b"+OK", [b"x", b".y"], 7)
    assert c.sock.sent == b"RETR 3\r\n"
    with pytest.raises(pop.error_proto, match="EOF"):
        c.noop()


def test_file_readline_sees_the_rest_of_the_stream():
    """Nothing is read twice or lost between C reads and file.readline()."""
    def respond(line):
        if line.startswith(b"RETR"):
            return b"+OK\r\nbody\r\n.\r\n+OK extra\r\nmore\r\n"
        return b"+OK\r\n"

    with ScriptedServer(responder(respond)) as srv:
        c = connect(cpoplib, srv)
        assert c.retr(1) == (b"+OK", [b"body"], 6)
        assert c.file.readline() == b"+OK extra\r\n"
        assert c._getline() == (b"more", 6)
        assert isinstance(c.file, io.BufferedIOBase)
        assert c.file.readable() and not c.file.closed
        c.close()


def test_maxline_patch_takes_effect(monkeypatch):
    long_reply = b"+OK " + b"a" * 3000 + b"\r\n"
    with ScriptedServer(responder(lambda line: long_reply),
                        connections=2) as srv:
        c = connect(cpoplib, srv)
        with pytest.raises(cpoplib.error_proto, match="line too long"):
            c.noop()
        c.close()
        monkeypatch.setattr(cpoplib, "_MAXLINE", 20480)
        c = connect(cpoplib, srv)
        assert c.noop() == long_reply[:-2]
        c.close()


def test_maxline_boundary(pop):
    """A line of _MAXLINE bytes, LF included, passes; one more does not."""
    limit = pop._MAXLINE
    ok = b"+" + b"a" * (limit - 2) + b"\n"
    bad = b"+" + b"a" * (limit - 1) + b"\n"
    with ScriptedServer(responder(
            lambda line: ok if line.startswith(b"NOOP") else bad)) as srv:
        c = connect(pop, srv)
        assert c.noop() == ok[:-1]
        with pytest.raises(pop.error_proto, match="line too long"):
            c.rset()
        c.close()


def test_debug_output_matches_stdlib():
    outputs = {}
    for name, module in MODULES.items():
        out = io.StringIO()
        with ScriptedServer(responder()) as srv, \
                contextlib.redirect_stdout(out):
            c = connect(module, srv)
            c.set_debuglevel(1)
            c.stat()
            c.set_debuglevel(2)
            c.retr(1)
            c.stat()
            c.quit()
        outputs[name] = out.getvalue()
    assert outputs["cpoplib"] == outputs["poplib"]
    assert "*cmd* 'STAT'" in outputs["cpoplib"]
    assert "*get* b'..dot-stuffed\\r\\n'" in outputs["cpoplib"]
    assert "*stat* [b'+OK', b'2', b'320']" in outputs["cpoplib"]


# ---- STARTTLS ----

def test_stls_discards_plaintext_read_ahead():
    """Bytes after the +OK to STLS are never parsed as if they came over TLS."""
    def respond(line):
        if line.startswith(b"STLS"):
            return b"+OK Begin TLS\r\n+OK forged\r\n"
        return default_respond(line)

    with ScriptedServer(responder(respond, tls="after-stls")) as srv:
        c = cpoplib.POP3("localhost", srv.port, timeout=10)
        assert c.stls(context=client_tls_context(
            verify=True, check_hostname=True)) == b"+OK Begin TLS"
        assert c._tls_established is True
        assert c.noop() == b"+OK NOOP"
        assert c.quit() == b"+OK bye"


def test_stls_refused_without_capability(pop):
    def respond(line):
        if line.startswith(b"CAPA"):
            return b"+OK\r\nUSER\r\n.\r\n"
        return default_respond(line)

    with ScriptedServer(responder(respond)) as srv:
        c = connect(pop, srv)
        with pytest.raises(pop.error_proto, match="STLS not supported"):
            c.stls()
        assert c._tls_established is False
        c.close()
    assert srv.commands == [b"CAPA\r\n"]


def test_pop3_ssl_roundtrip():
    with ScriptedServer(responder(tls="implicit")) as srv:
        c = cpoplib.POP3_SSL("localhost", srv.port,
                             context=client_tls_context(verify=True,
                                                        check_hostname=True))
        assert c.retr(1)[1][-2] == b".dot-stuffed"
        assert c.stls.__doc__
        with pytest.raises(cpoplib.error_proto, match="already established"):
            c.stls()
        c.quit()


def test_ssl_keyfile_certfile_by_version(pop):
    """3.10/3.11 deprecate keyfile/certfile; 3.12 removed them."""
    if sys.version_info < (3, 12):
        ctx = client_tls_context(verify=True, check_hostname=True)
        with pytest.raises(ValueError, match="mutually exclusive"):
            pop.POP3_SSL("127.0.0.1", 1, keyfile="k", context=ctx)
        with pytest.raises(ValueError, match="mutually exclusive"):
            pop.POP3_SSL("127.0.0.1", 1, certfile="c", context=ctx)
        with pytest.warns(DeprecationWarning, match="keyfile and certfile"):
            with pytest.raises(OSError):
                pop.POP3_SSL("127.0.0.1", 1, certfile="/nonexistent")
    else:
        with pytest.raises(TypeError):
            pop.POP3_SSL("127.0.0.1", 1, keyfile="k")
        with pytest.raises(TypeError):
            pop.POP3_SSL("127.0.0.1", 1, None)   # timeout is keyword-only


# ---- errors ----

def test_errors_match_stdlib(pop):
    def respond(line):
        if line.startswith(b"RETR"):
            return b"-ERR [SYS/TEMP] no such message\r\n"
        if line.startswith(b"LIST"):
            return b"+OK\r\n1 1\r\n"     # then EOF: cut off
        return b"+OK\r\n"

    with ScriptedServer(responder(respond)) as srv:
        c = connect(pop, srv)
        with pytest.raises(pop.error_proto) as info:
            c.retr(9)
        assert info.value.args == (b"-ERR [SYS/TEMP] no such message",)
        c.close()


def test_eof_error(pop):
    with ScriptedServer(responder(lambda line: None)) as srv:
        c = connect(pop, srv)
        with pytest.raises(pop.error_proto) as info:
            c.noop()
        assert info.value.args == ("-ERR EOF",)
        c.close()


def test_concurrent_use_of_one_reader_is_refused():
    gate = threading.Event()

    def respond(line):
        gate.wait(5)
        return b"+OK late\r\n"

    with ScriptedServer(responder(respond)) as srv:
        c = connect(cpoplib, srv)
        c.sock.sendall(b"NOOP\r\n")
        errors = []
        t = threading.Thread(target=lambda: errors.append(c._getresp()))
        t.start()
        import time
        time.sleep(0.2)
        with pytest.raises(RuntimeError, match="reentrant"):
            c.file.readline()
        gate.set()
        t.join(5)
        assert errors == [b"+OK late"]
        c.close()


# ---- cpoplib extension: a cap on the size of one multi-line response ----

@pytest.mark.parametrize("traced", [False, True], ids=["fast", "hooked"])
def test_max_response_size(monkeypatch, traced):
    reply = b"+OK\r\n" + (b"z" * 98 + b"\r\n") * 50 + b".\r\n"   # 5003 body bytes

    cls = cpoplib.POP3
    if traced:
        class cls(cpoplib.POP3):
            def _getline(self):
                return super()._getline()

    with ScriptedServer(responder(lambda line: reply)) as srv:
        c = cls("127.0.0.1", srv.port, timeout=10)
        assert len(c.retr(1)[1]) == 50                   # default: no cap
        monkeypatch.setattr(cpoplib, "MAX_RESPONSE_SIZE", 5003)
        assert len(c.retr(1)[1]) == 50                   # exactly at the cap
        monkeypatch.setattr(cpoplib, "MAX_RESPONSE_SIZE", 5002)
        with pytest.raises(cpoplib.error_proto, match="response too long"):
            c.retr(1)
        monkeypatch.setattr(cpoplib, "MAX_RESPONSE_SIZE", -1)
        with pytest.raises(ValueError):
            c.retr(1)
        c.close()
