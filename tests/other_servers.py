"""Private POP3 servers other than Dovecot, for tests/test_other_servers.py.

Four implementations, each started for one test module and living in a
temporary directory (configuration, users, mailboxes, TLS material, logs),
listening on 127.0.0.1 only, on free ports picked at start-up:

* ``twisted``   - twisted.mail.pop3 (tests/twisted_pop3d.py, a subprocess
  of the running interpreter; needs the ``twisted`` package, a test extra),
  Maildir;
* ``mailutils`` - GNU Mailutils pop3d, mbox, users from a private
  "virtual domain" password file, APOP from a private database, STLS;
* ``popa3d``    - popa3d in inetd mode behind Courier's couriertcpd, mbox
  in /var/mail, users checked by PAM (pam_unix);
* ``courier``   - Courier's pop3d (couriertcpd, courierpop3login, the
  authdaemond of courier-authlib with its PAM module, courierpop3d),
  Maildir, STLS through couriertls.

The three Debian ones are not installed (their packages conflict with
dovecot-pop3d): ``.ci/other-servers`` downloads them and the libraries
they need that the system lacks, and unpacks them with ``dpkg -x`` into a
private root, $CPOPLIB_SERVERS_ROOT (default
/var/cache/cpoplib-servers/root).  Mailutils runs from there as it is
(LD_LIBRARY_PATH).  popa3d and Courier have paths compiled in (their PAM
service, /etc/courier, the authdaemon socket under /run/courier, the
authlib modules under /usr/lib/courier-authlib, /var/mail, popa3d's
chroot /var/lib/popa3d and its system user), so they run in a mount
namespace of their own (``unshare --mount``, as root) where read-only
overlays put the private root over /usr and the server's generated
files (passwd, group, shadow with only the test users, a PAM service)
over /etc, a tmpfs is /run, and a directory of the work dir is
/var/mail.  Nothing outside the namespace changes: no system service,
user or file is touched, and the mounts vanish with the last process.

Every server is stopped by stop(), by an atexit hook and, should the test
process be killed outright, by the kernel: the server's first process is
started with PR_SET_PDEATHSIG (SIGTERM when its parent dies), and
authdaemond, which runs beside couriertcpd, gets the same from setpriv.

Users (all servers): alice holds the corpus (CORPUS_KEYS of
dovecot_server.build_corpus, with a smaller "large" message) and is only
read; bob is used for DELE +
RSET; carol starts empty, and each test adds what it needs and leaves the
box empty; dave is for the tests that need a session of their own (locks,
quirks).
"""

import atexit
import glob
import json
import mailbox
import os
import poplib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import dovecot_server

from dovecot_server import (  # noqa: F401  (re-exported for the tests)
    HOST,
    TLS_HOSTNAME,
    build_corpus,
    message_key,  # noqa: F401
    small_corpus,
)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ROOT = "/var/cache/cpoplib-servers/root"
PREPARE_HINT = ("prepare them (as root) with `bash .ci/other-servers`; it "
                "unpacks them into %s (CPOPLIB_SERVERS_ROOT picks another "
                "directory)" % DEFAULT_ROOT)
LARGE_SIZE = 512 * 1024

USERS = {
    "alice": "alice-secret",
    "bob": "bob-secret",
    "carol": "carol-secret",
    "dave": "dave-secret",
}
# alice's messages: those of dovecot_server.build_corpus() that differ in
# kind (a multi-line answer costs these servers ~40 ms: Nagle's algorithm
# and delayed ACKs, so every message counts)
CORPUS_KEYS = ("plain", "dots", "eightbit", "utf8", "emptybody",
               "headersonly", "longlines", "nofinalnewline", "crlf", "large")

# uids of the test users in the private /etc/passwd of the namespaced
# servers (numbers no system account of Debian uses)
FIRST_UID = 64001

# the environment of the sanitizer job must not reach the servers: an
# uninstrumented server with libasan preloaded reports its own leaks
_SANITIZER_ENV = ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS",
                  "UBSAN_OPTIONS", "PYTHONMALLOC")


class Unavailable(Exception):
    """The server is not prepared here; str() says how to prepare it."""


class ServerError(Exception):
    """The server could not be configured or started."""


def servers_root():
    return os.environ.get("CPOPLIB_SERVERS_ROOT") or DEFAULT_ROOT


def server_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if k not in _SANITIZER_ENV}
    env.update(extra or {})
    return env


class Server:
    """Base class: one server in a temporary directory, see the module
    docstring.  Attributes after start(): host, port, users (name ->
    password), workdir; ca_file when the server offers STLS."""

    name = None
    mail_format = "maildir"          # or "mbox"
    offers_stls = False
    host = HOST
    tls_hostname = TLS_HOSTNAME
    tls_names = ()                   # more names for the certificate

    def __init__(self, large_size=LARGE_SIZE):
        self.large_size = large_size
        self.users = dict(USERS)
        self.proc = None
        self.workdir = None
        self.port = None
        self.ca_file = None
        self.openssl = shutil.which("openssl")
        self.check()

    # -- what subclasses provide -------------------------------------------

    def check(self):
        """Raise Unavailable when the server cannot run here."""

    def _configure(self):
        """Write configuration files (after the mailboxes exist)."""

    def _command(self):
        """(argv, env) starting the server on self.port."""
        raise NotImplementedError

    def login_name(self, user):
        """The name `user` logs in with."""
        return user

    def mail_owner(self, user):
        """(uid, gid) the server expects user's mail to belong to."""
        return os.geteuid(), os.getegid()

    def mailbox_path(self, user):
        return os.path.join(self.home(user), "Maildir")

    # -- context manager ---------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- set-up ------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    def home(self, user):
        return self.path("home", user)

    def start(self):
        self.workdir = tempfile.mkdtemp(
            prefix="cpoplib-%s-" % self.name,
            dir=dovecot_server._pick_tmp_parent())
        atexit.register(self.stop)
        try:
            os.chmod(self.workdir, 0o755)
            os.mkdir(self.path("home"))
            os.chmod(self.path("home"), 0o755)
            if self.offers_stls:
                if self.openssl is None:
                    raise Unavailable("the openssl CLI is not installed")
                # the throw-away CA and localhost certificate of the
                # Dovecot tests (it needs only path(), openssl and tls_names)
                dovecot_server.DovecotServer._make_tls(self)
            self._make_mailboxes()
            self._configure()
            for attempt in range(3):
                self.port = dovecot_server._free_port()
                if self._launch():
                    break
            else:
                raise ServerError("%s did not start:\n%s"
                                  % (self.name, self.log()))
        except BaseException:
            self.stop()
            raise

    def mailbox_contents(self):
        """{user: [(key, bytes)]}, the mailboxes at start-up."""
        return {
            "alice": [(key, data) for key, data in
                      build_corpus(self.large_size) if key in CORPUS_KEYS],
            "bob": small_corpus("bob"),
            "carol": [],
            "dave": small_corpus("dave", 2),
        }

    def _make_mailboxes(self):
        contents = self.mailbox_contents()
        for user in self.users:
            os.mkdir(self.home(user))
            os.chown(self.home(user), *self.mail_owner(user))
            self.add_messages(user, contents[user])

    def add_messages(self, user, messages):
        """Deliver [(key, bytes with LF)] to user's mailbox.  Only while
        no session of user is open (an mbox server may be rewriting it)."""
        path = self.mailbox_path(user)
        if self.mail_format == "mbox":
            box = mailbox.mbox(path, create=True)
            box.lock()
        else:
            box = mailbox.Maildir(path, create=True)
        try:
            for key, data in messages:
                box.add(data)
            box.flush()
        finally:
            if self.mail_format == "mbox":
                box.unlock()
            box.close()
        uid, gid = self.mail_owner(user)
        if self.mail_format == "mbox":
            os.chown(path, uid, gid)
            os.chmod(path, 0o600)
            # popa3d makes a session wait until the mbox's mtime is in
            # the past (a change within that second could go unseen):
            # a delivery two seconds ago spares the tests that second
            then = time.time() - 2
            os.utime(path, (then, then))
        else:
            for root, dirs, files in os.walk(path):
                os.chown(root, uid, gid)
                for name in files:
                    os.chown(os.path.join(root, name), uid, gid)

    def _launch(self):
        """Start the server; True once it greets, False when it exited
        (a port taken meanwhile: the caller retries with another)."""
        argv, env = self._command()
        with open(self.path("server.log"), "ab") as log:
            self.proc = subprocess.Popen(
                argv, env=env, cwd=self.workdir, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log,
                preexec_fn=dovecot_server._die_with_parent())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            if self._greets():
                return True
            time.sleep(0.05)
        raise ServerError("%s did not answer within 30 s:\n%s"
                          % (self.name, self.log()))

    def _greets(self):
        try:
            with socket.create_connection((HOST, self.port), timeout=5) as s:
                ok = s.recv(512).startswith(b"+OK")
                s.sendall(b"QUIT\r\n")
                return ok
        except OSError:
            return False

    def log(self):
        try:
            with open(self.path("server.log"), "rb") as f:
                return f.read()[-20000:].decode(errors="replace")
        except (OSError, TypeError):
            return ""

    # -- tear-down ---------------------------------------------------------

    oauth2 = None           # for DovecotServer.stop()

    def stop(self):
        """Stop the server and every process it started (SIGTERM, then
        SIGKILL for what is left); remove the work directory
        (CPOPLIB_DOVECOT_KEEP=1 keeps it): DovecotServer's tear-down,
        which needs only proc and workdir."""
        dovecot_server.DovecotServer.stop(self)


# --------------------------------------------------------------------------
# Twisted

class TwistedServer(Server):
    """twisted.mail.pop3 over Maildirs, see tests/twisted_pop3d.py."""

    name = "twisted"

    def check(self):
        try:
            import twisted.mail.pop3  # noqa: F401  (only: is it there?)
        except ImportError:
            raise Unavailable("Twisted is not installed: pip install twisted "
                              "(it is in cpoplib's test extra)") from None

    def _configure(self):
        with open(self.path("users.json"), "w") as f:
            json.dump(self.users, f)

    def _launch(self):
        # the server picks its own port and prints it: no race to lose
        with open(self.path("server.log"), "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "twisted_pop3d.py"),
                 self.workdir],
                env=server_env(), cwd=self.workdir,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                preexec_fn=dovecot_server._die_with_parent())
        line = self.proc.stdout.readline()
        self.proc.stdout.close()
        if not line.strip().isdigit():
            raise ServerError("the Twisted server did not start:\n"
                              + self.log())
        self.port = int(line)
        return True


# --------------------------------------------------------------------------
# the Debian packages in the private root

class DebianServer(Server):
    """A server from the private root made by .ci/other-servers."""

    # paths the server runs, in the private root -- or in the system, where
    # a package of them is installed (maildrop, which the fetcher's tests
    # use, brings courier-authlib; .ci/other-servers unpacks only what the
    # system lacks, and the servers see the root over the system's /usr)
    needs = ()

    def check(self):
        self.root = servers_root()
        missing = [p for p in self.needs
                   if not os.path.exists(os.path.join(self.root, p))
                   and not os.path.exists(os.path.join("/", p))]
        if missing:
            raise Unavailable("%s is not prepared (%s missing): %s"
                              % (self.name, ", ".join(missing),
                                 PREPARE_HINT))

    def rootpath(self, *parts):
        return os.path.join(self.root, *parts)

    def library_path(self):
        multiarch = glob.glob(self.rootpath("usr/lib/*-linux-gnu*"))
        return ":".join(sorted(multiarch) + [self.rootpath("usr/lib")])


class MailutilsServer(DebianServer):
    """GNU Mailutils pop3d in daemon mode, in the foreground.

    Users come from a virtual domain (``virtdomain``: a passwd-format file
    named after the domain, with crypt(3) hashes), so they log in as
    ``USER@cpoplib.test``; their mailbox is the mbox ``HOME/INBOX``.  The
    APOP secrets are in a database made with Mailutils' popauth."""

    name = "mailutils"
    mail_format = "mbox"
    offers_stls = True
    domain = "cpoplib.test"
    needs = ("usr/sbin/pop3d", "usr/bin/popauth")

    def login_name(self, user):
        return "%s@%s" % (user, self.domain)

    def mail_owner(self, user):
        if os.geteuid() == 0:
            return 65534, 65534      # nobody/nogroup: sessions run as that
        return os.geteuid(), os.getegid()

    def mailbox_path(self, user):
        return os.path.join(self.home(user), "INBOX")

    # Mailutils rewrites the mbox at the QUIT of a session that changed
    # anything: the messages get X-UID and "Status: RO" headers once read
    # (the first also X-IMAPbase) and X-UIDL once a UIDL was asked, so
    # the first sessions see other sizes and bytes than the later ones.
    # The mailboxes the side-by-side tests use are settled first, by one
    # session that asks UIDL and reads every message; dave's is left as
    # delivered (the test of this quirk uses it).
    settled_users = ("alice", "bob", "carol")

    def start(self):
        super().start()
        try:
            for user in self.settled_users:
                self.settle(user)
        except BaseException:
            self.stop()
            raise

    def add_messages(self, user, messages):
        super().add_messages(user, messages)
        if self.proc is not None and user in self.settled_users:
            self.settle(user)

    def settle(self, user):
        conn = poplib.POP3(HOST, self.port, timeout=60)
        try:
            conn.user(self.login_name(user))
            conn.pass_(self.users[user])
            conn.uidl()              # X-UIDL is written once UIDL was asked
            for n in range(1, conn.stat()[0] + 1):
                conn.retr(n)
        finally:
            conn.quit()

    def _configure(self):
        os.mkdir(self.path("domains"))
        with open(self.path("domains", self.domain), "w") as f:
            for user, password in self.users.items():
                uid, gid = self.mail_owner(user)
                f.write("%s:%s:%d:%d::%s:/bin/false\n" % (
                    user, crypt_sha512(self.openssl, password), uid, gid,
                    self.home(user)))
        with open(self.path("apop.txt"), "w") as f:
            for user, password in self.users.items():
                f.write("%s %s\n" % (self.login_name(user), password))
        proc = subprocess.run(
            [self.rootpath("usr/bin/popauth"), "--create", "--file",
             self.path("apop.txt"), "--output", self.path("apop.db")],
            env=server_env({"LD_LIBRARY_PATH": self.library_path()}),
            capture_output=True, timeout=60)
        if proc.returncode:
            raise ServerError("popauth failed: %s" % proc.stderr.decode(
                errors="replace"))
        os.unlink(self.path("apop.txt"))

    def _command(self):
        with open(self.path("pop3d.conf"), "w") as f:
            f.write(
                "# generated by cpoplib's tests/other_servers.py\n"
                "mode daemon;\n"
                "foreground yes;\n"
                "pidfile \"%(pid)s\";\n"
                "logging { syslog no; };\n"
                "auth { authorization virtdomain; authentication generic; };\n"
                "virtdomain { passwd-dir \"%(domains)s\"; };\n"
                "apop-database-file \"%(apop)s\";\n"
                "tls { ssl-certificate-file \"%(cert)s\";"
                " ssl-key-file \"%(key)s\"; };\n"
                "tls-file-checks { key-file none; cert-file none;"
                " ca-file none; };\n"
                "server %(host)s:%(port)d { tls-mode stls; };\n"
                % {"pid": self.path("pop3d.pid"),
                   "domains": self.path("domains"),
                   "apop": self.path("apop.db"),
                   "cert": self.cert_file, "key": self.key_file,
                   "host": HOST, "port": self.port})
        return ([self.rootpath("usr/sbin/pop3d"),
                 "--config-file=" + self.path("pop3d.conf")],
                server_env({"LD_LIBRARY_PATH": self.library_path()}))


def has_8bit_header(data):
    """True if the header block of data (bytes, LF) has a non-ASCII byte."""
    header = data.split(b"\n\n", 1)[0]
    return any(b > 0x7f for b in header)


def crypt_sha512(openssl, password):
    """A crypt(3) SHA-512 hash of password (the crypt module is gone from
    Python 3.13), made by `openssl passwd -6`."""
    proc = subprocess.run([openssl, "passwd", "-6", "-stdin"],
                          input=password.encode(), capture_output=True,
                          check=True, timeout=30)
    return proc.stdout.decode().strip()


class NamespacedServer(DebianServer):
    """A server run in a mount namespace of its own (see the module
    docstring): the private root over /usr, etc/ of the work directory
    over /etc."""

    pam_service = None
    system_users = ()            # (name, uid, home) besides the test users

    def check(self):
        super().check()
        if os.geteuid() != 0:
            raise Unavailable("%s needs root: it runs in a mount namespace "
                              "with overlays over /usr and /etc" % self.name)
        for tool in ("unshare", "setpriv", "mount"):
            if shutil.which(tool) is None:
                raise Unavailable("%s needs util-linux's %s" % (self.name,
                                                                 tool))
        if self.openssl is None:
            raise Unavailable("the openssl CLI is not installed")

    def mail_owner(self, user):
        uid = FIRST_UID + list(self.users).index(user)
        return uid, uid

    def _write_etc(self):
        """passwd, group and shadow with root and the test users only, and
        a PAM service that checks them with pam_unix."""
        etc = self.path("etc")
        os.makedirs(os.path.join(etc, "pam.d"))
        passwd = ["root:x:0:0:root:/root:/bin/sh",
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"]
        group = ["root:x:0:", "shadow:x:42:", "mail:x:8:", "nogroup:x:65534:"]
        shadow = ["root:*:19000:0:99999:7:::"]
        accounts = [(user, *self.mail_owner(user), self.home(user),
                     crypt_sha512(self.openssl, password))
                    for user, password in self.users.items()]
        accounts += [(name, uid, uid, home, "*")
                     for name, uid, home in self.system_users]
        for name, uid, gid, home, hashed in accounts:
            passwd.append("%s:x:%d:%d::%s:/usr/sbin/nologin"
                          % (name, uid, gid, home))
            group.append("%s:x:%d:" % (name, gid))
            shadow.append("%s:%s:19000:0:99999:7:::" % (name, hashed))
        for name, lines, mode in (("passwd", passwd, 0o644),
                                  ("group", group, 0o644),
                                  ("shadow", shadow, 0o640)):
            with open(os.path.join(etc, name), "w") as f:
                f.write("\n".join(lines) + "\n")
            os.chmod(os.path.join(etc, name), mode)
        with open(os.path.join(etc, "pam.d", self.pam_service), "w") as f:
            f.write("# generated by cpoplib's tests/other_servers.py\n"
                    "auth     required pam_unix.so nodelay\n"
                    "account  required pam_unix.so\n"
                    "session  required pam_permit.so\n"
                    "password required pam_deny.so\n")

    def _namespace_script(self, mounts, command):
        """argv running `command` (a shell line, exec'd last) after
        `mounts` (shell lines) in a new mount namespace."""
        script = self.path("namespace.sh")
        with open(script, "w") as f:
            f.write("# generated by cpoplib's tests/other_servers.py\n"
                    "set -eu\n"
                    "mount --make-rprivate /\n"
                    "mount -t overlay overlay -o ro,lowerdir=%s:/etc /etc\n"
                    "mount -t overlay overlay -o ro,lowerdir=%s:/usr /usr\n"
                    % (self.path("etc"), self.rootpath("usr")))
            f.write("".join(line + "\n" for line in mounts))
            f.write("exec " + command + "\n")
        return ["unshare", "--mount", "--propagation", "private",
                "/bin/sh", script]

    def couriertcpd(self, *argv):
        """couriertcpd's command line: on 127.0.0.1:port, one `argv` per
        connection (it stays in the foreground)."""
        return " ".join(["/usr/sbin/couriertcpd", "-address=%s" % HOST,
                         "-maxprocs=40", "-maxperip=40", "-nodnslookup",
                         "-noidentlookup", str(self.port)] + list(argv))


class Popa3dServer(NamespacedServer):
    """popa3d in inetd mode, one process per connection started by
    couriertcpd (its own daemon mode listens on 0.0.0.0:110 and detaches).
    popa3d has everything compiled in: mbox /var/mail/USER (a directory of
    the work dir, bound there), PAM service "popa3d", the unprivileged
    user "popa3d" and its chroot /var/lib/popa3d."""

    name = "popa3d"
    mail_format = "mbox"
    pam_service = "popa3d"
    needs = ("usr/sbin/popa3d", "usr/sbin/couriertcpd")

    @property
    def system_users(self):
        return [("popa3d", FIRST_UID - 1, "/var/lib/popa3d")]

    def mailbox_path(self, user):
        return self.path("mail", user)

    def _make_mailboxes(self):
        os.mkdir(self.path("mail"))
        os.chmod(self.path("mail"), 0o1777)
        super()._make_mailboxes()

    def _configure(self):
        self._write_etc()
        os.makedirs(self.path("varlib", "popa3d"))

    def _command(self):
        mounts = [
            "mount -t overlay overlay -o ro,lowerdir=%s:/var/lib /var/lib"
            % self.path("varlib"),
            "mount --bind %s /var/mail" % self.path("mail"),
        ]
        return (self._namespace_script(
                    mounts, self.couriertcpd("/usr/sbin/popa3d")),
                server_env({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}))


class CourierServer(NamespacedServer):
    """Courier's pop3d: couriertcpd runs courierpop3login per connection,
    which asks authdaemond (courier-authlib, module authpam, socket under
    /run/courier/authdaemon) and then runs courierpop3d in the user's
    home on the Maildir "Maildir".  STLS through couriertls.  The settings
    Courier's start-up script reads from /etc/courier/pop3d are given as
    environment variables."""

    name = "courier"
    offers_stls = True
    pam_service = "pop3"
    needs = ("usr/lib/courier/courier/courierpop3login",
             "usr/lib/courier/courier/courierpop3d",
             "usr/lib/courier/courier-authlib/authdaemond",
             "usr/lib/courier-authlib/libauthpam.so",
             "usr/bin/couriertls", "usr/sbin/couriertcpd")
    sasl = "PLAIN LOGIN"     # what authpam can check (no CRAM: no secrets)
    # courierpop3login runs couriertls for STLS as the system user courier
    system_users = (("courier", FIRST_UID - 2, "/var/lib/courier"),)

    def mailbox_contents(self):
        """Courier sends a message with 8-bit bytes in its header to a
        client that did not say UTF8 wrapped in a MIME message of its own
        whose boundary changes every session: those go to dave's box, for
        the test of that, not into alice's corpus."""
        contents = super().mailbox_contents()
        wrapped = [(key, data) for key, data in contents["alice"]
                   if has_8bit_header(data)]
        contents["alice"] = [m for m in contents["alice"]
                             if m not in wrapped]
        contents["dave"] += wrapped
        return contents

    def courier_ids(self):
        uid = self.system_users[0][1]
        return uid, uid

    def _configure(self):
        self._write_etc()
        os.makedirs(self.path("etc", "courier"))
        with open(self.path("etc", "courier", "authdaemonrc"), "w") as f:
            f.write('authmodulelist="authpam"\n'
                    'daemons=2\n'
                    'authdaemonvar=/run/courier/authdaemon\n'
                    'DEBUG_LOGIN=0\n'
                    'DEFAULTOPTIONS=""\n')
        with open(self.path("tls", "pop3d.pem"), "wb") as out:
            for name in (self.key_file, self.cert_file):
                with open(name, "rb") as f:
                    out.write(f.read())
        # couriertls reads it as the user courier
        os.chown(self.path("tls", "pop3d.pem"), *self.courier_ids())
        os.chmod(self.path("tls", "pop3d.pem"), 0o600)

    def _command(self):
        mounts = [
            "mount -t tmpfs -o mode=755 tmpfs /run",
            "mkdir -p /run/courier/authdaemon",
            "setpriv --pdeathsig TERM "
            "/usr/lib/courier/courier-authlib/authdaemond &",
        ]
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "POP3AUTH": self.sasl,
            "POP3AUTH_TLS": self.sasl,
            "POP3_STARTTLS": "YES",
            "POP3_TLS_REQUIRED": "0",
            "COURIERTLS": "/usr/bin/couriertls",
            "TLS_CERTFILE": self.path("tls", "pop3d.pem"),
            "TLS_VERIFYPEER": "NONE",
            "MAILDIRPATH": "Maildir",
        }
        command = self.couriertcpd(
            "/usr/lib/courier/courier/courierpop3login",
            "/usr/lib/courier/courier/courierpop3d", "Maildir")
        return self._namespace_script(mounts, command), server_env(env)

    def _greets(self):
        # couriertcpd greets before authdaemond may listen: wait for its
        # socket too, seen through the namespace's root
        sock = "/proc/%d/root/run/courier/authdaemon/socket" % self.proc.pid
        return os.path.exists(sock) and super()._greets()


SERVER_CLASSES = {cls.name: cls for cls in
                  (TwistedServer, MailutilsServer, Popa3dServer,
                   CourierServer)}
