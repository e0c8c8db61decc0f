"""Where the fetcher puts messages: the Destination interface and its
kinds (a Maildir, a directory of .eml files, an mbox, an MDA, and the dry
run that only counts).  mailbox.Mailbox declares what every stdlib
mailbox does; Destination does the same for the fetcher's, in the order a
run calls them: open(state), then deliver() for each message of a batch,
sync() to make the batch durable, pending() for the state's record of it,
publish() once the state has it, and close() at the end."""
import os
import socket
import time

from . import durable, faults
from .errors import EXIT_BUSY, EXIT_DELIVERY, FetchError, delivery_error


class Destination:
    """The interface every destination implements.  A run calls, in order:

    open(state)    prepare the destination; finish what a killed run left
                   (recorded in `state`); may update and save the state
    deliver(data, which)
                   write one message (bytes, CRLF line ends, as fetch()
                   returns it; `which` names it for error messages); not
                   durable yet
    sync()         make every message delivered since the last sync
                   durable
    pending()      what the state must record before publish(): a list of
                   [staged path, final path] renames (JSON-friendly)
    state_record() what else the state records with the batch (the mbox's
                   size), or None
    publish()      make the synced messages visible (rename them); runs
                   only after the state recorded pending()
    close()        release everything; an unsynced batch stays to be
                   cleaned up by the next run

    max_batch      None, or the most messages a batch may have: a
                   destination that cannot stage a message (the MDA) has 1,
                   so that each is recorded as soon as it is delivered
    """

    max_batch: "int | None" = None

    def open(self, state):
        raise NotImplementedError

    def deliver(self, data, which=""):
        raise NotImplementedError

    def sync(self):
        raise NotImplementedError

    def pending(self):
        return []

    def state_record(self):
        return None

    def publish(self):
        pass

    def close(self):
        pass


def _flush_without_fsync(box):
    """mailbox.mbox.flush() with its fsync left out (the test-only
    "mbox-file" sync site turned off)."""
    import mailbox
    saved = mailbox._sync_flush
    mailbox._sync_flush = lambda f: f.flush()
    try:
        box.flush()
    finally:
        mailbox._sync_flush = saved


def _hostname():
    # as mailbox.Maildir does: '/' and ':' are not allowed in a name
    return (socket.gethostname().replace("/", r"\057")
            .replace(":", r"\072"))


def _is_maildir(path):
    """cur/, new/ and tmp/, or some of them and nothing else (one being
    made when a run was killed)."""
    subs = ("cur", "new", "tmp")
    return (all(os.path.isdir(os.path.join(path, sub)) for sub in subs)
            or set(os.listdir(path)) <= set(subs))


def _is_mbox(path):
    with open(path, "rb") as f:
        return f.read(5) == b"From "


def _refuse_unless(path, is_kind, kind):
    """An existing destination must be of its kind, or empty (an empty
    directory or file becomes one): never turn someone's directory into
    a Maildir or append mail to a file that is not an mbox."""
    try:
        if os.path.isdir(path):
            if is_kind is _is_mbox:
                raise FetchError(EXIT_DELIVERY, "%s is a directory, not %s"
                                 % (path, kind))
            if not os.listdir(path) or is_kind(path):
                return
        elif os.path.exists(path):
            if is_kind is _is_maildir:
                raise FetchError(EXIT_DELIVERY, "%s is a file, not %s"
                                 % (path, kind))
            if os.path.getsize(path) == 0 or is_kind(path):
                return
        else:
            return
    except OSError as exc:
        raise delivery_error("cannot read %s" % path, exc)
    raise FetchError(EXIT_DELIVERY, "%s exists and is not %s: refusing to "
                     "write into it (give a new or empty %s)" % (
                         path, kind, "directory" if is_kind is _is_maildir
                         else "file"))


class StagedDirectory(Destination):
    """Maildir and .eml directories: write to a staging name, make the
    batch durable, commit through the state, then rename (see the
    package's docstring)."""

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
            raise delivery_error("cannot open %s" % self.staging_dir, exc)
        self.use_syncfs = (self.sync_mode == "fs"
                           or (self.sync_mode == "auto"
                               and durable.syncfs_usable(self.dirfd)))
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
                durable.fsync_dir(self.final_dir, "recover-dirs")
                durable.fsync_dir(self.staging_dir, "recover-dirs")
        except OSError as exc:
            raise delivery_error("cannot recover the previous run", exc)
        state.set_pending([])

    def deliver(self, data, which=""):
        if self.lf:
            data = data.replace(b"\r\n", b"\n")
        self.seq += 1
        staged, final = self._names()
        try:
            fd = os.open(os.path.basename(staged),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600,
                         dir_fd=self.dirfd)
        except OSError as exc:
            raise delivery_error("cannot create a file", exc)
        try:
            durable.write_all(fd, data)
        except OSError as exc:
            os.close(fd)
            try:
                os.unlink(staged)
            except OSError:
                pass
            raise delivery_error("cannot write %s" % staged, exc)
        self.staged.append((fd, staged, final))

    def sync(self):
        """Step 2: make the staged files and their names durable: one
        syncfs of the filesystem, or fsync of every staged file and then
        of the staging directory."""
        try:
            if self.use_syncfs:
                durable.syncfs(self.dirfd, "batch-syncfs")
            for i, (fd, staged, final) in enumerate(self.staged):
                if fd is not None:
                    if not self.use_syncfs:
                        durable.fsync(fd, "batch-files")
                    os.close(fd)
                    self.staged[i] = (None, staged, final)
            if not self.use_syncfs:
                durable.fsync(self.dirfd, "batch-staging-dir")
        except OSError as exc:
            raise delivery_error("cannot sync %s" % self.staging_dir, exc)

    def pending(self):
        return [[staged, final] for _, staged, final in self.staged]

    def publish(self):
        """Step 4: rename the committed files to their final names."""
        try:
            for _, staged, final in self.staged:
                os.rename(staged, final)
            self.staged = []
            durable.fsync_dir(self.final_dir, "publish-dirs")
            durable.fsync_dir(self.staging_dir, "publish-dirs")
        except OSError as exc:
            raise delivery_error("cannot move files into %s"
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


class MaildirDestination(StagedDirectory):
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
        _refuse_unless(self.path, _is_maildir, "a Maildir (cur/, new/ and "
                       "tmp/)")
        try:
            if not os.path.isdir(self.path):
                import mailbox      # only here and for mbox: 15 ms of start-up
                durable.makedirs(os.path.dirname(self.path))
                mailbox.Maildir(self.path, create=True)
                durable.fsync_dir(os.path.dirname(self.path), "maildir-dirs")
            for sub in ("tmp", "new", "cur"):
                durable.makedirs(os.path.join(self.path, sub))
            durable.fsync_dir(self.path, "maildir-dirs")
        except OSError as exc:
            raise delivery_error("cannot create the Maildir", exc)

    def _names(self):
        now = time.time()
        unique = "%d.M%dP%dQ%dC%s.%s" % (
            int(now), int(now % 1 * 1e6), os.getpid(), self.seq, self.tag,
            self.host)
        return (os.path.join(self.staging_dir, unique),
                os.path.join(self.final_dir, unique))

    def _is_ours(self, name):
        return ("C%s." % self.tag) in name


class EmlDestination(StagedDirectory):
    """One .eml file per message, the message's bytes as received (CRLF
    line ends), staged under a hidden name in the same directory."""

    def __init__(self, path, tag, sync="auto"):
        super().__init__(tag, sync)
        self.path = self.staging_dir = self.final_dir = os.path.abspath(path)

    def _prepare(self):
        try:
            durable.makedirs(self.path)
        except OSError as exc:
            raise delivery_error("cannot create the directory", exc)

    def _names(self):
        now = time.time()
        base = "%d.%06d.P%dQ%d" % (int(now), int(now % 1 * 1e6),
                                   os.getpid(), self.seq)
        return (os.path.join(self.path, ".cpoplib-tmp-%s-%s"
                             % (self.tag, base)),
                os.path.join(self.path, base + ".eml"))

    def _is_ours(self, name):
        return name.startswith(".cpoplib-tmp-%s-" % self.tag)


MTIME_SLACK_NS = 100 * 1000 * 1000


def _stale_dotlock(dotlock, mbox_path, previous):
    """Whether the mbox's dot lock is one a killed run of this account
    left (`previous`: what the state last recorded of the mbox): the very
    file the state names by (st_ino, mtime) while it says the mbox is
    open, or one made after the state recorded that a run was about to
    take the lock ("locking") while nothing holds the mbox's fcntl lock --
    a live holder of the dot lock that uses fcntl locking too, as mailbox,
    mutt, procmail and Postfix's local do, would hold it."""
    try:
        st = os.stat(dotlock)
    except FileNotFoundError:
        return False
    if previous.get("open") \
            and [st.st_ino, st.st_mtime_ns] == previous.get("dotlock"):
        return True
    locking = previous.get("locking")
    # file times come from the kernel's coarse clock, up to a tick behind
    # time.time_ns(): a lock made right after the record may look older
    if locking is None or st.st_mtime_ns < locking - MTIME_SLACK_NS:
        return False
    return not _fcntl_locked(mbox_path)


def _fcntl_locked(path):
    """Whether another process holds an fcntl (lockf) lock on `path`.
    Only before this process locks it: closing the descriptor would drop
    this process's own locks on the file."""
    import fcntl
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class MboxDestination(Destination):
    """An mbox file through mailbox.mbox, locked (lockf and dot lock)
    for the whole run; LF line ends, "From " lines quoted by mailbox."""

    def __init__(self, path, tag):
        self.path = os.path.abspath(path)
        self.box = None
        self.created = False
        self.unsynced = False
        self.record = None      # what the state records of the mbox
        self.state = None

    def open(self, state):
        import mailbox
        directory = os.path.dirname(self.path)
        dotlock = self.path + ".lock"
        previous = state.mbox if (state.mbox or {}).get(
            "path") == self.path else None
        if previous is None:        # else ours, maybe cut by a kill
            _refuse_unless(self.path, _is_mbox, "an mbox (its first line "
                           "a \"From \" line)")
        try:
            durable.makedirs(directory)
            try:
                # created here, not by mailbox.mbox, for its mode: 0600
                # like every other file of the fetcher, whatever the umask
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT
                                 | os.O_EXCL, 0o600))
                self.created = True
            except FileExistsError:
                self.created = False
            if previous and _stale_dotlock(dotlock, self.path, previous):
                # a killed run's: gone for good before a new one is made
                os.unlink(dotlock)
                durable.fsync_dir(directory, "mbox-lock-dir")
            # that this run is about to take the dot lock, before it exists:
            # a crash before the lock is recorded leaves a lock the next
            # run knows (see _stale_dotlock); what the previous run left
            # to cut off stays recorded
            intent = {"path": self.path, "open": False,
                      "locking": time.time_ns()}
            if previous and previous.get("open"):
                intent.update(open=True, size=previous["size"])
            state.set_mbox(intent)
            self.box = mailbox.mbox(self.path, create=True)
            try:
                self.box.lock()
            except mailbox.ExternalClashError as exc:
                self.box.close()
                self.box = None
                # not taken: the lock there is someone else's
                intent.pop("locking")
                state.set_mbox(intent)
                raise FetchError(EXIT_BUSY, "mbox %s is locked by another "
                                 "program (%s)" % (self.path, exc))
            if previous and previous.get("open"):
                size = os.path.getsize(self.path)
                if size > previous["size"]:
                    # the tail a killed run appended but never committed
                    os.truncate(self.path, previous["size"])
                    fd = os.open(self.path, os.O_RDONLY)
                    try:
                        durable.fsync(fd, "mbox-truncate")
                    finally:
                        os.close(fd)
            try:
                st = os.stat(dotlock)
                lock_id = [st.st_ino, st.st_mtime_ns]
            except FileNotFoundError:
                lock_id = None
            if self.created:
                durable.fsync_dir(os.path.dirname(self.path), "mbox-dir")
            self.record = {"path": self.path, "open": True,
                           "size": os.path.getsize(self.path),
                           "dotlock": lock_id}
        except OSError as exc:
            raise delivery_error("cannot open the mbox %s" % self.path, exc)
        state.set_mbox(dict(self.record))
        self.state = state

    def deliver(self, data, which=""):
        try:
            self.box.add(data.replace(b"\r\n", b"\n"))
        except OSError as exc:
            raise delivery_error("cannot write the mbox %s" % self.path,
                                  exc)
        self.unsynced = True

    def sync(self):
        try:
            if faults.sync_skipped("mbox-file"):
                _flush_without_fsync(self.box)
            else:
                self.box.flush()                # fsync of the file
            self.record["size"] = os.path.getsize(self.path)
        except OSError as exc:
            raise delivery_error("cannot sync the mbox %s" % self.path, exc)
        self.unsynced = False

    def state_record(self):
        return dict(self.record)

    def close(self):
        if self.box is not None:
            box, self.box = self.box, None
            try:
                box.close()                      # unlocks
            except OSError:
                pass
            if not self.unsynced and self.state is not None:
                try:
                    # the dot lock's removal is durable before the state
                    # says the mbox is closed
                    durable.fsync_dir(os.path.dirname(self.path),
                                      "mbox-lock-dir")
                    self.state.set_mbox(dict(self.record, open=False))
                except (FetchError, OSError):
                    pass


class MdaDestination(Destination):
    """--mda CMD: each message piped to CMD, a shell command (external.py:
    %F is the envelope sender), with LF line ends as the Unix MDAs
    (procmail, maildrop, dovecot-lda) read mail.  Delivered means CMD
    exited 0; any other end is a delivery error (exit 5) that stops the
    account, the message not recorded and left on the server.

    The durability model: the MDA's exit 0 is its word that the message
    is stored (procmail, maildrop and dovecot-lda sync it before they
    exit 0), and what it stored cannot be staged or taken back.  So the
    staged/commit/publish protocol has nothing to stage or publish here:
    sync() and publish() do nothing, and a batch is one message
    (max_batch = 1), recorded in the state (one appended, fsync'd line)
    right after its MDA exited 0, before the next one is piped.  A crash
    between that exit and the record means the next run delivers the
    message again -- a duplicate, never a loss -- and nothing is deleted
    on the server before its record is durable.  On SIGINT or SIGTERM the
    MDA running gets external.STOP_GRACE seconds to finish; if it exits
    0 the message is recorded before the run stops; otherwise it is not,
    and the run ends as interrupted (130, 143: session.py takes what
    failed during a stop for the stop)."""

    max_batch = 1

    def __init__(self, command, stop=None):
        self.command = command
        self.stop = stop

    def _stopping(self):
        return self.stop is not None and self.stop.code is not None

    def open(self, state):
        pass

    def deliver(self, data, which=""):
        from . import external, headers
        data = data.replace(b"\r\n", b"\n")
        command = external.expand(self.command,
                                  headers.envelope_sender(data))
        outcome = external.run(command, data, stopping=self._stopping,
                               grace=external.STOP_GRACE)
        if outcome.code != 0:
            raise FetchError(EXIT_DELIVERY, "%sthe MDA (--mda) %s; it "
                             "stays on the server" % (
                                 which + ": " if which else "",
                                 outcome.describe()))

    def sync(self):
        pass


class CountingDestination(Destination):
    """--dry-run: fetch and count, write nothing."""

    def open(self, state):
        pass

    def deliver(self, data, which=""):
        pass

    def sync(self):
        pass
