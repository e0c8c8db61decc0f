"""The user's commands that see mail: the filter (``--filter CMD``) and
the MDA (``--mda CMD``).  Each is a shell command (``/bin/sh -c CMD``),
run once per message with the text on its standard input; its standard
output is discarded, its standard error kept for the report of a failure
(and shown with --verbose).

``%F`` in CMD is the envelope sender -- the address of the message's
Return-Path:, MAILER-DAEMON when it has none or the null sender ``<>``
-- with every character other than a letter, a digit or one of
``.@_+=/-`` replaced by ``_``, and shell-quoted: an address is one shell
word however the command quotes ``%F`` (bare, as fetchmail's, or in
single quotes, as mpop's), and a hostile Return-Path cannot reach the
shell.  In the filter, ``%S`` is the message's size by its LIST.

Each command runs in a session of its own, so that a Ctrl-C on the
terminal does not kill an MDA in the middle of a delivery: on SIGINT or
SIGTERM the fetcher lets the command finish for up to STOP_GRACE
seconds (the filter: none), then SIGTERM and SIGKILL its process group.
"""
import os
import re
import shlex
import signal
import subprocess
import time

UNSAFE = re.compile(r"[^A-Za-z0-9.@_+=/-]")
NULL_SENDER = "MAILER-DAEMON"
STOP_GRACE = 10.0


def sender_word(sender):
    """%F's replacement for the envelope sender `sender` (None: unknown,
    "": the null sender)."""
    return shlex.quote(UNSAFE.sub("_", sender) if sender else NULL_SENDER)


def expand(command, sender, size=None):
    """`command` with %F (and %S, when `size` is given) replaced."""
    out = command.replace("%F", sender_word(sender))
    if size is not None:
        out = out.replace("%S", "%d" % size)
    return out


class Outcome:
    """How a command ended: `code` its exit status (None if it could not
    be started or was killed), `signal` the signal that killed it,
    `error` why it could not be started, `stderr` what it wrote there."""

    def __init__(self, code=None, sig=None, error=None, stderr=b""):
        self.code, self.signal, self.error = code, sig, error
        self.stderr = stderr

    def last_line(self):
        lines = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return lines[-1].strip() if lines else ""

    def describe(self):
        """How it failed, for a one-line message."""
        if self.error is not None:
            text = "could not be run (%s)" % self.error
        elif self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = "signal %d" % self.signal
            text = "was killed by %s" % name
        else:
            text = "exited with status %d" % self.code
        last = self.last_line()
        return text + (": %s" % last if last else "")


def _kill(proc):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(2.0)
            return
        except subprocess.TimeoutExpired:
            continue


def run(command, data, stopping=None, grace=0.0):
    """Run `command` with `data` (bytes) on its stdin; an Outcome.
    `stopping()` says whether the run is being stopped (SIGINT, SIGTERM):
    then the command gets `grace` seconds more to finish, and is
    killed."""
    try:
        proc = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        return Outcome(error=exc.strerror or str(exc))
    deadline = None
    pending = data          # given to the first communicate() only
    while True:
        try:
            _, err = proc.communicate(pending, timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            pending = None
            if stopping is None or not stopping():
                continue
            now = time.monotonic()
            if deadline is None:
                deadline = now + grace
            if now >= deadline:
                _kill(proc)
                _, err = proc.communicate()
                break
    code = proc.returncode
    if code < 0:
        return Outcome(sig=-code, stderr=err)
    return Outcome(code=code, stderr=err)
