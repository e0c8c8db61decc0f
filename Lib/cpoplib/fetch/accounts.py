"""An account: its effective settings (settings.merge() of the command
line, its config table and [defaults]), checked before anything
connects, and its credentials, resolved in the main thread (a password
prompt needs the terminal)."""
import getpass
import hashlib
import os

import cpoplib

from . import durable
from .errors import EXIT_USAGE, FetchError
from .config import origin
from .settings import MiB, SETTINGS, WITH_DELETE, size_words

BATCH_BYTES = 32 << 20


class Account:
    """One account's effective settings, as attributes named as the
    settings (settings.SETTINGS)."""

    def __init__(self, name, values, source="", levels=None):
        for s in SETTINGS:
            setattr(self, s.name, values.get(s.name, s.default))
        self.name = name
        # no name given: "user@host", made again once the credentials are
        # resolved (the user may come from ~/.netrc)
        self.default_name = not name
        self.source = source        # "the command line" or "[accounts.x]"
        # what merge() made `values` of, lowest first (who said what)
        self.levels = levels if levels is not None else [values]
        self.password = None
        self.token = None

    @property
    def max_message_bytes(self):
        return self.max_message_size * MiB

    def check(self):
        """What no single setting says: checked on the effective
        settings, before anything connects."""
        if not self.host:
            raise FetchError(EXIT_USAGE, "no host (--host, or host = ... "
                             "in the config)")
        tls = self.ssl or self.starttls
        for name, given in (("cafile", self.cafile),
                            ("insecure", self.insecure)):
            if given and not tls:
                raise FetchError(EXIT_USAGE, "--%s is for TLS: add --ssl or "
                                 "--starttls (without them nothing is "
                                 "encrypted)" % name)
        self._check_tls(tls)
        if self.port is None:
            self.port = (cpoplib.POP3_SSL_PORT if self.ssl
                         else cpoplib.POP3_PORT)
        self._check_selection()
        if self.dry_run:
            self.delete = False         # --dry-run implies --keep
        elif self.serverinfo:
            self.delete = False         # nothing is fetched
        elif not (self.maildir or self.mbox or self.eml_dir or self.mda):
            raise FetchError(EXIT_USAGE, "no destination: --maildir DIR, "
                             "--mbox FILE, --eml-dir DIR, --mda CMD or "
                             "--dry-run")
        mech = self.auth
        if mech in OAUTH and not self.token_command:
            raise FetchError(EXIT_USAGE, "--auth %s needs --token-command"
                             % mech)
        if self.token_command and mech is not None and mech not in OAUTH:
            raise FetchError(EXIT_USAGE, "--token-command is for --auth "
                             "XOAUTH2 or OAUTHBEARER, not %s" % mech)
        if mech == "EXTERNAL" and not self.cert:
            raise FetchError(EXIT_USAGE, "--auth EXTERNAL needs --cert (the "
                             "client certificate is the credential)")
        if mech == "EXTERNAL" and self.password_source():
            raise FetchError(EXIT_USAGE, "--auth EXTERNAL takes no password "
                             "(%s): the client certificate is the "
                             "credential" % self.password_source())
        if self.sync == "fs" and not durable.syncfs_available():
            raise FetchError(EXIT_USAGE, "--sync fs needs Linux 5.8 or "
                             "later (syncfs(2) reporting write errors)")
        if self.cert:
            # the files load, before anything connects
            from .tls import check_client_certificate
            check_client_certificate(self.cert, self.key)
        if self.default_name:
            self.name = "%s@%s" % (self.user or "?", self.host)

    def _check_tls(self, tls):
        """The TLS settings that go together (tls.py says what they do)."""
        given = [("tls-host", self.tls_host), ("fingerprint",
                 self.fingerprint), ("tofu", self.tofu),
                 ("also-verify-ca", self.also_verify_ca),
                 ("cert", self.cert), ("key", self.key)]
        for name, value in given:
            if value and not tls:
                raise FetchError(EXIT_USAGE, "--%s is for TLS: add --ssl or "
                                 "--starttls (without them nothing is "
                                 "encrypted)" % name)
        pinned = bool(self.fingerprint) or self.tofu
        if self.also_verify_ca and not pinned:
            raise FetchError(EXIT_USAGE, "--also-verify-ca is for "
                             "--fingerprint or --tofu (without a pin the CA "
                             "chain is verified anyway)")
        if self.cafile and pinned and not self.also_verify_ca:
            raise FetchError(EXIT_USAGE, "--cafile has no effect when a pin "
                             "(--%s) replaces the CA check: add "
                             "--also-verify-ca to check both, or drop "
                             "--cafile" % ("fingerprint" if self.fingerprint
                                           else "tofu"))
        if self.tofu_accept and not self.tofu:
            raise FetchError(EXIT_USAGE, "--tofu-accept is for --tofu")
        if self.key and not self.cert:
            raise FetchError(EXIT_USAGE, "--key is the key of --cert: give "
                             "--cert FILE too")

    def password_source(self):
        """The option that gives the password, or None."""
        for name in ("password_env", "password_command",
                     "password_keyring"):
            if getattr(self, name):
                return "--" + name.replace("_", "-")
        return None

    def _check_selection(self):
        """The selection's settings together (selection.py).  A setting
        of WITH_DELETE says what --delete deletes: without delete = true
        it is an error, unless --keep (or keep = true) was given on a
        level above it, which turns it off with everything else that
        deletes (so `cpoplib fetch ACCOUNT --keep` deletes nothing
        whatever the file says)."""
        for name in WITH_DELETE:
            if not getattr(self, name) or self.delete:
                continue
            if origin(self.levels, "delete") > origin(self.levels, name):
                continue                # --keep above it: off
            flag = "--" + name.replace("_", "-")
            raise FetchError(EXIT_USAGE, "%s %s: add --delete (delete = "
                             "true), or leave %s out" % (flag, {
                                 "delete_larger": "deletes messages",
                                 "keep_days": "says when --delete deletes",
                             }[name], flag))
        if self.skip_larger and self.skip_larger > self.max_message_bytes:
            raise FetchError(EXIT_USAGE, "--skip-larger %s is above "
                             "--max-message-size (%d MiB), which skips "
                             "(exit 7) what is larger: raise "
                             "--max-message-size to %d or more"
                             % (size_words(self.skip_larger),
                                self.max_message_size,
                                -(-self.skip_larger // MiB)))

    def state_path(self):
        """Where the state is named (the tag of the account's files is
        made from this name); state_file() is where it is read."""
        if self.state:
            return os.path.abspath(os.path.expanduser(self.state))
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "state")
        ident = "%s@%s:%d" % (self.user, self.host, self.port)
        safe = "".join(c if c.isalnum() or c in "@.-_" else "_"
                       for c in ident)
        digest = hashlib.sha256(ident.encode()).hexdigest()[:8]
        return os.path.join(base, "cpoplib", "%s-%s.json" % (safe, digest))

    def state_file(self):
        """The state file, a symbolic link followed: the link stays and
        its target is updated (and locked, as STATE.lock beside it)."""
        return os.path.realpath(self.state_path())

    def tag(self):
        """Short, name-safe tag of this account's files in a shared
        destination (its orphans are recognised by it)."""
        return hashlib.sha256(self.state_path().encode()).hexdigest()[:10]

    def destination(self, stop=None):
        from . import destinations as d
        if self.dry_run:
            return d.CountingDestination()
        if self.mda:
            return d.MdaDestination(self.mda, stop)
        # symbolic links are followed: the link stays, the target is used
        if self.maildir:
            return d.MaildirDestination(_real(self.maildir), self.tag(),
                                        self.sync)
        if self.mbox:
            return d.MboxDestination(_real(self.mbox), self.tag())
        return d.EmlDestination(_real(self.eml_dir), self.tag(), self.sync)


def _real(path):
    return os.path.realpath(os.path.expanduser(path))


def _run_command(cmd, what):
    import subprocess       # a password command: not on every run's path
    try:
        proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise FetchError(EXIT_USAGE, "%s failed: %s" % (what, exc))
    if proc.returncode:
        raise FetchError(EXIT_USAGE, "%s exited with status %d"
                         % (what, proc.returncode))
    try:
        out = proc.stdout.decode()
    except UnicodeDecodeError:
        raise FetchError(EXIT_USAGE, "%s printed something that is not "
                         "UTF-8" % what)
    if out.endswith("\n"):
        out = out[:-1]
    if out.endswith("\r"):
        out = out[:-1]
    if not out:
        raise FetchError(EXIT_USAGE, "%s printed nothing (an empty "
                         "password is never sent)" % what)
    return out


OAUTH = ("XOAUTH2", "OAUTHBEARER")


def _netrc_entry(host):
    import netrc            # only without a password from elsewhere
    try:
        return netrc.netrc().authenticators(host)
    except FileNotFoundError:
        return None
    except netrc.NetrcParseError as exc:
        where = "~/.netrc"
        if exc.lineno is not None:
            where += ", line %d" % exc.lineno
        raise FetchError(EXIT_USAGE, "%s: %s" % (where, exc.msg))
    except OSError as exc:
        raise FetchError(EXIT_USAGE, "~/.netrc: %s" % (exc.strerror or exc))


def resolve_credentials(acct, interactive):
    """Sets acct.user, acct.password or acct.token (before connecting)."""
    if acct.token_command:
        if not acct.user:
            raise FetchError(EXIT_USAGE, "no user name (--user)")
        cmd = acct.token_command
        acct.token = lambda: _run_command(cmd, "--token-command")
        return
    if acct.password_env:
        value = os.environ.get(acct.password_env)
        if value is None:
            raise FetchError(EXIT_USAGE, "environment variable %s is not "
                             "set (--password-env)" % acct.password_env)
        if not value:
            raise FetchError(EXIT_USAGE, "environment variable %s is empty "
                             "(an empty password is never sent)"
                             % acct.password_env)
        acct.password = value
    elif acct.password_command:
        acct.password = _run_command(acct.password_command,
                                     "--password-command")
    elif acct.password_keyring:
        acct.password = keyring_password(acct)
    elif acct.auth == "EXTERNAL":
        pass                # the client certificate is the credential
    elif acct.netrc:
        found = _netrc_entry(acct.host)
        if found and found[2] and (
                not acct.user or not found[0] or found[0] == acct.user):
            acct.user = acct.user or found[0]
            acct.password = found[2]
    if not acct.user:
        raise FetchError(EXIT_USAGE, "no user name (--user, or a login in "
                         "~/.netrc)")
    if acct.password is None and acct.cert:
        # no password anywhere: login() logs in with the certificate
        # (SASL EXTERNAL), never a prompt
        if acct.auth not in (None, "EXTERNAL"):
            raise FetchError(EXIT_USAGE, "--auth %s needs a password "
                             "(--password-env, --password-command, "
                             "--password-keyring, ~/.netrc): a client "
                             "certificate alone logs in with EXTERNAL only"
                             % acct.auth)
        return
    if acct.password is None:
        if not interactive:
            raise FetchError(EXIT_USAGE, "no password for %s: use "
                             "--password-env, --password-command, ~/.netrc "
                             "or run on a terminal" % acct.name)
        try:
            acct.password = getpass.getpass("Password for %s@%s: "
                                            % (acct.user, acct.host))
        except EOFError:
            raise FetchError(EXIT_USAGE, "no password given")
        if not acct.password:
            raise FetchError(EXIT_USAGE, "an empty password is never sent")


KEYRING_SERVICE = "cpoplib"


def keyring_entry(acct):
    """(service, user name) of the account's password in the keyring."""
    return KEYRING_SERVICE, "%s@%s" % (acct.user, acct.host)


def keyring_password(acct):
    """The account's password from the OS keyring (--password-keyring)."""
    if not acct.user:
        raise FetchError(EXIT_USAGE, "--password-keyring needs --user (the "
                         "keyring entry is USER@HOST)")
    try:
        import keyring
    except ImportError:
        raise FetchError(EXIT_USAGE, "--password-keyring needs the keyring "
                         "package (pip install 'cpoplib[keyring]')")
    service, name = keyring_entry(acct)
    try:
        password = keyring.get_password(service, name)
    except Exception as exc:        # keyring.errors.* and the backends'
        raise FetchError(EXIT_USAGE, "--password-keyring: the OS keyring "
                         "failed (%s: %s)" % (type(exc).__name__,
                                               str(exc).splitlines()[0]
                                               if str(exc) else ""))
    if password is None:
        raise FetchError(EXIT_USAGE, "--password-keyring: no password in "
                         "the keyring for service %s, user %s: store it "
                         "with `keyring set %s %s`" % (service, name,
                                                       service, name))
    if not password:
        raise FetchError(EXIT_USAGE, "--password-keyring: the keyring's "
                         "password for %s is empty (an empty password is "
                         "never sent)" % name)
    return password
