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

OAuth 2.0 (XOAUTH2, OAUTHBEARER) runs against a second Dovecot,
DovecotServer(oauth2=True), that validates every token with an RFC 7662
introspection endpoint served by this process (tests register tokens in
server.oauth2_tokens and read server.oauth2_requests to see that Dovecot
asked).  There the lines on the wire come from the poplib.putline audit
events, so the two-step form (AUTH line, then the initial response after
an empty challenge) is seen as it is sent.
"""

import base64
import hmac
import json
import os

import pytest

import dovecot_server

import poplib

import cpoplib

USER = "alice"
MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"]


@pytest.fixture(scope="module")
def server(dovecot):
    with dovecot(large_size=4096) as srv:
        yield srv


@pytest.fixture(scope="module")
def oauth_server(dovecot_oauth):
    return dovecot_oauth


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


# --------------------------------------------------------------------------
# OAuth 2.0 against a Dovecot that validates the tokens (oauth_server)

OAUTH_MECHANISMS = ["OAUTHBEARER", "XOAUTH2"]
# what the client answers to the server's JSON error challenge: an empty
# line (XOAUTH2), a lone %x01 (OAUTHBEARER, RFC 7628 3.2.3)
REJECTION_ANSWER = {"XOAUTH2": b"", "OAUTHBEARER": b"AQ=="}
# microsoft 365's access tokens are this long and longer
LONG_TOKEN = 2000


def initial_response(mech, token, user=USER):
    """The client's first message: XOAUTH2's, or OAUTHBEARER's with the
    user as authzid (RFC 7628 3.1)."""
    if mech == "XOAUTH2":
        return b"user=%s\x01auth=Bearer %s\x01\x01" % (user.encode(),
                                                      token.encode())
    return b"n,a=%s,\x01auth=Bearer %s\x01\x01" % (user.encode(),
                                                  token.encode())


def b64(data):
    return base64.b64encode(data)


def auth_line(mech, token, user=USER):
    return b"AUTH " + mech.encode() + b" " + b64(
        initial_response(mech, token, user))


def longest_token_on_the_auth_line(mech):
    """The longest token whose AUTH line, CRLF included, fits in the 255
    octets of RFC 5034."""
    return max(n for n in range(1, 300)
               if len(auth_line(mech, "t" * n)) + 2 <= 255)


def unknown_token():
    return "unknown-" + base64.urlsafe_b64encode(os.urandom(24)).decode()


class Transcript(Recording):
    """Recording that also keeps the server's one-line answers: what
    _getresp() returns, or the line of the error_proto it raises."""

    def _getresp(self):
        try:
            resp = super()._getresp()
        except cpoplib.error_proto as exc:
            self.got = getattr(self, "got", []) + [exc.args[0]]
            raise
        self.got = getattr(self, "got", []) + [resp]
        return resp


class Introspection:
    """The tokens the introspection endpoint was asked about from now on."""

    def __init__(self, server):
        self.server = server
        self.start = len(server.oauth2_requests)

    def asked(self):
        return self.server.oauth2_requests[self.start:]


def read_mailbox(conn, server, user=USER):
    """The session is in TRANSACTION state on user's mailbox: STAT counts
    the Maildir's messages and RETR 1 gives one of them byte for byte;
    then QUIT."""
    count, size = conn.stat()
    assert count == len(server.expected[user])
    resp, lines, octets = conn.retr(1)
    assert resp.startswith(b"+OK")
    key = dovecot_server.message_key(lines)
    data = dovecot_server.to_crlf(server.expected[user][key])
    if not data.endswith(b"\r\n"):
        data += b"\r\n"             # Dovecot completes a missing final line
    assert b"\r\n".join(lines) + b"\r\n" == data
    assert conn.quit().startswith(b"+OK")


def check_rejection(exc, conn, mech):
    """exc is login()'s error for a token Dovecot refused: it carries the
    JSON error of Dovecot's challenge and has the final -ERR as context."""
    assert isinstance(exc, cpoplib.error_proto)
    assert isinstance(exc, poplib.error_proto)
    prefix = "-ERR %s: server rejected the token: " % mech
    message = exc.args[0]
    assert message.startswith(prefix), message
    # the server's error challenge (the line before its -ERR), word for
    # word
    challenge = conn.got[-2]
    assert challenge.startswith(b"+ ") and challenge != b"+ ", conn.got
    sent_json = base64.b64decode(challenge[2:])
    assert message[len(prefix):].encode() == sent_json
    error = json.loads(sent_json)
    assert isinstance(error, dict) and "status" in error, error
    if mech == "OAUTHBEARER":
        assert error["status"] == "invalid_token"       # RFC 6750 3.1
    # Dovecot's final refusal, kept as the context
    final = conn.got[-1]
    assert final.startswith(b"-ERR"), conn.got
    assert isinstance(exc.__context__, cpoplib.error_proto)
    assert exc.__context__.args[0] == final
    return error


def test_oauth_mechanisms_only_when_asked_for(server, oauth_server):
    conn = connect(server)
    try:
        sasl = conn.capa()["SASL"]
    finally:
        conn.quit()
    assert not set(OAUTH_MECHANISMS) & set(sasl)
    conn = connect(oauth_server)
    try:
        sasl = conn.capa()["SASL"]
    finally:
        conn.quit()
    # and the password mechanisms are still there
    assert set(OAUTH_MECHANISMS + MECHANISMS) <= set(sasl)


@pytest.mark.parametrize("mech", OAUTH_MECHANISMS)
@pytest.mark.parametrize("module", [poplib, cpoplib],
                         ids=["poplib", "cpoplib"])
def test_auth_oauth_initial_response(oauth_server, module, mech, putlines):
    if not hasattr(module.POP3, "auth"):
        pytest.skip("this interpreter's poplib has no auth()")
    token = oauth_server.add_oauth2_token(USER)
    introspection = Introspection(oauth_server)
    conn = module.POP3(oauth_server.host, oauth_server.pop3_port, timeout=30)
    resp = conn.auth(mech, initial_response=initial_response(mech, token))
    assert resp.startswith(b"+OK")
    assert putlines(conn) == [auth_line(mech, token)]
    assert introspection.asked() == [token]
    read_mailbox(conn, oauth_server)


@pytest.mark.parametrize("mech", OAUTH_MECHANISMS)
def test_auth_oauth_authobject(oauth_server, mech, putlines):
    """auth() without an initial response: Dovecot sends an empty
    challenge and the authobject's answer is the client's message."""
    token = oauth_server.add_oauth2_token(USER)
    introspection = Introspection(oauth_server)
    conn = connect(oauth_server)
    challenges = []

    def respond(challenge):
        challenges.append(challenge)
        return initial_response(mech, token)

    assert conn.auth(mech, respond).startswith(b"+OK")
    assert challenges == [b""]
    assert putlines(conn) == [b"AUTH " + mech.encode(),
                              b64(initial_response(mech, token))]
    assert introspection.asked() == [token]
    read_mailbox(conn, oauth_server)


@pytest.mark.parametrize("mech", OAUTH_MECHANISMS)
def test_auth_oauth_authobject_rejected(oauth_server, mech):
    """auth() by hand with a token Dovecot refuses: the authobject sees
    the JSON error, answers as the RFC says, and auth() raises the final
    -ERR; the session can log in afterwards."""
    token = unknown_token()
    conn = Transcript(oauth_server.host, oauth_server.pop3_port, timeout=30)
    challenges = []

    def respond(challenge):
        challenges.append(challenge)
        if len(challenges) == 1:
            return initial_response(mech, token)
        return base64.b64decode(REJECTION_ANSWER[mech])

    try:
        with pytest.raises(cpoplib.error_proto) as info:
            conn.auth(mech, respond)
        assert info.value.args[0].startswith(b"-ERR")
        assert len(challenges) == 2 and challenges[0] == b""
        assert "status" in json.loads(challenges[1])
        good = oauth_server.add_oauth2_token(USER)
        assert conn.login(USER, token=good, mechanism=mech,
                          allow_plaintext=True).startswith(b"+OK")
        read_mailbox(conn, oauth_server)
    finally:
        conn.close()


def test_login_token_picks_oauthbearer(oauth_server, putlines):
    """login(token=...) reads CAPA and, as its docstring says, prefers
    OAUTHBEARER over XOAUTH2 when the server lists both."""
    token = oauth_server.add_oauth2_token(USER)
    introspection = Introspection(oauth_server)
    conn = connect(oauth_server)
    assert conn.login(USER, token=token,
                      allow_plaintext=True).startswith(b"+OK")
    assert putlines(conn) == [b"CAPA", auth_line("OAUTHBEARER", token)]
    assert conn.sent == ["CAPA", auth_line("OAUTHBEARER", token).decode()]
    assert introspection.asked() == [token]
    read_mailbox(conn, oauth_server)


@pytest.mark.parametrize("mech", OAUTH_MECHANISMS)
def test_login_token_with_mechanism(oauth_server, mech, putlines):
    token = oauth_server.add_oauth2_token(USER)
    introspection = Introspection(oauth_server)
    conn = connect(oauth_server)
    assert conn.login(USER, token=token, mechanism=mech,
                      allow_plaintext=True).startswith(b"+OK")
    assert putlines(conn) == [auth_line(mech, token)]   # no CAPA needed
    assert introspection.asked() == [token]
    read_mailbox(conn, oauth_server)


def test_login_token_callable(oauth_server):
    token = oauth_server.add_oauth2_token(USER)
    introspection = Introspection(oauth_server)
    calls = []

    def access_token():
        calls.append(True)
        return token

    conn = connect(oauth_server)
    assert conn.login(USER, token=access_token,
                      allow_plaintext=True).startswith(b"+OK")
    assert calls == [True]                  # called once per login
    assert conn.sent[1] == auth_line("OAUTHBEARER", token).decode()
    assert introspection.asked() == [token]
    read_mailbox(conn, oauth_server)


def test_login_token_over_pop3s(oauth_server):
    """Over TLS no allow_plaintext is needed."""
    import ssl
    ctx = ssl.create_default_context(cafile=oauth_server.ca_file)
    token = oauth_server.add_oauth2_token(USER)
    introspection = Introspection(oauth_server)
    conn = RecordingSSL("localhost", oauth_server.pop3s_port, timeout=30,
                        context=ctx)
    assert conn.login(USER, token=token).startswith(b"+OK")
    assert conn.sent[1].startswith("AUTH OAUTHBEARER ")
    assert introspection.asked() == [token]
    read_mailbox(conn, oauth_server)


@pytest.mark.parametrize("mech", OAUTH_MECHANISMS)
@pytest.mark.parametrize("extra", [0, 1], ids=["fits", "one-more"])
def test_login_token_at_the_line_limit(oauth_server, mech, extra, putlines):
    """The longest token whose AUTH line fits in 255 octets goes on that
    line; one character more and it follows Dovecot's empty challenge."""
    length = longest_token_on_the_auth_line(mech) + extra
    token = oauth_server.add_oauth2_token(USER, length)
    introspection = Introspection(oauth_server)
    conn = connect(oauth_server)
    assert conn.login(USER, token=token, mechanism=mech,
                      allow_plaintext=True).startswith(b"+OK")
    line = auth_line(mech, token)
    if extra == 0:
        assert len(line) + 2 <= 255
        assert putlines(conn) == [line]
    else:
        assert len(line) + 2 > 255
        assert putlines(conn) == [b"AUTH " + mech.encode(),
                                  b64(initial_response(mech, token))]
    assert introspection.asked() == [token]
    read_mailbox(conn, oauth_server)


@pytest.mark.parametrize("mech", OAUTH_MECHANISMS)
def test_login_long_token_two_step(oauth_server, mech, putlines):
    token = oauth_server.add_oauth2_token(USER, LONG_TOKEN)
    introspection = Introspection(oauth_server)
    conn = Transcript(oauth_server.host, oauth_server.pop3_port, timeout=30)
    assert conn.login(USER, token=token, mechanism=mech,
                      allow_plaintext=True).startswith(b"+OK")
    assert putlines(conn) == [b"AUTH " + mech.encode(),
                              b64(initial_response(mech, token))]
    # after the greeting: Dovecot's empty challenge, then its +OK
    assert conn.got[1] == b"+ " and conn.got[2].startswith(b"+OK")
    assert introspection.asked() == [token]
    read_mailbox(conn, oauth_server)


@pytest.mark.parametrize("mech", OAUTH_MECHANISMS)
def test_login_invalid_token_then_valid(oauth_server, mech, putlines):
    """A token the endpoint calls inactive: error_proto with Dovecot's
    JSON error, the RFC's answer on the wire, and the session stays in
    step and in AUTHORIZATION state for another attempt."""
    token = unknown_token()
    introspection = Introspection(oauth_server)
    conn = Transcript(oauth_server.host, oauth_server.pop3_port, timeout=30)
    try:
        with pytest.raises(cpoplib.error_proto) as info:
            conn.login(USER, token=token, mechanism=mech,
                       allow_plaintext=True)
        check_rejection(info.value, conn, mech)
        assert putlines(conn) == [auth_line(mech, token),
                                  REJECTION_ANSWER[mech]]
        assert introspection.asked() == [token]
        # in step: the next answer is CAPA's (AUTHORIZATION state: SASL
        # still listed, no logged-in capabilities)
        caps = conn.capa()
        assert mech in caps["SASL"]
        good = oauth_server.add_oauth2_token(USER)
        assert conn.login(USER, token=good, mechanism=mech,
                          allow_plaintext=True).startswith(b"+OK")
        assert introspection.asked() == [token, good]
        read_mailbox(conn, oauth_server)
    finally:
        conn.close()


@pytest.mark.parametrize("mech", OAUTH_MECHANISMS)
def test_login_invalid_token_then_quit(oauth_server, mech, putlines):
    token = unknown_token()
    conn = Transcript(oauth_server.host, oauth_server.pop3_port, timeout=30)
    try:
        with pytest.raises(cpoplib.error_proto) as info:
            conn.login(USER, token=token, mechanism=mech,
                       allow_plaintext=True)
        check_rejection(info.value, conn, mech)
        assert conn.quit().startswith(b"+OK")
        assert putlines(conn) == [auth_line(mech, token),
                                  REJECTION_ANSWER[mech], b"QUIT"]
    finally:
        conn.close()


@pytest.mark.parametrize("mech", OAUTH_MECHANISMS)
def test_login_long_invalid_token(oauth_server, mech, putlines):
    """Two-step form and rejection together: AUTH, the initial response
    after the empty challenge, then the answer to the JSON error."""
    token = unknown_token() + "x" * LONG_TOKEN
    introspection = Introspection(oauth_server)
    conn = Transcript(oauth_server.host, oauth_server.pop3_port, timeout=30)
    try:
        with pytest.raises(cpoplib.error_proto) as info:
            conn.login(USER, token=token, mechanism=mech,
                       allow_plaintext=True)
        check_rejection(info.value, conn, mech)
        assert putlines(conn) == [b"AUTH " + mech.encode(),
                                  b64(initial_response(mech, token)),
                                  REJECTION_ANSWER[mech]]
        assert introspection.asked() == [token]
        assert conn.quit().startswith(b"+OK")
    finally:
        conn.close()


@pytest.mark.parametrize("mech", OAUTH_MECHANISMS)
def test_login_revoked_token(oauth_server, mech):
    """A token that worked stops working once the endpoint calls it
    inactive (expired, revoked): Dovecot asks on every login."""
    token = oauth_server.add_oauth2_token(USER)
    introspection = Introspection(oauth_server)
    conn = Transcript(oauth_server.host, oauth_server.pop3_port, timeout=30)
    assert conn.login(USER, token=token, mechanism=mech,
                      allow_plaintext=True).startswith(b"+OK")
    read_mailbox(conn, oauth_server)
    del oauth_server.oauth2_tokens[token]
    conn = Transcript(oauth_server.host, oauth_server.pop3_port, timeout=30)
    try:
        with pytest.raises(cpoplib.error_proto) as info:
            conn.login(USER, token=token, mechanism=mech,
                       allow_plaintext=True)
        check_rejection(info.value, conn, mech)
        assert introspection.asked() == [token, token]
        assert conn.quit().startswith(b"+OK")
    finally:
        conn.close()


@pytest.mark.parametrize("mech", OAUTH_MECHANISMS)
def test_login_token_of_another_user(oauth_server, mech, putlines):
    """An active token issued to bob does not log in alice (Dovecot
    compares the introspection's username with the login name), and
    does log in bob."""
    token = oauth_server.add_oauth2_token("bob")
    introspection = Introspection(oauth_server)
    conn = Transcript(oauth_server.host, oauth_server.pop3_port, timeout=30)
    try:
        with pytest.raises(cpoplib.error_proto) as info:
            conn.login(USER, token=token, mechanism=mech,
                       allow_plaintext=True)
        if len(conn.got) >= 2 and conn.got[-2].startswith(b"+ "):
            # 2.3 and 2.4.5 treat it as a refused token: a JSON error
            # challenge, answered as the RFCs require
            check_rejection(info.value, conn, mech)
            assert putlines(conn) == [auth_line(mech, token),
                                      REJECTION_ANSWER[mech]]
        else:
            # 2.4.1 fails a user name mismatch at once, with no JSON
            # challenge: the error is the server's own -ERR line
            assert oauth_server.version[:2] >= (2, 4)
            assert conn.got[-1].startswith(b"-ERR")
            assert info.value.args[0] == conn.got[-1]
            assert putlines(conn) == [auth_line(mech, token)]
        assert introspection.asked() == [token]
        assert conn.login("bob", token=token, mechanism=mech,
                          allow_plaintext=True).startswith(b"+OK")
        assert introspection.asked() == [token, token]
        read_mailbox(conn, oauth_server, "bob")
    finally:
        conn.close()


def test_password_login_on_the_oauth_server(oauth_server):
    """The password mechanisms still work next to the token ones, and do
    not ask the introspection endpoint."""
    introspection = Introspection(oauth_server)
    conn = connect(oauth_server)
    assert conn.login(USER, password(oauth_server)).startswith(b"+OK")
    assert conn.sent[1].startswith("AUTH SCRAM-SHA-256 ")
    read_mailbox(conn, oauth_server)
    conn = connect(oauth_server)
    assert conn.login(USER, password(oauth_server), mechanism="PLAIN",
                      allow_plaintext=True).startswith(b"+OK")
    read_mailbox(conn, oauth_server)
    assert introspection.asked() == []
