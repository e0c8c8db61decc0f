"""A private Dovecot POP3 server for cpoplib's integration tests.

The server is started for one test session and lives entirely inside a
temporary directory: configuration, runtime sockets, state, log file, TLS
material and the users' Maildirs.  Nothing under /etc is read or written
(``dovecot -c CONFIG`` only reads CONFIG).  It listens on 127.0.0.1 only, on
free ports picked at start-up:

* ``pop3_port``  - plain POP3 that offers STLS,
* ``pop3s_port`` - POP3 over implicit TLS (POP3S).

A throw-away CA and a server certificate for ``DNS:localhost`` (and the
``tls_names`` given, nothing else - in particular not ``IP:127.0.0.1``) are
made with the ``openssl`` CLI (tests/pki.py), so a client that verifies
against ``ca_file`` succeeds with server_hostname='localhost' and fails with
any other name, e.g. '127.0.0.1'.

Both Dovecot 2.3 (Debian 12) and 2.4 (Debian 13) configuration syntaxes are
written, chosen by ``dovecot --version``; CI tests the one the host lacks in
a Debian chroot (``.ci/dovecot-other-version``).

Accounts: run as root, Dovecot's own processes use the package's users
``dovecot`` and ``dovenull`` and the mail belongs to ``nobody`` (Dovecot
refuses to serve mail as uid 0).  Run as an ordinary user, everything runs
as that user (a "rootless" Dovecot).  The users, their {PLAIN} passwords and
their Maildirs (filled with the stdlib ``mailbox`` module) are in USERS,
build_corpus() and DovecotServer._make_mailboxes().

The server is stopped by stop() / the context manager, by an atexit hook,
and - should the Python process be killed outright - by the kernel, which
sends the dovecot master SIGTERM when its parent dies (PR_SET_PDEATHSIG).

Usage::

    with DovecotServer() as server:
        poplib.POP3(server.host, server.pop3_port)

OAuth 2.0 (opt-in, ``DovecotServer(oauth2=True)``): the test process also
serves an RFC 7662 token introspection endpoint on 127.0.0.1
(IntrospectionServer, a stdlib http.server in a thread) and Dovecot
validates XOAUTH2 and OAUTHBEARER tokens against it, with
``introspection_mode = post``: the oauth2 passdb and its args file on 2.3,
the global ``oauth2 { }`` block on 2.4 (whose mechanisms no longer use a
passdb).  Tests register tokens with ``server.oauth2_tokens[token] =
user`` (or add_oauth2_token()) and read ``server.oauth2_requests`` to see
that Dovecot asked.  Without oauth2=True neither mechanism is offered.

TLS client certificates and SASL EXTERNAL (opt-in,
``DovecotServer(client_certs=True)``): Dovecot asks every TLS client for
a certificate (``ssl_verify_client_cert``, 2.4:
``ssl_server_request_client_cert``), verifies it against the throw-away
CA (``ssl_ca``; no CRL: ``ssl_require_crl = no``), requires a valid one
for every login (``auth_ssl_require_client_cert``), takes the user name
from its commonName (``auth_ssl_username_from_cert``) and offers EXTERNAL,
which a static passdb with ``nopassword`` asked only for that mechanism
lets in (EXTERNAL verifies the certificate's user with an empty
password).  issue_client_certificate(user) makes a certificate and key for
a user (foreign=True: from a CA Dovecot does not trust).  Without
client_certs none of this is configured.

replace_server_certificate() renews the server's certificate (a new key,
the same name and CA) and makes the running Dovecot take it (SIGHUP).

Set CPOPLIB_DOVECOT_KEEP=1 to keep the temporary directory (and its
dovecot.log) after the server stopped.  CPOPLIB_DOVECOT may name the dovecot
binary.
"""

import atexit
import base64
import http.server
import json
import mailbox
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pki
from pki import (CLIENT_EXTENSIONS, SERVER_EXTENSIONS, issue_certificate,
                 make_ca)

HOST = "127.0.0.1"
TLS_HOSTNAME = "localhost"
KEY_HEADER = b"X-Cpoplib-Test"

# user name -> password
#   alice  the corpus; tests only read it
#   bob    DELE + RSET (never QUIT after a DELE)
#   carol  DELE + QUIT; starts empty, tests add what they delete
#   dave   pop3_lock_session=yes, for the [IN-USE] test
USERS = {
    "alice": "alice-secret",
    "bob": "bob-secret",
    "carol": "carol-secret",
    "dave": "dave-secret",
}
LOCKED_USER = "dave"

LARGE_SIZE = 20 * 1024 * 1024


class DovecotUnavailable(Exception):
    """dovecot (or openssl) is not installed."""


class DovecotError(Exception):
    """Dovecot could not be configured or started."""


# --------------------------------------------------------------------------
# discovery

def find_dovecot():
    """Path of the dovecot binary or None (it lives in /usr/sbin)."""
    explicit = os.environ.get("CPOPLIB_DOVECOT")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    path = os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    return shutil.which("dovecot", path=path)


def dovecot_version(binary):
    """(major, minor, patch) of the dovecot binary, e.g. (2, 3, 19)."""
    out = subprocess.run([binary, "--version"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    m = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", out)
    if not m:
        raise DovecotError("cannot parse `dovecot --version`: %r" % out)
    return tuple(int(x or 0) for x in m.groups())


# --------------------------------------------------------------------------
# the corpus

def to_crlf(data):
    """Turn every bare LF into CRLF (what a POP3 server puts on the wire)."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def _headers(key, subject=b"test message", extra=b""):
    return (b"From: Test Sender <sender@example.org>\n"
            b"To: alice@example.org\n"
            b"Subject: " + subject + b"\n"
            b"Date: Mon, 01 Jan 2024 12:00:00 +0000\n"
            b"Message-ID: <" + key.encode() + b"@cpoplib.test>\n"
            + KEY_HEADER + b": " + key.encode() + b"\n" + extra)


def _large_message(key, size):
    head = _headers(key, b"large message") + b"\n"
    lines = []
    total = len(head)
    n = 0
    while total < size:
        n += 1
        if n % 1000 == 0:
            line = b"."                            # a lone dot mid-message
        elif n % 97 == 0:
            line = b".%08d starts with a dot" % n
        elif n % 13 == 0:
            line = b""
        else:
            line = b"%08d %s" % (n, b"abcdefghijklmnopqrstuvwxyz0123456789"
                                 b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        lines.append(line)
        total += len(line) + 1
    return head + b"\n".join(lines) + b"\n"


def build_corpus(large_size=LARGE_SIZE):
    """The messages of the main mailbox: list of (key, bytes with LF)."""
    msgs = []

    def add(key, subject, body, extra=b"", blank=True):
        msgs.append((key, _headers(key, subject, extra)
                     + (b"\n" if blank else b"") + body))

    add("plain", b"plain ASCII",
        b"Hello,\n\nthis is a plain text message.\n\tIndented line.\n"
        b"Trailing blanks   \n\n-- \nsig\n")
    add("dots", b"dot stuffing",
        b".\n..\n...\n.leading dot\n..two leading dots\n. space\n"
        b"middle . dot\n.\r\nend\n.\n")
    add("eightbit", b"caf\xe9 \xfcber \xa4\xff",
        b"Latin-1 body: caf\xe9 na\xefve \xe0 \xff\xfe\x80\x81\n"
        b"control-ish: \x01\x02\x1b[0m\x7f\n",
        extra=b"X-Latin1: r\xe9sum\xe9\n")
    add("utf8", "Grüße 日本語 ✉".encode(),
        "UTF-8 body: Ünïcödé, ελληνικά, 中文, emoji 📬\n".encode(),
        extra="X-Name: Jürgen Müller <jürgen@exämple.org>\n".encode())
    add("emptybody", b"empty body", b"")
    add("headersonly", b"headers only, no separator line", b"", blank=False)
    add("longlines", b"long lines",
        b"A" * 900 + b"\n" + b"B" * 1500 + b"\n" + b"." + b"C" * 1990 + b"\n"
        + b"D" * 2000 + b"\nshort\n",
        extra=b"X-Long: " + b"h" * 1000 + b"\n")
    add("nofinalnewline", b"no final newline",
        b"first line\nlast line without newline")
    add("nofinalnewline-dot", b"no final newline, dot",
        b"first line\n.")
    add("blanklines", b"many blank lines",
        b"\n" * 50 + b"text\n" + b"\n" * 50)
    add("crlf", b"CRLF already in the file",
        b"line one\r\nline two\r\n.\r\nline three\r\n")
    add("manylines", b"many short lines",
        b"".join(b"%d\n" % i for i in range(20000)))
    msgs.append(("large", _large_message("large", large_size)))
    return msgs


def corpus_keys():
    """The keys of build_corpus()'s messages, in delivery order."""
    return [key for key, _ in build_corpus(large_size=0)]


def small_corpus(prefix, count=3):
    return [("%s-%d" % (prefix, i),
             _headers("%s-%d" % (prefix, i), b"small %d" % i)
             + b"\nsmall message %d\n" % i) for i in range(1, count + 1)]


def message_key(lines_or_bytes):
    """The X-Cpoplib-Test key of a message given as bytes or list of lines."""
    if isinstance(lines_or_bytes, (bytes, bytearray)):
        lines = lines_or_bytes.split(b"\n")
    else:
        lines = lines_or_bytes
    for line in lines:
        line = line.rstrip(b"\r")
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.lower() == KEY_HEADER.lower():
            return value.strip().decode()
    return None


# --------------------------------------------------------------------------
# helpers

def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _run(cmd, cwd=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=120)
    if proc.returncode:
        raise DovecotError("%s failed (%d): %s" % (
            " ".join(cmd), proc.returncode,
            proc.stderr.decode(errors="replace")))
    return proc


def _descendants(pid):
    """PIDs of all descendants of pid (Linux /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the comm field may hold spaces and parentheses: split after ')'
        fields = stat[stat.rfind(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    result, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            result.append(child)
            todo.append(child)
    return result


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] != b"Z"


def _die_with_parent():
    """preexec_fn: on Linux, SIGTERM dovecot's master when we die.

    Covers a test process that is killed without running its clean-ups
    (SIGKILL, SIGTERM, CI time-outs): the master then stops its children."""
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    PR_SET_PDEATHSIG = 1

    def preexec():
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return preexec


def _pick_tmp_parent():
    """A temp parent that unprivileged Dovecot processes can traverse."""
    parent = os.path.realpath(tempfile.gettempdir())
    if os.geteuid() == 0:
        path = parent
        while path != "/":
            if not os.stat(path).st_mode & 0o001:
                return "/tmp"
            path = os.path.dirname(path)
    return parent


# --------------------------------------------------------------------------
# TLS material: tests/pki.py

def subject_alt_names(more=()):
    """The server certificate's subjectAltName: localhost and `more`."""
    return pki.subject_alt_names((TLS_HOSTNAME, *more))


# --------------------------------------------------------------------------
# the OAuth 2.0 token introspection endpoint

class IntrospectionServer:
    """An RFC 7662 token introspection endpoint on HOST, served by a thread
    of the test process.

    ``tokens`` maps valid access tokens to user names; every other token
    is inactive.  A POST with the form field ``token`` (what Dovecot's
    ``introspection_mode = post`` sends) or a GET with ``?token=`` (mode
    ``get``, with an introspection_url ending in ``?token=``) is answered with ``{"active": true, "username": USER}`` or
    ``{"active": false}``.  ``requests`` lists the tokens asked about, in
    order (a request without a token is recorded as None), so tests can
    prove that Dovecot really asked."""

    path = "/introspect"

    def __init__(self):
        self.tokens = {}
        self.requests = []
        self._lock = threading.Lock()
        self._httpd = None
        self._thread = None
        self.port = None

    @property
    def url(self):
        return "http://%s:%d%s" % (HOST, self.port, self.path)

    def answer(self, token):
        with self._lock:
            self.requests.append(token)
            user = self.tokens.get(token) if token is not None else None
        if user is None:
            return {"active": False}
        return {"active": True, "username": user, "scope": "mail",
                "token_type": "Bearer", "exp": int(time.time()) + 3600}

    def start(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, query):
                if urllib.parse.urlsplit(self.path).path != outer.path:
                    self.send_error(404)
                    return
                token = urllib.parse.parse_qs(query).get("token", [None])[0]
                body = json.dumps(outer.answer(token)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self._reply(self.rfile.read(length).decode("latin-1"))

            def do_GET(self):
                self._reply(urllib.parse.urlsplit(self.path).query)

            def log_message(self, *args):      # keep pytest's output clean
                pass

        self._httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="oauth2-introspection",
            daemon=True)
        self._thread.start()

    def stop(self):
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            self._thread.join(10)


# --------------------------------------------------------------------------
# the server

class DovecotServer:
    """A Dovecot instance in a temporary directory, see the module docstring.

    Attributes after start(): host, pop3_port, pop3s_port, ca_file, version,
    users (name -> password), expected (user -> {key: file bytes}),
    apop_available, workdir; with oauth2=True also oauth2 (the
    IntrospectionServer), oauth2_tokens (token -> user, may be changed at
    any time) and oauth2_requests (the tokens Dovecot asked about).
    """

    host = HOST
    tls_hostname = TLS_HOSTNAME

    def __init__(self, large_size=LARGE_SIZE, extra_users=None, oauth2=False,
                 tls_names=(), client_certs=False):
        """large_size: size of alice's "large" message.  extra_users:
        {user: (password, [(key, bytes)])}, more accounts with their
        mailboxes (the benchmarks add one with 2000 messages); USERS are
        always there (an extra user of the same name replaces one).
        oauth2: also offer XOAUTH2 and OAUTHBEARER, with tokens validated
        by an introspection endpoint of this process (see
        IntrospectionServer).  tls_names: more DNS names the server's
        certificate is for.  client_certs: TLS client certificates from
        the throw-away CA (issue_client_certificate()) are asked for and
        required for every login, their commonName is the user name, and
        SASL EXTERNAL is offered (see the module docstring)."""
        self.binary = find_dovecot()
        if self.binary is None:
            raise DovecotUnavailable(
                "dovecot is not installed "
                "(apt-get install dovecot-core dovecot-pop3d)")
        self.openssl = shutil.which("openssl")
        if self.openssl is None:
            raise DovecotUnavailable(
                "the openssl CLI is not installed (apt-get install openssl)")
        self.version = dovecot_version(self.binary)
        self.large_size = large_size
        self.extra_users = dict(extra_users or {})
        self.users = dict(USERS)
        self.users.update((user, password) for user, (password, _)
                          in self.extra_users.items())
        self.expected = {}
        self.proc = None
        self.workdir = None
        self.pop3_port = self.pop3s_port = None
        self.internal_group = "dovecot"
        self.oauth2 = IntrospectionServer() if oauth2 else None
        self.tls_names = tuple(tls_names)
        self.client_certs = client_certs

    # -- OAuth 2.0 ---------------------------------------------------------

    @property
    def oauth2_tokens(self):
        """token -> user name: the tokens the introspection endpoint calls
        active (only with oauth2=True)."""
        if self.oauth2 is None:
            raise DovecotError("this server was started without oauth2=True")
        return self.oauth2.tokens

    @property
    def oauth2_requests(self):
        """The tokens the endpoint was asked about so far, oldest first."""
        if self.oauth2 is None:
            raise DovecotError("this server was started without oauth2=True")
        with self.oauth2._lock:
            return list(self.oauth2.requests)

    def add_oauth2_token(self, user, length=43):
        """A new random access token for user (URL-safe base64 characters,
        `length` of them), registered as active; returns it."""
        token = ""
        while len(token) < length:
            token += base64.urlsafe_b64encode(os.urandom(48)).decode()
        token = token[:length]
        self.oauth2_tokens[token] = user
        return token

    # -- context manager -------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- set-up ------------------------------------------------------------

    def _accounts(self):
        """uid/gid that owns the mail, and Dovecot's internal/login users."""
        if os.geteuid() != 0:
            # rootless Dovecot: every process runs as the invoking user
            me = pwd.getpwuid(os.geteuid())
            self.internal_group = grp.getgrgid(os.getegid()).gr_name
            return me.pw_uid, me.pw_gid, me.pw_name, me.pw_name
        try:
            mail = pwd.getpwnam("nobody")
        except KeyError:
            raise DovecotError("user 'nobody' is missing") from None
        for name in ("dovecot", "dovenull"):
            try:
                pwd.getpwnam(name)
            except KeyError:
                raise DovecotError(
                    "system user %r is missing; the dovecot-core package "
                    "creates it" % name) from None
        return mail.pw_uid, mail.pw_gid, "dovecot", "dovenull"

    def start(self):
        self.workdir = tempfile.mkdtemp(prefix="cpoplib-dovecot-",
                                        dir=_pick_tmp_parent())
        atexit.register(self.stop)
        try:
            os.chmod(self.workdir, 0o755)
            (self.mail_uid, self.mail_gid,
             self.internal_user, self.login_user) = self._accounts()
            self._make_tls()
            self._make_mailboxes()
            self._write_passwd()
            if self.oauth2 is not None:
                self.oauth2.start()
            for attempt in range(3):
                self.pop3_port, self.pop3s_port = _free_port(), _free_port()
                if self.pop3_port == self.pop3s_port:
                    continue
                self._write_config()
                if self._launch():
                    break
            else:
                raise DovecotError("dovecot did not start:\n" + self.log())
            self.apop_available = self._probe_apop()
        except BaseException:
            self.stop()
            raise

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    def _make_tls(self):
        tls = self.path("tls")
        os.mkdir(tls)
        make_ca(self.openssl, tls, "ca", "cpoplib test CA")
        issue_certificate(self.openssl, tls, "server", TLS_HOSTNAME,
                          SERVER_EXTENSIONS
                          % subject_alt_names(self.tls_names))
        self.ca_file = os.path.join(tls, "ca.pem")
        self.cert_file = os.path.join(tls, "server.pem")
        self.key_file = os.path.join(tls, "server.key")

    # -- client certificates and a renewed server certificate -------------

    def issue_client_certificate(self, user, foreign=False):
        """(certificate file, key file) of a new client certificate for
        `user` (its commonName, which Dovecot takes as the user name with
        client_certs=True), signed by the server's CA, or with
        foreign=True by another CA that Dovecot does not trust."""
        tls = self.path("tls")
        ca = "ca"
        if foreign:
            ca = "foreign-ca"
            if not os.path.exists(os.path.join(tls, ca + ".pem")):
                make_ca(self.openssl, tls, ca, "cpoplib foreign CA")
        name = "client-%s%s-%d" % (user, "-foreign" if foreign else "",
                                   len(os.listdir(tls)))
        issue_certificate(self.openssl, tls, name, user, CLIENT_EXTENSIONS,
                          ca=ca)
        return (os.path.join(tls, name + ".pem"),
                os.path.join(tls, name + ".key"))

    def server_certificate(self):
        """The DER bytes of the certificate the server presents."""
        import ssl
        with open(self.cert_file) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())

    def replace_server_certificate(self):
        """A renewal: a new key and certificate for the same name from the
        same CA, in place of the old files; Dovecot rereads them on SIGHUP.
        Returns once a new connection gets the new certificate (its DER)."""
        import ssl
        tls = self.path("tls")
        issue_certificate(self.openssl, tls, "server", TLS_HOSTNAME,
                          SERVER_EXTENSIONS
                          % subject_alt_names(self.tls_names))
        new = self.server_certificate()
        self.proc.send_signal(signal.SIGHUP)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.pop3s_port),
                                              timeout=5) as raw:
                    with ctx.wrap_socket(raw) as tls_sock:
                        if tls_sock.getpeercert(binary_form=True) == new:
                            return new
            except OSError:
                pass
            time.sleep(0.1)
        raise DovecotError("dovecot did not take the new certificate:\n"
                           + self.log())

    def home(self, user):
        return self.path("home", user)

    def maildir(self, user):
        return os.path.join(self.home(user), "Maildir")

    def _chown_tree(self, top):
        if os.geteuid() != 0:
            return
        for root, dirs, files in os.walk(top):
            os.chown(root, self.mail_uid, self.mail_gid)
            for name in files:
                os.chown(os.path.join(root, name),
                         self.mail_uid, self.mail_gid)

    def _make_mailboxes(self):
        os.mkdir(self.path("home"))
        os.chmod(self.path("home"), 0o755)
        contents = {
            "alice": build_corpus(self.large_size),
            "bob": small_corpus("bob"),
            "carol": [],
            "dave": small_corpus("dave", 2),
        }
        contents.update((user, messages) for user, (_, messages)
                        in self.extra_users.items())
        for user in self.users:
            os.mkdir(self.home(user))
            mailbox.Maildir(self.maildir(user), create=True).close()
            self.expected[user] = {}
            self.add_messages(user, contents[user])

    def add_messages(self, user, messages):
        """Deliver [(key, bytes)] to user's Maildir (also while running).

        Returns {key: file bytes}; the file bytes are read back from disk,
        they are what a RETR must reproduce (after LF -> CRLF).
        """
        box = mailbox.Maildir(self.maildir(user), create=False)
        added = {}
        try:
            for key, data in messages:
                with box.get_file(box.add(data)) as f:
                    added[key] = f.read()
        finally:
            box.close()
        self._chown_tree(self.home(user))
        self.expected.setdefault(user, {}).update(added)
        return added

    def message_files(self, user):
        """{key: path} of the files now in user's Maildir (new/ and cur/)."""
        for attempt in range(5):
            result = {}
            try:
                for sub in ("new", "cur"):
                    d = os.path.join(self.maildir(user), sub)
                    for name in os.listdir(d):
                        p = os.path.join(d, name)
                        with open(p, "rb") as f:
                            result[message_key(f.read(4096))] = p
                return result
            except FileNotFoundError:     # Dovecot renamed it meanwhile
                time.sleep(0.05)
        raise DovecotError("Maildir of %s keeps changing" % user)

    def _write_passwd(self):
        lines = []
        for user, password in self.users.items():
            extra = ""
            if user == LOCKED_USER:
                extra = "userdb_pop3_lock_session=yes"
            lines.append("%s:{PLAIN}%s:%d:%d::%s::%s\n" % (
                user, password, self.mail_uid, self.mail_gid,
                self.home(user), extra))
        self.passwd_file = self.path("passwd")
        with open(self.passwd_file, "w") as f:
            f.writelines(lines)
        os.chmod(self.passwd_file, 0o644)

    def _common_config(self):
        return {
            "base_dir": self.path("run"),
            "state_dir": self.path("state"),
            "log_path": self.path("dovecot.log"),
            "instance_name": "cpoplib-test-%d" % os.getpid(),
            "protocols": "pop3",
            "listen": HOST,
            "ssl": "yes",
            "login_greeting": "cpoplib test server ready.",
            "auth_mechanisms":
                "plain login cram-md5 scram-sha-1 scram-sha-256 apop"
                + (" xoauth2 oauthbearer" if self.oauth2 is not None else "")
                + (" external" if self.client_certs else ""),
            "auth_verbose": "yes",
            # no 2 s delay after a failed login; see also anvil-auth-penalty
            "auth_failure_delay": "0",
            "first_valid_uid": str(min(self.mail_uid, 1)),
            "first_valid_gid": str(min(self.mail_gid, 1)),
            "default_internal_user": self.internal_user,
            "default_login_user": self.login_user,
            "default_internal_group": self.internal_group,
            "pop3_lock_session": "no",
            "mail_uid": str(self.mail_uid),
            "mail_gid": str(self.mail_gid),
        }

    def _services(self):
        # 2.3 takes a listener's address inside the block; 2.4 has no such
        # setting there and listens on the global "listen" (set to HOST).
        if self.version[:2] >= (2, 4):
            address = ""
        else:
            address = "    address = %s\n" % HOST
        return ("service pop3-login {\n"
                "  chroot =\n"
                "  inet_listener pop3 {\n"
                "%s"
                "    port = %d\n"
                "  }\n"
                "  inet_listener pop3s {\n"
                "%s"
                "    port = %d\n"
                "    ssl = yes\n"
                "  }\n"
                "}\n"
                "service anvil {\n"
                "  chroot =\n"
                "  unix_listener anvil-auth-penalty {\n"
                "    mode = 0\n"
                "  }\n"
                "}\n" % (address, self.pop3_port, address, self.pop3s_port))

    def _config_23(self):
        s = self._common_config()
        s.update({
            "ssl_cert": "<" + self.cert_file,
            "ssl_key": "<" + self.key_file,
            "disable_plaintext_auth": "no",
            "mail_location": "maildir:~/Maildir",
        })
        if self.client_certs:
            s.update({
                "ssl_ca": "<" + self.ca_file,
                "ssl_verify_client_cert": "yes",
                # the throw-away CA publishes no CRL
                "ssl_require_crl": "no",
                "ssl_cert_username_field": "commonName",
                "auth_ssl_require_client_cert": "yes",
                "auth_ssl_username_from_cert": "yes",
            })
        body = "".join("%s = %s\n" % kv for kv in s.items())
        if self.client_certs:
            # EXTERNAL checks the (certificate's) user with an empty
            # password: a passdb asked only for EXTERNAL lets it in;
            # every other mechanism goes on to the passwd-file
            body += ("passdb {\n"
                     "  driver = static\n"
                     "  mechanisms = external\n"
                     "  args = nopassword=y\n"
                     "}\n")
        if self.oauth2 is not None:
            # 2.3: the mechanisms verify the token through a passdb; this
            # one is only asked for them, and its refusal is final (the
            # token is never tried as a password of the passwd-file)
            self.oauth2_config_file = self.path("dovecot-oauth2.conf.ext")
            with open(self.oauth2_config_file, "w") as f:
                f.write("".join("%s = %s\n" % kv
                                for kv in self._oauth2_settings()))
            os.chmod(self.oauth2_config_file, 0o644)
            body += ("passdb {\n"
                     "  driver = oauth2\n"
                     "  mechanisms = xoauth2 oauthbearer\n"
                     "  args = %s\n"
                     "  result_failure = return-fail\n"
                     "  result_internalfail = return-fail\n"
                     "}\n" % self.oauth2_config_file)
        body += ("passdb {\n"
                 "  driver = passwd-file\n"
                 "  args = scheme=PLAIN %s\n"
                 "}\n"
                 "userdb {\n"
                 "  driver = passwd-file\n"
                 "  args = %s\n"
                 "}\n" % (self.passwd_file, self.passwd_file))
        return body + self._services()

    def _config_24(self):
        s = self._common_config()
        s.update({
            "ssl_server_cert_file": self.cert_file,
            "ssl_server_key_file": self.key_file,
            "auth_allow_cleartext": "yes",
            "mail_driver": "maildir",
            "mail_path": "~/Maildir",
        })
        if self.client_certs:
            s.update({
                "ssl_server_ca_file": self.ca_file,
                "ssl_server_request_client_cert": "yes",
                "ssl_server_require_crl": "no",
                "ssl_server_cert_username_field": "commonName",
                "auth_ssl_require_client_cert": "yes",
                "auth_ssl_username_from_cert": "yes",
            })
        # dovecot_config_version must be the first setting
        ver = "%d.%d.%d" % self.version
        body = ("dovecot_config_version = %s\n"
                "dovecot_storage_version = %s\n" % (ver, ver))
        body += "".join("%s = %s\n" % kv for kv in s.items())
        if self.client_certs:
            body += ("passdb static {\n"
                     "  mechanisms_filter = external\n"
                     "  fields {\n"
                     "    nopassword = yes\n"
                     "  }\n"
                     "}\n")
        body += ("passdb passwd-file {\n"
                 "  passwd_file_path = %s\n"
                 "}\n"
                 "userdb passwd-file {\n"
                 "  passwd_file_path = %s\n"
                 "}\n" % (self.passwd_file, self.passwd_file))
        if self.oauth2 is not None:
            # 2.4: the mechanisms validate tokens with the global oauth2
            # settings themselves, no passdb is involved
            body += "oauth2 {\n%s}\n" % "".join(
                "  %s = %s\n" % kv for kv in self._oauth2_settings())
        return body + self._services()

    def _oauth2_settings(self):
        """The oauth2 settings both dialects share (2.3's args file, 2.4's
        oauth2 { } block): RFC 7662 introspection by POST, the user name
        in "username", and "active" must be true."""
        return [
            ("introspection_mode", "post"),
            ("introspection_url", self.oauth2.url),
            ("username_attribute", "username"),
            ("active_attribute", "active"),
            ("active_value", "true"),
            ("force_introspection", "yes"),
        ]

    def _write_config(self):
        self.config_file = self.path("dovecot.conf")
        text = (self._config_24() if self.version[:2] >= (2, 4)
                else self._config_23())
        with open(self.config_file, "w") as f:
            f.write("# generated by cpoplib's tests/dovecot_server.py\n")
            f.write(text)

    def _launch(self):
        """Start dovecot in the foreground; True once both ports answer.

        False if it exited because a port was taken (the caller retries)."""
        for d in ("run", "state"):
            if not os.path.isdir(self.path(d)):
                os.mkdir(self.path(d))
        stderr = open(self.path("dovecot.stderr"), "ab")
        try:
            self.proc = subprocess.Popen(
                [self.binary, "-F", "-c", self.config_file],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                cwd=self.workdir, preexec_fn=_die_with_parent())
        finally:
            stderr.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                self.proc = None
                if "Address already in use" in log:
                    return False
                raise DovecotError("dovecot exited at start-up:\n" + log)
            if self._greets(self.pop3_port) and self._listens(self.pop3s_port):
                return True
            time.sleep(0.05)
        raise DovecotError("dovecot did not answer within 30 s:\n"
                           + self.log())

    def _greets(self, port):
        try:
            with socket.create_connection((HOST, port), timeout=5) as s:
                return s.recv(512).startswith(b"+OK")
        except OSError:
            return False

    def _listens(self, port):
        try:
            socket.create_connection((HOST, port), timeout=5).close()
            return True
        except OSError:
            return False

    def _probe_apop(self):
        with socket.create_connection((HOST, self.pop3_port), timeout=10) as s:
            greeting = s.recv(512)
            s.sendall(b"QUIT\r\n")
        return re.search(rb"<[^<>]+>", greeting) is not None

    def log(self):
        """The server's stderr and log file (for error messages)."""
        text = []
        for name in ("dovecot.stderr", "dovecot.log"):
            try:
                with open(self.path(name), "rb") as f:
                    text.append(f.read()[-20000:].decode(errors="replace"))
            except (OSError, TypeError):
                pass
        return "\n".join(text)

    # -- tear-down -------------------------------------------------------

    def stop(self):
        """Stop dovecot and all its processes; remove the work directory."""
        proc, self.proc = self.proc, None
        if self.oauth2 is not None:
            self.oauth2.stop()
        if proc is not None:
            pids = _descendants(proc.pid)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            deadline = time.monotonic() + 10
            while any(_alive(p) for p in pids):
                if time.monotonic() > deadline:
                    for p in pids:
                        if _alive(p):
                            try:
                                os.kill(p, signal.SIGKILL)
                            except OSError:
                                pass
                    break
                time.sleep(0.05)
        workdir, self.workdir = self.workdir, None
        if workdir and os.path.isdir(workdir):
            if os.environ.get("CPOPLIB_DOVECOT_KEEP", "") not in ("", "0"):
                print("cpoplib: Dovecot work directory kept in", workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":   # manual check: start, print, wait for Ctrl-C
    with DovecotServer(large_size=1024 * 1024) as srv:
        print("dovecot %d.%d.%d in %s" % (srv.version + (srv.workdir,)))
        print("POP3 127.0.0.1:%d  POP3S 127.0.0.1:%d  CA %s" % (
            srv.pop3_port, srv.pop3s_port, srv.ca_file))
        print("users:", srv.users, "APOP:", srv.apop_available)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
