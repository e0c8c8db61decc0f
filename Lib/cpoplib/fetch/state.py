"""The UIDL state of an account (what was delivered, what a killed run left
to finish) and the lock that keeps two fetchers off one account."""
import fcntl
import json
import os

from . import durable
from .errors import EXIT_BUSY, EXIT_DELIVERY, FetchError, delivery_error

STATE_VERSION = 1


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
            raise delivery_error("cannot read the state file", exc)
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
            durable.makedirs(os.path.dirname(os.path.abspath(self.path)))
            durable.write_atomic(self.path, json.dumps(data, indent=0).encode())
        except OSError as exc:
            raise delivery_error("cannot write the state file", exc)
        self.exists = True


class StateLock:
    """An exclusive flock on STATE.lock: one fetcher per account at a time
    (released by the kernel if the process dies)."""

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
