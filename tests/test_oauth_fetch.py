"""`cpoplib oauth` and `cpoplib fetch` with built-in OAuth 2.0, provider
profiles and autoconfiguration, end to end against local servers only:

* a Dovecot whose oauth2 passdb asks this process's introspection
  endpoint, and the local authorization server of tests/oauth_server.py
  registering every access token it issues there;
* the provider profiles (outlook, gmail, yahoo) pointed at those
  servers with host/port/cafile and the oauth_*_url overrides;
* the device flow (`cpoplib oauth --device` in a subprocess; the test
  reads the code from its output and approves it), the browser flow (a
  BROWSER script follows the redirect), then `cpoplib fetch`;
* a token expiring mid-run (Gmail's session loop against Dovecot: the
  second session's login is refused, the token refreshed), a token
  within a minute of expiry, a revoked refresh token (exit 3 and the
  message, the other account still fetched), no tokens at all;
* Gmail's session loop against a scripted server handing out N messages
  per session (QUIT after each, the bound);
* autoconfiguration from SRV records (_pop3s, _pop3 with STARTTLS) of a
  local DNS server, and from MX (`cpoplib oauth --email`);
* the profile rules: Outlook refuses a password, the app-password hint,
  iCloud refused with the reason; `fetch --help` imports no OAuth or DNS
  module.
"""
import json
import os
import socketserver
import ssl
import stat
import subprocess
import sys
import threading
import time

import pytest

from dns_server import LocalDNS
from oauth_server import AuthorizationServer, write_browser
from scripted_server import CAFILE, CERTFILE, KEYFILE

from cpoplib import oauth
from cpoplib.fetch import cli, oauth_setup

pytestmark = pytest.mark.usefixtures("isolated_home")

USER = "bob"            # three messages; nothing here deletes


@pytest.fixture(scope="module")
def server(dovecot_oauth):
    return dovecot_oauth


@pytest.fixture
def auth(server):
    with AuthorizationServer(server.oauth2_tokens, user=USER) as srv:
        yield srv


@pytest.fixture(autouse=True)
def fresh_run(monkeypatch):
    monkeypatch.delenv("CPOPLIB_DNS_SERVER", raising=False)
    with oauth_setup._sources_lock:
        oauth_setup._sources.clear()


def toml_value(v):
    return json.dumps(v) if not isinstance(v, bool) else str(v).lower()


def write_config(path, accounts):
    lines = []
    for name, table in accounts.items():
        lines.append("[accounts.%s]" % name)
        lines += ["%s = %s" % (k, toml_value(v)) for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def oauth_account(server, auth, tmp_path, provider="outlook", **more):
    table = {"provider": provider, "host": server.tls_hostname,
             "port": server.pop3s_port, "cafile": server.ca_file,
             "user": USER, "oauth_client_id": auth.client_id,
             "oauth_authorize_url": auth.authorize_url,
             "oauth_device_url": auth.device_url,
             "oauth_token_url": auth.token_url,
             "maildir": str(tmp_path / ("Mail-" + provider))}
    table.update(more)
    return table


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def maildir_count(path):
    return sum(len(os.listdir(os.path.join(path, d))) for d in ("new", "cur"))


def store_files(tmp_path):
    d = tmp_path / "state" / "cpoplib" / "oauth"
    return sorted(d.iterdir()) if d.exists() else []


def seed_tokens(auth, tmp_path, expires_in=3600, user=USER):
    """Tokens in the store as `cpoplib oauth` would have left them."""
    client = oauth.client(client_id=auth.client_id,
                          token_url=auth.token_url)
    store = oauth.FileStore(tmp_path / "state" / "cpoplib" / "oauth")
    key = oauth.token_key(user, auth.client_id, auth.token_url)
    source = oauth.TokenSource(client, store, key)
    data = auth.issue_tokens()
    data["expires_in"] = expires_in
    source.record(oauth.Tokens.from_response(data))
    return store, key


def cpoplib_process(*args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "cpoplib"] + [str(a) for a in args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env)


# --------------------------------------------------------------------------
# cpoplib oauth, then cpoplib fetch

def test_device_flow_then_fetch(server, auth, tmp_path, capsys):
    cfg = write_config(tmp_path / "f.toml",
                       {"work": oauth_account(server, auth, tmp_path)})
    proc = cpoplib_process("oauth", "--config", cfg, "work", "--device",
                           env=dict(os.environ))
    shown = []
    try:
        for line in proc.stderr:
            shown.append(line)
            if "enter the code" in line:
                auth.approve(line.split()[-1])
                break
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    shown.append(err)
    text = "".join(shown)
    assert proc.returncode == 0, text
    assert "work: To authorize, open %s/verify" % auth.base in text
    (path,) = store_files(tmp_path)
    assert "work: authorized; tokens stored in %s" % path in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    saved = json.loads(path.read_text())
    assert saved["access_token"] == auth.issued[-1]
    for secret in (saved["access_token"], saved["refresh_token"]):
        assert secret not in text + out
    asked = len(server.oauth2_requests)
    code, err = run(["--config", cfg], capsys)
    assert code == 0, err
    assert maildir_count(tmp_path / "Mail-outlook") == 3
    assert server.oauth2_requests[asked:] == [saved["access_token"]]
    assert saved["refresh_token"] not in err


def test_browser_flow_then_fetch(server, auth, tmp_path, capsys):
    cfg = write_config(tmp_path / "f.toml",
                       {"home": oauth_account(server, auth, tmp_path)})
    log = tmp_path / "browser.log"
    env = dict(os.environ,
               BROWSER=write_browser(str(tmp_path / "browser"),
                                     sys.executable, log))
    proc = cpoplib_process("oauth", "--config", cfg, "--browser", env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    (url,) = log.read_text().split()
    assert url.startswith(auth.authorize_url + "?")
    assert url in err                       # the URL is also printed
    assert "code_challenge_method=S256" in url
    (exchange,) = auth.grants("authorization_code")
    assert exchange[2]["redirect_uri"].startswith("http://127.0.0.1:")
    auth.access_length = 1500       # Microsoft-sized: AUTH in two steps
    auth.expire(auth.issued[-1])
    asked = len(server.oauth2_requests)
    code, err = run(["--config", cfg, "-v"], capsys)
    assert code == 0, err
    assert maildir_count(tmp_path / "Mail-outlook") == 3
    assert len(auth.issued[-1]) == 1500
    assert server.oauth2_requests[asked + 1:] == [auth.issued[-1]]


def test_gmail_device_flow_refused_without_override(server, auth, tmp_path,
                                                    capsys):
    table = oauth_account(server, auth, tmp_path, provider="gmail")
    del table["oauth_device_url"]
    cfg = write_config(tmp_path / "f.toml", {"g": table})
    from cpoplib.fetch import oauth_command

    assert oauth_command.main(["--config", str(cfg), "--device"]) == 1
    err = capsys.readouterr().err
    assert "cpoplib oauth: error: g: Google's device flow does not allow " \
           "the mail scope: use --browser" in err
    assert auth.requests == []


def test_oauth_mx_autoconfig(auth, tmp_path, capsys, monkeypatch):
    """MX -> Google: the Gmail profile and the google provider, here with
    the local authorization server's endpoints (no POP3 connection)."""
    from cpoplib.fetch import oauth_command

    with LocalDNS() as dns:
        dns.add("example.net", "MX", (5, "aspmx.l.google.com"))
        monkeypatch.setenv("CPOPLIB_DNS_SERVER", dns.spec)

        def approve_soon():
            for _ in range(200):
                if auth.devices:
                    auth.approve(next(iter(auth.devices.values()))[
                        "user_code"])
                    return
                time.sleep(0.02)

        t = threading.Thread(target=approve_soon)
        t.start()
        code = oauth_command.main([
            "--email", "bob@example.net", "--device",
            "--oauth-client-id", auth.client_id,
            "--oauth-device-url", auth.device_url,
            "--oauth-token-url", auth.token_url])
        t.join()
    err = capsys.readouterr().err
    assert code == 0, err
    assert ("cpoplib oauth: MX of example.net is aspmx.l.google.com: Gmail "
            "/ Google Workspace, pop.gmail.com:995 (TLS), user "
            "bob@example.net") in err
    (path,) = store_files(tmp_path)
    assert path.name.startswith("bob@example.net-")
    assert json.loads(path.read_text())["client_id"] == auth.client_id


# --------------------------------------------------------------------------
# refreshing

class OneUse(dict):
    """Introspection table in which a token is valid for one login: the
    token "expires" right after the first session used it."""

    def __init__(self, base):
        super().__init__(base)
        self.used = []

    def get(self, token, default=None):
        user = super().get(token, default)
        if user is not None and token not in self.used:
            self.used.append(token)
        elif token in self.used:
            return default
        return user


def test_token_expires_mid_run_and_is_refreshed(server, tmp_path, capsys):
    table = OneUse(server.oauth2_tokens)
    saved_table, server.oauth2.tokens = server.oauth2.tokens, table
    try:
        with AuthorizationServer(table, user=USER) as auth:
            store, key = seed_tokens(auth, tmp_path)
            first = auth.issued[-1]
            cfg = write_config(tmp_path / "f.toml", {
                "g": oauth_account(server, auth, tmp_path, provider="gmail")})
            asked = len(server.oauth2_requests)
            code, err = run(["--config", cfg, "-v"], capsys)
            assert code == 0, err
            second = auth.issued[-1]
            # session 1 with the first token; session 2 refused it, got a
            # new one and found nothing new: the loop ended
            assert server.oauth2_requests[asked:] == [first, first, second]
            assert len(auth.grants("refresh_token")) == 1
            assert "refused the access token: refreshing it" in err
            assert "session 1 brought 3 new messages: once more" in err
            assert store.load(key)["access_token"] == second
            assert maildir_count(tmp_path / "Mail-gmail") == 3
    finally:
        server.oauth2.tokens = saved_table


def test_token_within_a_minute_of_expiry(server, auth, tmp_path, capsys):
    store, key = seed_tokens(auth, tmp_path, expires_in=45)
    old = auth.issued[-1]
    cfg = write_config(tmp_path / "f.toml",
                       {"w": oauth_account(server, auth, tmp_path)})
    asked = len(server.oauth2_requests)
    code, err = run(["--config", cfg], capsys)
    assert code == 0, err
    assert old not in server.oauth2_requests[asked:]
    assert server.oauth2_requests[asked:] == [auth.issued[-1]]
    assert store.load(key)["access_token"] == auth.issued[-1]


def test_revoked_refresh_token(server, auth, tmp_path, capsys, monkeypatch):
    store, key = seed_tokens(auth, tmp_path, expires_in=10)
    refresh_token = store.load(key)["refresh_token"]
    auth.revoke()
    monkeypatch.setenv("BOB_PW", server.users[USER])
    cfg = write_config(tmp_path / "f.toml", {
        "work": oauth_account(server, auth, tmp_path),
        "plain": {"host": server.tls_hostname, "port": server.pop3s_port,
                  "ssl": True, "cafile": server.ca_file, "user": USER,
                  "password_env": "BOB_PW", "state": str(tmp_path / "p.json"),
                  "maildir": str(tmp_path / "Mail-plain")}})
    code, err = run(["--config", cfg], capsys)
    assert code == 3, err
    assert ("work: OAuth for bob: the authorization server refused the "
            "grant: the refresh token was revoked or has expired (or the "
            "code was already used) (token revoked): run `cpoplib oauth "
            "work` again") in err
    assert refresh_token not in err
    assert maildir_count(tmp_path / "Mail-plain") == 3      # the other one
    assert not (tmp_path / "Mail-outlook" / "new").exists() or \
        maildir_count(tmp_path / "Mail-outlook") == 0


def test_no_tokens_stored(server, auth, tmp_path, capsys):
    args = ["--provider", "outlook", "--host", server.tls_hostname,
            "--port", server.pop3s_port, "--cafile", server.ca_file,
            "--user", USER, "--oauth-client-id", auth.client_id,
            "--oauth-token-url", auth.token_url, "--dry-run"]
    code, err = run(args, capsys)
    assert code == 3
    assert "no OAuth tokens are stored for this account: run `cpoplib " \
           "oauth` with the same options again" in err


# --------------------------------------------------------------------------
# the profiles' rules

def test_outlook_refuses_a_password(capsys, tmp_path):
    code, err = run(["--provider", "outlook", "--user", "me@example.com",
                     "--password-env", "X", "--dry-run"], capsys)
    assert code == 1
    assert "Outlook.com / Microsoft 365 accepts only OAuth 2.0 for POP3" in err


def test_outlook_needs_a_client_id(capsys):
    code, err = run(["--provider", "outlook", "--user", "me@example.com",
                     "--dry-run"], capsys)
    assert code == 1
    assert "needs OAuth 2.0: set oauth_client_id" in err


def test_icloud_refused_with_the_reason(capsys, tmp_path):
    code, err = run(["--provider", "icloud", "--user", "a", "--dry-run"],
                    capsys)
    assert code == 1
    assert "iCloud Mail cannot be used: iCloud Mail has no POP3 service " \
           "(IMAP only)" in err
    code, err = run(["--email", "someone@icloud.com", "--dry-run"], capsys)
    assert code == 1 and "no POP3 service" in err


def test_app_password_hint(server, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PW", "not-the-password")
    code, err = run(["--provider", "yahoo", "--host", server.tls_hostname,
                     "--port", server.pop3s_port, "--cafile", server.ca_file,
                     "--user", USER, "--password-env", "PW", "--dry-run"],
                    capsys)
    assert code == 3
    assert "Yahoo Mail needs an app password" in err


def test_help_imports_no_oauth_or_dns():
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys; from cpoplib.fetch import cli\n"
         "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
         "bad = [m for m in sys.modules if m.startswith(('cpoplib.oauth', "
         "'cpoplib.autoconfig', 'dns', 'urllib.request', 'webbrowser', "
         "'http.server'))]\n"
         "print('IMPORTED', bad, file=sys.stderr)"],
        capture_output=True, text=True, timeout=60)
    assert "--oauth-client-id" in out.stdout
    assert "IMPORTED []" in out.stderr, out.stderr


# --------------------------------------------------------------------------
# Gmail's session loop against a server handing out N per session

class BatchPOP3(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """POP3S on 127.0.0.1 that, like Gmail, lists at most `batch` of the
    messages not yet downloaded and counts the ones retrieved as
    downloaded only when the session ends with QUIT."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, messages, batch):
        self.messages = messages
        self.batch = batch
        self.downloaded = set()
        self.sessions = []          # per session: (listed, ended with QUIT)
        self.users = []
        self.lock = threading.Lock()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(CERTFILE, KEYFILE)
        super().__init__(("127.0.0.1", 0), BatchHandler)


class BatchHandler(socketserver.StreamRequestHandler):
    def setup(self):
        self.request = self.server.ctx.wrap_socket(self.request,
                                                   server_side=True)
        super().setup()

    def send(self, text):
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self):
        srv = self.server
        with srv.lock:
            listed = [i for i in range(len(srv.messages))
                      if i not in srv.downloaded][:srv.batch]
        retrieved = set()
        self.send("+OK batch server")
        quit_ = False
        while True:
            line = self.rfile.readline().decode().strip()
            if not line:
                break
            cmd, _, arg = line.partition(" ")
            cmd = cmd.upper()
            if cmd == "CAPA":
                self.send("+OK\r\nUSER\r\nUIDL\r\n.")
            elif cmd in ("USER", "PASS"):
                if cmd == "USER":
                    srv.users.append(arg)
                self.send("+OK")
            elif cmd == "LIST":
                self.send("+OK\r\n" + "".join(
                    "%d %d\r\n" % (n, len(srv.messages[i]))
                    for n, i in enumerate(listed, 1)) + ".")
            elif cmd == "UIDL":
                self.send("+OK\r\n" + "".join(
                    "%d gm-%d\r\n" % (n, i)
                    for n, i in enumerate(listed, 1)) + ".")
            elif cmd == "RETR":
                i = listed[int(arg) - 1]
                retrieved.add(i)
                self.send("+OK\r\n" + srv.messages[i] + "\r\n.")
            elif cmd == "QUIT":
                with srv.lock:      # before the answer: the client may
                    srv.downloaded |= retrieved     # be done right after
                    srv.sessions.append((len(listed), True))
                quit_ = True
                self.send("+OK bye")
                break
            else:
                self.send("-ERR unknown")
        if not quit_:
            with srv.lock:
                srv.sessions.append((len(listed), False))


@pytest.fixture
def batch_server():
    msgs = ["Subject: m%d\r\nMessage-ID: <m%d@gm>\r\n\r\nbody %d" % (i, i, i)
            for i in range(7)]
    srv = BatchPOP3(msgs, batch=3)
    t = threading.Thread(target=srv.serve_forever,
                         kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def gmail_args(srv, tmp_path, *more):
    return ["--provider", "gmail", "--host", "localhost",
            "--port", srv.server_address[1], "--cafile", CAFILE,
            "--user", "me@gmail.com", "--password-env", "GM_PW",
            "--maildir", tmp_path / "Gmail", *more]


def test_gmail_session_loop(batch_server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GM_PW", "app-password")
    code, err = run(gmail_args(batch_server, tmp_path, "-v"), capsys)
    assert code == 0, err
    assert maildir_count(tmp_path / "Gmail") == 7
    # 3 + 3 + 1, then a session with nothing new; every one ended by QUIT
    assert batch_server.sessions == [(3, True), (3, True), (1, True),
                                     (0, True)]
    assert "7 messages" in err
    # the next run: one session, nothing new
    code, err = run(gmail_args(batch_server, tmp_path), capsys)
    assert code == 0 and batch_server.sessions[-1] == (0, True)
    assert len(batch_server.sessions) == 5


def test_gmail_session_loop_bound(batch_server, tmp_path, capsys,
                                  monkeypatch):
    monkeypatch.setenv("GM_PW", "app-password")
    code, err = run(gmail_args(batch_server, tmp_path, "--max-sessions", 2),
                    capsys)
    assert code == 0, err
    assert maildir_count(tmp_path / "Gmail") == 6
    assert len(batch_server.sessions) == 2
    assert "stopped after 2 sessions (max_sessions); Gmail / Google " \
           "Workspace may hold more: run again" in err


def test_gmail_recent_mode(batch_server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GM_PW", "app-password")
    code, err = run(gmail_args(batch_server, tmp_path, "--gmail-recent",
                               "--max-sessions", 1, "--dry-run"), capsys)
    assert code == 0, err
    assert batch_server.sessions == [(3, True)]
    assert batch_server.users == ["recent:me@gmail.com"]


# --------------------------------------------------------------------------
# autoconfiguration from SRV records

@pytest.mark.parametrize("service", ["_pop3s", "_pop3"])
def test_fetch_autoconfig_from_srv(server, service, tmp_path, capsys,
                                   monkeypatch):
    port = server.pop3s_port if service == "_pop3s" else server.pop3_port
    with LocalDNS() as dns:
        if service == "_pop3":
            dns.add("_pop3s._tcp.example.org", "SRV", (0, 0, 0, "."))
        dns.add("%s._tcp.example.org" % service, "SRV",
                (0, 1, port, server.tls_hostname))
        monkeypatch.setenv("CPOPLIB_DNS_SERVER", dns.spec)
        monkeypatch.setenv("BOB_PW", server.users[USER])
        code, err = run(["--email", "bob@example.org", "--user", USER,
                         "--password-env", "BOB_PW", "--cafile",
                         server.ca_file, "--maildir", tmp_path / "M"], capsys)
    assert code == 0, err
    assert ("cpoplib fetch: SRV record %s._tcp.example.org: localhost:%d "
            "(%s), user bob" % (service, port, "TLS" if service == "_pop3s"
                                else "STARTTLS")) in err
    assert maildir_count(tmp_path / "M") == 3
