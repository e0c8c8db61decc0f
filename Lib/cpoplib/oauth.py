"""OAuth 2.0 access tokens for POP3 logins, acquired and refreshed by
cpoplib itself (standard library only).

* ``Client``: one OAuth client (a provider's endpoints, your client ID,
  the scope) with the three grants a mail client needs: the device
  authorization grant (RFC 8628, ``device_flow()``), the
  authorization-code grant with PKCE (RFC 7636) over a loopback redirect
  on 127.0.0.1 (RFC 8252, ``browser_flow()``; the browser is opened with
  ``webbrowser``, so ``BROWSER`` selects it, and the URL is also shown),
  and the refresh-token grant (``refresh()``).
* ``PROVIDERS``: ``google`` and ``microsoft`` (endpoints, scopes,
  Microsoft's tenant); ``client()`` builds a Client from a provider name
  and overrides for any endpoint.
* Token stores: ``FileStore`` (one JSON file per account, mode 0600,
  replaced atomically, in a 0700 directory under the fetcher's state
  directory) and ``KeyringStore`` (the OS keyring through the optional
  ``keyring`` package).
* ``TokenSource``: a callable for ``POP3.login(user, token=...)`` that
  returns a valid access token, refreshing it when it is within a minute
  of expiry, and ``refresh()`` for when the server refused it.

Errors are ``OAuthError`` with the RFC error code in ``.error`` and one
sentence for a person in ``str()``; ``AuthorizationRequired`` (a
subclass) means nothing short of a new authorization helps (no tokens
stored, or the refresh token was revoked or has expired).  Refresh
tokens never appear in a message, a repr or a log line; access tokens
neither.
"""

import base64
import hashlib
import http.server
import ipaddress
import json
import os
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Optional, Union

__all__ = [
    "OAuthError", "AuthorizationRequired", "Provider", "PROVIDERS",
    "Client", "client", "Tokens", "FileStore", "KeyringStore", "make_store",
    "default_store_dir", "token_key", "TokenSource", "ERROR_MESSAGES",
]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

# Refresh when the access token has less than this left (seconds).
REFRESH_MARGIN = 60
# RFC 8628 3.5: after slow_down, the interval grows by 5 s for good.
SLOW_DOWN_STEP = 5
HTTP_TIMEOUT = 30.0

# One sentence for each error code of RFC 6749 5.2 and RFC 8628 3.5.
ERROR_MESSAGES = {
    "authorization_pending":
        "the authorization was not completed in time: the code was never "
        "entered and approved",
    "slow_down":
        "the authorization server asked to be polled more slowly and "
        "kept refusing",
    "expired_token":
        "the device code expired before the authorization was completed; "
        "start again",
    "access_denied":
        "the authorization was denied (declined in the browser, or the "
        "account or its administrator does not allow this app)",
    "invalid_grant":
        "the authorization server refused the grant: the refresh token was "
        "revoked or has expired (or the code was already used)",
    "invalid_client":
        "the authorization server does not accept this client ID (or its "
        "secret); check the app registration",
    "unauthorized_client":
        "this client ID may not use this grant; enable it in the app "
        "registration (public client / device flow)",
    "invalid_scope":
        "the authorization server refused the scope",
    "invalid_request":
        "the authorization server called the request malformed",
    "unsupported_grant_type":
        "the authorization server does not support this grant",
}


class OAuthError(Exception):
    """An OAuth failure: ``error`` is the RFC error code (or None),
    ``description`` the server's error_description (or None)."""

    def __init__(self, message, error=None, description=None):
        super().__init__(message)
        self.error = error
        self.description = description


class AuthorizationRequired(OAuthError):
    """No usable tokens: the user has to authorize again."""


def _error_from(error, description=None, what="the authorization server"):
    error = str(error) if error is not None else None
    text = ERROR_MESSAGES.get(error)
    if text is None:
        text = "%s answered with the error %r" % (what, error)
    if description:
        text += " (%s)" % str(description)[:300]
    cls = AuthorizationRequired if error == "invalid_grant" else OAuthError
    return cls(text, error, description)


# --------------------------------------------------------------------------
# providers

class Provider:
    """A provider's endpoints and defaults.  URLs may hold ``{tenant}``."""

    def __init__(self, name, title, authorize_url, token_url, device_url,
                 scope, tenant=None, authorize_params=None,
                 device_scope_ok=True, needs_secret=False):
        self.name = name
        self.title = title
        self.authorize_url = authorize_url
        self.token_url = token_url
        self.device_url = device_url
        self.scope = scope
        self.tenant = tenant
        self.authorize_params = dict(authorize_params or {})
        self.device_scope_ok = device_scope_ok
        self.needs_secret = needs_secret

    def __repr__(self):
        return "<cpoplib.oauth.Provider %s>" % self.name


PROVIDERS = {
    "google": Provider(
        "google", "Google",
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",
        device_url="https://oauth2.googleapis.com/device/code",
        scope="https://mail.google.com/",
        # a refresh token only with offline access; prompt=consent gives
        # a new one when the user authorizes again
        authorize_params={"access_type": "offline", "prompt": "consent"},
        # Google's device flow allows a short list of scopes without Gmail
        device_scope_ok=False,
        # Google issues "Desktop app" clients a secret (not confidential)
        needs_secret=True),
    "microsoft": Provider(
        "microsoft", "Microsoft",
        authorize_url="https://login.microsoftonline.com/{tenant}"
                      "/oauth2/v2.0/authorize",
        token_url="https://login.microsoftonline.com/{tenant}"
                  "/oauth2/v2.0/token",
        device_url="https://login.microsoftonline.com/{tenant}"
                   "/oauth2/v2.0/devicecode",
        scope="https://outlook.office.com/POP.AccessAsUser.All "
              "offline_access",
        tenant="common"),
}


def _loopback_host(host):
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_url(url, what):
    parts = urllib.parse.urlsplit(url or "")
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and _loopback_host(parts.hostname):
        return url                      # a local test or proxy server
    raise OAuthError("%s must be an https:// URL (http:// only on the "
                     "loopback interface): %r" % (what, url))


# --------------------------------------------------------------------------
# tokens

class Tokens:
    """What a token endpoint issued: access_token, refresh_token (or
    None), expires_at (time.time() seconds, or None when unknown),
    scope, token_type."""

    FIELDS = ("access_token", "refresh_token", "expires_at", "scope",
              "token_type")

    def __init__(self, access_token, refresh_token=None, expires_at=None,
                 scope=None, token_type="Bearer"):
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.expires_at = expires_at
        self.scope = scope
        self.token_type = token_type

    @classmethod
    def from_response(cls, data, now=None, previous=None):
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise OAuthError("the token endpoint answered without an "
                             "access_token")
        now = time.time() if now is None else now
        expires_in = data.get("expires_in")
        try:
            expires_at = now + float(expires_in)
        except (TypeError, ValueError):
            expires_at = None
        refresh = data.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            # RFC 6749 6: without a new one, the old one stays valid
            refresh = previous.refresh_token if previous else None
        return cls(token, refresh, expires_at, data.get("scope")
                   or (previous.scope if previous else None),
                   data.get("token_type") or "Bearer")

    def expires_within(self, seconds, now=None):
        if self.expires_at is None:
            return False
        now = time.time() if now is None else now
        return self.expires_at - now < seconds

    def to_dict(self):
        return {k: getattr(self, k) for k in self.FIELDS}

    @classmethod
    def from_dict(cls, data):
        return cls(**{k: data.get(k) for k in cls.FIELDS})

    def __repr__(self):                 # never the tokens themselves
        return "<cpoplib.oauth.Tokens refresh_token=%s expires_at=%r>" % (
            "yes" if self.refresh_token else "no", self.expires_at)


# --------------------------------------------------------------------------
# the client

def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_pair():
    """(code_verifier, code_challenge) for S256 (RFC 7636 4.1, 4.2)."""
    verifier = secrets.token_urlsafe(64)            # 86 unreserved chars
    challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
    return verifier, challenge


def _stderr(text):
    print(text, file=sys.stderr, flush=True)


class Client:
    """An OAuth client of one provider.  ``client_secret`` is a string,
    None, or a callable returning it (run only when a request needs it,
    e.g. a --client-secret-command)."""

    def __init__(self, client_id, token_url, scope, authorize_url=None,
                 device_url=None, client_secret=None, authorize_params=None,
                 provider=None, timeout=HTTP_TIMEOUT):
        if not client_id:
            raise OAuthError("no OAuth client ID (register an app with the "
                             "provider; see the README)")
        self.client_id = client_id
        self.token_url = _check_url(token_url, "the token endpoint")
        self.authorize_url = (_check_url(authorize_url, "the authorization "
                                         "endpoint") if authorize_url
                              else None)
        self.device_url = (_check_url(device_url, "the device endpoint")
                           if device_url else None)
        self.scope = scope
        self._secret = client_secret
        self.authorize_params = dict(authorize_params or {})
        self.provider = provider
        self.timeout = timeout

    def __repr__(self):
        return "<cpoplib.oauth.Client %s %s>" % (self.provider or "custom",
                                                 self.token_url)

    def _client_fields(self):
        fields = {"client_id": self.client_id}
        secret = self._secret() if callable(self._secret) else self._secret
        if secret:
            fields["client_secret"] = secret
        return fields

    # -- HTTP --------------------------------------------------------------

    def _opener(self, url):
        handlers = []
        if _loopback_host(urllib.parse.urlsplit(url).hostname):
            handlers.append(urllib.request.ProxyHandler({}))
        return urllib.request.build_opener(*handlers)

    def post(self, url, fields, what="the token endpoint"):
        """POSTs the form; returns the JSON object of a 200 answer, raises
        OAuthError for an RFC 6749 5.2 error or anything else."""
        body = urllib.parse.urlencode(fields).encode("ascii")
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "User-Agent": "cpoplib-oauth"})
        host = urllib.parse.urlsplit(url).netloc
        try:
            with self._opener(url).open(req, timeout=self.timeout) as resp:
                raw = resp.read(1 << 20)
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw = exc.read(1 << 20)
            status = exc.code
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise OAuthError("cannot reach %s (%s): %s" % (what, host,
                                                            reason))
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None
        if not isinstance(data, dict):
            # a 200 body might hold tokens: never quote it
            detail = (": %r" % raw[:200].decode("utf-8", "replace")
                      if status != 200 else "")
            raise OAuthError("%s (%s) answered HTTP %d without a JSON "
                             "object%s" % (what, host, status, detail))
        if status != 200 or "error" in data:
            if "error" in data:
                raise _error_from(data.get("error"),
                                  data.get("error_description"), what)
            raise OAuthError("%s (%s) answered HTTP %d" % (what, host,
                                                            status))
        return data

    # -- grants ------------------------------------------------------------

    def refresh(self, tokens: "Tokens") -> "Tokens":
        """The refresh-token grant (RFC 6749 6): new Tokens (keeping the
        refresh token when the server issues no new one)."""
        if not tokens.refresh_token:
            raise AuthorizationRequired("no refresh token is stored: "
                                        "authorize again")
        fields = {"grant_type": "refresh_token",
                  "refresh_token": tokens.refresh_token}
        if self.scope:
            fields["scope"] = self.scope
        fields.update(self._client_fields())
        data = self.post(self.token_url, fields)
        return Tokens.from_response(data, previous=tokens)

    def device_flow(self, prompt: Callable[[str], Any] = _stderr,
                    sleep: Callable[[float], Any] = time.sleep,
                    clock: Callable[[], float] = time.monotonic
                    ) -> "Tokens":
        """The device authorization grant (RFC 8628): shows the
        verification URL and the user code with prompt(), polls the token
        endpoint until the user approved, denied or the code expired."""
        if not self.device_url:
            raise OAuthError("this provider has no device authorization "
                             "endpoint: use the browser flow")
        fields = {"client_id": self.client_id}
        if self.scope:
            fields["scope"] = self.scope
        data = self.post(self.device_url, fields,
                         what="the device authorization endpoint")
        device_code = data.get("device_code")
        user_code = data.get("user_code")
        # Google calls it verification_url
        uri = data.get("verification_uri") or data.get("verification_url")
        if not (isinstance(device_code, str) and isinstance(user_code, str)
                and isinstance(uri, str)):
            raise OAuthError("the device authorization endpoint answered "
                             "without device_code, user_code and "
                             "verification_uri")
        try:
            interval = max(float(data.get("interval", 5)), 0.0)
        except (TypeError, ValueError):
            interval = 5.0
        try:
            expires_in = float(data.get("expires_in", 1800))
        except (TypeError, ValueError):
            expires_in = 1800.0
        complete = data.get("verification_uri_complete")
        prompt("To authorize, open %s and enter the code %s" % (uri,
                                                                user_code))
        if isinstance(complete, str) and complete:
            prompt("(or open %s, which carries the code)" % complete)
        deadline = clock() + expires_in
        poll = {"grant_type": DEVICE_GRANT, "device_code": device_code}
        while True:
            sleep(interval)
            if clock() >= deadline:
                raise _error_from("expired_token")
            fields = dict(poll)
            fields.update(self._client_fields())
            try:
                data = self.post(self.token_url, fields)
            except OAuthError as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += SLOW_DOWN_STEP
                    continue
                raise
            return Tokens.from_response(data)

    def authorize_request(self, redirect_uri, state, challenge,
                          login_hint=None):
        """The authorization endpoint URL for the code grant with PKCE."""
        if not self.authorize_url:
            raise OAuthError("this provider has no authorization endpoint: "
                             "use the device flow")
        params = {"response_type": "code", "client_id": self.client_id,
                  "redirect_uri": redirect_uri, "state": state,
                  "code_challenge": challenge,
                  "code_challenge_method": "S256"}
        if self.scope:
            params["scope"] = self.scope
        if login_hint:
            params["login_hint"] = login_hint
        params.update(self.authorize_params)
        sep = "&" if "?" in self.authorize_url else "?"
        return self.authorize_url + sep + urllib.parse.urlencode(params)

    def browser_flow(self, prompt: Callable[[str], Any] = _stderr,
                     open_browser: Optional[Callable[[str], Any]] = None,
                     timeout: float = 300.0, port: int = 0,
                     login_hint: Optional[str] = None) -> "Tokens":
        """The authorization-code grant with PKCE over a loopback redirect
        (RFC 8252 7.3): listens on 127.0.0.1, opens the authorization URL
        in the browser (``webbrowser``, so BROWSER selects it) and shows
        it with prompt(), waits for the redirect, exchanges the code."""
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(24)
        with _RedirectReceiver(state, port) as receiver:
            redirect_uri = "http://127.0.0.1:%d/" % receiver.port
            url = self.authorize_request(redirect_uri, state, challenge,
                                         login_hint)
            prompt("Open this URL in a browser to authorize (opening it "
                   "now):\n  %s" % url)
            if open_browser is None:
                import webbrowser

                def open_browser(u):
                    try:
                        return webbrowser.open(u)
                    except webbrowser.Error:
                        return False
            open_browser(url)
            params = receiver.wait(timeout)
        if params is None:
            raise OAuthError("no answer from the browser within %d s (was "
                             "the URL opened?)" % timeout)
        if "error" in params:
            raise _error_from(params["error"], params.get(
                "error_description"), "the authorization endpoint")
        fields = {"grant_type": "authorization_code", "code": params["code"],
                  "redirect_uri": redirect_uri, "code_verifier": verifier}
        fields.update(self._client_fields())
        data = self.post(self.token_url, fields)
        return Tokens.from_response(data)


_PAGE = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>cpoplib"
         "</title></head><body><p>%s</p></body></html>")


class _RedirectReceiver:
    """The loopback redirect endpoint: one HTTP server on 127.0.0.1 in a
    thread, waiting for a request whose query has our state and a code
    or an error.  Requests without our state are answered 400 and
    ignored (another local program cannot end the flow)."""

    def __init__(self, state, port=0):
        self.state = state
        self.result = None
        self.done = threading.Event()
        self.httpd = http.server.HTTPServer(("127.0.0.1", port),
                                            _RedirectHandler)
        self.httpd.receiver = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       name="cpoplib-oauth-redirect",
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def wait(self, timeout):
        self.done.wait(timeout)
        return self.result

    def answer(self, path):
        """(status, page text) for a request to path."""
        query = urllib.parse.urlsplit(path).query
        params = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
        ok = (params.get("state") == self.state
              and ("code" in params or "error" in params))
        if ok and not self.done.is_set():
            self.result = params
            self.done.set()
        if not ok:
            return 400, "cpoplib: unexpected request."
        if "code" in params:
            return 200, ("cpoplib got the authorization; you can close "
                         "this window.")
        return 200, "cpoplib: the authorization was not completed."


class _RedirectHandler(http.server.BaseHTTPRequestHandler):
    """The request handler of _RedirectReceiver's server."""

    def do_GET(self):
        status, text = self.server.receiver.answer(self.path)
        body = (_PAGE % text).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):       # the query holds the code
        pass


def client(provider: Optional[str] = None, *, client_id: str,
           client_secret: Union[str, Callable[[], str], None] = None,
           tenant: Optional[str] = None, scope: Optional[str] = None,
           authorize_url: Optional[str] = None,
           device_url: Optional[str] = None,
           token_url: Optional[str] = None) -> Client:
    """A Client for a built-in provider ("google", "microsoft") with any
    endpoint, the scope or the tenant overridden; without a provider,
    token_url (and authorize_url or device_url) must be given."""
    if provider is not None:
        try:
            p = PROVIDERS[provider]
        except KeyError:
            raise OAuthError("unknown OAuth provider %r (known: %s)"
                             % (provider, ", ".join(sorted(PROVIDERS))))
        tenant = tenant or p.tenant

        def fill(url):
            return url.replace("{tenant}", urllib.parse.quote(
                tenant or "", safe="")) if url else url

        authorize_url = authorize_url or fill(p.authorize_url)
        device_url = device_url or fill(p.device_url)
        token_url = token_url or fill(p.token_url)
        scope = scope or p.scope
        params = p.authorize_params
    else:
        params = {}
        if not token_url:
            raise OAuthError("no OAuth provider and no token endpoint "
                             "(oauth_token_url)")
    return Client(client_id, token_url, scope, authorize_url=authorize_url,
                  device_url=device_url, client_secret=client_secret,
                  authorize_params=params, provider=provider)


# --------------------------------------------------------------------------
# token stores

def default_store_dir() -> str:
    """``$XDG_STATE_HOME/cpoplib/oauth`` (``~/.local/state/...``): beside
    the fetcher's UIDL state files."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "cpoplib", "oauth")


def token_key(user: str, client_id: str, token_url: str) -> str:
    """The name an account's tokens are stored under: the user name (made
    file-name safe) and a hash of (token endpoint, client ID, user)."""
    ident = "\0".join((token_url or "", client_id or "", user or ""))
    digest = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "@.-_" else "_"
                   for c in (user or "account"))[:64]
    return "%s-%s" % (safe, digest)


class FileStore:
    """One JSON file per account in ``directory`` (default
    default_store_dir()): the directory 0700, each file 0600, written to
    a temporary file, fsync'd and renamed over the old one."""

    kind = "file"

    def __init__(self, directory: "Optional[str | os.PathLike[str]]" = None
                 ) -> None:
        self.directory = os.path.abspath(os.path.expanduser(
            directory or default_store_dir()))

    def path(self, key):
        return os.path.join(self.directory, key + ".json")

    def where(self, key):
        return self.path(key)

    def load(self, key):
        try:
            with open(self.path(key), "rb") as f:
                data = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise OAuthError("cannot read the token file %s: %s"
                             % (self.path(key), getattr(exc, "strerror",
                                                        None) or exc))
        return data if isinstance(data, dict) else None

    def save(self, key, data):
        path = self.path(key)
        payload = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
        tmp = "%s.tmp-%s" % (path, secrets.token_hex(6))
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                os.fchmod(fd, 0o600)            # whatever the umask
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise OAuthError("cannot write the token file %s: %s"
                             % (path, exc.strerror or exc))

    def delete(self, key):
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass


class KeyringStore:
    """The OS keyring (Secret Service, macOS Keychain, Windows Credential
    Locker) through the ``keyring`` package: one entry per account,
    service ``cpoplib-oauth``, the key as the user name, JSON as the
    secret."""

    kind = "keyring"
    SERVICE = "cpoplib-oauth"

    def __init__(self, backend=None):
        if backend is None:
            try:
                import keyring as backend
            except ImportError:
                raise OAuthError("the keyring token store needs the keyring "
                                 "package (pip install 'cpoplib[keyring]')")
        self.keyring = backend

    def where(self, key):
        return "the OS keyring (service %s, entry %s)" % (self.SERVICE, key)

    def _call(self, what, *args):
        try:
            return getattr(self.keyring, what)(self.SERVICE, *args)
        except Exception as exc:        # keyring.errors.* and backends'
            raise OAuthError("the OS keyring failed (%s): %s; use the file "
                             "store instead" % (type(exc).__name__, exc))

    def load(self, key):
        text = self._call("get_password", key)
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            raise OAuthError("the keyring entry %s is not cpoplib's" % key)
        return data if isinstance(data, dict) else None

    def save(self, key, data):
        self._call("set_password", key, json.dumps(data, sort_keys=True))

    def delete(self, key):
        try:
            self._call("delete_password", key)
        except OAuthError:
            pass


def make_store(kind: Optional[str] = "file",
               directory: Optional[str] = None) -> Any:
    if kind in (None, "file"):
        return FileStore(directory)
    if kind == "keyring":
        return KeyringStore()
    raise OAuthError("unknown token store %r (file or keyring)" % kind)


# --------------------------------------------------------------------------
# the source of access tokens for login()

class TokenSource:
    """``login(user, token=source)``: each call returns a valid access
    token from the store (read anew each time), refreshed first when it expires within
    REFRESH_MARGIN seconds.  ``refresh()`` forces a refresh (the server
    refused the token).  New tokens are saved at once (a rotated refresh
    token must not be lost).  Thread-safe."""

    def __init__(self, client: Client, store: Any, key: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.store = store
        self.key = key
        self.clock = clock
        self.refreshes = 0
        self._tokens: Optional[Tokens] = None
        self._lock = threading.Lock()

    def __repr__(self):
        return "<cpoplib.oauth.TokenSource %s>" % self.key

    def record(self, tokens: Tokens) -> None:
        """Stores tokens (with what they were issued to)."""
        data = tokens.to_dict()
        data.update(client_id=self.client.client_id,
                    token_url=self.client.token_url,
                    provider=self.client.provider, saved_at=self.clock())
        self.store.save(self.key, data)
        self._tokens = tokens

    def _load(self):
        # read every time: another process (a second fetcher, `cpoplib
        # oauth`) may have refreshed or replaced them since
        data = self.store.load(self.key)
        if not data or not data.get("access_token") and not data.get(
                "refresh_token"):
            raise AuthorizationRequired("no OAuth tokens are stored for "
                                        "this account")
        if data.get("client_id") not in (None, self.client.client_id):
            raise AuthorizationRequired("the stored tokens were issued "
                                        "to another client ID")
        self._tokens = Tokens.from_dict(data)
        return self._tokens

    def _refresh(self, tokens):
        new = self.client.refresh(tokens)
        self.refreshes += 1
        self.record(new)
        return new

    def __call__(self) -> str:
        with self._lock:
            tokens = self._load()
            if not tokens.access_token or tokens.expires_within(
                    REFRESH_MARGIN, self.clock()):
                tokens = self._refresh(tokens)
            return tokens.access_token

    access_token = __call__

    def refresh(self) -> str:
        """A new access token now (after the server refused the old one)."""
        with self._lock:
            return self._refresh(self._load()).access_token
