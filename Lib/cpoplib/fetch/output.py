"""What the fetcher prints on stderr: warnings and errors (one line
each), --verbose lines, the progress block (on a terminal: one line per
account being fetched, redrawn in place) and the summary lines.  Shared
by the account threads."""
import os
import sys
import threading
import time

PROG = "cpoplib fetch"


def size_text(n):
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

    def report(self, r, several):
        """An account's end: its error (one line) and its summary line."""
        if r.error:
            self.error("%s: %s" % (r.name, r.error) if several else r.error)
        if r.error and not r.messages:
            return
        rate = r.bytes / r.seconds if r.seconds > 0 else 0.0
        text = "%s: %d messages, %d bytes in %.2f s (%s/s)" % (
            r.name, r.messages, r.bytes, r.seconds, size_text(rate))
        if r.error:
            text += {130: ", interrupted", 143: ", terminated"}.get(
                r.code, ", failed")
        if r.deleted:
            text += ", %d deleted" % r.deleted
            if r.unfetched:
                text += " (%d unfetched)" % r.unfetched
        if r.left:
            text += ", %d not fetched (%s)" % (
                sum(r.left.values()), ", ".join(
                    "%d %s" % (count, why) for why, count in r.left.items()))
        if r.deferred:
            text += ", %d left for the next run (%s)" % (r.deferred,
                                                        r.deferred_by)
        if r.skipped:
            text += ", %d skipped (left on the server)" % len(r.skipped)
        if r.dry_run:
            text += " -- dry run, nothing written or deleted"
            if r.listed is not None:
                text += "; the server has %d messages, %d bytes" % r.listed
        self.summary(text)

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
            name, done, total, size_text(nbytes), size_text(total_bytes),
            size_text(rate), eta)
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
