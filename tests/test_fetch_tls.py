"""`cpoplib fetch`'s TLS, certificate and login settings (issue 21, part
A), against real Dovecot servers with their real TLS and certificates
(tests/dovecot_server.py):

* --fingerprint: a match fetches although the certificate is for another
  name than the one connected to (the pin replaces the CA and host name
  checks); a mismatch stops with exit 2 and nothing sent over TLS, with
  --ssl and with --starttls (the audit events of every line put on the
  wire); several pins; --also-verify-ca keeps the CA check too;
* --tls-host: connected to 127.0.0.1, the certificate (for localhost) is
  verified for the name given, which is also the SNI the server sees
  (a scripted TLS server records it);
* --cert/--key and SASL EXTERNAL: a Dovecot that requires client
  certificates (client_certs=True) lets the fetcher in with no password;
  without a certificate, or with one from a foreign CA, it refuses;
* --tofu: first contact recorded (and printed) before the login, the same
  certificate accepted, a renewed one (the running Dovecot given a new
  certificate) refused with both fingerprints and the --tofu-accept that
  takes it;
* --serverinfo: what is printed, nothing written;
* --password-keyring: the keyring package with a file backend, the
  password stored by `keyring set`, as the documentation says;
* the settings: types, formats, exclusive groups, one-line errors.

The fetcher runs in-process (cli.main), or as `python -m cpoplib fetch`
where the keyring backend is chosen by environment.
"""
import json
import os
import ssl
import subprocess
import sys
import textwrap

import pytest

from scripted_server import CAFILE, CERTFILE, ScriptedServer, \
    server_tls_context
from fetch_helpers import keyed, maildir_files, message, pop3_handler

from cpoplib.fetch import cli, errors, state as fetch_state, tls
from cpoplib.fetch.serverinfo import certificate_fields

pytestmark = pytest.mark.usefixtures("isolated_home")


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err, captured.out


def one_error_line(err):
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(
        "cpoplib fetch: error: "), err
    return err


def ssl_args(srv, *more, user="carol", host="127.0.0.1", port=None):
    """Implicit TLS to srv as `user`, the password from CPOPLIB_TEST_PW."""
    return ["--host", host, "--port", port or srv.pop3s_port, "--ssl",
            "--user", user, "--password-env", "CPOPLIB_TEST_PW",
            "--no-netrc", "--timeout", 30, *more]


def starttls_args(srv, *more, user="carol", host="127.0.0.1"):
    return ["--host", host, "--port", srv.pop3_port, "--starttls",
            "--user", user, "--password-env", "CPOPLIB_TEST_PW",
            "--no-netrc", "--timeout", 30, *more]


def pin_of(srv):
    return tls.fingerprint(srv.server_certificate())


OTHER_PIN = "SHA256:" + ":".join(["5A"] * 32)


# every line a connection puts on the wire (the poplib.putline audit
# event, which cpoplib raises as poplib does), while recording
_LINES = []
_ON = []


def _audit(event, args):
    if _ON and event == "poplib.putline":
        _LINES.append(bytes(args[1]))


@pytest.fixture
def wire():
    """The command lines sent while the test runs."""
    if not getattr(sys, "_cpoplib_tls_test_hook", False):
        sys.addaudithook(_audit)             # one per process, for good
        sys._cpoplib_tls_test_hook = True
    del _LINES[:]
    _ON.append(True)
    yield _LINES
    _ON.pop()


# --------------------------------------------------------------------------
# --fingerprint

def test_fingerprint_formats():
    fp = "SHA256:" + ":".join("%02X" % i for i in range(32))
    bare = "".join("%02x" % i for i in range(32))
    for text in (fp, fp.lower(), bare, "sha-256:" + bare, " %s " % fp,
                 "SHA256:" + bare):
        assert tls.parse_fingerprint(text) == fp
    for bad, words in ((bare[:-2], "not"), ("SHA1:" + bare[:40], "SHA1"),
                       (bare[:40], "SHA-1"), (fp[:-1], "not"),
                       ("SHA256:" + "A" * 43, "base64"),
                       ("SHA256:" + ":".join([bare[:4]] * 16), "not"),
                       ("MD5:00", "MD5"), ("", "not")):
        with pytest.raises(ValueError, match=words):
            tls.parse_fingerprint(bad)


def test_fingerprint_match_replaces_the_ca_check(server, carol, carol_pw,
                                                 tmp_path, capsys):
    """Connected to 127.0.0.1, a certificate for localhost from a CA the
    system does not know: the pin alone lets the fetcher in."""
    added = carol("pin", 2)
    md = tmp_path / "M"
    code, err, _ = run(ssl_args(server, "--fingerprint", pin_of(server),
                                "--maildir", md), capsys)
    assert code == 0, err
    assert keyed(maildir_files(md)) == added
    # without the pin the same connection fails verification
    code, err, _ = run(ssl_args(server, "--dry-run"), capsys)
    assert code == errors.EXIT_CONNECT
    assert "certificate verification failed" in one_error_line(err)


def test_fingerprint_mismatch_sends_nothing(server, carol, carol_pw,
                                            tmp_path, capsys, wire):
    carol("pin-no", 1)
    md = tmp_path / "M"
    code, err, _ = run(ssl_args(server, "--fingerprint", OTHER_PIN,
                                "--maildir", md), capsys)
    assert code == errors.EXIT_CONNECT
    one_error_line(err)
    assert "not the pinned one (--fingerprint): it is %s; pinned: %s" % (
        pin_of(server), OTHER_PIN) in err
    assert wire == []                   # not even CAPA
    assert maildir_files(md) == []


def test_fingerprint_mismatch_after_stls_sends_nothing_more(
        server, carol, carol_pw, tmp_path, capsys, wire):
    """STARTTLS: CAPA and STLS go out in the clear (they must), nothing
    after the handshake with the wrong certificate."""
    carol("pin-stls", 1)
    code, err, _ = run(starttls_args(server, "--fingerprint", OTHER_PIN,
                                     "--dry-run"), capsys)
    assert code == errors.EXIT_CONNECT
    assert "not the pinned one" in one_error_line(err)
    assert wire == [b"CAPA", b"STLS"]
    del wire[:]
    code, err, _ = run(starttls_args(server, "--fingerprint", pin_of(server),
                                     "--dry-run"), capsys)
    assert code == 0, err
    assert wire[:3] == [b"CAPA", b"STLS", b"CAPA"]    # then the login
    assert any(line.startswith(b"AUTH ") for line in wire)


def test_several_fingerprints(server, carol, carol_pw, tmp_path, capsys):
    carol("pins", 1)
    code, err, _ = run(ssl_args(server, "--fingerprint", OTHER_PIN,
                                "--fingerprint", pin_of(server),
                                "--dry-run"), capsys)
    assert code == 0, err
    config = tmp_path / "fetch.toml"
    config.write_text(textwrap.dedent("""\
        [accounts.a]
        host = "127.0.0.1"
        port = %d
        ssl = true
        user = "carol"
        password_env = "CPOPLIB_TEST_PW"
        fingerprint = ["%s", "%s"]
        dry_run = true
        """) % (server.pop3s_port, OTHER_PIN, pin_of(server).lower()))
    code, err, _ = run(["--config", config], capsys)
    assert code == 0, err
    config.write_text(config.read_text().replace(
        '["%s", "%s"]' % (OTHER_PIN, pin_of(server).lower()),
        '"%s"' % OTHER_PIN))
    code, err, _ = run(["--config", config], capsys)
    assert code == errors.EXIT_CONNECT and "not the pinned one" in err


def test_also_verify_ca_keeps_the_ca_and_name_checks(server, carol, carol_pw,
                                                    capsys):
    carol("both", 1)
    pin = pin_of(server)
    # the pin matches, but 127.0.0.1 is not the certificate's name
    code, err, _ = run(ssl_args(server, "--fingerprint", pin,
                                "--also-verify-ca", "--cafile",
                                server.ca_file, "--dry-run"), capsys)
    assert code == errors.EXIT_CONNECT
    assert "IP address mismatch" in one_error_line(err)
    code, err, _ = run(ssl_args(server, "--fingerprint", pin,
                                "--also-verify-ca", "--cafile",
                                server.ca_file, "--tls-host", "localhost",
                                "--dry-run"), capsys)
    assert code == 0, err
    # a CA that did not sign it: refused although the pin matches
    code, err, _ = run(ssl_args(server, "--fingerprint", pin,
                                "--also-verify-ca", "--cafile", CAFILE,
                                "--tls-host", "localhost", "--dry-run"),
                       capsys)
    assert code == errors.EXIT_CONNECT
    assert "certificate verification failed" in err


# --------------------------------------------------------------------------
# --tls-host

def test_tls_host_is_the_name_verified(server, carol, carol_pw, capsys):
    carol("name", 1)
    base = ["--cafile", server.ca_file, "--dry-run"]
    code, err, _ = run(ssl_args(server, *base), capsys)
    assert code == errors.EXIT_CONNECT and "127.0.0.1" in err
    code, err, _ = run(ssl_args(server, *base, "--tls-host", "localhost"),
                       capsys)
    assert code == 0, err
    code, err, _ = run(ssl_args(server, *base, "--tls-host",
                                "mail.example.org"), capsys)
    assert code == errors.EXIT_CONNECT
    assert "Hostname mismatch" in one_error_line(err)
    code, err, _ = run(starttls_args(server, *base, "--tls-host",
                                     "localhost"), capsys)
    assert code == 0, err


def test_tls_host_is_the_sni_sent(tmp_path, capsys, monkeypatch):
    """The server sees --tls-host in the ClientHello, not --host."""
    if CERTFILE is None:
        pytest.skip("no test certificate")
    monkeypatch.setenv("CPOPLIB_TEST_PW", "pw")
    names = []
    mailbox = pop3_handler([message(1)])

    def handler(conn):
        ctx = server_tls_context()
        ctx.sni_callback = lambda sock, name, context: names.append(name)
        conn.sock = ctx.wrap_socket(conn.sock, server_side=True)
        mailbox(conn)

    with ScriptedServer(handler) as srv:
        code, err, _ = run(["--host", srv.host, "--port", srv.port, "--ssl",
                            "--user", "u", "--password-env",
                            "CPOPLIB_TEST_PW", "--cafile", CAFILE,
                            "--tls-host", "localhost", "--dry-run",
                            "--timeout", 10], capsys)
    assert code == 0, err
    assert names == ["localhost"]


# --------------------------------------------------------------------------
# a client certificate and SASL EXTERNAL

@pytest.fixture(scope="module")
def cert_server(dovecot):
    """A Dovecot that asks for client certificates, requires a valid one
    for every login and offers EXTERNAL (client_certs=True)."""
    with dovecot(large_size=4096, client_certs=True) as srv:
        yield srv


def logins(srv, user):
    """The login methods Dovecot logged for user, in order."""
    import re
    # the whole log (srv.log() is its tail, for error messages); Dovecot
    # 2.3 says "Login: user=<...>", 2.4 "Logged in: user=<...>"
    with open(srv.path("dovecot.log"), "rb") as f:
        text = f.read().decode(errors="replace")
    return re.findall(r"(?:Login|Logged in): user=<%s>, method=([A-Z0-9-]+)"
                      % re.escape(user), text)


def test_client_certificate_logs_in_with_external(cert_server, tmp_path,
                                                  capsys, monkeypatch):
    monkeypatch.delenv("CPOPLIB_TEST_PW", raising=False)
    cert, key = cert_server.issue_client_certificate("alice")
    md = tmp_path / "M"
    before = len(logins(cert_server, "alice"))
    argv = ["--host", "localhost", "--port", cert_server.pop3s_port, "--ssl",
            "--cafile", cert_server.ca_file, "--user", "alice", "--no-netrc",
            "--cert", cert, "--key", key, "--maildir", md]
    code, err, _ = run(argv, capsys)          # no password anywhere
    assert code == 0, err
    assert len(maildir_files(md)) == len(cert_server.expected["alice"])
    assert logins(cert_server, "alice")[before:] == ["EXTERNAL"]
    # named, over STARTTLS, with the key in the certificate's file
    both = tmp_path / "both.pem"
    both.write_bytes(open(cert, "rb").read() + open(key, "rb").read())
    argv = ["--host", "localhost", "--port", cert_server.pop3_port,
            "--starttls", "--cafile", cert_server.ca_file, "--user",
            "alice", "--no-netrc", "--cert", both, "--auth", "EXTERNAL",
            "--dry-run"]
    code, err, _ = run(argv, capsys)
    assert code == 0, err
    assert logins(cert_server, "alice")[before:] == ["EXTERNAL"] * 2


def test_client_certificate_is_what_the_server_requires(cert_server,
                                                        capsys, monkeypatch):
    """Without a certificate, or with one of a CA Dovecot does not trust,
    even the right password is refused; with one, the password logs in
    (a password is used when there is one)."""
    monkeypatch.setenv("CPOPLIB_TEST_PW", cert_server.users["alice"])
    base = ["--host", "localhost", "--port", cert_server.pop3s_port,
            "--ssl", "--cafile", cert_server.ca_file, "--user", "alice",
            "--no-netrc", "--dry-run"]
    code, err, _ = run(base + ["--password-env", "CPOPLIB_TEST_PW"], capsys)
    assert code == errors.EXIT_AUTH
    assert "valid SSL certificate" in one_error_line(err)
    foreign = cert_server.issue_client_certificate("alice", foreign=True)
    code, err, _ = run(base + ["--cert", foreign[0], "--key", foreign[1]],
                       capsys)
    assert code == errors.EXIT_AUTH, err
    cert, key = cert_server.issue_client_certificate("alice")
    before = len(logins(cert_server, "alice"))
    code, err, _ = run(base + ["--cert", cert, "--key", key,
                               "--password-env", "CPOPLIB_TEST_PW"], capsys)
    assert code == 0, err
    assert logins(cert_server, "alice")[before:] == ["SCRAM-SHA-256"]


def test_certificate_of_another_user_is_refused(cert_server, capsys):
    cert, key = cert_server.issue_client_certificate("bob")
    code, err, _ = run(["--host", "localhost", "--port",
                        cert_server.pop3s_port, "--ssl", "--cafile",
                        cert_server.ca_file, "--user", "alice", "--no-netrc",
                        "--cert", cert, "--key", key, "--dry-run"], capsys)
    assert code == errors.EXIT_AUTH
    one_error_line(err)


def test_certificate_without_external_offered(server, cert_server, capsys,
                                              monkeypatch):
    """A server without EXTERNAL and no password: a clear refusal, no
    prompt, no password sent."""
    monkeypatch.delenv("CPOPLIB_TEST_PW", raising=False)
    cert, key = cert_server.issue_client_certificate("carol")
    code, err, _ = run(["--host", "localhost", "--port", server.pop3s_port,
                        "--ssl", "--cafile", server.ca_file, "--user",
                        "carol", "--no-netrc", "--cert", cert, "--key", key,
                        "--dry-run"], capsys)
    assert code == errors.EXIT_AUTH
    assert "does not offer SASL EXTERNAL" in one_error_line(err)


@pytest.mark.parametrize("more, words", [
    (["--key", "k.pem"], "--key is the key of --cert"),
    (["--auth", "EXTERNAL"], "--auth EXTERNAL needs --cert"),
    (["--cert", "missing.pem"], "--cert missing.pem: No such file"),
    (["--cert", "CERT", "--auth", "EXTERNAL", "--password-env", "X"],
     "--auth EXTERNAL takes no password (--password-env)"),
])
def test_client_certificate_usage_errors(cert_server, tmp_path, capsys,
                                         monkeypatch, more, words):
    monkeypatch.chdir(tmp_path)
    cert, _ = cert_server.issue_client_certificate("alice")
    more = [cert if m == "CERT" else m for m in more]
    code, err, _ = run(["--host", "localhost", "--ssl", "--user", "alice",
                        "--dry-run", *more], capsys)
    assert code == errors.EXIT_USAGE
    assert words in one_error_line(err)


def test_a_named_mechanism_with_a_certificate_and_no_password(
        cert_server, capsys, monkeypatch):
    """--auth PLAIN with a client certificate and no password: a usage
    error before anything connects (login() could only refuse it), not a
    failed login."""
    monkeypatch.delenv("CPOPLIB_TEST_PW", raising=False)
    cert, key = cert_server.issue_client_certificate("alice")
    code, err, _ = run(["--host", "127.0.0.1", "--port", "1", "--ssl",
                        "--user", "alice", "--no-netrc", "--cert", cert,
                        "--key", key, "--auth", "PLAIN", "--dry-run"],
                       capsys)
    assert code == errors.EXIT_USAGE
    assert "--auth PLAIN needs a password" in one_error_line(err)


def test_certificate_and_key_that_do_not_match(cert_server, capsys):
    cert, _ = cert_server.issue_client_certificate("alice")
    _, key = cert_server.issue_client_certificate("bob")
    code, err, _ = run(["--host", "localhost", "--ssl", "--user", "alice",
                        "--cert", cert, "--key", key, "--dry-run"], capsys)
    assert code == errors.EXIT_USAGE
    assert "--cert %s --key %s" % (cert, key) in one_error_line(err)


# --------------------------------------------------------------------------
# --tofu

@pytest.fixture(scope="module")
def renewing(dovecot):
    """A Dovecot whose certificate the tests replace (the session's is
    shared)."""
    with dovecot(large_size=4096) as srv:
        yield srv


def tofu_record(path):
    return fetch_state.State.load(str(path), "a").tofu


def test_tofu_first_same_changed_accepted(renewing, tmp_path, capsys,
                                          monkeypatch, wire):
    monkeypatch.setenv("CPOPLIB_TEST_PW", renewing.users["bob"])
    state = tmp_path / "state"
    md = tmp_path / "M"
    argv = ssl_args(renewing, "--tofu", "--state", state, "--maildir", md,
                    user="bob")
    first = pin_of(renewing)
    # first contact: trusted, printed, recorded before the login
    code, err, _ = run(argv, capsys)
    assert code == 0, err
    assert ("bob@127.0.0.1: trusting the certificate of 127.0.0.1:%d on "
            "first use (--tofu): %s; recorded in the account's state"
            % (renewing.pop3s_port, first)) in err
    assert tofu_record(state) == first
    assert len(maildir_files(md)) == 3
    # the same certificate: nothing said
    code, err, _ = run(argv, capsys)
    assert code == 0 and "trusting" not in err, err
    # a renewed certificate: refused, nothing sent, the record kept
    second = tls.fingerprint(renewing.replace_server_certificate())
    assert second != first
    del wire[:]
    code, err, _ = run(argv, capsys)
    assert code == errors.EXIT_CONNECT
    assert one_error_line(err) == (
        "cpoplib fetch: error: 127.0.0.1:%d: the server's certificate "
        "changed since it was first trusted (--tofu): recorded %s, now %s; "
        "if you expected that (a renewal), accept the new one with "
        "--tofu-accept %s\n" % (renewing.pop3s_port, first, second, second))
    assert wire == []
    assert tofu_record(state) == first
    # --tofu-accept of another certificate: still refused
    code, err, _ = run(argv + ["--tofu-accept", OTHER_PIN], capsys)
    assert code == errors.EXIT_CONNECT and "changed since" in err
    assert tofu_record(state) == first
    # the one the message named: accepted, recorded
    code, err, _ = run(argv + ["--tofu-accept", second], capsys)
    assert code == 0, err
    assert "trusting the new certificate of 127.0.0.1:%d (--tofu-accept): " \
        "%s in place of %s" % (renewing.pop3s_port, second, first) in err
    assert tofu_record(state) == second
    code, err, _ = run(argv, capsys)
    assert code == 0 and "trusting" not in err, err


def test_tofu_records_before_the_login(renewing, tmp_path, capsys,
                                       monkeypatch):
    """The certificate is trusted (and recorded) whatever the login
    gives; --dry-run records nothing."""
    monkeypatch.setenv("CPOPLIB_TEST_PW", "wrong")
    state = tmp_path / "state"
    code, err, _ = run(ssl_args(renewing, "--tofu", "--state", state,
                                "--maildir", tmp_path / "M", user="bob"),
                       capsys)
    assert code == errors.EXIT_AUTH, err
    assert tofu_record(state) == pin_of(renewing)
    monkeypatch.setenv("CPOPLIB_TEST_PW", renewing.users["bob"])
    dry = tmp_path / "dry"
    code, err, _ = run(ssl_args(renewing, "--tofu", "--state", dry,
                                "--dry-run", user="bob"), capsys)
    assert code == 0, err
    assert "on first use" in err and "not recorded" in err
    assert not dry.exists()


def test_tofu_over_starttls(renewing, tmp_path, capsys, monkeypatch, wire):
    monkeypatch.setenv("CPOPLIB_TEST_PW", renewing.users["bob"])
    state = tmp_path / "state"
    argv = starttls_args(renewing, "--tofu", "--state", state, "--maildir",
                         tmp_path / "M", user="bob")
    code, err, _ = run(argv, capsys)
    assert code == 0 and "on first use" in err, err
    # a state that trusts another certificate
    s = fetch_state.State.load(str(state), "a")
    s.open()
    s.set_tofu(OTHER_PIN)
    s.close()
    del wire[:]
    code, err, _ = run(argv, capsys)
    assert code == errors.EXIT_CONNECT and "changed since" in err
    assert wire == [b"CAPA", b"STLS"]


# --------------------------------------------------------------------------
# the state's "tofu" record: a journal record like the others

def test_tofu_record_in_the_journal(tmp_path):
    path = tmp_path / "state.json"
    s = fetch_state.State.load(str(path), "a")
    s.open()
    s.record_batch([b"u1"], [])
    s.set_tofu(OTHER_PIN)
    s.close()
    lines = path.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[-1].rsplit(b"\t", 1)[0]) == {"tofu": OTHER_PIN}
    again = fetch_state.State.load(str(path), "a")
    assert again.tofu == OTHER_PIN and set(again.delivered) == {b"u1"}
    # a snapshot keeps it
    again._rewrite()
    assert b'"tofu"' in path.read_bytes().splitlines()[0]
    assert fetch_state.State.load(str(path), "a").tofu == OTHER_PIN


def test_torn_tofu_record_is_the_uncommitted_one(tmp_path):
    path = tmp_path / "state.json"
    s = fetch_state.State.load(str(path), "a")
    s.open()
    s.record_batch([b"u1"], [])
    s.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"tofu":"SHA256:5A:5A')    # cut short
    s = fetch_state.State.load(str(path), "a")
    assert s.tofu is None
    s.open()
    assert path.read_bytes() == whole
    s.close()


def test_a_tofu_record_that_is_no_fingerprint_is_damage(tmp_path):
    path = tmp_path / "state.json"
    s = fetch_state.State.load(str(path), "a")
    s.open()
    s._append({"tofu": 5})
    s.record_batch([b"u1"], [])
    s.close()
    with pytest.raises(errors.FetchError, match="damaged"):
        fetch_state.State.load(str(path), "a")


def test_states_without_tofu_stay_readable(tmp_path):
    """A journal of before (no "tofu" record) and the JSON state of
    version 1 load as before, with nothing trusted yet."""
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"version": 1, "uidls": ["a"]}))
    assert fetch_state.State.load(str(path), "a").tofu is None
    path = tmp_path / "journal"
    record = {"cpoplib-state": 2, "account": "a", "add": [[1, ["x"]]],
              "pending": []}
    path.write_bytes(fetch_state._line(record))
    s = fetch_state.State.load(str(path), "a")
    assert s.tofu is None and s.delivered == {b"x": 1}


# --------------------------------------------------------------------------
# --serverinfo

def test_serverinfo_against_dovecot(server, carol_pw, tmp_path, capsys):
    home_state = tmp_path / "state"              # XDG_STATE_HOME
    code, err, out = run(ssl_args(server, "--serverinfo", "--cafile",
                                  server.ca_file, "--tls-host", "localhost"),
                         capsys)
    assert code == 0, err
    fields = certificate_fields(server.server_certificate())
    lines = out.splitlines()
    assert lines[0] == "server      127.0.0.1:%d (TLS name localhost)" % (
        server.pop3s_port)
    assert lines[1].startswith("greeting    +OK cpoplib test server ready.")
    assert lines[2].startswith("TLS         TLSv1.")
    assert "implicit (POP3S)" in lines[2]
    assert lines[3] == ("certificate chain verified (--cafile %s) for the "
                        "name localhost" % server.ca_file)
    assert "  subject   O=cpoplib tests, CN=localhost" in lines
    assert "  issuer    O=cpoplib tests, CN=cpoplib test CA" in lines
    assert "  names     DNS:localhost" in lines
    assert "  SHA-256   %s" % pin_of(server) in lines
    assert "  SHA-1     %s" % tls.fingerprint(server.server_certificate(),
                                              "sha1") in lines
    assert any(x.startswith("  valid     %s" % fields["not_before"]
                            .strftime("%Y-%m-%d")) for x in lines)
    assert ("APOP        offered" if server.apop_available
            else "APOP        not offered") in out
    before = out.split("capabilities before login:\n")[1]
    before = before.split("\nlogin ")[0]
    for name, meaning in (("UIDL", "unique message ids"),
                          ("PIPELINING", "without waiting for replies"),
                          ("RESP-CODES", "[IN-USE]"),
                          ("AUTH-RESP-CODE", "[AUTH]"), ("TOP", "TOP:"),
                          ("USER", "USER/PASS"), ("SASL", "RFC 5034")):
        assert any(x.startswith("  " + name + " ") and meaning in x
                   for x in before.splitlines()), (name, before)
    assert "    SCRAM-SHA-256        password, never sent" in before
    assert "login       as carol: logged in" in lines
    # Dovecot no longer lists USER and SASL once logged in
    after = out.split("capabilities after login:\n")[1]
    assert "  (gone after login: SASL, USER)" in after
    assert "SASL" not in after.split("(gone")[0]
    assert not home_state.exists()        # nothing written


def test_serverinfo_without_credentials_and_over_starttls(server, tmp_path,
                                                          capsys,
                                                          monkeypatch):
    monkeypatch.delenv("CPOPLIB_TEST_PW", raising=False)
    code, err, out = run(["--host", "127.0.0.1", "--port", server.pop3_port,
                          "--starttls", "--fingerprint", pin_of(server),
                          "--no-netrc", "--serverinfo"], capsys)
    assert code == 0, err
    assert ", after STLS" in out
    assert "pinned: one of the --fingerprint values" in out
    assert "login       not tried" in out
    code, err, out = run(["--host", "127.0.0.1", "--port", server.pop3_port,
                          "--no-netrc", "--serverinfo"], capsys)
    assert code == 0, err
    assert "TLS         none: plain POP3" in out
    assert any(x.startswith("  STLS ") and "STARTTLS" in x
               for x in out.splitlines())


def test_serverinfo_keeps_the_pins_and_writes_nothing(renewing, tmp_path,
                                                      capsys, monkeypatch,
                                                      wire):
    monkeypatch.setenv("CPOPLIB_TEST_PW", renewing.users["bob"])
    state = tmp_path / "state"
    code, err, out = run(ssl_args(renewing, "--tofu", "--state", state,
                                  "--serverinfo", user="bob"), capsys)
    assert code == 0, err
    assert "on first use" in err and "not recorded" in err
    assert "first contact: trusted, not recorded" in out
    assert not state.exists()
    del wire[:]
    code, err, out = run(ssl_args(renewing, "--fingerprint", OTHER_PIN,
                                  "--serverinfo", user="bob"), capsys)
    assert code == errors.EXIT_CONNECT and "not the pinned one" in err
    assert wire == [] and out == ""


def test_certificate_fields_agree_with_the_ssl_module(server):
    ctx = ssl.create_default_context(cafile=server.ca_file)
    with ctx.wrap_socket(__import__("socket").create_connection(
            (server.host, server.pop3s_port), timeout=10),
            server_hostname="localhost") as sock:
        seen = sock.getpeercert()
        der = sock.getpeercert(binary_form=True)
    f = certificate_fields(der)
    assert f["subject"] == ", ".join("%s=%s" % rdn[0] for rdn in
                                     seen["subject"]).replace(
        "organizationName", "O").replace("commonName", "CN")
    assert f["issuer"] == ", ".join("%s=%s" % rdn[0] for rdn in
                                    seen["issuer"]).replace(
        "organizationName", "O").replace("commonName", "CN")
    assert f["not_before"].timestamp() == ssl.cert_time_to_seconds(
        seen["notBefore"])
    assert f["not_after"].timestamp() == ssl.cert_time_to_seconds(
        seen["notAfter"])
    assert f["names"] == ["%s:%s" % (k, v) for k, v in
                          seen["subjectAltName"]]
    # as numbers: the random serial may start with a zero digit, which
    # either side may print
    assert int(f["serial"], 16) == int(seen["serialNumber"], 16)


def test_serverinfo_against_another_server(tmp_path, capsys):
    """Twisted's POP3 server (tests/other_servers.py): no TLS, its own
    capabilities."""
    import other_servers
    try:
        srv = other_servers.SERVER_CLASSES["twisted"]()
    except other_servers.Unavailable as exc:
        if os.environ.get("CPOPLIB_REQUIRE_SERVERS", "") == "1":
            pytest.fail("%s (CPOPLIB_REQUIRE_SERVERS=1)" % exc)
        pytest.skip(str(exc))
    with srv:
        os.environ["CPOPLIB_TEST_PW"] = srv.users["alice"]
        try:
            code, err, out = run(["--host", srv.host, "--port", srv.port,
                                  "--user", srv.login_name("alice"),
                                  "--password-env", "CPOPLIB_TEST_PW",
                                  "--allow-plaintext", "--no-netrc",
                                  "--serverinfo"], capsys)
        finally:
            del os.environ["CPOPLIB_TEST_PW"]
    assert code == 0, err
    assert "TLS         none" in out
    assert "login       as alice: logged in" in out
    assert "capabilities before login:" in out
    assert "  UIDL " in out


# --------------------------------------------------------------------------
# --password-keyring

BACKEND = '''\
"""A keyring backend keeping its entries in the JSON file
$CPOPLIB_TEST_KEYRING (for tests/test_fetch_tls.py)."""
import json
import os

import keyring.backend
import keyring.errors


class FileKeyring(keyring.backend.KeyringBackend):
    priority = 1

    def _load(self):
        try:
            with open(os.environ["CPOPLIB_TEST_KEYRING"]) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def get_password(self, service, username):
        return self._load().get("%s\\0%s" % (service, username))

    def set_password(self, service, username, password):
        entries = self._load()
        entries["%s\\0%s" % (service, username)] = password
        with open(os.environ["CPOPLIB_TEST_KEYRING"], "w") as f:
            json.dump(entries, f)

    def delete_password(self, service, username):
        raise keyring.errors.PasswordDeleteError("not here")
'''


def keyring_env(tmp_path):
    pytest.importorskip("keyring")
    mod = tmp_path / "mod"
    mod.mkdir()
    (mod / "cpoplib_test_keyring.py").write_text(BACKEND)
    env = dict(os.environ, HOME=str(tmp_path / "home"),
               XDG_STATE_HOME=str(tmp_path / "xdg"),
               PYTHONPATH=os.pathsep.join(
                   [str(mod)] + os.environ.get("PYTHONPATH", "").split(
                       os.pathsep)),
               PYTHON_KEYRING_BACKEND="cpoplib_test_keyring.FileKeyring",
               CPOPLIB_TEST_KEYRING=str(tmp_path / "keyring.json"))
    env.pop("CPOPLIB_TEST_PW", None)
    env.pop("CPOPLIB_FETCH_FAULT", None)
    return env


def test_password_from_the_keyring(server, carol, tmp_path):
    """`keyring set cpoplib carol@localhost`, as docs/fetcher/tls.rst
    says, then --password-keyring."""
    added = carol("kr", 2)
    env = keyring_env(tmp_path)
    argv = [sys.executable, "-m", "cpoplib", "fetch", "--host", "localhost",
            "--port", str(server.pop3_port), "--user", "carol",
            "--password-keyring", "--no-netrc", "--timeout", "30",
            "--maildir", str(tmp_path / "M")]
    missing = subprocess.run(argv, env=env, capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == errors.EXIT_USAGE, missing.stderr
    assert one_error_line(missing.stderr) == (
        "cpoplib fetch: error: --password-keyring: no password in the "
        "keyring for service cpoplib, user carol@localhost: store it with "
        "`keyring set cpoplib carol@localhost`\n")
    stored = subprocess.run([sys.executable, "-m", "keyring", "set",
                             "cpoplib", "carol@localhost"], env=env,
                            input=server.users["carol"] + "\n",
                            capture_output=True, text=True, timeout=60)
    assert stored.returncode == 0, stored.stderr
    done = subprocess.run(argv, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert keyed(maildir_files(tmp_path / "M")) == added


def test_keyring_in_process(tmp_path, capsys, monkeypatch):
    keyring = pytest.importorskip("keyring")
    import keyring.backend

    class Memory(keyring.backend.KeyringBackend):
        priority = 1
        entries = {("cpoplib", "u@127.0.0.1"): "pw"}

        def get_password(self, service, user):
            return self.entries.get((service, user))

        def set_password(self, service, user, secret):
            raise NotImplementedError

        def delete_password(self, service, user):
            raise NotImplementedError

    class Broken(Memory):
        def get_password(self, service, user):
            raise RuntimeError("No recommended backend was available.\n"
                               "Install a backend")

    previous = keyring.get_keyring()
    msgs = [message(1)]
    try:
        keyring.set_keyring(Memory())
        with ScriptedServer(pop3_handler(msgs)) as srv:
            code, err, _ = run(["--host", srv.host, "--port", srv.port,
                                "--user", "u", "--password-keyring",
                                "--allow-plaintext", "--dry-run"], capsys)
        assert code == 0, err
        assert b"PASS pw\r\n" in srv.received
        keyring.set_keyring(Broken())
        code, err, _ = run(["--host", "127.0.0.1", "--user", "u",
                            "--password-keyring", "--dry-run"], capsys)
        assert code == errors.EXIT_USAGE
        assert ("--password-keyring: the OS keyring failed (RuntimeError: "
                "No recommended backend was available.)") in \
            one_error_line(err)
    finally:
        keyring.set_keyring(previous)


def test_keyring_without_the_package(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "keyring", None)     # ImportError
    code, err, _ = run(["--host", "127.0.0.1", "--user", "u",
                        "--password-keyring", "--dry-run"], capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == (
        "cpoplib fetch: error: --password-keyring needs the keyring package "
        "(pip install 'cpoplib[keyring]')\n")


# --------------------------------------------------------------------------
# the settings

PIN = "SHA256:" + ":".join(["AB"] * 32)


@pytest.mark.parametrize("argv, words", [
    (["--fingerprint", PIN], "--fingerprint is for TLS"),
    (["--tls-host", "x"], "--tls-host is for TLS"),
    (["--tofu"], "--tofu is for TLS"),
    (["--cert", "c.pem"], "--cert is for TLS"),
    (["--ssl", "--also-verify-ca"], "--also-verify-ca is for --fingerprint"),
    (["--ssl", "--tofu-accept", PIN], "--tofu-accept is for --tofu"),
    (["--ssl", "--fingerprint", PIN, "--cafile", "ca.pem"],
     "--cafile has no effect when a pin (--fingerprint)"),
    (["--ssl", "--tofu", "--cafile", "ca.pem"],
     "--cafile has no effect when a pin (--tofu)"),
    (["--ssl", "--fingerprint", PIN, "--insecure"],
     "--insecure and --fingerprint exclude each other"),
    (["--ssl", "--fingerprint", PIN, "--tofu"],
     "--fingerprint and --tofu exclude each other"),
    (["--password-keyring", "--password-env", "X"],
     "--password-env and --password-keyring exclude each other"),
    (["--ssl", "--fingerprint", "SHA1:" + "ab" * 20],
     "--fingerprint must be a SHA-256 fingerprint, not SHA1"),
    (["--ssl", "--tofu-accept", "xyz"], "--tofu-accept must be \"SHA256:\""),
])
def test_tls_setting_errors(capsys, argv, words):
    code, err, _ = run(["--host", "127.0.0.1", "--user", "u", "--dry-run",
                        *argv], capsys)
    assert code == errors.EXIT_USAGE
    assert words in one_error_line(err), err


@pytest.mark.parametrize("line, words", [
    ("fingerprint = 5", "fingerprint must be a string or an array of "
     "strings"),
    ("fingerprint = []", "fingerprint must not be an empty array"),
    ('fingerprint = ["%s", 5]' % PIN, "fingerprint must be a string or an "
     "array"),
    ('fingerprint = "abc"', 'fingerprint must be "SHA256:"'),
    ("tofu = \"yes\"", "tofu must be a boolean"),
    ('tofu_accept = "%s"' % PIN, "tofu_accept is for the command line "
     "only (--tofu-accept)"),
    ("serverinfo = true", "serverinfo is for the command line only"),
    ("password_keyring = 1", "password_keyring must be a boolean"),
])
def test_tls_settings_in_the_config(tmp_path, capsys, line, words):
    pytest.importorskip("tomllib" if sys.version_info >= (3, 11)
                        else "tomli")
    config = tmp_path / "fetch.toml"
    config.write_text('[accounts.a]\nhost = "127.0.0.1"\nssl = true\n'
                      'user = "u"\ndry_run = true\n%s\n' % line)
    code, err, _ = run(["--config", config], capsys)
    assert code == errors.EXIT_USAGE
    assert "%s: [accounts.a]: %s" % (config, words) in one_error_line(err)


def test_a_pin_on_the_command_line_overrides_insecure_in_the_file():
    from cpoplib.fetch import config
    merged = config.merge([{"insecure": True, "cafile": "x"},
                           {"fingerprint": (PIN,)}])
    assert merged["insecure"] is False and merged["fingerprint"] == (PIN,)
    assert merged["cafile"] == "x"              # not in the pin's group
    merged = config.merge([{"fingerprint": (PIN,)}, {"insecure": True}])
    assert merged["fingerprint"] is None and merged["cafile"] is None

