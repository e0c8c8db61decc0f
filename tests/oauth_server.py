"""A local OAuth 2.0 authorization server for cpoplib's tests.

A stdlib http.server in a thread of the test process, on 127.0.0.1,
with the endpoints a mail client uses:

* ``GET /authorize``: the authorization endpoint of the code grant with
  PKCE (RFC 6749 4.1, RFC 7636).  It "signs in" at once (or refuses,
  with ``deny_next``) and redirects to the client's loopback
  redirect_uri with the code and the state;
* ``POST /device``: the device authorization endpoint (RFC 8628 3.1);
  the test approves a user code with approve() (or deny());
* ``POST /token``: the token endpoint for the authorization_code,
  device_code and refresh_token grants, checking the client ID, the
  redirect URI, the PKCE verifier (S256), one-time codes, refresh tokens
  (rotated on every use; revoke() makes them invalid_grant).

Every access token it issues is registered in ``introspection`` (a dict
token -> user: pass a DovecotServer's ``oauth2_tokens`` and Dovecot's
oauth2 passdb accepts exactly those tokens) and listed in ``issued``.
``device_script`` is a list of errors to answer the next device polls
with before the real state counts ("authorization_pending", "slow_down").
``requests`` records (path, grant_type or None, form) for every call;
``access_length`` is the length of the access tokens (Microsoft's are
long enough to need the two-step AUTH).
"""

import base64
import hashlib
import http.server
import json
import secrets
import threading
import time
import urllib.parse

from dovecot_server import IntrospectionServer

HOST = "127.0.0.1"


class AuthorizationServer:
    def __init__(self, introspection=None, user="carol",
                 client_id="cpoplib-test-client", client_secret=None,
                 access_ttl=3600, interval=0.05, device_ttl=60,
                 access_length=43):
        self.introspection = introspection if introspection is not None \
            else {}
        self.user = user
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_ttl = access_ttl
        self.interval = interval
        self.device_ttl = device_ttl
        self.access_length = access_length      # Microsoft's: ~1500
        self.codes = {}             # code -> dict
        self.devices = {}           # device_code -> dict
        self.refresh_tokens = {}    # refresh token -> user
        self.issued = []            # access tokens, in order
        self.requests = []
        self.device_script = []
        self.deny_next = False
        self.lock = threading.Lock()
        self._httpd = None

    # -- URLs ---------------------------------------------------------------

    @property
    def base(self):
        return "http://%s:%d" % (HOST, self.port)

    @property
    def authorize_url(self):
        return self.base + "/authorize"

    @property
    def device_url(self):
        return self.base + "/device"

    @property
    def token_url(self):
        return self.base + "/token"

    # -- the test's side -----------------------------------------------------

    def approve(self, user_code, user=None):
        with self.lock:
            for d in self.devices.values():
                if d["user_code"] == user_code:
                    d["status"] = "approved"
                    d["user"] = user or self.user
                    return
        raise KeyError(user_code)

    def deny(self, user_code):
        with self.lock:
            for d in self.devices.values():
                if d["user_code"] == user_code:
                    d["status"] = "denied"
                    return
        raise KeyError(user_code)

    def revoke(self):
        """Every refresh token becomes invalid_grant."""
        with self.lock:
            self.refresh_tokens.clear()

    def expire(self, token):
        """The access token stops being valid (the introspection
        endpoint calls it inactive from now on)."""
        self.introspection.pop(token, None)

    def grants(self, grant_type):
        with self.lock:
            return [r for r in self.requests if r[1] == grant_type]

    def issue_tokens(self, user=None):
        """A token response as the token endpoint would give one (for
        tests that put tokens into a store directly)."""
        with self.lock:
            return self._issue(user or self.user)

    # -- the server's side ----------------------------------------------------

    def _issue(self, user):
        access = secrets.token_urlsafe(self.access_length)[
            :self.access_length]
        refresh = secrets.token_urlsafe(32)
        self.introspection[access] = user
        self.issued.append(access)
        self.refresh_tokens[refresh] = user
        return {"access_token": access, "token_type": "Bearer",
                "expires_in": self.access_ttl, "refresh_token": refresh,
                "scope": "mail"}

    def _client_ok(self, form):
        if form.get("client_id") != self.client_id:
            return False
        if self.client_secret is not None:
            return form.get("client_secret") == self.client_secret
        return True

    def _token(self, form):
        """(status, json) for a POST /token."""
        if not self._client_ok(form):
            return 401, {"error": "invalid_client"}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            entry = self.codes.pop(form.get("code"), None)
            if entry is None or entry["redirect_uri"] != form.get(
                    "redirect_uri"):
                return 400, {"error": "invalid_grant"}
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(
                verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != entry["challenge"]:
                return 400, {"error": "invalid_grant",
                             "error_description": "PKCE verification "
                                                  "failed"}
            return 200, self._issue(entry["user"])
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            d = self.devices.get(form.get("device_code"))
            if d is None:
                return 400, {"error": "invalid_grant"}
            if self.device_script:
                return 400, {"error": self.device_script.pop(0)}
            if time.monotonic() > d["expires"]:
                return 400, {"error": "expired_token"}
            if d["status"] == "denied":
                return 400, {"error": "access_denied"}
            if d["status"] != "approved":
                return 400, {"error": "authorization_pending"}
            del self.devices[form["device_code"]]
            return 200, self._issue(d["user"])
        if grant == "refresh_token":
            user = self.refresh_tokens.pop(form.get("refresh_token"), None)
            if user is None:
                return 400, {"error": "invalid_grant",
                             "error_description": "token revoked"}
            return 200, self._issue(user)       # rotated
        return 400, {"error": "unsupported_grant_type"}

    def _device(self, form):
        if not self._client_ok({"client_id": form.get("client_id"),
                                "client_secret": self.client_secret}):
            return 401, {"error": "invalid_client"}
        device_code = secrets.token_urlsafe(24)
        user_code = "%04d-%04d" % (secrets.randbelow(10000),
                                   secrets.randbelow(10000))
        self.devices[device_code] = {
            "user_code": user_code, "status": "pending", "user": None,
            "expires": time.monotonic() + self.device_ttl,
            "scope": form.get("scope")}
        return 200, {"device_code": device_code, "user_code": user_code,
                     "verification_uri": self.base + "/verify",
                     "expires_in": self.device_ttl,
                     "interval": self.interval}

    def _authorize(self, query):
        """(status, headers) for GET /authorize."""
        redirect = query.get("redirect_uri", "")
        parts = urllib.parse.urlsplit(redirect)
        if (query.get("client_id") != self.client_id
                or parts.scheme != "http" or parts.hostname != HOST):
            return 400, {}
        if (query.get("response_type") != "code"
                or query.get("code_challenge_method") != "S256"
                or not query.get("code_challenge")):
            params = {"error": "invalid_request"}
        elif self.deny_next:
            self.deny_next = False
            params = {"error": "access_denied",
                      "error_description": "the user declined"}
        else:
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"redirect_uri": redirect,
                                "challenge": query["code_challenge"],
                                "user": query.get("login_hint")
                                or self.user}
            params = {"code": code}
        params["state"] = query.get("state", "")
        return 302, {"Location": redirect + "?"
                     + urllib.parse.urlencode(params)}

    def start(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status, body=b"", headers=None,
                      ctype="application/json"):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("ascii")
                form = {k: v[0] for k, v in
                        urllib.parse.parse_qs(raw).items()}
                path = urllib.parse.urlsplit(self.path).path
                with outer.lock:
                    outer.requests.append((path, form.get("grant_type"),
                                           form))
                    if path == "/token":
                        status, data = outer._token(form)
                    elif path == "/device":
                        status, data = outer._device(form)
                    else:
                        status, data = 404, {"error": "not_found"}
                self._send(status, json.dumps(data).encode())

            def do_GET(self):
                parts = urllib.parse.urlsplit(self.path)
                query = {k: v[0] for k, v in
                         urllib.parse.parse_qs(parts.query).items()}
                with outer.lock:
                    outer.requests.append((parts.path, None, query))
                    if parts.path == "/authorize":
                        status, headers = outer._authorize(query)
                    else:
                        status, headers = 404, {}
                self._send(status, b"", headers, "text/plain")

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="oauth-test-server",
                                        daemon=True)
        self._thread.start()
        return self

    stop = IntrospectionServer.stop     # the same _httpd and _thread

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


BROWSER_SCRIPT = '''#!%(python)s
# A stand-in browser for the tests (BROWSER=this file): loads the URL
# and follows the redirect to the loopback redirect URI.
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with open(%(log)r, "a") as log:
    log.write(sys.argv[1] + "\\n")
opener.open(sys.argv[1], timeout=20).read()
'''


def write_browser(path, python, log):
    """A BROWSER script at path (run by webbrowser with the URL)."""
    with open(path, "w") as f:
        f.write(BROWSER_SCRIPT % {"python": python, "log": str(log)})
    import os
    os.chmod(path, 0o755)
    return path
