"""cpoplib fetch: download a POP3 mailbox to a Maildir, an mbox or .eml files.

Only new messages by default (a UIDL state file per account), pipelined
retrieval (``fetch_many()``), and ``--delete`` that deletes on the server
only messages that are durably on disk.  See README.rst, "The fetcher".

How a run delivers, for the files-based destinations (Maildir, .eml):

1. each message is written to a staging name (Maildir: ``tmp/``; .eml: a
   hidden ``.cpoplib-tmp-*`` file in the directory), not synced;
2. once per batch (``--batch`` messages or 32 MiB) the batch is made
   durable: with ``--sync fs`` one syncfs(2) on the destination's
   filesystem, which writes back every dirty file there and commits the
   journal once; with ``--sync file`` every staged file is fsync'd, then
   the staging directory; ``--sync auto`` (the default) is ``fs`` on
   Linux 5.17 and later on ext2/3/4, XFS and btrfs (see
   Modules/durability.c for why), ``file`` anywhere else;
3. the state file is replaced atomically (temporary file, fsync,
   ``os.replace``, directory fsync) with the batch's UIDLs added to the
   delivered set and the batch's renames recorded as ``pending``;
4. the staged files are renamed to their final names (Maildir: ``new/``)
   and the directories fsync'd;
5. with ``--delete``, after the last batch, DELE for every committed
   message, then QUIT (the server deletes only at QUIT).

A run killed anywhere leaves every message either uncommitted (its UIDL
not in the state: it is fetched again; its staged file is an orphan that
the next run removes) or committed (its UIDL in the state and its file
durable under the staging or the final name: the next run completes the
rename).  So every message ends up on disk exactly once, and none is
deleted on the server before that.  mbox: the state records the mbox's
size after each synced batch; a run that finds its predecessor died while
holding the mbox truncates the uncommitted tail (and removes the stale dot
lock it left).

Test-only fault hook: ``CPOPLIB_FETCH_FAULT=POINT:N`` (or several, comma
separated) makes the process ``os._exit(97)`` the N-th time it reaches
POINT, one of ``delivered`` (a message written to its staging name),
``synced`` (a batch's files fsync'd, state not yet written),
``committed`` (state written, files not yet renamed), ``published``
(batch renamed), ``deleted`` (a DELE sent) and ``before-quit``.  The
crash-safety tests use it; it has no other use.
"""

import argparse
import fcntl
import getpass
import hashlib
import json
import netrc
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

import cpoplib
from cpoplib import _cpoplib

# ---- exit codes (README.rst, "The fetcher") ----
EXIT_OK = 0
EXIT_USAGE = 1          # bad options or config, no password available
EXIT_CONNECT = 2        # cannot connect, TLS/certificate failure, lost
EXIT_AUTH = 3           # authentication failed
EXIT_BUSY = 4           # [IN-USE], [LOGIN-DELAY], state file locked
EXIT_DELIVERY = 5       # cannot write the destination or the state file
EXIT_PROTOCOL = 6       # any other POP3 error
EXIT_INTERRUPTED = 130  # Ctrl-C

BATCH_MESSAGES = 100
BATCH_BYTES = 32 << 20
STATE_VERSION = 1

PROG = "cpoplib fetch"


class FetchError(Exception):
    """A failure with its exit code and a one-line message."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def _delivery_error(what, exc):
    return FetchError(EXIT_DELIVERY, "%s: %s" % (what, _oserror_text(exc)))


def _oserror_text(exc):
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename:
            text += ": %s" % exc.filename
        return text
    return str(exc) or type(exc).__name__


# ---- the test-only fault hook ----

_faults: "dict[str, int]" = {}
_fault_counts: "dict[str, int]" = {}


def _load_faults():
    _faults.clear()
    _fault_counts.clear()
    spec = os.environ.get("CPOPLIB_FETCH_FAULT", "")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        point, _, n = item.partition(":")
        _faults[point] = int(n or 1)


def _fault(point):
    if point in _faults:
        _fault_counts[point] = _fault_counts.get(point, 0) + 1
        if _fault_counts[point] == _faults[point]:
            os._exit(97)


# ---- durable file operations ----

def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _linux_at_least(major, minor):
    if not sys.platform.startswith("linux"):
        return False
    release = os.uname().release.split(".")
    try:
        version = int(release[0]), int(release[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    return version >= (major, minor)


# Filesystems whose sync (syncfs) writes back and commits what fsync of
# each file would: ext2/3/4, XFS, btrfs (statfs(2) magic numbers).  Not
# FUSE or 9p, which do not pass syncfs on to where the data lives.
SYNCFS_FILESYSTEMS = {0xEF53: "ext4", 0x58465342: "xfs",
                      0x9123683E: "btrfs"}


def syncfs_usable(fd):
    """True where one syncfs(2) of the filesystem holding `fd` stands for
    fsync() of each file of a batch: Linux 5.17+ (syncfs reports write-back
    errors since 5.8 and journal commit errors since 5.17) on one of
    SYNCFS_FILESYSTEMS."""
    if not hasattr(_cpoplib, "_syncfs") or not _linux_at_least(5, 17):
        return False
    try:
        return _cpoplib._fs_type(fd) in SYNCFS_FILESYSTEMS
    except OSError:
        return False


SYNC_MODES = ("auto", "fs", "file")


def write_atomic(path, data):
    """Replace `path` with `data` (bytes): temporary file, fsync,
    os.replace, fsync of the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = "%s.tmp.%d.%d" % (path, os.getpid(), threading.get_ident())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(directory)


def _makedirs(path, mode=0o700):
    """os.makedirs, fsyncing each parent of a directory it created."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    _makedirs(parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    fsync_dir(parent)


# ---- the state file ----

class State:
    """UIDLs delivered so far, plus what a crashed run left to finish.

    JSON: {"version": 1, "account": "...", "uidls": [...],
    "pending": [[staged, final], ...], "mbox": {...}}; UIDLs are the
    server's bytes decoded as latin-1 (lossless)."""

    def __init__(self, path, account):
        self.path = path
        self.account = account
        self.uidls = set()
        self.pending = []
        self.mbox = None
        self.exists = False

    @classmethod
    def load(cls, path, account):
        state = cls(path, account)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return state
        except OSError as exc:
            raise _delivery_error("cannot read the state file", exc)
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != 1:
                raise ValueError("unknown format")
            state.uidls = set(data.get("uidls", []))
            state.pending = [list(p) for p in data.get("pending", [])]
            state.mbox = data.get("mbox")
        except (ValueError, TypeError) as exc:
            # never guess: an empty state would fetch everything again
            raise FetchError(
                EXIT_DELIVERY, "state file %s is damaged (%s); move it "
                "away to fetch everything again, or fix it" % (path, exc))
        state.exists = True
        return state

    def save(self):
        data = {"version": STATE_VERSION, "account": self.account,
                "uidls": sorted(self.uidls)}
        if self.pending:
            data["pending"] = self.pending
        if self.mbox is not None:
            data["mbox"] = self.mbox
        try:
            _makedirs(os.path.dirname(os.path.abspath(self.path)))
            write_atomic(self.path, json.dumps(data, indent=0).encode())
        except OSError as exc:
            raise _delivery_error("cannot write the state file", exc)
        self.exists = True


class StateLock:
    """An exclusive flock on STATE.lock: one fetcher per account at a time
    (released by the kernel if the process dies)."""

    def __init__(self, state_path):
        self.path = state_path + ".lock"
        self.fd = None

    def acquire(self):
        try:
            _makedirs(os.path.dirname(os.path.abspath(self.path)))
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _delivery_error("cannot create the state lock", exc)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise FetchError(EXIT_BUSY, "another cpoplib fetch is running "
                             "for this account (%s is locked)" % self.path)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)          # drops the flock
            self.fd = None


# ---- destinations ----

def _hostname():
    # as mailbox.Maildir does: '/' and ':' are not allowed in a name
    return (socket.gethostname().replace("/", r"\057")
            .replace(":", r"\072"))


class _Staged:
    """Maildir and .eml directories: write to a staging name, fsync per
    batch, commit through the state, then rename (see the module doc)."""

    lf = False          # convert CRLF to LF

    def __init__(self, tag, sync="auto"):
        self.tag = tag
        self.staged = []        # (fd, staged path, final path)
        self.seq = 0
        self.host = _hostname()
        self.sync_mode = sync
        self.use_syncfs = False
        self.dirfd = None       # the staging directory

    # subclasses: staging_dir, final_dir, _names(), _is_ours(name)

    def open(self, state):
        self._prepare()
        # Opened before anything is written: syncfs reports the write-back
        # errors seen since this descriptor was opened.  Files are created
        # relative to it, so that they are on the filesystem it syncs even
        # if the directory is replaced during the run.
        try:
            self.dirfd = os.open(self.staging_dir,
                                 os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise _delivery_error("cannot open %s" % self.staging_dir, exc)
        self.use_syncfs = (self.sync_mode == "fs"
                           or (self.sync_mode == "auto"
                               and syncfs_usable(self.dirfd)))
        self._recover(state)

    def _recover(self, state):
        """Finish the renames a killed run committed; drop its orphans."""
        changed = False
        try:
            for staged, final in state.pending:
                if os.path.exists(staged):
                    if os.path.exists(final):
                        os.unlink(staged)
                    else:
                        os.rename(staged, final)
                    changed = True
            pending = {staged for staged, _ in state.pending}
            for name in os.listdir(self.staging_dir):
                path = os.path.join(self.staging_dir, name)
                if self._is_ours(name) and path not in pending:
                    os.unlink(path)        # staged, never committed
                    changed = True
            if changed:
                fsync_dir(self.final_dir)
                fsync_dir(self.staging_dir)
        except OSError as exc:
            raise _delivery_error("cannot recover the previous run", exc)
        if state.pending:
            state.pending = []
            state.save()

    def deliver(self, data):
        if self.lf:
            data = data.replace(b"\r\n", b"\n")
        self.seq += 1
        staged, final = self._names()
        try:
            fd = os.open(os.path.basename(staged),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600,
                         dir_fd=self.dirfd)
        except OSError as exc:
            raise _delivery_error("cannot create a file", exc)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            os.close(fd)
            try:
                os.unlink(staged)
            except OSError:
                pass
            raise _delivery_error("cannot write %s" % staged, exc)
        self.staged.append((fd, staged, final))

    def sync(self):
        """Step 2: make the staged files and their names durable: one
        syncfs of the filesystem, or fsync of every staged file and then
        of the staging directory."""
        try:
            if self.use_syncfs:
                _cpoplib._syncfs(self.dirfd)
            for i, (fd, staged, final) in enumerate(self.staged):
                if fd is not None:
                    if not self.use_syncfs:
                        os.fsync(fd)
                    os.close(fd)
                    self.staged[i] = (None, staged, final)
            if not self.use_syncfs:
                os.fsync(self.dirfd)
        except OSError as exc:
            raise _delivery_error("cannot sync %s" % self.staging_dir, exc)

    def pending(self):
        return [[staged, final] for _, staged, final in self.staged]

    def publish(self):
        """Step 4: rename the committed files to their final names."""
        try:
            for _, staged, final in self.staged:
                os.rename(staged, final)
            self.staged = []
            fsync_dir(self.final_dir)
            fsync_dir(self.staging_dir)
        except OSError as exc:
            raise _delivery_error("cannot move files into %s"
                                  % self.final_dir, exc)

    def close(self):
        """Uncommitted files stay: the next run removes them."""
        for fd, _, _ in self.staged:
            if fd is not None:
                os.close(fd)
        self.staged = []
        if self.dirfd is not None:
            os.close(self.dirfd)
            self.dirfd = None


class MaildirDestination(_Staged):
    """A Maildir (tmp/, new/, cur/), made with mailbox.Maildir if needed.
    Messages are written with LF line ends, as Unix mail stores keep
    them.  The files are written here rather than with Maildir.add(),
    which fsyncs every message; the names follow the Maildir rules."""

    lf = True

    def __init__(self, path, tag, sync="auto"):
        super().__init__(tag, sync)
        self.path = os.path.abspath(path)
        self.staging_dir = os.path.join(self.path, "tmp")
        self.final_dir = os.path.join(self.path, "new")

    def _prepare(self):
        try:
            if not os.path.isdir(self.path):
                import mailbox      # only here and for mbox: 15 ms of start-up
                _makedirs(os.path.dirname(self.path))
                mailbox.Maildir(self.path, create=True)
                fsync_dir(os.path.dirname(self.path))
            for sub in ("tmp", "new", "cur"):
                _makedirs(os.path.join(self.path, sub))
            fsync_dir(self.path)
        except OSError as exc:
            raise _delivery_error("cannot create the Maildir", exc)

    def _names(self):
        now = time.time()
        unique = "%d.M%dP%dQ%dC%s.%s" % (
            int(now), int(now % 1 * 1e6), os.getpid(), self.seq, self.tag,
            self.host)
        return (os.path.join(self.staging_dir, unique),
                os.path.join(self.final_dir, unique))

    def _is_ours(self, name):
        return ("C%s." % self.tag) in name


class EmlDestination(_Staged):
    """One .eml file per message, the message's bytes as received (CRLF
    line ends), staged under a hidden name in the same directory."""

    def __init__(self, path, tag, sync="auto"):
        super().__init__(tag, sync)
        self.path = self.staging_dir = self.final_dir = os.path.abspath(path)

    def _prepare(self):
        try:
            _makedirs(self.path)
        except OSError as exc:
            raise _delivery_error("cannot create the directory", exc)

    def _names(self):
        now = time.time()
        base = "%d.%06d.P%dQ%d" % (int(now), int(now % 1 * 1e6),
                                   os.getpid(), self.seq)
        return (os.path.join(self.path, ".cpoplib-tmp-%s-%s"
                             % (self.tag, base)),
                os.path.join(self.path, base + ".eml"))

    def _is_ours(self, name):
        return name.startswith(".cpoplib-tmp-%s-" % self.tag)


class MboxDestination:
    """An mbox file through mailbox.mbox, locked (lockf and dot lock)
    for the whole run; LF line ends, "From " lines quoted by mailbox."""

    def __init__(self, path, tag):
        self.path = os.path.abspath(path)
        self.box = None
        self.created = False
        self.unsynced = False

    def open(self, state):
        import mailbox
        dotlock = self.path + ".lock"
        previous = state.mbox if (state.mbox or {}).get(
            "path") == self.path else None
        try:
            _makedirs(os.path.dirname(self.path))
            self.created = not os.path.exists(self.path)
            if previous and previous.get("open"):
                # the previous run died holding the lock: its dot lock,
                # if still the very file it made, is stale
                try:
                    st = os.stat(dotlock)
                    if [st.st_ino, st.st_mtime_ns] == previous.get("dotlock"):
                        os.unlink(dotlock)
                except FileNotFoundError:
                    pass
            self.box = mailbox.mbox(self.path, create=True)
            try:
                self.box.lock()
            except mailbox.ExternalClashError as exc:
                self.box.close()
                self.box = None
                raise FetchError(EXIT_BUSY, "mbox %s is locked by another "
                                 "program (%s)" % (self.path, exc))
            if previous and previous.get("open"):
                size = os.path.getsize(self.path)
                if size > previous["size"]:
                    # the tail a killed run appended but never committed
                    os.truncate(self.path, previous["size"])
                    fd = os.open(self.path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            try:
                st = os.stat(dotlock)
                lock_id = [st.st_ino, st.st_mtime_ns]
            except FileNotFoundError:
                lock_id = None
            if self.created:
                fsync_dir(os.path.dirname(self.path))
            state.mbox = {"path": self.path, "open": True,
                          "size": os.path.getsize(self.path),
                          "dotlock": lock_id}
        except OSError as exc:
            raise _delivery_error("cannot open the mbox %s" % self.path, exc)
        state.save()
        self.state = state

    def deliver(self, data):
        try:
            self.box.add(data.replace(b"\r\n", b"\n"))
        except OSError as exc:
            raise _delivery_error("cannot write the mbox %s" % self.path,
                                  exc)
        self.unsynced = True

    def sync(self):
        try:
            self.box.flush()                    # fsync of the file
            self.state.mbox["size"] = os.path.getsize(self.path)
        except OSError as exc:
            raise _delivery_error("cannot sync the mbox %s" % self.path, exc)
        self.unsynced = False

    def pending(self):
        return []

    def publish(self):
        pass

    def close(self):
        if self.box is not None:
            box, self.box = self.box, None
            try:
                box.close()                      # unlocks
            except OSError:
                pass
            if not self.unsynced and getattr(self, "state", None):
                self.state.mbox["open"] = False
                try:
                    self.state.save()
                except FetchError:
                    pass


class CountingDestination:
    """--dry-run: fetch and count, write nothing."""

    def open(self, state):
        pass

    def deliver(self, data):
        pass

    def sync(self):
        pass

    def pending(self):
        return []

    def publish(self):
        pass

    def close(self):
        pass


# ---- accounts ----

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
        if self.sync not in SYNC_MODES:
            raise FetchError(EXIT_USAGE, "--sync must be one of %s"
                             % ", ".join(SYNC_MODES))
        if self.sync == "fs" and not (hasattr(_cpoplib, "_syncfs")
                                      and _linux_at_least(5, 8)):
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
        if self.dry_run:
            return CountingDestination()
        if self.maildir:
            return MaildirDestination(os.path.expanduser(self.maildir),
                                      self.tag(), self.sync)
        if self.mbox:
            return MboxDestination(os.path.expanduser(self.mbox), self.tag())
        return EmlDestination(os.path.expanduser(self.eml_dir), self.tag(),
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


# ---- output ----

def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1024
    return str(n)


class Output:
    """stderr: warnings, --verbose lines, the progress block (a TTY only:
    one line per account being fetched, redrawn in place below whatever
    else is printed) and the summary lines.  Shared by the account
    threads."""

    def __init__(self, quiet=False, verbose=False, stream=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.verbose_on = verbose and not quiet
        try:
            self.tty = self.stream.isatty() and not quiet
        except (AttributeError, ValueError):
            self.tty = False
        self.width = 80
        if self.tty:
            try:
                # 0 on a pseudo-terminal whose size was never set
                self.width = os.get_terminal_size(
                    self.stream.fileno())[0] or 80
            except (AttributeError, ValueError, OSError):
                pass
        self.lock = threading.Lock()
        self.lines = {}         # account name -> its progress line
        self.shown = 0          # progress lines on the screen now
        self.last = 0.0

    # the caller holds self.lock for these two
    def _erase(self):
        if self.shown:
            # the cursor is at the start of the line below the block
            self.stream.write("\x1b[%dA\x1b[J" % self.shown)
            self.shown = 0

    def _draw(self):
        # a line that wrapped would break the count: cut to the width
        for line in self.lines.values():
            self.stream.write(line[:max(self.width - 1, 1)] + "\n")
        self.shown = len(self.lines)

    def _write(self, text):
        with self.lock:
            self._erase()
            self.stream.write(text + "\n")
            self._draw()
            self.stream.flush()

    def error(self, text):
        self._write("%s: error: %s" % (PROG, text))

    def warn(self, text):
        self._write("%s: warning: %s" % (PROG, text))

    def verbose(self, text):
        if self.verbose_on:
            self._write("%s: %s" % (PROG, text))

    def summary(self, text):
        if not self.quiet:
            self._write(text)

    def progress(self, name, done, total, nbytes, total_bytes, started,
                 force=False):
        if not self.tty:
            return
        now = time.monotonic()
        elapsed = max(now - started, 1e-6)
        rate = nbytes / elapsed
        eta = ""
        if rate > 0 and total_bytes > nbytes:
            eta = ", ETA %ds" % ((total_bytes - nbytes) / rate + 0.5)
        line = "%s: %d/%d messages, %s/%s, %s/s%s" % (
            name, done, total, _size(nbytes), _size(total_bytes),
            _size(rate), eta)
        with self.lock:
            self.lines[name] = line
            if not force and now - self.last < 0.1:
                return              # shown with the next redraw
            self.last = now
            self._erase()
            self._draw()
            self.stream.flush()

    def end_progress(self, name):
        """The account `name` is done: its line leaves the block."""
        with self.lock:
            if self.lines.pop(name, None) is not None and self.tty:
                self._erase()
                self._draw()
                self.stream.flush()


# ---- one account ----

class Result:
    def __init__(self, name):
        self.name = name
        self.code = EXIT_OK
        self.error = None
        self.messages = 0
        self.bytes = 0
        self.deleted = 0
        self.seconds = 0.0


def _tls_context(acct, out):
    if acct.insecure:
        out.warn("--insecure: the server's certificate is not verified")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        return ssl.create_default_context(cafile=acct.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise FetchError(EXIT_USAGE, "--cafile %s: %s"
                         % (acct.cafile, _oserror_text(exc)))


def _connection_error(acct, exc):
    where = "%s:%d" % (acct.host, acct.port)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FetchError(EXIT_CONNECT, "TLS certificate verification "
                          "failed for %s: %s" % (where, exc.verify_message
                                                  or exc))
    if isinstance(exc, ssl.SSLError):
        return FetchError(EXIT_CONNECT, "TLS error with %s: %s"
                          % (where, exc.reason or exc))
    if isinstance(exc, socket.gaierror):
        return FetchError(EXIT_CONNECT, "cannot resolve %s: %s"
                          % (acct.host, exc.strerror or exc))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return FetchError(EXIT_CONNECT, "%s: timed out" % where)
    return FetchError(EXIT_CONNECT, "%s: %s" % (where, _oserror_text(exc)))


def _server_text(exc):
    text = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text)


def connect(acct, out):
    ctx = _tls_context(acct, out) if (acct.ssl or acct.starttls) else None
    try:
        if acct.ssl:
            conn = cpoplib.POP3_SSL(acct.host, acct.port, context=ctx,
                                    timeout=acct.timeout)
        else:
            conn = cpoplib.POP3(acct.host, acct.port, timeout=acct.timeout)
    except cpoplib.error_proto as exc:
        raise _busy_or(exc, EXIT_PROTOCOL, "%s:%d refused the connection"
                       % (acct.host, acct.port))
    except OSError as exc:
        raise _connection_error(acct, exc)
    try:
        if acct.starttls:
            try:
                conn.stls(ctx)
            except cpoplib.error_proto as exc:
                raise FetchError(EXIT_CONNECT, "STARTTLS failed: %s"
                                 % _server_text(exc))
            except OSError as exc:
                raise _connection_error(acct, exc)
        out.verbose("%s: connected to %s:%d%s" % (
            acct.name, acct.host, acct.port,
            " (TLS)" if ctx is not None else ""))
    except BaseException:
        conn.close()
        raise
    return conn


def _busy_or(exc, code, what):
    if isinstance(exc, (cpoplib.InUseError, cpoplib.LoginDelayError)):
        return FetchError(EXIT_BUSY, "%s: mailbox busy: %s"
                          % (what, _server_text(exc)))
    return FetchError(code, "%s: %s" % (what, _server_text(exc)))


def authenticate(conn, acct, out):
    try:
        conn.login(acct.user, acct.password, mechanism=acct.auth,
                   token=acct.token, allow_plaintext=acct.allow_plaintext)
    except cpoplib.error_proto as exc:
        raise _busy_or(exc, EXIT_AUTH, "login as %s failed" % acct.user)
    except ValueError as exc:
        raise FetchError(EXIT_USAGE if "mechanism" in str(exc)
                         else EXIT_AUTH, "login as %s: %s" % (acct.user, exc))
    except OSError as exc:
        raise _connection_error(acct, exc)
    out.verbose("%s: logged in as %s" % (acct.name, acct.user))


def fetch_account(acct, out):
    """Runs one account; returns a Result (never raises FetchError)."""
    result = Result(acct.name)
    started = time.monotonic()
    try:
        _fetch(acct, out, result, started)
    except FetchError as exc:
        result.code, result.error = exc.code, exc.message
    except cpoplib.error_proto as exc:
        result.code = EXIT_PROTOCOL
        result.error = "POP3 error: %s" % _server_text(exc)
    except OSError as exc:
        result.code = EXIT_CONNECT
        result.error = "%s:%s: %s" % (acct.host, acct.port,
                                      _oserror_text(exc))
    except KeyboardInterrupt:
        result.code, result.error = EXIT_INTERRUPTED, "interrupted"
    result.seconds = time.monotonic() - started
    return result


def _fetch(acct, out, result, started):
    dest = acct.destination()
    lock = None
    state_path = acct.state_path()
    if acct.dry_run:
        state = State.load(state_path, acct.name)
    else:
        lock = StateLock(state_path)
        lock.acquire()
    conn = None
    try:
        if not acct.dry_run:
            state = State.load(state_path, acct.name)
            dest.open(state)
        conn = connect(acct, out)
        authenticate(conn, acct, out)
        try:
            sizes = conn.list_map()
            try:
                uidls = conn.uidl_map()
            except cpoplib.error_proto as exc:
                out.warn("%s: the server has no UIDL (%s): fetching every "
                         "message" % (acct.name, _server_text(exc)))
                uidls = None
        except cpoplib.error_proto as exc:
            raise FetchError(EXIT_PROTOCOL, "LIST failed: %s"
                             % _server_text(exc))
        except OSError as exc:
            raise _connection_error(acct, exc)
        uid = {n: u.decode("latin-1") for n, u in (uidls or {}).items()}
        if uidls is None or acct.all:
            numbers = sorted(sizes)
        else:
            numbers = [n for n in sorted(sizes)
                       if uid.get(n) not in state.uidls]
        out.verbose("%s: %d messages on the server, %d to fetch"
                    % (acct.name, len(sizes), len(numbers)))
        if uidls is not None and not acct.dry_run:
            # forget UIDLs no longer on the server (they never come back)
            state.uidls &= set(uid.values())
        committed, failure = _transfer(conn, acct, out, dest, state,
                                       numbers, sizes, uid, result, started)
        if not acct.dry_run:
            state.save()       # pruned, pending renames cleared
        if failure is not None and failure.code == EXIT_CONNECT:
            raise failure      # no DELE, no QUIT: nothing is deleted
        if acct.delete and uidls is not None:
            # also what earlier runs put on disk (recorded in the state)
            # but did not delete: a run killed before QUIT, or run
            # without --delete
            done = set(committed)
            committed = sorted(done | {n for n in sizes if n not in done
                                       and uid.get(n) in state.uidls})
        if acct.delete and committed:
            try:
                for n in committed:
                    conn.dele(n)
                    _fault("deleted")
                    result.deleted += 1
            except cpoplib.error_proto as exc:
                raise FetchError(EXIT_PROTOCOL, "DELE failed: %s"
                                 % _server_text(exc))
            except OSError as exc:
                raise _connection_error(acct, exc)
        _fault("before-quit")
        try:
            conn.quit()
        except cpoplib.error_proto as exc:
            raise FetchError(EXIT_PROTOCOL, "QUIT failed: %s"
                             % _server_text(exc))
        except OSError as exc:
            raise _connection_error(acct, exc)
        conn = None
        if failure is not None:
            raise failure
    finally:
        if conn is not None:
            conn.close()            # no QUIT: the server deletes nothing
        dest.close()
        if lock is not None:
            lock.release()


def _transfer(conn, acct, out, dest, state, numbers, sizes, uid, result,
              started):
    """fetch_many() into dest, committing every batch; returns the
    committed message numbers and the FetchError that stopped the
    transfer early (a -ERR for one message, the connection lost) or
    None.  A delivery error is raised after committing what was fully
    written."""
    total_bytes = sum(sizes.get(n, 0) for n in numbers)
    committed = []
    batch = []
    batch_bytes = 0
    failure = None

    def commit():
        nonlocal batch, batch_bytes
        if not batch:
            return
        dest.sync()
        _fault("synced")
        if not acct.dry_run:
            state.uidls.update(uid[n] for n in batch if n in uid)
            state.pending = dest.pending()
            state.save()
            _fault("committed")
            dest.publish()
            if state.pending:
                state.pending = []      # saved with the next batch
            _fault("published")
        committed.extend(batch)
        out.verbose("%s: %d messages on disk" % (acct.name,
                                                 len(committed)))
        batch, batch_bytes = [], 0

    if not numbers:
        return committed, None
    it = conn.fetch_many(numbers, window=acct.window)
    try:
        while True:
            try:
                item = next(it)
            except StopIteration:
                break
            except cpoplib.error_proto as exc:
                which = getattr(exc, "which", None)
                failure = FetchError(EXIT_PROTOCOL, "RETR %s failed: %s"
                                     % (which, _server_text(exc)))
                break
            except OSError as exc:
                failure = _connection_error(acct, exc)
                break
            n, data = item
            dest.deliver(data)
            _fault("delivered")
            batch.append(n)
            batch_bytes += len(data)
            result.messages += 1
            result.bytes += len(data)
            out.progress(acct.name, result.messages, len(numbers),
                         result.bytes, total_bytes, started)
            if len(batch) >= acct.batch or batch_bytes >= BATCH_BYTES:
                commit()
    except BaseException:
        out.end_progress(acct.name)
        try:
            it.close()
        except (cpoplib.error_proto, OSError):
            pass
        try:
            commit()        # what was fully written is kept
        except FetchError:
            pass
        raise
    it.close()
    commit()
    out.end_progress(acct.name)
    return committed, failure


# ---- the command line ----

EPILOG = """\
exit codes: 0 ok; 1 usage or configuration error (no password); 2 cannot
connect, TLS or certificate failure, connection lost; 3 authentication
failed; 4 mailbox busy ([IN-USE], [LOGIN-DELAY], another fetcher running
for the account, mbox locked); 5 cannot write the destination or the
state file; 6 other POP3 error.  Several accounts: the highest code.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, "%s: error: %s\n" % (self.prog, message))


def build_parser():
    p = _Parser(prog=PROG, epilog=EPILOG, allow_abbrev=False,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Download new messages of a POP3 mailbox to a "
                            "Maildir, an mbox or .eml files.")
    c = p.add_argument_group("connection")
    c.add_argument("--host")
    c.add_argument("--port", type=int)
    c.add_argument("--ssl", action="store_true", default=None,
                   help="implicit TLS (POP3S, port 995)")
    c.add_argument("--starttls", action="store_true", default=None,
                   help="STLS after connecting")
    c.add_argument("--cafile", help="trust these CA certificates")
    c.add_argument("--insecure", action="store_true", default=None,
                   help="do not verify the certificate (warns)")
    c.add_argument("--timeout", type=float, default=None,
                   help="socket timeout in seconds (default 60)")
    a = p.add_argument_group("authentication")
    a.add_argument("--user")
    a.add_argument("--password", dest="refused_password",
                   help=argparse.SUPPRESS)
    a.add_argument("--password-env", metavar="NAME",
                   help="take the password from environment variable NAME")
    a.add_argument("--password-command", metavar="CMD",
                   help="run CMD (a shell command); its output is the "
                        "password")
    a.add_argument("--no-netrc", dest="netrc", action="store_false",
                   default=None, help="do not look in ~/.netrc")
    a.add_argument("--auth", metavar="MECH",
                   help="SASL mechanism for login() (default: the "
                        "strongest offered)")
    a.add_argument("--token-command", metavar="CMD",
                   help="OAuth 2.0: run CMD for the access token")
    a.add_argument("--allow-plaintext", action="store_true", default=None,
                   help="allow a cleartext password without TLS")
    d = p.add_argument_group("destination")
    d.add_argument("--maildir", metavar="DIR")
    d.add_argument("--mbox", metavar="FILE")
    d.add_argument("--eml-dir", metavar="DIR")
    d.add_argument("--dry-run", action="store_true", default=None,
                   help="fetch and count, write nothing")
    s = p.add_argument_group("what to fetch")
    s.add_argument("--state", metavar="FILE",
                   help="UIDL state file (default: under "
                        "$XDG_STATE_HOME/cpoplib/)")
    s.add_argument("--all", action="store_true", default=None,
                   help="fetch every message, not only new ones")
    s.add_argument("--delete", action="store_true", default=None,
                   help="delete on the server what is durably on disk")
    s.add_argument("--keep", action="store_true",
                   help="keep messages on the server (the default)")
    s.add_argument("--batch", type=int, metavar="N",
                   help="sync and commit every N messages (default %d)"
                        % BATCH_MESSAGES)
    s.add_argument("--window", type=int, metavar="N",
                   help="RETR commands in flight (default: fetch_many's)")
    s.add_argument("--sync", choices=SYNC_MODES,
                   help="how a batch of Maildir or .eml files is made "
                        "durable: fs = one syncfs(2) of the destination's "
                        "filesystem, file = fsync of each file; auto (the "
                        "default) = fs on Linux 5.17+ with ext4, XFS or "
                        "btrfs, else file")
    o = p.add_argument_group("output")
    o.add_argument("-q", "--quiet", action="store_true")
    o.add_argument("-v", "--verbose", action="store_true")
    o.add_argument("--config", metavar="FILE",
                   help="accounts from a TOML file (see README)")
    o.add_argument("--jobs", type=int, default=4, metavar="N",
                   help="accounts fetched at once (default 4)")
    return p


ACCOUNT_OPTIONS = [k for k in Account.FIELDS if k != "name"]


def accounts_from_args(args):
    if args.keep and args.delete:
        raise FetchError(EXIT_USAGE, "--keep and --delete exclude each "
                         "other")
    options = {k: getattr(args, k, None) for k in ACCOUNT_OPTIONS}
    if args.config:
        return accounts_from_config(args.config, options)
    return [Account(**options)]


def _load_toml(path):
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        try:
            import tomli as tomllib
        except ImportError:
            raise FetchError(EXIT_USAGE, "--config needs Python 3.11+ or "
                             "the tomli package (pip install tomli)")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise FetchError(EXIT_USAGE, "--config: %s" % _oserror_text(exc))
    except tomllib.TOMLDecodeError as exc:
        raise FetchError(EXIT_USAGE, "--config %s: %s" % (path, exc))


def accounts_from_config(path, overrides):
    """[defaults] and [accounts.NAME] tables; keys as the long options
    with '_' for '-'.  Options given on the command line win."""
    data = _load_toml(path)
    defaults = data.get("defaults", {})
    tables = data.get("accounts")
    if not isinstance(tables, dict) or not tables:
        raise FetchError(EXIT_USAGE, "--config %s: no [accounts.NAME] "
                         "table" % path)
    accounts = []
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise FetchError(EXIT_USAGE, "--config: accounts.%s is not a "
                             "table" % name)
        options = dict(defaults)
        options.update(table)
        options = {k.replace("-", "_"): v for k, v in options.items()}
        if "password" in options:
            raise FetchError(EXIT_USAGE, "--config: accounts.%s: no "
                             "plain passwords; use password_env, "
                             "password_command or ~/.netrc" % name)
        options.update((k, v) for k, v in overrides.items()
                       if v is not None)
        options["name"] = name
        accounts.append(Account(**options))
    return accounts


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    _load_faults()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.refused_password is not None:
        parser.error("a password is never taken on the command line (other "
                     "users can see it): use --password-env, "
                     "--password-command, ~/.netrc or the prompt")
    out = Output(quiet=args.quiet, verbose=args.verbose)
    try:
        accounts = accounts_from_args(args)
        for acct in accounts:
            acct.check()
        interactive = sys.stdin.isatty() and len(accounts) == 1
        for acct in accounts:          # prompts, in the main thread
            resolve_credentials(acct, interactive)
            if acct.name.startswith("?@"):
                acct.name = "%s@%s" % (acct.user, acct.host)
        paths = [a.state_path() for a in accounts]
        if len(set(paths)) != len(paths):
            raise FetchError(EXIT_USAGE, "two accounts share a state file")
    except FetchError as exc:
        out.error(exc.message)
        return exc.code
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_INTERRUPTED
    if len(accounts) == 1:
        results = [fetch_account(accounts[0], out)]
    else:
        results = _fetch_concurrently(accounts, out, max(1, args.jobs))
    code = EXIT_OK
    for r in results:
        if r.error:
            out.error("%s: %s" % (r.name, r.error) if len(results) > 1
                      else r.error)
        code = max(code, r.code)
        if r.error and not r.messages:
            continue
        rate = r.bytes / r.seconds if r.seconds > 0 else 0.0
        out.summary("%s: %d messages, %d bytes in %.2f s (%s/s)%s%s" % (
            r.name, r.messages, r.bytes, r.seconds, _size(rate),
            ", %d deleted" % r.deleted if r.deleted else "",
            "" if not r.error else ", failed"))
    return code


def _fetch_concurrently(accounts, out, jobs):
    results = [None] * len(accounts)
    todo = list(enumerate(accounts))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i, acct = todo.pop(0)
            results[i] = fetch_account(acct, out)

    threads = [threading.Thread(target=worker, daemon=True,
                                name="cpoplib-fetch-%d" % i)
               for i in range(min(jobs, len(accounts)))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        out.error("interrupted")
        for i, r in enumerate(results):
            if r is None:
                results[i] = Result(accounts[i].name)
                results[i].code = EXIT_INTERRUPTED
                results[i].error = "interrupted"
    return results


if __name__ == "__main__":
    sys.exit(main())
