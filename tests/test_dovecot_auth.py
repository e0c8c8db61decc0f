"""SASL authentication against a real Dovecot: POP3.login() with each
built-in mechanism Dovecot offers (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1,
SCRAM-SHA-256), APOP and USER/PASS, the mechanism login() picks by
itself, and POP3.auth() driven by hand-written authobjects.

The private Dovecot of tests/dovecot_server.py (auth_mechanisms = plain
login cram-md5 scram-sha-1 scram-sha-256 apop; {PLAIN} passwords, so every
mechanism can be verified) is started once for this module, with a small
mailbox.  Skipped when dovecot is not installed, unless
CPOPLIB_REQUIRE_DOVECOT=1.  Works with Dovecot 2.3 and 2.4 (CI runs the
other major version in a chroot).

The wire is recorded through a _putcmd override, which also proves that
login() and auth() go through the hooks.
"""

import base64
import hmac
import os
import sys

import pytest

try:
    import dovecot_server
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import dovecot_server

import poplib

import cpoplib

USER = "alice"
MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"]


@pytest.fixture(scope="module")
def server():
    required = os.environ.get("CPOPLIB_REQUIRE_DOVECOT", "") == "1"
    hint = ("dovecot is not installed: apt-get install dovecot-core "
            "dovecot-pop3d")
    if dovecot_server.find_dovecot() is None:
        if required:
            pytest.fail(hint + " (CPOPLIB_REQUIRE_DOVECOT=1)")
        pytest.skip(hint)
    try:
        srv = dovecot_server.DovecotServer(large_size=4096)
    except dovecot_server.DovecotUnavailable as exc:
        if required:
            pytest.fail("%s (CPOPLIB_REQUIRE_DOVECOT=1)" % exc)
        pytest.skip(str(exc))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class Recording(cpoplib.POP3):
    def _putcmd(self, line):
        self.sent = getattr(self, "sent", []) + [line]
        return super()._putcmd(line)


class RecordingSSL(cpoplib.POP3_SSL):
    def _putcmd(self, line):
        self.sent = getattr(self, "sent", []) + [line]
        return super()._putcmd(line)


def connect(server, cls=Recording):
    return cls(server.host, server.pop3_port, timeout=30)


def password(server, user=USER):
    return server.users[user]


def logged_in(conn, server, user=USER):
    count, size = conn.stat()
    expected = len(server.expected[user])
    assert count == expected
    conn.quit()


def test_capa_offers_the_mechanisms(server):
    conn = connect(server)
    try:
        sasl = conn.capa()["SASL"]
    finally:
        conn.close()
    assert set(MECHANISMS) <= set(sasl)


@pytest.mark.parametrize("mech", MECHANISMS + ["APOP", "USER"])
def test_login_with_mechanism(server, mech):
    if mech == "APOP" and not server.apop_available:
        pytest.skip("this Dovecot sends no APOP timestamp")
    conn = connect(server)
    resp = conn.login(USER, password(server), mechanism=mech,
                      allow_plaintext=True)
    assert resp.startswith(b"+OK")
    first = conn.sent[0]
    if mech == "APOP":
        assert first.startswith("APOP alice ")
    elif mech == "USER":
        assert conn.sent == ["USER alice", "PASS " + password(server)]
    else:
        assert first.split()[:2] == ["AUTH", mech]
    logged_in(conn, server)


@pytest.mark.parametrize("mech", MECHANISMS + ["APOP", "USER"])
def test_login_wrong_password(server, mech):
    if mech == "APOP" and not server.apop_available:
        pytest.skip("this Dovecot sends no APOP timestamp")
    conn = connect(server)
    try:
        with pytest.raises(cpoplib.error_proto) as info:
            conn.login(USER, "not-the-password", mechanism=mech,
                       allow_plaintext=True)
        # Dovecot's own refusal, as poplib would raise it
        assert info.value.args[0].startswith(b"-ERR")
        assert isinstance(info.value, poplib.error_proto)
        # the session is still usable for another attempt
        assert conn.login(USER, password(server), mechanism=mech,
                          allow_plaintext=True).startswith(b"+OK")
        logged_in(conn, server)
    finally:
        conn.close()


def test_login_picks_scram_sha_256(server):
    conn = connect(server)
    assert conn.login(USER, password(server)).startswith(b"+OK")
    assert conn.sent[0] == "CAPA"
    assert conn.sent[1].startswith("AUTH SCRAM-SHA-256 ")
    logged_in(conn, server)


def test_login_refuses_plain_in_the_clear(server):
    conn = connect(server)
    try:
        with pytest.raises(cpoplib.error_proto, match="in the clear"):
            conn.login(USER, password(server), mechanism="PLAIN")
        assert getattr(conn, "sent", []) == []
    finally:
        conn.close()


def test_login_plain_over_stls(server):
    import ssl
    ctx = ssl.create_default_context(cafile=server.ca_file)
    conn = Recording("localhost", server.pop3_port, timeout=30)
    conn.stls(ctx)
    assert conn.login(USER, password(server),
                      mechanism="PLAIN").startswith(b"+OK")
    logged_in(conn, server)


def test_login_over_pop3s_picks_scram(server):
    import ssl
    ctx = ssl.create_default_context(cafile=server.ca_file)
    conn = RecordingSSL("localhost", server.pop3s_port, timeout=30,
                        context=ctx)
    assert conn.login(USER, password(server)).startswith(b"+OK")
    assert conn.sent[1].startswith("AUTH SCRAM-SHA-256 ")
    logged_in(conn, server)


@pytest.mark.parametrize("module", [poplib, cpoplib],
                         ids=["poplib", "cpoplib"])
def test_auth_plain_initial_response(server, module):
    if not hasattr(module.POP3, "auth"):
        pytest.skip("this interpreter's poplib has no auth()")
    conn = module.POP3(server.host, server.pop3_port, timeout=30)
    resp = conn.auth("PLAIN", initial_response="\0%s\0%s"
                     % (USER, password(server)))
    assert resp.startswith(b"+OK")
    logged_in(conn, server)


@pytest.mark.parametrize("module", [poplib, cpoplib],
                         ids=["poplib", "cpoplib"])
def test_auth_cram_md5_authobject(server, module):
    if not hasattr(module.POP3, "auth"):
        pytest.skip("this interpreter's poplib has no auth()")
    conn = module.POP3(server.host, server.pop3_port, timeout=30)

    def cram(challenge):
        digest = hmac.new(password(server).encode(), challenge, "md5")
        return "%s %s" % (USER, digest.hexdigest())

    assert conn.auth("CRAM-MD5", cram).startswith(b"+OK")
    logged_in(conn, server)


@pytest.mark.parametrize("module", [poplib, cpoplib],
                         ids=["poplib", "cpoplib"])
def test_auth_login_authobject_and_cancel(server, module):
    if not hasattr(module.POP3, "auth"):
        pytest.skip("this interpreter's poplib has no auth()")
    conn = module.POP3(server.host, server.pop3_port, timeout=30)
    try:
        with pytest.raises(module.error_proto):
            conn.auth("LOGIN", lambda challenge: b"*")
        answers = iter([USER, password(server)])
        assert conn.auth("LOGIN",
                         lambda challenge: next(answers)).startswith(b"+OK")
        logged_in(conn, server)
    finally:
        conn.close()


def test_auth_scram_by_hand_matches_login(server):
    """auth() with an authobject that runs sasl.c's SCRAM through the
    test hook: Dovecot accepts what the C core computes."""
    from cpoplib import _cpoplib
    conn = connect(server)
    state = {}

    def scram(challenge):
        if not state:
            state["initial"], _, _ = _cpoplib._sasl_exchange(
                "SCRAM-SHA-1", USER.encode(), password(server).encode(), [],
                b"fixednonce")
            state["n"] = 0
            return state["initial"]
        state["n"] += 1
        challenges = state.setdefault("challenges", [])
        challenges.append(challenge)
        _, steps, complete = _cpoplib._sasl_exchange(
            "SCRAM-SHA-1", USER.encode(), password(server).encode(),
            challenges, b"fixednonce")
        assert steps[-1][0] == "continue", steps
        state["complete"] = complete
        return steps[-1][1]

    assert conn.auth("SCRAM-SHA-1", scram).startswith(b"+OK")
    assert state["complete"] is True
    assert base64.b64decode(conn.sent[1]).startswith(b"n,,n=alice,")
    logged_in(conn, server)
