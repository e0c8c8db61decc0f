"""An account: its settings (from the command line or a config table),
checked before anything connects, and its credentials, resolved in the
main thread (a password prompt needs the terminal)."""
import getpass
import hashlib
import netrc
import os
import subprocess

import cpoplib

from . import durable, oauth_setup
from .errors import EXIT_USAGE, FetchError

BATCH_MESSAGES = 100
BATCH_BYTES = 32 << 20


class Account:
    """One account's settings (from the command line or a config table)."""

    FIELDS = {
        "name": None, "host": None, "port": None, "ssl": False,
        "starttls": False, "cafile": None, "insecure": False,
        "timeout": 60.0, "user": None, "password_env": None,
        "password_command": None, "netrc": True, "auth": None,
        "token_command": None, "allow_plaintext": False, "maildir": None,
        "mbox": None, "eml_dir": None, "dry_run": False, "state": None,
        "all": False, "delete": False, "batch": BATCH_MESSAGES,
        "window": None, "sync": "auto",
    }
    FIELDS.update(oauth_setup.FIELDS)   # providers, --email, OAuth 2.0

    def __init__(self, **options):
        unknown = set(options) - set(self.FIELDS)
        if unknown:
            raise FetchError(EXIT_USAGE, "unknown setting(s): %s"
                             % ", ".join(sorted(unknown)))
        for key, default in self.FIELDS.items():
            value = options.get(key)
            setattr(self, key, default if value is None else value)
        self.password = None
        self.token = None

    def check(self):
        if not self.host:
            raise FetchError(EXIT_USAGE, "no host (--host)")
        if self.ssl and self.starttls:
            raise FetchError(EXIT_USAGE, "--ssl and --starttls exclude "
                             "each other")
        if self.port is None:
            self.port = (cpoplib.POP3_SSL_PORT if self.ssl
                         else cpoplib.POP3_PORT)
        dests = [d for d in (self.maildir, self.mbox, self.eml_dir) if d]
        if len(dests) > 1:
            raise FetchError(EXIT_USAGE, "give one of --maildir, --mbox, "
                             "--eml-dir")
        if not dests and not self.dry_run:
            raise FetchError(EXIT_USAGE, "no destination: --maildir DIR, "
                             "--mbox FILE, --eml-dir DIR or --dry-run")
        if self.dry_run and self.delete:
            raise FetchError(EXIT_USAGE, "--dry-run and --delete exclude "
                             "each other")
        if self.batch < 1:
            raise FetchError(EXIT_USAGE, "--batch must be at least 1")
        if self.sync not in durable.SYNC_MODES:
            raise FetchError(EXIT_USAGE, "--sync must be one of %s"
                             % ", ".join(durable.SYNC_MODES))
        if self.sync == "fs" and not durable.syncfs_available():
            raise FetchError(EXIT_USAGE, "--sync fs needs Linux 5.8 or "
                             "later (syncfs(2) reporting write errors)")
        if not self.name:
            self.name = "%s@%s" % (self.user or "?", self.host)

    def state_path(self):
        if self.state:
            return os.path.abspath(os.path.expanduser(self.state))
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "state")
        ident = "%s@%s:%d" % (self.user, self.host, self.port)
        safe = "".join(c if c.isalnum() or c in "@.-_" else "_"
                       for c in ident)
        digest = hashlib.sha256(ident.encode()).hexdigest()[:8]
        return os.path.join(base, "cpoplib", "%s-%s.json" % (safe, digest))

    def tag(self):
        """Short, name-safe tag of this account's files in a shared
        destination (its orphans are recognised by it)."""
        return hashlib.sha256(self.state_path().encode()).hexdigest()[:10]

    def destination(self):
        from . import destinations as d
        if self.dry_run:
            return d.CountingDestination()
        if self.maildir:
            return d.MaildirDestination(os.path.expanduser(self.maildir),
                                        self.tag(), self.sync)
        if self.mbox:
            return d.MboxDestination(os.path.expanduser(self.mbox),
                                     self.tag())
        return d.EmlDestination(os.path.expanduser(self.eml_dir), self.tag(),
                                self.sync)


def _run_command(cmd, what):
    try:
        proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise FetchError(EXIT_USAGE, "%s failed: %s" % (what, exc))
    if proc.returncode:
        raise FetchError(EXIT_USAGE, "%s exited with status %d"
                         % (what, proc.returncode))
    out = proc.stdout.decode()
    if out.endswith("\n"):
        out = out[:-1]
    if out.endswith("\r"):
        out = out[:-1]
    return out


OAUTH = ("XOAUTH2", "OAUTHBEARER")


def resolve_credentials(acct, interactive):
    """Sets acct.user, acct.password or acct.token (before connecting)."""
    mech = (acct.auth or "").upper()
    if acct.token_command or mech in OAUTH:
        if not acct.token_command:
            raise FetchError(EXIT_USAGE, "--auth %s needs --token-command"
                             % mech)
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
        acct.password = value
    elif acct.password_command:
        acct.password = _run_command(acct.password_command,
                                     "--password-command")
    elif acct.netrc:
        try:
            found = netrc.netrc().authenticators(acct.host)
        except FileNotFoundError:
            found = None
        except (netrc.NetrcParseError, OSError) as exc:
            raise FetchError(EXIT_USAGE, "~/.netrc: %s" % exc)
        if found and found[2] is not None and (
                not acct.user or not found[0] or found[0] == acct.user):
            acct.user = acct.user or found[0]
            acct.password = found[2]
    if not acct.user:
        raise FetchError(EXIT_USAGE, "no user name (--user, or a login in "
                         "~/.netrc)")
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
