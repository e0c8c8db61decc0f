"""Integration tests against a real Dovecot POP3 server.

A private Dovecot is started once per test session (tests/dovecot_server.py;
its configuration, TLS material and Maildirs live in a temporary directory,
it listens on 127.0.0.1 only).  Every test runs twice, once with the standard
library's ``poplib`` and once with ``cpoplib`` (test ids ``[poplib]`` and
``[cpoplib]``); where behaviour is compared, cpoplib must give exactly what
poplib gives.

The tests are skipped when dovecot is not installed
(``apt-get install dovecot-core dovecot-pop3d``), unless
CPOPLIB_REQUIRE_DOVECOT=1 is set, in which case they fail.

Dovecot facts these tests rely on (checked with Dovecot 2.3.19):

* Messages are sent with CRLF line ends, dot-stuffed; LIST/STAT sizes are
  the sizes with CRLF line ends.
* A message whose file does not end in a newline is sent with a CRLF
  appended before the terminating ".": RETR yields the same lines as if the
  file ended in a newline, and the bytes on the wire are 2 more than the
  size LIST announces (poplib's ``octets`` counts them).
* TOP n 0 of a message that has no empty line after its header block
  returns just the header lines (no empty line is added).
* UTF8 (RFC 6856) is not implemented: ``-ERR Unknown command: UTF8``.
* With pop3_lock_session=yes (only user "dave" here) a second session of
  the same user waits 10 s for the lock, then fails with
  ``-ERR [IN-USE] Mailbox is locked by another POP3 session.``
"""

import contextlib
import importlib
import socket
import ssl
import sys
import time

import pytest

import dovecot_server
from dovecot_clients import USER, assert_error_proto, close, login, outcome

import poplib as std_poplib

MODULE_NAMES = ["poplib", "cpoplib"]


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture(params=MODULE_NAMES)
def mod(request):
    """The module under test; an import failure of cpoplib is an error."""
    return importlib.import_module(request.param)


@pytest.fixture
def session(mod, server):
    """A logged-in connection of alice (nothing is ever deleted there)."""
    conn = login(mod, server)
    yield conn
    close(conn)



# --------------------------------------------------------------------------
# greeting, authentication

def test_greeting(mod, server):
    conn = mod.POP3(server.host, server.pop3_port)
    try:
        welcome = conn.getwelcome()
        assert isinstance(welcome, bytes)
        assert welcome.startswith(b"+OK cpoplib test server ready.")
        if server.apop_available:
            assert welcome.endswith(b">") and b" <" in welcome
        assert conn.host == server.host and conn.port == server.pop3_port
    finally:
        close(conn)


def test_apop(mod, server):
    if not server.apop_available:
        pytest.skip("this Dovecot sends no APOP timestamp in its greeting "
                    "(APOP mechanism unavailable)")
    conn = mod.POP3(server.host, server.pop3_port)
    try:
        assert conn.apop(USER, server.users[USER]) == b"+OK Logged in."
        assert conn.stat()[0] == len(server.expected[USER])
    finally:
        close(conn)


def test_apop_wrong_secret(mod, server):
    if not server.apop_available:
        pytest.skip("no APOP timestamp in the greeting")

    def attempt(module):
        conn = module.POP3(server.host, server.pop3_port)
        try:
            return outcome(conn.apop, USER, "wrong secret")
        finally:
            conn.close()
    result = attempt(mod)
    assert_error_proto(mod, result, b"-ERR [AUTH]")
    assert result == attempt(std_poplib)


def test_user_pass(mod, server):
    conn = mod.POP3(server.host, server.pop3_port)
    try:
        assert conn.user(USER).startswith(b"+OK")
        assert conn.pass_(server.users[USER]) == b"+OK Logged in."
        assert conn.noop().startswith(b"+OK")
    finally:
        close(conn)


@pytest.mark.parametrize("user, password", [
    (USER, "wrong password"),
    ("nosuchuser", "whatever"),
])
def test_wrong_password(mod, server, user, password):
    def attempt(module):
        conn = module.POP3(server.host, server.pop3_port)
        try:
            conn.user(user)
            return outcome(conn.pass_, password)
        finally:
            conn.close()
    result = attempt(mod)
    assert_error_proto(mod, result, b"-ERR [AUTH]")
    assert result == attempt(std_poplib)
    if mod.__name__ == "cpoplib":       # RFC 3206 response code
        assert type(result.exc) is mod.AuthError
        assert result.exc.code == "AUTH"


def test_quit_response(mod, server):
    conn = login(mod, server)
    assert conn.quit().startswith(b"+OK Logging out")


# --------------------------------------------------------------------------
# transaction commands

def test_stat(session, corpus):
    assert session.stat() == (len(corpus.files), sum(corpus.size.values()))


def test_list(mod, session, server, corpus):
    resp, lines, octets = session.list()
    count = len(corpus.files)
    assert resp.startswith(b"+OK %d messages" % count)
    assert lines == [b"%d %d" % (n, corpus.size[corpus.keys[n]])
                     for n in range(1, count + 1)]
    assert octets == sum(len(line) + 2 for line in lines)
    with contextlib.closing(login(std_poplib, server)) as ref:
        assert (resp, lines, octets) == ref.list()
        ref.quit()


def test_list_one(mod, session, server, corpus):
    for n, key in corpus.keys.items():
        assert session.list(n) == b"+OK %d %d" % (n, corpus.size[key])
    results = [outcome(session.list, n) for n in (0, 999)]
    for result in results:
        assert_error_proto(mod, result, b"-ERR")
    with contextlib.closing(login(std_poplib, server)) as ref:
        assert results == [outcome(ref.list, n) for n in (0, 999)]
        ref.quit()


def test_uidl(mod, session, server, corpus):
    resp, lines, octets = session.uidl()
    assert resp.startswith(b"+OK")
    assert len(lines) == len(corpus.files)
    uids = {}
    for n, line in enumerate(lines, 1):
        num, uid = line.split()
        assert int(num) == n
        uids[n] = uid
        assert session.uidl(n) == b"+OK %d %s" % (n, uid)
    assert len(set(uids.values())) == len(uids)
    assert octets == sum(len(line) + 2 for line in lines)
    result = outcome(session.uidl, 999)
    assert_error_proto(mod, result, b"-ERR")
    with contextlib.closing(login(std_poplib, server)) as ref:
        assert (resp, lines, octets) == ref.uidl()      # stable across logins
        assert result == outcome(ref.uidl, 999)
        ref.quit()


def test_top(mod, session, corpus):
    for n, key in corpus.keys.items():
        for count in (0, 1, 3):
            resp, lines, octets = session.top(n, count)
            assert resp.startswith(b"+OK"), (key, resp)
            expected = corpus.top_lines(key, count)
            assert lines == expected, (key, count)
            # the same octet count as poplib's algorithm (with stuffing)
            assert octets == sum(len(line) + 2 for line in lines), key
        if key != "large":
            assert session.top(n, 10 ** 6)[1] == corpus.lines(key), key
    assert_error_proto(mod, outcome(session.top, 999, 0), b"-ERR")


def check_retr(conn, corpus, key):
    n = corpus.numbers[key]
    resp, lines, octets = conn.retr(n)
    assert resp == b"+OK %d octets" % corpus.size[key], key
    assert octets == len(corpus.wire[key]), key
    assert all(isinstance(line, bytes) for line in lines)
    # byte-for-byte against the Maildir file (LF -> CRLF, final line ended)
    got = b"\r\n".join(lines) + b"\r\n"
    assert got == corpus.wire[key], key


@pytest.mark.parametrize("key", dovecot_server.corpus_keys())
def test_retr(session, corpus, key):
    check_retr(session, corpus, key)


def test_retr_unknown(mod, session, server):
    result = outcome(session.retr, 999)
    assert_error_proto(mod, result, b"-ERR")
    with contextlib.closing(login(std_poplib, server)) as ref:
        assert result == outcome(ref.retr, 999)
        ref.quit()


def test_retr_all_over_stls(mod, server, corpus, tls_context):
    conn = mod.POP3(dovecot_server.TLS_HOSTNAME, server.pop3_port, timeout=60)
    try:
        conn.stls(tls_context)
        conn.user(USER)
        conn.pass_(server.users[USER])
        for key in corpus.numbers:
            check_retr(conn, corpus, key)
    finally:
        close(conn)


def test_retr_all_over_pop3_ssl(mod, server, corpus, tls_context):
    conn = mod.POP3_SSL(dovecot_server.TLS_HOSTNAME, server.pop3s_port,
                        context=tls_context, timeout=60)
    try:
        conn.user(USER)
        conn.pass_(server.users[USER])
        for key in corpus.numbers:
            check_retr(conn, corpus, key)
    finally:
        close(conn)


# --------------------------------------------------------------------------
# deleting

def bob_transcript(module, server):
    """DELE + RSET on bob's mailbox; leaves it unchanged."""
    t = []
    conn = login(module, server, "bob")
    try:
        t.append(conn.stat())
        t.append(conn.dele(1))
        t.append(conn.stat())
        t.append(conn.list())
        for func, arg in ((conn.list, 1), (conn.retr, 1), (conn.top, 1),
                          (conn.dele, 1), (conn.uidl, 1)):
            t.append(outcome(func, arg) if func != conn.top
                     else outcome(func, arg, 0))
        t.append(conn.rset())
        t.append(conn.stat())
        t.append(conn.list())
    except BaseException:
        conn.close()        # no QUIT: Dovecot must not expunge message 1
        raise
    t.append(conn.quit())
    conn = login(module, server, "bob")
    try:
        t.append(conn.stat())
    finally:
        conn.quit()
    return t


def test_dele_rset(mod, server):
    t = bob_transcript(mod, server)
    full = (3, sum(len(dovecot_server.to_crlf(v))
                   for v in server.expected["bob"].values()))
    assert t[0] == full
    assert t[1].startswith(b"+OK")
    assert t[2][0] == 2 and t[2][1] < full[1]
    assert [line.split()[0] for line in t[3][1]] == [b"2", b"3"]
    for result in t[4:9]:
        assert_error_proto(mod, result, b"-ERR")
    assert t[9].startswith(b"+OK")
    assert t[10] == full
    assert len(t[11][1]) == 3
    assert t[12] == b"+OK Logging out."          # nothing was deleted
    assert t[13] == full
    assert t == bob_transcript(std_poplib, server)


def test_dele_quit(mod, server):
    """DELE + QUIT removes the message from the Maildir (user carol)."""
    prefix = "carol-%s" % mod.__name__
    server.add_messages("carol", dovecot_server.small_corpus(prefix))
    victim, keep = prefix + "-2", {prefix + "-1", prefix + "-3"}
    assert {victim} | keep <= set(server.message_files("carol"))

    conn = login(mod, server, "carol")
    try:
        numbers = {dovecot_server.message_key(conn.top(n, 0)[1]): n
                   for n in range(1, conn.stat()[0] + 1)}
        assert conn.dele(numbers[victim]).startswith(b"+OK")
    finally:
        resp = conn.quit()
    assert resp == b"+OK Logging out, messages deleted."

    deadline = time.monotonic() + 5
    while victim in server.message_files("carol"):
        assert time.monotonic() < deadline, "the file was not removed"
        time.sleep(0.05)
    assert keep <= set(server.message_files("carol"))

    conn = login(mod, server, "carol")
    try:
        left = {dovecot_server.message_key(conn.top(n, 0)[1]): n
                for n in range(1, conn.stat()[0] + 1)}
        assert victim not in left and keep <= set(left)
        for key in keep:                        # leave carol's box empty
            conn.dele(left[key])
    finally:
        conn.quit()


# --------------------------------------------------------------------------
# CAPA, STLS, POP3_SSL

def test_capa_plain(mod, server):
    def capa(module):
        conn = module.POP3(server.host, server.pop3_port)
        try:
            return conn.capa()
        finally:
            close(conn)
    caps = capa(mod)
    for name in ("USER", "UIDL", "TOP", "STLS", "CAPA", "RESP-CODES",
                 "PIPELINING", "SASL"):
        assert name in caps, name
    assert "PLAIN" in caps["SASL"]
    assert caps == capa(std_poplib)


def test_capa_after_login(session):
    caps = session.capa()
    assert "UIDL" in caps and "TOP" in caps
    assert "USER" not in caps and "STLS" not in caps


def test_stls_verified(mod, server, tls_context):
    conn = mod.POP3(dovecot_server.TLS_HOSTNAME, server.pop3_port)
    try:
        resp = conn.stls(tls_context)
        assert resp.startswith(b"+OK")
        assert isinstance(conn.sock, ssl.SSLSocket)
        assert conn.sock.server_hostname == dovecot_server.TLS_HOSTNAME
        assert conn.sock.getpeercert()["subjectAltName"] == (
            ("DNS", dovecot_server.TLS_HOSTNAME),)
        caps = conn.capa()
        assert "STLS" not in caps and "USER" in caps
        # refused by the client itself, with a str (not bytes) message
        assert outcome(conn.stls, tls_context) == (
            "raise", "error_proto", ("-ERR TLS session already established",))
        conn.user(USER)
        assert conn.pass_(server.users[USER]).startswith(b"+OK")
        assert conn.stat()[0] == len(server.expected[USER])
    finally:
        close(conn)


@pytest.mark.parametrize("how", ["ip-address", "untrusted-ca"])
def test_stls_verification_fails(mod, server, tls_context, how):
    if how == "ip-address":       # cert is for DNS:localhost, not 127.0.0.1
        host, ctx = server.host, tls_context
    else:                         # the system CAs do not know the test CA
        host, ctx = dovecot_server.TLS_HOSTNAME, ssl.create_default_context()
    conn = mod.POP3(host, server.pop3_port, timeout=30)
    try:
        with pytest.raises(ssl.CertificateError) as info:
            conn.stls(ctx)
        assert isinstance(info.value, ssl.SSLCertVerificationError)
        if how == "ip-address":
            assert "127.0.0.1" in str(info.value)
    finally:
        with contextlib.suppress(OSError):
            conn.close()


def test_pop3_ssl_verified(mod, server, tls_context):
    conn = mod.POP3_SSL(dovecot_server.TLS_HOSTNAME, server.pop3s_port,
                        context=tls_context)
    try:
        assert isinstance(conn.sock, ssl.SSLSocket)
        assert conn.getwelcome().startswith(b"+OK")
        caps = conn.capa()
        assert "STLS" not in caps and "USER" in caps
        # POP3_SSL refuses STLS itself, without asking the server
        assert outcome(conn.stls) == (
            "raise", "error_proto", ("-ERR TLS session already established",))
        conn.user(USER)
        conn.pass_(server.users[USER])
        assert conn.stat()[0] == len(server.expected[USER])
    finally:
        close(conn)


def test_pop3_ssl_wrong_hostname(mod, server, tls_context):
    with pytest.raises(ssl.CertificateError):
        mod.POP3_SSL(server.host, server.pop3s_port, context=tls_context,
                     timeout=30)


# --------------------------------------------------------------------------
# UTF8, [IN-USE]

def test_utf8(mod, server):
    def attempt(module):
        conn = module.POP3(server.host, server.pop3_port)
        try:
            return outcome(conn.utf8)
        finally:
            close(conn)
    result = attempt(mod)
    assert result == attempt(std_poplib)
    if result[0] == "raise":          # Dovecot 2.3: -ERR Unknown command
        assert_error_proto(mod, result, b"-ERR")


def test_in_use(mod, server):
    """pop3_lock_session: a 2nd session gets [IN-USE] (after Dovecot's 10 s
    lock wait)."""
    user = dovecot_server.LOCKED_USER
    first = login(mod, server, user)
    try:
        second = mod.POP3(server.host, server.pop3_port, timeout=60)
        try:
            second.user(user)
            result = outcome(second.pass_, server.users[user])
        finally:
            second.close()
    finally:
        close(first)
    assert result == ("raise", "error_proto", (
        b"-ERR [IN-USE] Mailbox is locked by another POP3 session.",))
    if mod.__name__ == "cpoplib":       # RFC 2449 response code
        assert type(result.exc) is mod.InUseError
        assert (result.exc.code, result.exc.text) == (
            "IN-USE", "Mailbox is locked by another POP3 session.")


# --------------------------------------------------------------------------
# timeouts

def test_timeout_is_set(mod, server, tls_context):
    conn = mod.POP3(server.host, server.pop3_port, timeout=7.5)
    try:
        assert conn.sock.gettimeout() == 7.5
    finally:
        close(conn)
    conn = mod.POP3_SSL(dovecot_server.TLS_HOSTNAME, server.pop3s_port,
                        timeout=4.25, context=tls_context)
    try:
        assert conn.sock.gettimeout() == 4.25
    finally:
        close(conn)
    conn = mod.POP3(server.host, server.pop3_port)
    try:
        assert conn.sock.gettimeout() == socket.getdefaulttimeout()
    finally:
        close(conn)


def test_timeout_zero_rejected(mod, server):
    result = outcome(mod.POP3, server.host, server.pop3_port, 0)
    assert result[:2] == ("raise", "ValueError")
    assert result == outcome(std_poplib.POP3, server.host, server.pop3_port, 0)


@pytest.mark.parametrize("transport", ["plain", "ssl"])
def test_read_timeout(mod, server, tls_context, transport):
    """A read with nothing coming from the server raises TimeoutError."""
    if transport == "plain":
        conn = mod.POP3(server.host, server.pop3_port, timeout=0.3)
    else:
        conn = mod.POP3_SSL(dovecot_server.TLS_HOSTNAME, server.pop3s_port,
                            timeout=0.3, context=tls_context)
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            conn._getline()           # greeting consumed; server is silent
        assert 0.2 < time.monotonic() - start < 10
    finally:
        with contextlib.suppress(Exception):
            conn.close()


# --------------------------------------------------------------------------
# audit events

_AUDIT_EVENTS = []
_AUDIT_HOOKED = []


def _audit_hook(event, args):
    if event.startswith("poplib."):
        _AUDIT_EVENTS.append((event, id(args[0]), type(args[0]).__name__,
                              args[1:]))


@pytest.fixture
def audit_events():
    """Returns a function giving poplib.* events raised since set-up.

    Audit hooks cannot be removed, so one is added per process."""
    if not _AUDIT_HOOKED:
        sys.addaudithook(_audit_hook)
        _AUDIT_HOOKED.append(True)
    start = len(_AUDIT_EVENTS)
    return lambda: _AUDIT_EVENTS[start:]


def test_audit_events(mod, server, audit_events):
    conn = mod.POP3(server.host, server.pop3_port)
    conn.user(USER)
    conn.pass_(server.users[USER])
    conn.stat()
    conn.quit()
    events = [(e, name, rest) for e, ident, name, rest in audit_events()
              if ident == id(conn)]
    assert events == [
        ("poplib.connect", "POP3", (server.host, server.pop3_port)),
        ("poplib.putline", "POP3", (b"USER " + USER.encode(),)),
        ("poplib.putline", "POP3",
         (b"PASS " + server.users[USER].encode(),)),
        ("poplib.putline", "POP3", (b"STAT",)),
        ("poplib.putline", "POP3", (b"QUIT",)),
    ]


def test_audit_events_tls(mod, server, tls_context, audit_events):
    host = dovecot_server.TLS_HOSTNAME
    conn = mod.POP3(host, server.pop3_port)
    conn.stls(tls_context)
    conn.quit()
    conn2 = mod.POP3_SSL(host, server.pop3s_port, context=tls_context)
    conn2.quit()
    events = audit_events()
    assert [(e, name, rest) for e, ident, name, rest in events
            if ident == id(conn)] == [
        ("poplib.connect", "POP3", (host, server.pop3_port)),
        ("poplib.putline", "POP3", (b"CAPA",)),     # stls() checks CAPA first
        ("poplib.putline", "POP3", (b"STLS",)),
        ("poplib.putline", "POP3", (b"QUIT",)),
    ]
    assert [(e, name, rest) for e, ident, name, rest in events
            if ident == id(conn2)] == [
        ("poplib.connect", "POP3_SSL", (host, server.pop3s_port)),
        ("poplib.putline", "POP3_SSL", (b"QUIT",)),
    ]


# --------------------------------------------------------------------------
# debug output

def debug_session(module, server):
    conn = module.POP3(server.host, server.pop3_port)
    conn.set_debuglevel(2)
    conn.user(USER)
    conn.pass_(server.users[USER])
    conn.stat()
    conn.list(1)
    conn.top(1, 0)
    outcome(conn.retr, 999)
    conn.quit()


def test_debug_output(mod, server, capsys):
    debug_session(mod, server)
    out = capsys.readouterr()
    assert "*cmd* 'STAT'" in out.out
    debug_session(std_poplib, server)
    assert out == capsys.readouterr()
