"""pytest configuration shared by the test modules.

The interpreter's own test_poplib (tests/test_stdlib_suite.py) is the
specification cpoplib is held to, so none of its tests may be skipped:
a skip there (no ssl module, no MD5 in OpenSSL, a test resource missing)
is reported as a failure naming the reason.

The putlines fixture records what a connection put on the wire; the mod
fixture gives poplib and cpoplib in turn (side_by_side.py compares what
they did).

Dovecot is started in one place: the dovecot fixture gives a factory of
DovecotServer(**options) (a context manager that starts and stops it),
having skipped the test when Dovecot is not installed or cannot run --
or failed it when CPOPLIB_REQUIRE_DOVECOT=1, as CI sets.  server is the
session's default Dovecot, dovecot_oauth the session's one that also
offers XOAUTH2 and OAUTHBEARER.  isolated_home points HOME and the
fetcher's state directory into the test's tmp_path (modules that run the
fetcher use it for every test with pytestmark).
"""
import os
import ssl
import sys

import pytest

import dovecot_clients
import dovecot_server
from side_by_side import MODULES

_STDLIB_SUITE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             "test_stdlib_suite.py")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.path.abspath(str(item.fspath)) == _STDLIB_SUITE \
            and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) \
            else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = ("the interpreter's test_poplib must run in full, "
                           "but %s was skipped: %s" % (item.nodeid, reason))


@pytest.hookimpl(trylast=True)         # after the session fixtures' teardown
def pytest_sessionfinish(session, exitstatus):
    """The threads the tests started (their servers' accept and handler
    threads) end before the interpreter does: a daemon thread still
    running at exit is stopped where it stands, and what its frames held
    (a TLS socket, a connection) is never freed -- the sanitizer job's
    LeakSanitizer counts that as a leak.  Unreferenced client connections
    are collected first (a server thread may be waiting for their EOF);
    then each thread gets up to 30 s in all, and any still running is
    named on stderr."""
    import gc
    import threading
    import time
    gc.collect()
    deadline = time.monotonic() + 30
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main:
            thread.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in threading.enumerate()
            if t is not main and t.is_alive()]
    if left:
        sys.stderr.write("conftest: threads still running at the end of "
                         "the session: %s\n" % ", ".join(left))


_PUTLINES = []          # (id(conn), line) while recording, see putlines()
_RECORDING = []
_HOOKED = []


def _audit(event, args):
    if _RECORDING and event == "poplib.putline":
        _PUTLINES.append((id(args[0]), args[1]))


@pytest.fixture
def putlines():
    """A function giving the lines (bytes, without CRLF) a connection put
    on the wire since set-up, from the poplib.putline audit events
    cpoplib raises as poplib does."""
    if not _HOOKED:
        sys.addaudithook(_audit)        # cannot be removed: one per process
        _HOOKED.append(True)
    start = len(_PUTLINES)
    _RECORDING.append(True)
    yield lambda conn: [line for ident, line in _PUTLINES[start:]
                        if ident == id(conn)]
    _RECORDING.pop()


@pytest.fixture(params=sorted(MODULES))
def mod(request):
    """The module under test: the standard library's poplib, then cpoplib."""
    return MODULES[request.param]


# --------------------------------------------------------------------------
# Dovecot

_DOVECOT_HINT = ("dovecot is not installed: apt-get install dovecot-core "
                 "dovecot-pop3d")


def _dovecot_or_skip(**options):
    required = os.environ.get("CPOPLIB_REQUIRE_DOVECOT", "") == "1"
    if dovecot_server.find_dovecot() is None:
        if required:
            pytest.fail(_DOVECOT_HINT + " (CPOPLIB_REQUIRE_DOVECOT=1)")
        pytest.skip(_DOVECOT_HINT)
    try:
        return dovecot_server.DovecotServer(**options)
    except dovecot_server.DovecotUnavailable as exc:
        if required:
            pytest.fail("%s (CPOPLIB_REQUIRE_DOVECOT=1)" % exc)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def dovecot():
    """DovecotServer(**options), not started yet: use it as a context
    manager (``with dovecot(large_size=4096) as srv``)."""
    return _dovecot_or_skip


@pytest.fixture(scope="session")
def server(dovecot):
    """The session's Dovecot with the default corpus (dovecot_server.USERS)."""
    with dovecot() as srv:
        yield srv


@pytest.fixture(scope="session")
def tls_context(server):
    """Client context trusting only the test CA, verifying host names."""
    ctx = ssl.create_default_context(cafile=server.ca_file)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    return ctx


@pytest.fixture(scope="session")
def corpus(server):
    """alice's messages as the session's Dovecot serves them."""
    return dovecot_clients.Corpus(server)


@pytest.fixture(scope="session")
def dovecot_oauth(dovecot):
    """A Dovecot that also offers XOAUTH2 and OAUTHBEARER and validates the
    tokens with this process's introspection endpoint."""
    with dovecot(large_size=4096, oauth2=True) as srv:
        yield srv


@pytest.fixture
def carol(server):
    """Adds messages to carol's (empty) mailbox with add(prefix, count);
    afterwards deletes what is left."""
    def add(prefix, count, size=0):
        msgs = dovecot_server.small_corpus(prefix, count)
        if size:
            msgs = [(k, m + (b"x" * 70 + b"\n") * (size // 71))
                    for k, m in msgs]
        return server.add_messages("carol", msgs)
    yield add
    dovecot_clients.empty_mailbox(server, "carol")


@pytest.fixture
def carol_pw(server, monkeypatch):
    """carol's password in CPOPLIB_TEST_PW (the fetcher's --password-env)."""
    monkeypatch.setenv("CPOPLIB_TEST_PW", server.users["carol"])


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """No real ~/.netrc; the fetcher's state under tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("CPOPLIB_FETCH_FAULT", raising=False)
    return home
