"""SASL authentication: POP3.auth() (RFC 5034, CPython main's semantics),
POP3.login() and the built-in mechanisms of Modules/sasl.c.

* Known-answer tests of the C core (cpoplib._cpoplib._sasl_exchange, a
  test-only entry point that fixes the SCRAM nonce): the full SCRAM-SHA-1
  and SCRAM-SHA-256 exchanges of RFC 5802 and RFC 7677, CRAM-MD5 of
  RFC 2195, the PLAIN/XOAUTH2/OAUTHBEARER messages.
* SCRAM against an independent server written here with hashlib/hmac,
  including SASLprep (RFC 4013) of non-ASCII credentials.
* Scripted-server tests for auth() and for every failure path of login():
  a wrong server signature, +OK before the server proved itself, "e=",
  a foreign nonce, bad base64, OAuth JSON errors, the two-step AUTH form
  for long tokens, "*" cancel, the clear-text refusal.
* Where poplib defines the answer (an interpreter whose poplib has
  auth(), CPython 3.14+/main), the same scripts run through both modules
  and must give identical results.
"""

import base64
import hmac
import poplib

import pytest

import cpoplib
from cpoplib import _cpoplib
from scripted_server import ScriptedServer
from scram_server import scram_server

GREETING = b"+OK ready\r\n"
APOP_GREETING = b"+OK ready <1896.697170952@dbc.mtview.ca.us>\r\n"


def b64(data):
    return base64.b64encode(data)


def connect(srv, module=cpoplib):
    return module.POP3(srv.host, srv.port, timeout=10)


def lines(srv):
    """The command lines the client sent, without CRLF."""
    return [c.rstrip(b"\r\n") for c in srv.commands]


# --------------------------------------------------------------------------
# the C core: known answers

def exchange(mech, user, secret, challenges, nonce=None):
    return _cpoplib._sasl_exchange(mech, user, secret, challenges, nonce)


def test_scram_sha1_rfc5802_vector():
    first, steps, complete = exchange(
        "SCRAM-SHA-1", b"user", b"pencil",
        [b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,"
         b"i=4096",
         b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="],
        nonce=b"fyko+d2lbbFgONRv9qkxdawL")
    assert first == b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
    assert steps == [
        ("continue", b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                     b"p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", ""),
        ("continue", b"", ""),
    ]
    assert complete is True


def test_scram_sha256_rfc7677_vector():
    first, steps, complete = exchange(
        "SCRAM-SHA-256", b"user", b"pencil",
        [b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
         b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
         b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="],
        nonce=b"rOprNGfwEbeRWgbNEkqO")
    assert first == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert steps[0] == (
        "continue",
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "")
    assert steps[1] == ("continue", b"", "")
    assert complete is True


def test_scram_wrong_server_signature_is_untrusted():
    _, steps, complete = exchange(
        "SCRAM-SHA-256", b"user", b"pencil",
        [b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
         b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
         b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="],
        nonce=b"rOprNGfwEbeRWgbNEkqO")
    assert steps[1][0] == "failed-untrusted"
    assert "signature mismatch" in steps[1][2]
    assert complete is False


@pytest.mark.parametrize("server_first, reason", [
    (b"r=OTHERNONCE,s=QSXCR+Q6sek8bf92,i=4096", "does not extend"),
    (b"r=abc,s=QSXCR+Q6sek8bf92,i=4096", "does not extend"),  # == nonce
    (b"r=abcX,s=QSXCR+Q6sek8bf92,i=0", "out of range"),
    (b"r=abcX,s=QSXCR+Q6sek8bf92,i=99999999", "out of range"),
    (b"r=abcX,s=QSXCR+Q6sek8bf92,i=4x", "iteration count"),
    (b"r=abcX,s=!!!!,i=4096", "bad SCRAM salt"),
    (b"r=abcX,s=,i=4096", "bad SCRAM salt"),
    (b"r=abcX,i=4096", "malformed"),
    (b"m=ext,r=abcX,s=QSXCR+Q6sek8bf92,i=4096", "unsupported extension"),
    (b"r=abcX,s=QSXCR+Q6sek8bf92,i=4096\x00", "NUL"),
    (b"", "malformed"),
])
def test_scram_bad_server_first(server_first, reason):
    _, steps, complete = exchange("SCRAM-SHA-1", b"u", b"p", [server_first],
                                  nonce=b"abc")
    assert steps == [("failed-cancel", None, steps[0][2])]
    assert reason in steps[0][2]
    assert complete is False


def test_scram_server_error_attribute():
    _, steps, _ = exchange("SCRAM-SHA-1", b"u", b"p",
                           [b"r=abcX,s=QSXCR+Q6sek8bf92,i=1",
                            b"e=invalid-proof"], nonce=b"abc")
    assert steps[1] == ("failed-cancel", None,
                        "SCRAM server error: invalid-proof")


def test_scram_escapes_user_name():
    first, _, _ = exchange("SCRAM-SHA-1", b"a=b,c", b"p", [], nonce=b"n")
    assert first == b"n,,n=a=3Db=2Cc,r=n"


def test_scram_random_nonce():
    nonces = set()
    for _ in range(20):
        first, _, _ = exchange("SCRAM-SHA-256", b"u", b"p", [])
        nonce = first.split(b",r=")[1]
        assert len(nonce) == 24
        base64.b64decode(nonce, validate=True)
        nonces.add(nonce)
    assert len(nonces) == 20


def test_cram_md5_rfc2195_vector():
    first, steps, complete = exchange(
        "CRAM-MD5", b"tim", b"tanstaaftanstaaf",
        [b"<1896.697170952@postoffice.reston.mci.net>"])
    assert first is None
    assert steps == [("continue", b"tim b913a602c7eda7a495b4e6e7334d3890",
                      "")]
    assert complete is True


def test_plain_login_oauth_messages():
    assert exchange("PLAIN", b"tim", b"tanstaaf", [])[0] == \
        b"\x00tim\x00tanstaaf"
    assert exchange("plain", b"u", b"p", [b"more?"])[1] == [
        ("failed-cancel", None, "unexpected PLAIN challenge: more?")]
    first, steps, _ = exchange("LOGIN", b"u", b"p",
                               [b"Username:", b"Password:", b"?"])
    assert first is None
    assert [s[:2] for s in steps] == [("continue", b"u"), ("continue", b"p"),
                                      ("failed-cancel", None)]
    first, steps, _ = exchange("XOAUTH2", b"someuser@example.com",
                               b"ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
                               [b'{"status":"401"}'])
    assert first == (b"user=someuser@example.com\x01auth=Bearer "
                     b"ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01")
    assert steps == [("failed-respond", b"",
                      'server rejected the token: {"status":"401"}')]
    # RFC 7628 4.1, without the optional host and port
    first, steps, _ = exchange("OAUTHBEARER", b"user@example.com",
                               b"vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==",
                               [b'{"status":"invalid_token"}'])
    assert first == (b"n,a=user@example.com,\x01auth=Bearer "
                     b"vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==\x01\x01")
    assert steps == [("failed-respond", b"\x01",
                      'server rejected the token: {"status":"invalid_token"}')]


@pytest.mark.parametrize("mech, user, secret", [
    ("PLAIN", b"a\x00b", b"p"),
    ("SCRAM-SHA-1", b"", b"p"),
    ("SCRAM-SHA-1", b"u", b"p\x00"),
    ("XOAUTH2", b"u", b"tok\x01en"),
    ("OAUTHBEARER", b"u\x01", b"token"),
])
def test_unsendable_credentials(mech, user, secret):
    with pytest.raises(ValueError, match="^input: "):
        exchange(mech, user, secret, [])


def test_unprintable_server_text_is_masked():
    _, steps, _ = exchange("CRAM-MD5", b"u", b"p", [b"x", b"\x1b[31m\xff"])
    assert steps[1][2] == "unexpected CRAM-MD5 challenge: ?[31m?"


# --------------------------------------------------------------------------
# SCRAM against an independent server (hashlib, hmac)

def saslprep_reference(s):
    # RFC 4013's examples and the few mappings these tests use
    import cpoplib._saslprep as sp
    return sp.saslprep(s)


@pytest.mark.parametrize("mech, hash_name", [("SCRAM-SHA-256", "sha256"),
                                             ("SCRAM-SHA-1", "sha1")])
@pytest.mark.parametrize("user, password, prepared", [
    ("alice", "alice-secret", "alice-secret"),
    ("user", "pencil", "pencil"),
    # RFC 4013 3: SOFT HYPHEN maps to nothing; U+00AA NFKC -> "a";
    # ROMAN NUMERAL NINE NFKC -> "IX"; NO-BREAK SPACE -> SPACE
    ("jürgen", "I\u00adX", "IX"),
    ("u", "\u00aa", "a"),
    ("u", "\u2168", "IX"),
    ("u", "pa\u00a0ss", "pa ss"),
    ("u", "Grüße 日本", "Grüße 日本"),
])
def test_scram_against_reference_server(mech, hash_name, user, password,
                                        prepared):
    with ScriptedServer(scram_server(user, prepared, hash_name)) as srv:
        c = connect(srv)
        assert c.login(user, password, mechanism=mech) == b"+OK Logged in."
        c.quit()


def test_scram_wrong_password_is_server_error():
    with ScriptedServer(scram_server("u", "right")) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto) as info:
            c.login("u", "wrong", mechanism="SCRAM-SHA-256")
        assert info.value.args == (b"-ERR [AUTH] Authentication failed.",)
        c.close()


def test_scram_wrong_server_signature_closes():
    with ScriptedServer(scram_server("u", "p", tamper_signature=True)) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto,
                           match="SCRAM-SHA-256: SCRAM server signature "
                                 "mismatch"):
            c.login("u", "p", mechanism="SCRAM-SHA-256")
        assert c.sock is None and c.file is None
        srv.join()
    # nothing was sent after the client-final message
    assert len(lines(srv)) == 2


def test_scram_ok_without_server_signature_closes():
    with ScriptedServer(scram_server("u", "p", ok_early=True)) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto,
                           match="without proving it knows the password"):
            c.login("u", "p", mechanism="SCRAM-SHA-256")
        assert c.sock is None


@pytest.mark.parametrize("password, message", [
    ("p\x07", "prohibits"),          # ASCII control (C.2.1)
    ("p\ue000", "prohibits"),        # private use (C.3)
    ("\u0627\u0031", "right-to-left"),  # RTL not at both ends
])
def test_scram_saslprep_refuses_before_sending(password, message):
    with ScriptedServer([(None, GREETING)]) as srv:
        c = connect(srv)
        with pytest.raises(ValueError, match=message) as info:
            c.login("u", password, mechanism="SCRAM-SHA-1")
        assert password not in str(info.value)
        c.close()
        srv.join()
    assert lines(srv) == []


# --------------------------------------------------------------------------
# login(): failure paths of the built-in mechanisms

def step_server(*steps, greeting=GREETING):
    return ScriptedServer([(None, greeting)] + list(steps))


def test_scram_server_error_cancels():
    def handler(conn):
        conn.send(GREETING)
        ir = base64.b64decode(conn.recv_line().split()[2])
        nonce = ir.split(b"r=")[1] + b"S"
        conn.send(b"+ " + b64(b"r=" + nonce + b",s=c2FsdA==,i=1") + b"\r\n")
        conn.recv_line()
        conn.send(b"+ " + b64(b"e=other-error") + b"\r\n")
        if conn.recv_line() == b"*\r\n":
            conn.send(b"-ERR Authentication cancelled\r\n")

    with ScriptedServer(handler) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto) as info:
            c.login("u", "p", mechanism="SCRAM-SHA-1")
        assert info.value.args == (
            "-ERR SCRAM-SHA-1: SCRAM server error: other-error",)
        # the server's -ERR to the cancel is dropped, not raised
        assert isinstance(info.value.__context__, type(None))
        assert c.noop is not None
        c.close()
    assert lines(srv)[-1] == b"*"


@pytest.mark.parametrize("challenge", [b"+ ###\r\n", b"+ QUJDRA=x\r\n",
                                       b"+ A\r\n"])
def test_bad_base64_challenge_cancels(challenge):
    with step_server((b"AUTH CRAM-MD5", challenge),
                     (b"*", b"-ERR cancelled\r\n"),
                     (b"NOOP", b"+OK still here\r\n")) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto,
                           match="CRAM-MD5: the server's challenge is not "
                                 "base64"):
            c.login("u", "p", mechanism="CRAM-MD5")
        # the exchange was cancelled cleanly: the session goes on
        assert c.noop() == b"+OK still here"
        c.close()
    assert not srv.mismatches


@pytest.mark.parametrize("answer", [b"+OK welcome after all\r\n",
                                    b"+ bW9yZQ==\r\n", b"garbage\r\n",
                                    b"\r\n", b"OK\r\n", b"x" * 5000])
def test_cancel_not_answered_with_err_closes(answer):
    """RFC 5034: the server answers "*" with -ERR.  Anything else (+OK,
    another challenge, no POP3 answer, a line too long) leaves the
    session in an unknown state: the error is raised and the connection
    closed, not handed back."""
    with step_server((b"AUTH CRAM-MD5", b"+ ###\r\n"),
                     (b"*", answer)) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto,
                           match="CRAM-MD5: the server's challenge is not "
                                 "base64"):
            c.login("u", "p", mechanism="CRAM-MD5")
        assert c.sock is None and c.file is None
        srv.join()
    assert not srv.mismatches
    assert lines(srv)[-1] == b"*"


def test_cancel_answer_lost_closes():
    """The server hangs up instead of answering "*": the mechanism's
    error is raised, with the EOF as its context, and the connection is
    closed."""
    def handler(conn):
        conn.send(GREETING)
        conn.recv_line()                        # AUTH CRAM-MD5
        conn.send(b"+ ###\r\n")
        conn.recv_line()                        # *

    with ScriptedServer(handler) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto,
                           match="not base64") as info:
            c.login("u", "p", mechanism="CRAM-MD5")
        assert c.sock is None and c.file is None
        assert info.value.__context__ is not None


def test_challenge_without_padding_is_accepted():
    chal = b"<1896.697170952@postoffice.reston.mci.net>"
    with step_server((b"AUTH CRAM-MD5",
                      b"+ " + b64(chal).rstrip(b"=") + b"\r\n"),
                     (b64(b"tim b913a602c7eda7a495b4e6e7334d3890"),
                      b"+OK welcome\r\n")) as srv:
        c = connect(srv)
        assert c.login("tim", "tanstaaftanstaaf",
                       mechanism="CRAM-MD5") == b"+OK welcome"
        c.close()
    assert not srv.mismatches


@pytest.mark.parametrize("mech, ir, secret", [
    ("PLAIN", b"\x00u\x00p", "p"),
    ("EXTERNAL", b"u", None),       # EXTERNAL has no challenges either
])
def test_unexpected_challenge_cancels(mech, ir, secret):
    line = b"AUTH %s %s" % (mech.encode(), b64(ir))
    with step_server((line, b"+ \r\n"),
                     (b"*", b"-ERR cancelled\r\n")) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto,
                           match="unexpected %s challenge" % mech):
            c.login("u", secret, mechanism=mech, allow_plaintext=True)
        c.close()
    assert not srv.mismatches


def test_login_mechanism_auth_failure_is_servers_error():
    with step_server((b"AUTH LOGIN", b"+ " + b64(b"Username:") + b"\r\n"),
                     (b64(b"u"), b"+ " + b64(b"Password:") + b"\r\n"),
                     (b64(b"p"), b"-ERR [AUTH] nope\r\n")) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto) as info:
            c.login("u", "p", mechanism="login", allow_plaintext=True)
        assert info.value.args == (b"-ERR [AUTH] nope",)
        c.close()


def test_xoauth2_json_error():
    token = "ya29.short"
    ir = b64(b"user=u@example.com\x01auth=Bearer ya29.short\x01\x01")
    err = b'{"status":"400","schemes":"Bearer","scope":"https://mail"}'
    with step_server((b"AUTH XOAUTH2 " + ir, b"+ " + b64(err) + b"\r\n"),
                     (b"", b"-ERR [AUTH] Invalid credentials\r\n")) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto) as info:
            c.login("u@example.com", token=token, mechanism="XOAUTH2",
                    allow_plaintext=True)
        assert info.value.args == (
            "-ERR XOAUTH2: server rejected the token: " + err.decode(),)
        assert info.value.__context__.args == (
            b"-ERR [AUTH] Invalid credentials",)
        c.close()
    assert not srv.mismatches


def test_oauthbearer_json_error_answers_with_ctrl_a():
    ir = b64(b"n,a=u@example.com,\x01auth=Bearer tok\x01\x01")
    err = b'{"status":"invalid_token"}'
    with step_server((b"CAPA", b"+OK\r\nSASL OAUTHBEARER XOAUTH2\r\n.\r\n"),
                     (b"AUTH OAUTHBEARER " + ir, b"+ " + b64(err) + b"\r\n"),
                     (b"AQ==", b"-ERR [AUTH] failed\r\n")) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto,
                           match="OAUTHBEARER: server rejected the token: "
                                 '{"status":"invalid_token"}'):
            c.login("u@example.com", token=lambda: "tok",
                    allow_plaintext=True)
        c.close()
    assert not srv.mismatches


def test_oauth_second_challenge_cancels():
    ir = b64(b"user=u\x01auth=Bearer t\x01\x01")
    with step_server((b"AUTH XOAUTH2 " + ir, b"+ " + b64(b"{}") + b"\r\n"),
                     (b"", b"+ " + b64(b"{}") + b"\r\n"),
                     (b"*", b"-ERR cancelled\r\n")) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto,
                           match="XOAUTH2: server rejected the token: {}"):
            c.login("u", token="t", mechanism="XOAUTH2",
                    allow_plaintext=True)
        c.close()
    assert not srv.mismatches


def test_oauth_ok_after_reported_failure_closes():
    ir = b64(b"user=u\x01auth=Bearer t\x01\x01")
    with step_server((b"AUTH XOAUTH2 " + ir, b"+ " + b64(b"{}") + b"\r\n"),
                     (b"", b"+OK welcome anyway\r\n")) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto, match="had just refused"):
            c.login("u", token="t", mechanism="XOAUTH2",
                    allow_plaintext=True)
        assert c.sock is None


@pytest.mark.parametrize("mech", ["XOAUTH2", "OAUTHBEARER"])
def test_long_token_uses_two_step_form(mech):
    token = "t" * 300
    if mech == "XOAUTH2":
        msg = b"user=u\x01auth=Bearer " + token.encode() + b"\x01\x01"
    else:
        msg = b"n,a=u,\x01auth=Bearer " + token.encode() + b"\x01\x01"
    with step_server((b"AUTH " + mech.encode(), b"+ \r\n"),
                     (b64(msg), b"+OK Logged in.\r\n")) as srv:
        c = connect(srv)
        assert c.login("u", token=token, mechanism=mech,
                       allow_plaintext=True) == b"+OK Logged in."
        c.close()
    assert not srv.mismatches


def test_two_step_form_needs_empty_challenge():
    with step_server((b"AUTH XOAUTH2", b"+ " + b64(b"hello") + b"\r\n"),
                     (b"*", b"-ERR cancelled\r\n")) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto, match="empty challenge"):
            c.login("u", token="t" * 300, mechanism="XOAUTH2",
                    allow_plaintext=True)
        c.close()
    assert not srv.mismatches


def test_auth_line_limit_is_255_octets():
    # "AUTH XOAUTH2 " + base64 + CRLF: the longest token that fits
    def ir_len(n):
        return len(b64(b"user=u\x01auth=Bearer " + b"t" * n + b"\x01\x01"))

    fits = max(n for n in range(300) if len(b"AUTH XOAUTH2 ") + ir_len(n)
               + 2 <= 255)
    for n, expect_one_line in ((fits, True), (fits + 3, False)):
        msg = b"user=u\x01auth=Bearer " + b"t" * n + b"\x01\x01"
        script = ([(b"AUTH XOAUTH2 " + b64(msg), b"+OK\r\n")]
                  if expect_one_line else
                  [(b"AUTH XOAUTH2", b"+ \r\n"), (b64(msg), b"+OK\r\n")])
        with step_server(*script) as srv:
            c = connect(srv)
            assert c.login("u", token="t" * n, mechanism="XOAUTH2",
                           allow_plaintext=True) == b"+OK"
            c.close()
        assert not srv.mismatches


# --------------------------------------------------------------------------
# login(): choosing the mechanism, refusing clear text

CAPA_ALL = (b"+OK\r\nUSER\r\nSASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 "
            b"SCRAM-SHA-256 XOAUTH2 OAUTHBEARER\r\n.\r\n")


@pytest.mark.parametrize("sasl, greeting, first_line", [
    (b"PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256", GREETING,
     b"AUTH SCRAM-SHA-256 "),
    (b"scram-sha-1 CRAM-MD5", GREETING, b"AUTH SCRAM-SHA-1 "),
    (b"PLAIN CRAM-MD5", APOP_GREETING, b"AUTH CRAM-MD5"),
    (b"PLAIN LOGIN", APOP_GREETING, b"APOP u "),
    (b"LOGIN PLAIN", GREETING, b"AUTH PLAIN "),
    (b"LOGIN", GREETING, b"AUTH LOGIN"),
    (None, GREETING, b"USER u"),
])
def test_login_picks_strongest(sasl, greeting, first_line):
    capa = (b"+OK\r\nUSER\r\n" + (b"SASL " + sasl + b"\r\n" if sasl else b"")
            + b".\r\n")
    with ScriptedServer([(None, greeting), (b"CAPA", capa)]) as srv:
        c = connect(srv)
        with pytest.raises((cpoplib.error_proto, EOFError, OSError)):
            c.login("u", "p", allow_plaintext=True)
        c.close()
        srv.join()
    sent = srv.received.split(b"\r\n")
    assert sent[0] == b"CAPA"
    assert sent[1].startswith(first_line), sent


def test_login_without_capa_uses_user_pass():
    with step_server((b"CAPA", b"-ERR unknown command\r\n"),
                     (b"USER u", b"+OK\r\n"),
                     (b"PASS p", b"+OK logged in\r\n")) as srv:
        c = connect(srv)
        assert c.login("u", "p", allow_plaintext=True) == b"+OK logged in"
        c.close()
    assert not srv.mismatches


def test_login_token_prefers_oauthbearer():
    with step_server((b"CAPA", CAPA_ALL),
                     (b"AUTH OAUTHBEARER " + b64(b"n,a=u,\x01auth=Bearer "
                                                 b"tk\x01\x01"),
                      b"+OK\r\n")) as srv:
        c = connect(srv)
        assert c.login("u", token="tk", allow_plaintext=True) == b"+OK"
        c.close()
    assert not srv.mismatches


@pytest.mark.parametrize("kwargs, what", [
    ({"mechanism": "PLAIN"}, "PLAIN"),
    ({"mechanism": "LOGIN"}, "LOGIN"),
    ({"mechanism": "USER"}, "USER/PASS"),
    ({}, "USER/PASS"),
])
def test_login_refuses_cleartext(kwargs, what):
    capa = b"+OK\r\nUSER\r\n.\r\n"
    with ScriptedServer([(None, GREETING), (b"CAPA", capa)]) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto,
                           match="refuses to send a password in the clear "
                                 "with " + what):
            c.login("u", "secret", **kwargs)
        c.close()
        srv.join()
    assert b"secret" not in srv.received
    assert all(not l.startswith((b"AUTH", b"USER", b"PASS"))
               for l in lines(srv))


def test_login_refuses_cleartext_token():
    with ScriptedServer([(None, GREETING), (b"CAPA", CAPA_ALL)]) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto, match="a token in the clear"):
            c.login("u", token="tk")
        c.close()
        srv.join()
    assert b"AUTH" not in srv.received


def test_login_over_tls_sends_plain(tmp_path):
    from scripted_server import client_tls_context

    def handler(conn):
        conn.send(GREETING)
        assert conn.recv_line() == b"STLS\r\n"
        conn.send(b"+OK go\r\n")
        conn.start_tls()
        assert conn.recv_line() == b"CAPA\r\n"
        conn.send(b"+OK\r\nSASL PLAIN\r\n.\r\n")
        if conn.recv_line() == b"AUTH PLAIN " + b64(b"\x00u\x00p") + b"\r\n":
            conn.send(b"+OK welcome\r\n")

    with ScriptedServer(handler) as srv:
        c = connect(srv)
        c.capa = lambda: {"STLS": []}          # skip the pre-TLS CAPA
        c.stls(client_tls_context(verify=False))
        del c.capa
        assert c.login("u", "p") == b"+OK welcome"
        c.close()


@pytest.mark.parametrize("args, kwargs, exc, match", [
    (("u",), {}, ValueError, "either a password or a token"),
    (("u", "p"), {"token": "t"}, ValueError, "either a password or a token"),
    (("u", "p"), {"mechanism": "GSSAPI"}, ValueError,
     "unsupported mechanism 'GSSAPI'"),
    (("u", "p"), {"mechanism": "XOAUTH2"}, ValueError, "needs token="),
    (("u",), {"token": "t", "mechanism": "PLAIN"}, ValueError,
     "needs a password"),
    ((b"u", "p"), {}, TypeError, "user must be str"),
    (("u", b"p"), {}, TypeError, "password must be str"),
    (("u", "p", "x"), {}, TypeError, "at most 2 positional"),
])
def test_login_argument_errors_send_nothing(args, kwargs, exc, match):
    with ScriptedServer([(None, GREETING)]) as srv:
        c = connect(srv)
        with pytest.raises(exc, match=match):
            c.login(*args, **kwargs)
        c.close()
        srv.join()
    assert srv.received == b""


def test_login_token_callable_must_return_str():
    with ScriptedServer([(None, GREETING)]) as srv:
        c = connect(srv)
        with pytest.raises(TypeError, match="token must be a str"):
            c.login("u", token=lambda: b"bytes", mechanism="XOAUTH2",
                    allow_plaintext=True)
        c.close()
        srv.join()
    assert srv.received == b""


# --------------------------------------------------------------------------
# SASL EXTERNAL (RFC 4422 appendix A): the TLS client certificate is the
# credential, the user the authorization identity

def test_external_messages():
    assert exchange("EXTERNAL", b"alice", b"", []) == (b"alice", [], True)
    # an empty authzid: act as the certificate's identity
    assert exchange("EXTERNAL", b"", b"ignored", []) == (b"", [], True)
    # there are no challenges in EXTERNAL
    assert exchange("EXTERNAL", b"u", b"", [b""])[1] == [
        ("failed-cancel", None, "unexpected EXTERNAL challenge: ")]
    with pytest.raises(ValueError, match="EXTERNAL cannot send a NUL"):
        exchange("EXTERNAL", b"a\x00b", b"", [])


@pytest.mark.parametrize("user, line", [
    ("alice", b"AUTH EXTERNAL " + b64(b"alice")),
    ("", b"AUTH EXTERNAL ="),            # RFC 5034: "=" is an empty one
])
def test_login_external_sends_the_authzid(user, line):
    with step_server((line, b"+OK welcome\r\n")) as srv:
        c = connect(srv)
        assert c.login(user, mechanism="EXTERNAL") == b"+OK welcome"
        c.close()
    assert not srv.mismatches and lines(srv) == [line]


def test_login_external_refused_is_servers_error():
    with step_server((b"AUTH EXTERNAL " + b64(b"u"),
                      b"-ERR [AUTH] no certificate\r\n"),
                     (b"NOOP", b"+OK\r\n")) as srv:
        c = connect(srv)
        with pytest.raises(cpoplib.error_proto) as info:
            c.login("u", mechanism="EXTERNAL")
        assert info.value.args == (b"-ERR [AUTH] no certificate",)
        assert c.noop() == b"+OK"             # the session goes on
        c.close()


def tls_capa_server(sasl, *after):
    """Implicit TLS, CAPA listing SASL `sasl`, then the steps `after`:
    (expected line, reply)."""
    def handler(conn):
        conn.start_tls()
        conn.send(GREETING)
        if conn.recv_line() != b"CAPA\r\n":
            return
        conn.send(b"+OK\r\nUSER\r\nSASL " + sasl + b"\r\n.\r\n")
        for expect, reply in after:
            if conn.recv_line() != expect + b"\r\n":
                return
            conn.send(reply)
    return ScriptedServer(handler)


def tls_connect(srv):
    from scripted_server import client_tls_context
    return cpoplib.POP3_SSL(srv.host, srv.port, timeout=10,
                            context=client_tls_context(verify=False))


needs_certificate = pytest.mark.skipif(
    __import__("scripted_server").CERTFILE is None,
    reason="no test certificate")


@needs_certificate
@pytest.mark.parametrize("sasl, password, sent", [
    # neither password nor token: EXTERNAL, offered over TLS
    (b"PLAIN EXTERNAL", None, b"AUTH EXTERNAL " + b64(b"u")),
    # a password keeps poplib's choice, EXTERNAL offered or not
    (b"EXTERNAL PLAIN", "p", b"AUTH PLAIN " + b64(b"\x00u\x00p")),
])
def test_login_over_tls_uses_external_only_without_a_secret(sasl, password,
                                                            sent):
    with tls_capa_server(sasl, (sent, b"+OK welcome\r\n")) as srv:
        c = tls_connect(srv)
        assert c.login("u", password) == b"+OK welcome"
        c.close()
    assert lines(srv) == [b"CAPA", sent]


@needs_certificate
def test_login_without_a_secret_needs_external_offered():
    with tls_capa_server(b"PLAIN SCRAM-SHA-256") as srv:
        c = tls_connect(srv)
        with pytest.raises(ValueError, match="does not offer it"):
            c.login("u")
        c.close()
    assert lines(srv) == [b"CAPA"]


@pytest.mark.parametrize("kwargs, match", [
    ({"password": "p", "mechanism": "EXTERNAL"}, "takes no password"),
    ({"token": "t", "mechanism": "external"}, "takes no password"),
    ({"mechanism": "PLAIN"}, "either a password or a token"),
    ({"mechanism": "XOAUTH2"}, "either a password or a token"),
])
def test_login_external_argument_errors_send_nothing(kwargs, match):
    with ScriptedServer([(None, GREETING)]) as srv:
        c = connect(srv)
        with pytest.raises(ValueError, match=match):
            c.login("u", **kwargs)
        c.close()
        srv.join()
    assert srv.received == b""


def test_auth_external_with_initial_response(mod):
    """auth() (CPython main's) can run EXTERNAL too: the authzid as the
    initial response, or an authobject answering the empty challenge."""
    with step_server((b"AUTH EXTERNAL " + b64(b"u"), b"+OK in\r\n")) as srv:
        c = connect(srv, mod)
        assert c.auth("EXTERNAL", initial_response="u") == b"+OK in"
        c.close()
    with step_server((b"AUTH EXTERNAL", b"+ \r\n"),
                     (b"", b"+OK in\r\n")) as srv:
        c = connect(srv, mod)
        assert c.auth("EXTERNAL", authobject=lambda ch: b"") == b"+OK in"
        c.close()
    assert not srv.mismatches


def test_sasl_client_external():
    sasl = _cpoplib.SASLClient("EXTERNAL", "u", "")
    assert sasl.mechanism == "EXTERNAL" and sasl.complete
    assert sasl.begin() == "AUTH EXTERNAL " + b64(b"u").decode()
    assert sasl.feed(b"+OK in") == ("done", None)


# --------------------------------------------------------------------------
# auth(): CPython main's semantics

MODULES = [cpoplib]
if hasattr(poplib.POP3, "auth"):
    MODULES.append(poplib)


@pytest.fixture(params=MODULES, ids=lambda m: m.__name__)
def mod(request):
    return request.param


def test_auth_signature():
    import inspect
    assert str(inspect.signature(cpoplib.POP3.auth)) == \
        "(self, /, mechanism, authobject=None, initial_response=None)"
    assert str(inspect.signature(cpoplib.POP3.login)) == (
        "(self, /, user, password=None, *, mechanism=None, token=None, "
        "allow_plaintext=False)")


def test_auth_mutually_exclusive(mod):
    with ScriptedServer([(None, GREETING)]) as srv:
        c = connect(srv, mod)
        with pytest.raises(ValueError, match="mutually exclusive"):
            c.auth("PLAIN", authobject=lambda c: b"", initial_response=b"x")
        c.close()
        srv.join()
    assert srv.received == b""


@pytest.mark.parametrize("initial, line", [
    (b"\x00u\x00p", b"AUTH PLAIN AHUAcA=="),
    ("\x00ü\x00p", b"AUTH PLAIN " + b64("\x00ü\x00p".encode())),
    (bytearray(b"abc"), b"AUTH PLAIN YWJj"),
    (b"", b"AUTH PLAIN"),             # f'...'.rstrip(): no "="
])
def test_auth_initial_response(mod, initial, line):
    with step_server((line, b"+OK fine\r\n")) as srv:
        c = connect(srv, mod)
        assert c.auth("PLAIN", initial_response=initial) == b"+OK fine"
        c.close()
    assert not srv.mismatches


def test_auth_initial_response_uses_encoding(mod):
    with step_server((b"AUTH X " + b64("é".encode("latin-1")),
                      b"+OK\r\n")) as srv:
        c = connect(srv, mod)
        c.encoding = "latin-1"
        assert c.auth("X", initial_response="é") == b"+OK"
        c.close()
    assert not srv.mismatches


def test_auth_bare_command(mod):
    with step_server((b"AUTH EXTERNAL", b"-ERR no\r\n")) as srv:
        c = connect(srv, mod)
        with pytest.raises(mod.error_proto) as info:
            c.auth("EXTERNAL")
        assert info.value.args == (b"-ERR no",)
        c.close()


def test_auth_challenge_loop(mod):
    seen = []

    def authobject(challenge):
        seen.append(challenge)
        return [b"first", "sécond", None, bytearray(b"4")][len(seen) - 1]

    with step_server((b"AUTH X", b"+ " + b64(b"one") + b"\r\n"),
                     (b64(b"first"), b"+ dHdv\r\n"),           # padded ok
                     (b64("sécond".encode()), b"+\r\n"),        # empty
                     (b"", b"+    YWI\r\n"),      # spaces, no padding
                     (b"NA==", b"+OK done\r\n")) as srv:
        c = connect(srv, mod)
        assert c.auth("X", authobject) == b"+OK done"
        c.close()
    assert not srv.mismatches
    assert seen == [b"one", b"two", b"", b"ab"]


def test_auth_cancel_with_star(mod):
    with step_server((b"AUTH X", b"+ " + b64(b"?") + b"\r\n"),
                     (b"*", b"-ERR cancelled\r\n")) as srv:
        c = connect(srv, mod)
        with pytest.raises(mod.error_proto) as info:
            c.auth("X", lambda ch: "*")
        assert info.value.args == (b"-ERR cancelled",)
        c.close()
    assert not srv.mismatches


def test_auth_cancel_answered_ok_is_returned(mod):
    with step_server((b"AUTH X", b"+ \r\n"), (b"*", b"+OK whatever\r\n")) \
            as srv:
        c = connect(srv, mod)
        assert c.auth("X", lambda ch: b"*") == b"+OK whatever"
        c.close()


def test_auth_failure_raises_error_proto(mod):
    with step_server((b"AUTH X", b"+ \r\n"),
                     (b"", b"-ERR [AUTH] bad\r\n")) as srv:
        c = connect(srv, mod)
        with pytest.raises(mod.error_proto) as info:
            c.auth("X", lambda ch: b"")
        assert info.value.args == (b"-ERR [AUTH] bad",)
        c.close()


def test_auth_undecodable_challenge_raises_binascii_error(mod):
    import binascii
    with step_server((b"AUTH X", b"+ A\r\n")) as srv:
        c = connect(srv, mod)
        with pytest.raises(binascii.Error):
            c.auth("X", lambda ch: b"")
        c.close()


def test_auth_authobject_exception_propagates(mod):
    class Boom(Exception):
        pass

    def authobject(ch):
        raise Boom(ch)

    with step_server((b"AUTH X", b"+ " + b64(b"c") + b"\r\n")) as srv:
        c = connect(srv, mod)
        with pytest.raises(Boom) as info:
            c.auth("X", authobject)
        assert info.value.args == (b"c",)
        c.close()


def test_auth_mechanism_is_formatted(mod):
    class Mech:
        def __format__(self, spec):
            return "CUSTOM"

    with step_server((b"AUTH CUSTOM", b"+OK\r\n")) as srv:
        c = connect(srv, mod)
        assert c.auth(Mech()) == b"+OK"
        c.close()


def test_auth_cram_md5_with_authobject_and_hooks(mod):
    """A hand-written CRAM-MD5 authobject; the exchange goes through the
    subclass's _putcmd/_getresp overrides, as in poplib."""
    chal = b"<1896.697170952@postoffice.reston.mci.net>"
    trace = []

    class Traced(mod.POP3):
        def _putcmd(self, line):
            trace.append(("put", line))
            return super()._putcmd(line)

        def _getresp(self):
            resp = super()._getresp()
            trace.append(("get", resp))
            return resp

    def cram(challenge):
        digest = hmac.new(b"tanstaaftanstaaf", challenge, "md5").hexdigest()
        return "tim " + digest

    with step_server((b"AUTH CRAM-MD5", b"+ " + b64(chal) + b"\r\n"),
                     (b64(b"tim b913a602c7eda7a495b4e6e7334d3890"),
                      b"+OK hi\r\n")) as srv:
        c = Traced(srv.host, srv.port, timeout=10)
        del trace[:]                                  # the greeting
        assert c.auth("CRAM-MD5", cram) == b"+OK hi"
        c.close()
    assert trace == [
        ("put", "AUTH CRAM-MD5"), ("get", b"+ " + b64(chal)),
        ("put", b64(b"tim b913a602c7eda7a495b4e6e7334d3890").decode()),
        ("get", b"+OK hi")]


def test_auth_debug_output(mod, capsys):
    with step_server((b"AUTH X", b"+ \r\n"), (b"", b"+OK\r\n")) as srv:
        c = connect(srv, mod)
        c.set_debuglevel(1)
        c.auth("X", lambda ch: None)
        c.set_debuglevel(0)
        c.close()
    out = capsys.readouterr().out
    assert "*cmd* 'AUTH X'" in out and "*cmd* ''" in out


@pytest.mark.skipif(not hasattr(poplib.POP3, "auth"),
                    reason="this interpreter's poplib has no auth()")
@pytest.mark.parametrize("script, call", [
    ([(b"AUTH X", b"+ YQ\r\n"), (b"Yg==", b"+OK\r\n")],
     lambda c: c.auth("X", lambda ch: ch + b"b" if ch == b"a" else b"?")),
    ([(b"AUTH X", b"+ \r\n"), (b"*", b"-ERR c\r\n")],
     lambda c: c.auth("X", lambda ch: b"*")),
    ([(b"AUTH X", b"+ A\r\n")], lambda c: c.auth("X", lambda ch: b"")),
    ([(b"AUTH X eA==", b"+OK\r\n")], lambda c: c.auth("X", None, "x")),
])
def test_auth_differential(script, call):
    outcomes = []
    for module in (poplib, cpoplib):
        with step_server(*script) as srv:
            c = connect(srv, module)
            try:
                outcomes.append(("ok", call(c)))
            except Exception as exc:
                outcomes.append((type(exc).__name__, exc.args))
            c.close()
            srv.join()
            outcomes.append(srv.received)
    assert outcomes[:2] == outcomes[2:]
