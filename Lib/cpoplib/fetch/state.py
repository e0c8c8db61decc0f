"""The state of an account -- which messages were delivered (by UIDL, with
the time each was first fetched), what a killed run left to finish -- and
the lock that keeps two fetchers off one account.

The state is a journal: one file of lines, each a JSON record followed by
a tab and the CRC-32 of the record in hex.  The first line is a snapshot
of the whole state; every later line is a change (a batch delivered, UIDLs
forgotten, pending renames, the mbox's size, the server certificate
trusted on first use).  Updating the state after a
batch appends one line and fsyncs the file, so its cost grows with the
batch, not with the mailbox.  Loading replays the lines; once the changes
outweigh the snapshot, the next run that may write replaces the file with
a new snapshot (temporary file, fsync, rename, directory fsync), so the
file stays within about twice the size of the state itself.

Crash safety: a record is durable once the fsync after its line returns,
and nothing that depends on it (renames, DELE) happens before.  A crash
while a line is being appended can leave it torn -- cut short, or with
bytes the file system never wrote -- only at the end of the file: a last
line that is not a whole record with the right CRC is the record that was
never committed, and is dropped (and cut off before the next append).  A
bad line anywhere else is damage: the state is refused, never guessed.

The JSON state of earlier versions (one object, "version": 1) is replaced
by a journal with the same contents, atomically, when it is first opened
for writing.
"""
import fcntl
import json
import os
import zlib

from . import durable, faults
from .errors import EXIT_BUSY, EXIT_DELIVERY, FetchError, delivery_error

FORMAT = 2                  # "cpoplib-state" of the snapshot line


def _line(record):
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=True)
    data = text.encode("ascii")
    return b"%s\t%08x\n" % (data, zlib.crc32(data))


def _parse(line):
    """The record of a whole line, or None if it is not one."""
    body, tab, crc = line.rstrip(b"\n").rpartition(b"\t")
    if not tab or not line.endswith(b"\n"):
        return None
    try:
        if int(crc, 16) != zlib.crc32(body) or len(crc) != 8:
            return None
        record = json.loads(body)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class State:
    """An account's state, loaded from its file.

    delivered  {uidl: time first fetched (seconds)}; UIDLs are the
               server's bytes, as uidl_map() gives them (the file holds
               them decoded as latin-1, which is lossless)
    pending    [[staged path, final path], ...]: renames committed but
               perhaps not done (the last batch's)
    mbox       the mbox destination's record, or None
    tofu       the SHA-256 fingerprint of the server certificate trusted
               on first use (--tofu; "tofu" records, the last one holds),
               or None; files of earlier versions have none
    exists     whether the file exists
    """

    def __init__(self, path, account):
        self.path = path
        self.account = account
        self.delivered = {}
        self.pending = []
        self.mbox = None
        self.tofu = None
        self.exists = False
        self._fd = None           # open for appending once writable
        self._size = 0            # bytes of whole records in the file
        self._snapshot = 0        # bytes of its snapshot line
        self._migrate = False     # an earlier version's file
        self._torn = False        # a torn last line to cut off

    # ---- loading ----

    @classmethod
    def load(cls, path, account):
        state = cls(path, account)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return state
        except OSError as exc:
            raise delivery_error("cannot read the state file", exc)
        state.exists = True
        try:
            # a journal's every line has a tab before its CRC; JSON (the
            # earlier format) writes a tab only as the escape \t
            if b"\t" not in raw.split(b"\n", 1)[0]:
                state._load_v1(raw)
            else:
                state._load_journal(raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # never guess: an empty state would fetch everything again
            raise FetchError(
                EXIT_DELIVERY, "state file %s is damaged (%s); move it "
                "away to fetch everything again, or fix it" % (path, exc))
        return state

    def _load_v1(self, raw):
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("unknown format")
        now = int(faults.now())
        self.delivered = dict.fromkeys(
            (str(u).encode("latin-1") for u in data.get("uidls", [])), now)
        self.pending = [list(p) for p in data.get("pending", [])]
        self.mbox = data.get("mbox")
        self._migrate = True

    def _load_journal(self, raw):
        lines = raw.splitlines(keepends=True)
        for number, line in enumerate(lines, 1):
            record = _parse(line)
            if record is None:
                if number == len(lines) and number > 1:
                    self._torn = True   # the record a crash cut short
                    break
                raise ValueError("line %d is not a whole record" % number)
            if number == 1:
                if record.get("cpoplib-state") != FORMAT:
                    raise ValueError("unknown format")
                self._snapshot = len(line)
            self._apply(record)
            self._size += len(line)

    def _apply(self, record):
        for when, uidls in record.get("add", ()):
            # a valid file never adds a UIDL it already has (record_batch
            # leaves them out, a snapshot has each once): no lookups
            self.delivered.update(dict.fromkeys(
                (u.encode("latin-1") for u in uidls), int(when)))
        for uidl in record.get("forget", ()):
            self.delivered.pop(uidl.encode("latin-1"), None)
        if "pending" in record:
            self.pending = [list(p) for p in record["pending"]]
        if "mbox" in record:
            self.mbox = record["mbox"]
        if "tofu" in record:
            tofu = record["tofu"]
            if not isinstance(tofu, str) or not tofu.startswith("SHA256:"):
                raise ValueError("a tofu record that is no fingerprint")
            self.tofu = tofu

    # ---- writing ----

    def _snapshot_record(self):
        by_time = {}
        for uidl, when in self.delivered.items():
            by_time.setdefault(when, []).append(uidl.decode("latin-1"))
        record = {"cpoplib-state": FORMAT, "account": self.account,
                  "add": sorted([when, uidls]
                                for when, uidls in by_time.items()),
                  "pending": self.pending}
        if self.mbox is not None:
            record["mbox"] = self.mbox
        if self.tofu is not None:
            record["tofu"] = self.tofu
        return record

    def open(self):
        """Get ready to record: migrate an earlier version's file, replace
        a journal whose changes outweigh its snapshot, cut off a torn last
        line.  Idempotent."""
        if self._fd is not None:
            return
        try:
            durable.makedirs(os.path.dirname(os.path.abspath(self.path)))
            if not self.exists or self._migrate or self._outgrown():
                self._rewrite()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            if self._torn:
                os.ftruncate(fd, self._size)
                self._torn = False
        except OSError as exc:
            raise delivery_error("cannot write the state file", exc)
        self._fd = fd

    def _outgrown(self):
        return self._size - self._snapshot > max(self._snapshot, 64 << 10)

    def compact(self):
        """Replace the file with a snapshot if its changes outweigh the
        one it starts with (what open() would do on the next run)."""
        if self._fd is not None and self._outgrown():
            self.close()
            try:
                self._rewrite()
            except OSError as exc:
                raise delivery_error("cannot write the state file", exc)
            self.open()

    def _rewrite(self):
        line = _line(self._snapshot_record())
        durable.write_atomic(self.path, line)
        self.exists = True
        self._migrate = self._torn = False
        self._size = self._snapshot = len(line)

    def _append(self, record):
        if self._fd is None:
            self.open()
        line = _line(record)
        try:
            durable.write_all(self._fd, line)
            durable.fsync(self._fd, "state-file")
        except OSError as exc:
            raise delivery_error("cannot write the state file", exc)
        self._size += len(line)

    def record_batch(self, uidls, pending, mbox=None):
        """Durably record a synced batch: its UIDLs delivered now, the
        renames still to do (they replace the previous batch's, which were
        done), and the mbox's record if any."""
        when = int(faults.now())
        added = [u.decode("latin-1") for u in uidls
                 if u not in self.delivered]
        record = {"pending": pending}
        if added:
            record["add"] = [[when, added]]
        if mbox is not None:
            record["mbox"] = mbox
        self._append(record)
        self._apply(record)

    def forget(self, uidls):
        """Durably forget UIDLs no longer on the server (they never come
        back: RFC 1939 says a UIDL is never reused)."""
        gone = [u.decode("latin-1") for u in uidls if u in self.delivered]
        if gone:
            record = {"forget": gone}
            self._append(record)
            self._apply(record)

    def set_pending(self, pending):
        if pending != self.pending:
            record = {"pending": pending}
            self._append(record)
            self._apply(record)

    def set_mbox(self, mbox):
        record = {"mbox": mbox}
        self._append(record)
        self._apply(record)

    def set_tofu(self, fingerprint):
        """Durably record the server certificate trusted from now on
        (--tofu): the record is on disk before anything is sent to the
        server it names."""
        record = {"tofu": fingerprint}
        self._append(record)
        self._apply(record)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class StateLock:
    """An exclusive flock on STATE.lock: one fetcher per account at a time
    (released by the kernel if the process dies).  The lock file stays
    (removing it would let a second fetcher lock a new file while the
    first still holds the old one)."""

    def __init__(self, state_path):
        self.path = state_path + ".lock"
        self.fd = None

    def acquire(self):
        try:
            durable.makedirs(os.path.dirname(os.path.abspath(self.path)))
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise delivery_error("cannot create the state lock", exc)
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
