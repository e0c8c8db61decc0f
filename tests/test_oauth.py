"""cpoplib.oauth against a local authorization server (tests/oauth_server.py)
and a Dovecot that validates the tokens it issues.

* the grants: device flow (the test approves the code; slow_down,
  authorization_pending, expired_token, access_denied), the browser flow
  (authorization code with PKCE over the loopback redirect; the
  server checks the S256 verifier), the refresh grant (rotation,
  invalid_grant);
* TokenSource: refreshed within a minute of expiry, after a refusal,
  AuthorizationRequired when nothing helps; logins to Dovecot with the
  tokens it hands out, proved by Dovecot's introspection requests;
* the stores: file modes, atomic replacement, the keyring store;
* the built-in providers and endpoint overrides, URL checks, the one
  message per RFC error.
"""
import json
import os
import stat
import threading
import time
import urllib.parse
import urllib.request

import pytest

from oauth_server import AuthorizationServer

import cpoplib
from cpoplib import oauth

USER = "carol"


@pytest.fixture
def auth(dovecot_oauth):
    with AuthorizationServer(dovecot_oauth.oauth2_tokens, user=USER) as srv:
        yield srv


@pytest.fixture
def local_auth():
    """An authorization server without Dovecot."""
    with AuthorizationServer(user=USER) as srv:
        yield srv


def make_client(srv, **kw):
    return oauth.client(client_id=srv.client_id, token_url=srv.token_url,
                        authorize_url=srv.authorize_url,
                        device_url=srv.device_url, scope="mail", **kw)


def follow(url):
    """A browser: load the URL, follow the redirect."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    opener.open(url, timeout=10).read()


def pop3_login(server, source, user=USER):
    """Log in with the token, STAT, close.  A [SYS/TEMP] answer (RFC 3206:
    a temporary failure, try again later) is tried again once, a second
    later, with Dovecot's log printed (pytest shows it with a failure):
    Dovecot 2.4 in the sid chroot gave one, once, in a CI run, on a token
    its introspection endpoint knew."""
    for attempt in (1, 2):
        conn = cpoplib.POP3(server.host, server.pop3_port, timeout=30)
        try:
            conn.login(user, token=source, allow_plaintext=True)
            return conn.stat()
        except cpoplib.SysTempError as exc:
            print("attempt %d: %r; Dovecot's log:\n%s"
                  % (attempt, exc, server.log()[-4000:]))
            if attempt == 2:
                raise
        finally:
            conn.close()
        time.sleep(1)


class Prompts(list):
    def __call__(self, text):
        self.append(text)


# --------------------------------------------------------------------------
# the device flow

def user_code_of(prompts):
    return prompts[0].rsplit(" ", 1)[1]


def test_device_flow_then_dovecot_login(auth, dovecot_oauth):
    prompts = Prompts()
    client = make_client(auth)

    def prompt(text):
        prompts.append(text)
        if len(prompts) == 1:
            # the user opens the URL and enters the code, a bit later
            threading.Timer(0.2, auth.approve,
                            [user_code_of(prompts)]).start()

    tokens = client.device_flow(prompt=prompt)
    assert prompts[0].startswith("To authorize, open %s/verify and enter "
                                 "the code " % auth.base)
    assert tokens.access_token == auth.issued[-1]
    assert tokens.refresh_token in auth.refresh_tokens
    polls = auth.grants(oauth.DEVICE_GRANT)
    assert len(polls) >= 2          # pending at least once, then tokens
    assert all(p[2]["client_id"] == auth.client_id for p in polls)
    asked = len(dovecot_oauth.oauth2_requests)
    assert pop3_login(dovecot_oauth, tokens.access_token) == (0, 0)
    asked_about = dovecot_oauth.oauth2_requests[asked:]   # (a retry asks again)
    assert asked_about and set(asked_about) == {tokens.access_token}


def test_device_flow_slow_down_and_pending(local_auth):
    local_auth.interval = 2
    local_auth.device_script = ["authorization_pending", "slow_down",
                                "authorization_pending", "slow_down"]
    slept = []
    prompts = Prompts()
    client = make_client(local_auth)

    def prompt(text):
        prompts.append(text)
        local_auth.approve(user_code_of(prompts))

    tokens = client.device_flow(prompt=prompt, sleep=slept.append)
    # RFC 8628 3.5: each slow_down adds 5 s, for this and later polls
    assert slept == [2, 2, 7, 7, 12]
    assert len(local_auth.grants(oauth.DEVICE_GRANT)) == 5
    assert tokens.access_token == local_auth.issued[-1]


def test_device_flow_expired_by_the_clock(local_auth):
    now = [0.0]
    local_auth.device_ttl = 10

    def sleep(s):
        now[0] += 4

    with pytest.raises(oauth.OAuthError) as info:
        make_client(local_auth).device_flow(prompt=Prompts(), sleep=sleep,
                                            clock=lambda: now[0])
    assert info.value.error == "expired_token"
    assert str(info.value) == oauth.ERROR_MESSAGES["expired_token"]
    # polled at 4 and 8 s, given up at 12 s without asking again
    assert len(local_auth.grants(oauth.DEVICE_GRANT)) == 2


@pytest.mark.parametrize("error", ["expired_token", "access_denied"])
def test_device_flow_server_errors(local_auth, error):
    local_auth.device_script = ["authorization_pending", error]
    with pytest.raises(oauth.OAuthError) as info:
        make_client(local_auth).device_flow(prompt=Prompts(),
                                            sleep=lambda s: None)
    assert info.value.error == error
    assert str(info.value) == oauth.ERROR_MESSAGES[error]
    assert not isinstance(info.value, oauth.AuthorizationRequired)


def test_device_flow_denied_by_the_user(local_auth):
    prompts = Prompts()

    def prompt(text):
        prompts.append(text)
        local_auth.deny(user_code_of(prompts))

    with pytest.raises(oauth.OAuthError, match="denied") as info:
        make_client(local_auth).device_flow(prompt=prompt)
    assert info.value.error == "access_denied"
    assert local_auth.issued == []


def test_device_flow_without_endpoint(local_auth):
    c = oauth.client(client_id="x", token_url=local_auth.token_url)
    with pytest.raises(oauth.OAuthError, match="browser flow"):
        c.device_flow(prompt=Prompts())


# --------------------------------------------------------------------------
# the browser flow

def test_browser_flow_pkce_then_dovecot_login(auth, dovecot_oauth):
    opened = []
    prompts = Prompts()

    def browser(url):
        opened.append(url)
        follow(url)

    tokens = make_client(auth).browser_flow(prompt=prompts,
                                            open_browser=browser,
                                            timeout=20, login_hint=USER)
    assert len(opened) == 1 and opened[0] in prompts[0]   # also shown
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(
        opened[0]).query))
    assert query["code_challenge_method"] == "S256"
    assert query["response_type"] == "code"
    assert query["login_hint"] == USER
    redirect = urllib.parse.urlsplit(query["redirect_uri"])
    assert redirect.scheme == "http" and redirect.hostname == "127.0.0.1"
    (exchange,) = auth.grants("authorization_code")
    form = exchange[2]
    assert form["redirect_uri"] == query["redirect_uri"]
    assert 43 <= len(form["code_verifier"]) <= 128
    assert tokens.access_token == auth.issued[-1]
    assert pop3_login(dovecot_oauth, tokens.access_token) == (0, 0)


def test_browser_flow_ignores_foreign_requests(local_auth):
    def browser(url):
        redirect = dict(urllib.parse.parse_qsl(
            urllib.parse.urlsplit(url).query))["redirect_uri"]
        # another local program probing the port: no state, wrong state
        for query in ("", "?code=stolen", "?code=x&state=wrong"):
            with pytest.raises(urllib.error.HTTPError) as info:
                follow(redirect + query)
            assert info.value.code == 400
        follow(url)

    tokens = make_client(local_auth).browser_flow(
        prompt=Prompts(), open_browser=browser, timeout=20)
    assert tokens.access_token == local_auth.issued[-1]


def test_browser_flow_denied(local_auth):
    local_auth.deny_next = True
    with pytest.raises(oauth.OAuthError) as info:
        make_client(local_auth).browser_flow(prompt=Prompts(),
                                             open_browser=follow,
                                             timeout=20)
    assert info.value.error == "access_denied"
    assert str(info.value).startswith(oauth.ERROR_MESSAGES["access_denied"])
    assert "the user declined" in str(info.value)
    assert local_auth.grants("authorization_code") == []


def test_browser_flow_wrong_verifier_is_refused(local_auth, monkeypatch):
    # a client that sent another challenge than its verifier's fails
    real = oauth.pkce_pair
    monkeypatch.setattr(oauth, "pkce_pair",
                        lambda: (real()[0], real()[1]))
    with pytest.raises(oauth.AuthorizationRequired) as info:
        make_client(local_auth).browser_flow(prompt=Prompts(),
                                             open_browser=follow, timeout=20)
    assert info.value.error == "invalid_grant"
    assert "PKCE" in str(info.value)


def test_browser_flow_times_out(local_auth):
    with pytest.raises(oauth.OAuthError, match="no answer from the browser"):
        make_client(local_auth).browser_flow(
            prompt=Prompts(), open_browser=lambda url: None, timeout=0.3)


def test_pkce_pair_is_s256():
    import base64
    import hashlib

    verifier, challenge = oauth.pkce_pair()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                "qrstuvwxyz0123456789-._~")
    assert challenge == base64.urlsafe_b64encode(hashlib.sha256(
        verifier.encode()).digest()).rstrip(b"=").decode()
    assert oauth.pkce_pair()[0] != verifier


# --------------------------------------------------------------------------
# refresh, TokenSource, stores

def stored_source(srv, tmp_path, expires_in=3600, clock=None, key="k"):
    client = make_client(srv)
    store = oauth.FileStore(tmp_path / "oauth")
    source = oauth.TokenSource(client, store, key,
                               **({"clock": clock} if clock else {}))
    data = srv.issue_tokens()
    data["expires_in"] = expires_in
    source.record(oauth.Tokens.from_response(data))
    return source, store


def test_token_source_refreshes_within_a_minute(auth, dovecot_oauth,
                                                tmp_path):
    source, store = stored_source(auth, tmp_path, expires_in=59)
    old = auth.issued[-1]
    old_refresh = store.load("k")["refresh_token"]
    asked = len(dovecot_oauth.oauth2_requests)
    assert pop3_login(dovecot_oauth, source) == (0, 0)
    new = auth.issued[-1]
    assert new != old and source.refreshes == 1
    # Dovecot only ever saw the new token
    asked_about = dovecot_oauth.oauth2_requests[asked:]   # (a retry asks again)
    assert asked_about and set(asked_about) == {new}
    saved = store.load("k")
    assert saved["access_token"] == new
    assert saved["refresh_token"] != old_refresh        # rotated, kept
    assert saved["refresh_token"] in auth.refresh_tokens
    (refresh,) = auth.grants("refresh_token")
    assert refresh[2]["refresh_token"] == old_refresh
    assert refresh[2]["scope"] == "mail"


def test_token_source_keeps_a_valid_token(local_auth, tmp_path):
    now = [1000.0]
    source, store = stored_source(local_auth, tmp_path, expires_in=120,
                                  clock=lambda: now[0])
    # from_response used the real clock: set expiry relative to ours
    data = store.load("k")
    data["expires_at"] = now[0] + 120
    store.save("k", data)
    source._tokens = None
    first = source()
    assert first == data["access_token"] and source.refreshes == 0
    now[0] += 61            # 59 s left: within the minute
    assert source() != first and source.refreshes == 1
    assert local_auth.grants("refresh_token")


def test_token_source_after_a_refusal(auth, dovecot_oauth, tmp_path):
    source, store = stored_source(auth, tmp_path, expires_in=3600)
    old = source()
    auth.expire(old)                    # the server no longer takes it
    with pytest.raises(cpoplib.error_proto):
        pop3_login(dovecot_oauth, source)
    new = source.refresh()
    assert new != old and pop3_login(dovecot_oauth, source) == (0, 0)
    assert store.load("k")["access_token"] == new


def test_revoked_refresh_token(local_auth, tmp_path):
    source, store = stored_source(local_auth, tmp_path, expires_in=10)
    local_auth.revoke()
    with pytest.raises(oauth.AuthorizationRequired) as info:
        source()
    assert info.value.error == "invalid_grant"
    assert str(info.value).startswith(oauth.ERROR_MESSAGES["invalid_grant"])
    refresh_token = store.load("k")["refresh_token"]
    assert refresh_token not in str(info.value)
    assert refresh_token not in repr(source) + repr(source._tokens)


def test_token_source_without_tokens(local_auth, tmp_path):
    source = oauth.TokenSource(make_client(local_auth),
                               oauth.FileStore(tmp_path), "nobody")
    with pytest.raises(oauth.AuthorizationRequired, match="no OAuth tokens"):
        source()


def test_token_source_other_client_id(local_auth, tmp_path):
    source, store = stored_source(local_auth, tmp_path)
    other = oauth.client(client_id="another-app",
                         token_url=local_auth.token_url)
    with pytest.raises(oauth.AuthorizationRequired, match="another client"):
        oauth.TokenSource(other, store, "k")()


def test_refresh_with_client_secret_command(tmp_path):
    with AuthorizationServer(client_secret="s3cret") as srv:
        calls = []

        def secret():
            calls.append(1)
            return "s3cret"

        client = make_client(srv, client_secret=secret)
        tokens = oauth.Tokens.from_response(srv.issue_tokens())
        new = client.refresh(tokens)
        assert new.access_token == srv.issued[-1] and calls == [1]
        bad = make_client(srv, client_secret="wrong")
        with pytest.raises(oauth.OAuthError) as info:
            bad.refresh(new)
        assert info.value.error == "invalid_client"


def test_refresh_keeps_the_refresh_token_when_none_is_issued():
    old = oauth.Tokens("a", "r1", 0)
    new = oauth.Tokens.from_response({"access_token": "b",
                                      "expires_in": 10}, now=100,
                                     previous=old)
    assert (new.access_token, new.refresh_token, new.expires_at) == \
        ("b", "r1", 110)


def test_file_store_modes_and_atomic_replace(tmp_path):
    store = oauth.FileStore(tmp_path / "state" / "oauth")
    os.umask(0o022)
    store.save("alice-1", {"refresh_token": "r1"})
    path = store.path("alice-1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
    inode = os.stat(path).st_ino
    store.save("alice-1", {"refresh_token": "r2"})
    assert os.stat(path).st_ino != inode            # a new file, renamed
    assert store.load("alice-1") == {"refresh_token": "r2"}
    assert sorted(os.listdir(store.directory)) == ["alice-1.json"]
    os.chmod(store.directory, 0o500)                # cannot write: clean
    try:
        if os.geteuid() != 0:
            with pytest.raises(oauth.OAuthError, match="cannot write"):
                store.save("alice-1", {"refresh_token": "r3"})
            assert store.load("alice-1") == {"refresh_token": "r2"}
    finally:
        os.chmod(store.directory, 0o700)
    store.delete("alice-1")
    assert store.load("alice-1") is None


def test_file_store_damaged(tmp_path):
    store = oauth.FileStore(tmp_path)
    with open(store.path("x"), "w") as f:
        f.write("{not json")
    with pytest.raises(oauth.OAuthError, match="cannot read the token file"):
        store.load("x")


def test_default_store_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert oauth.default_store_dir() == str(tmp_path / "cpoplib" / "oauth")
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert oauth.default_store_dir() == str(
        tmp_path / "h" / ".local" / "state" / "cpoplib" / "oauth")


def test_token_key():
    a = oauth.token_key("alice@example.org", "id", "https://t/")
    assert a.startswith("alice@example.org-") and len(a) == 18 + 12
    assert a != oauth.token_key("alice@example.org", "id2", "https://t/")
    assert "/" not in oauth.token_key("../../etc/x", "id", "u")


class MemoryKeyring:
    """The three functions of the keyring package's API."""

    def __init__(self):
        self.entries = {}

    def get_password(self, service, user):
        return self.entries.get((service, user))

    def set_password(self, service, user, secret):
        self.entries[(service, user)] = secret

    def delete_password(self, service, user):
        del self.entries[(service, user)]


def test_keyring_store(local_auth):
    backend = MemoryKeyring()
    store = oauth.KeyringStore(backend)
    source = oauth.TokenSource(make_client(local_auth), store, "acct")
    source.record(oauth.Tokens.from_response(local_auth.issue_tokens()))
    (key,) = backend.entries
    assert key == ("cpoplib-oauth", "acct")
    assert json.loads(backend.entries[key])["client_id"] == \
        local_auth.client_id
    assert oauth.TokenSource(make_client(local_auth), store, "acct")() == \
        local_auth.issued[-1]
    store.delete("acct")
    assert backend.entries == {}


def test_keyring_store_failures():
    class Broken(MemoryKeyring):
        def set_password(self, *args):
            raise RuntimeError("No recommended backend was available")

    with pytest.raises(oauth.OAuthError, match="OS keyring failed"):
        oauth.KeyringStore(Broken()).save("k", {})


def test_keyring_package(local_auth):
    keyring = pytest.importorskip("keyring")
    import keyring.backend

    class Memory(keyring.backend.KeyringBackend):
        priority = 1
        entries = {}

        def get_password(self, service, user):
            return self.entries.get((service, user))

        def set_password(self, service, user, secret):
            self.entries[(service, user)] = secret

        def delete_password(self, service, user):
            self.entries.pop((service, user))

    previous = keyring.get_keyring()
    keyring.set_keyring(Memory())
    try:
        store = oauth.make_store("keyring")
        store.save("acct", {"access_token": "a"})
        assert Memory.entries[("cpoplib-oauth", "acct")]
        assert store.load("acct") == {"access_token": "a"}
    finally:
        keyring.set_keyring(previous)


# --------------------------------------------------------------------------
# providers, URLs, errors

def test_builtin_providers():
    g = oauth.client("google", client_id="id", client_secret="s")
    assert g.token_url == "https://oauth2.googleapis.com/token"
    assert g.scope == "https://mail.google.com/"
    url = g.authorize_request("http://127.0.0.1:1/", "st", "ch")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["access_type"] == "offline"
    assert url.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    m = oauth.client("microsoft", client_id="id")
    assert m.scope == ("https://outlook.office.com/POP.AccessAsUser.All "
                       "offline_access")
    assert m.device_url == ("https://login.microsoftonline.com/common/"
                            "oauth2/v2.0/devicecode")
    t = oauth.client("microsoft", client_id="id", tenant="contoso.com")
    assert t.token_url == ("https://login.microsoftonline.com/contoso.com/"
                           "oauth2/v2.0/token")
    o = oauth.client("microsoft", client_id="id",
                     token_url="http://127.0.0.1:9/token", scope="x")
    assert o.token_url == "http://127.0.0.1:9/token" and o.scope == "x"
    assert o.authorize_url.startswith("https://login.microsoftonline.com/")
    with pytest.raises(oauth.OAuthError, match="unknown OAuth provider"):
        oauth.client("yahoo", client_id="id")
    with pytest.raises(oauth.OAuthError, match="no OAuth client ID"):
        oauth.client("google", client_id="")


@pytest.mark.parametrize("url", ["http://example.org/token",
                                 "ftp://127.0.0.1/", "token", ""])
def test_endpoints_must_be_https(url):
    with pytest.raises(oauth.OAuthError, match="https://"):
        oauth.client(client_id="id", token_url=url or "x")


def test_one_message_per_rfc_error():
    seen = set()
    for code in ("authorization_pending", "slow_down", "expired_token",
                 "access_denied", "invalid_grant"):
        exc = oauth._error_from(code)
        assert exc.error == code and str(exc) == oauth.ERROR_MESSAGES[code]
        assert str(exc) not in seen
        seen.add(str(exc))
    assert isinstance(oauth._error_from("invalid_grant"),
                      oauth.AuthorizationRequired)
    assert "'weird'" in str(oauth._error_from("weird"))


def test_token_endpoint_garbage(local_auth, monkeypatch):
    client = make_client(local_auth)
    with pytest.raises(oauth.OAuthError, match="'not_found'"):
        client.post(local_auth.base + "/nowhere", {})
    dead = oauth.client(client_id="x", token_url="http://127.0.0.1:9/t")
    with pytest.raises(oauth.OAuthError, match="cannot reach"):
        dead.refresh(oauth.Tokens("a", "r"))
