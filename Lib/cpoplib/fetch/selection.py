"""Which of the new messages a run fetches, leaves on the server or
deletes without fetching, and which messages --delete deletes at the end
(docs/fetcher/selection.rst says the same for users).

choose(), after the listing, in this order for each new message (by its
LIST size, before anything is fetched):

1. larger than ``--delete-larger``: deleted unfetched (with --delete; a
   dry run only counts it);
2. larger than ``--skip-larger``: left on the server, never fetched;
3. larger than ``max_message_size``: skipped as too large (a warning,
   exit 7: the cap is a safety limit, not a choice);
4. past ``--max-messages`` or ``--max-bytes`` (counted over the whole run,
   by LIST sizes, the first message always taken): this one and the rest
   are left for the next run;
5. ``--filter``: its headers (``TOP n 0``, pipelined with top_many()) on
   the filter's stdin; exit 0 fetch, 1 leave on the server, 2 delete
   unfetched (with --delete; without, left), anything else (or a -ERR to
   the TOP) that message's failure: reported, left, exit 7.

Left, deferred and unfetched-deleted messages are the user's choice: the
summary counts them and the exit status stays 0.  A message that is
chosen (1, 2 or a filter's 1 or 2) is chosen again on every run; the
filter sees it again.

to_delete(), after the transfer: with --delete, every message the state
records as delivered -- once it was first fetched ``--keep-days`` days
ago, if that is set -- and the ones chosen to be deleted unfetched in
this session.  Nothing else is ever deleted: a message is on the list
only if it is durably on disk (the state says so) or the user's settings
discard it (a size, the filter's 2), and DELE goes out only with
--delete on.
"""
from . import external, faults, headers
from .settings import size_words
from .session import failed, is_reply, server_text

DAY = 86400


class Selection:
    """What choose() decided for one session: `fetch` (message numbers,
    in order) and the messages to delete unfetched (by UIDL, or by
    number on the connection `conn` when a message has no UIDL)."""

    def __init__(self, conn):
        self.fetch = []
        self.conn = conn
        self.discard_uidls = []
        self.discard_numbers = []


def label(s, n):
    """A message as the warnings name it: its number and UIDL."""
    uidl = s.uid.get(n) if s.uid is not None else None
    return "message %d%s" % (n, " (UIDL %s)" % uidl.decode("latin-1")
                             if uidl else "")


def skip(s, result, n, why):
    """Message `n` could not be taken (a failure: exit 7): reported by
    number and UIDL, left on the server, not recorded."""
    uidl = s.uid.get(n) if s.uid is not None else None
    result.skipped.append((n, uidl, why))
    s.out.warn("%s: %s skipped: %s; it stays on the server"
               % (s.acct.name, label(s, n), why))


def choose(s, result, numbers):
    """The Selection of the new messages `numbers` (in order) of the
    session `s` (logged in, listed); counts in `result`."""
    return _Chooser(s, result).run(numbers)


class _Chooser:
    def __init__(self, s, result):
        self.s, self.result, self.acct = s, result, s.acct
        self.sel = Selection(s.conn)

    def leave(self, n, why):
        """Not fetched by the user's choice: counted by reason for the
        summary (and told with --verbose)."""
        left = self.result.left
        left[why] = left.get(why, 0) + 1
        self.s.out.verbose("%s: %s not fetched: %s" % (
            self.acct.name, label(self.s, n), why))

    def discard(self, n, why):
        s = self.s
        if not self.acct.delete:
            self.leave(n, "%s, kept without --delete" % why)
            return
        uidl = s.uid.get(n) if s.uid is not None else None
        if uidl is not None:
            self.sel.discard_uidls.append(uidl)
        else:
            # its number is all that names it, on this connection only
            self.sel.discard_numbers.append(n)
        s.out.verbose("%s: %s to delete unfetched: %s" % (
            self.acct.name, label(s, n), why))

    def over_limit(self, size):
        """The limit that taking a message of `size` would pass, or
        None."""
        acct, result = self.acct, self.result
        if acct.max_messages and result.chosen >= acct.max_messages:
            return "--max-messages %d" % acct.max_messages
        if acct.max_bytes and result.chosen \
                and result.chosen_bytes + size > acct.max_bytes:
            return "--max-bytes %s" % size_words(acct.max_bytes)
        return None

    def take(self, n, size):
        self.sel.fetch.append(n)
        self.result.chosen += 1
        self.result.chosen_bytes += size

    def defer(self, rest, limit):
        self.result.deferred, self.result.deferred_by = len(rest), limit
        self.s.out.verbose("%s: %s reached: %d new messages left for the "
                           "next run" % (self.acct.name, limit, len(rest)))

    def run(self, numbers):
        acct, s = self.acct, self.s
        self.result.deferred, self.result.deferred_by = 0, None
        candidates = []
        cap = acct.max_message_bytes
        for n in numbers:
            size = s.sizes.get(n, 0)
            if acct.delete_larger and size > acct.delete_larger:
                self.discard(n, "larger than --delete-larger %s"
                             % size_words(acct.delete_larger))
            elif acct.skip_larger and size > acct.skip_larger:
                self.leave(n, "larger than --skip-larger %s"
                           % size_words(acct.skip_larger))
            elif size > cap:
                skip(s, self.result, n, "%d bytes, larger than "
                     "max_message_size (%d MiB)"
                     % (size, acct.max_message_size))
            else:
                candidates.append(n)
        if acct.filter:
            rest = candidates
            while rest:
                rest = self.filter_some(rest)
            return self.sel
        for i, n in enumerate(candidates):
            size = s.sizes.get(n, 0)
            limit = self.over_limit(size)
            if limit is not None:
                self.defer(candidates[i:], limit)
                break
            self.take(n, size)
        return self.sel

    def filter_some(self, numbers):
        """The filter over `numbers`, their headers from one top_many():
        what is left to filter after a -ERR to one TOP, [] when done."""
        s = self.s
        it = s.conn.top_many(numbers, 0)
        done = 0
        try:
            while True:
                s.check_stop()
                try:
                    n, head = next(it)
                except StopIteration:
                    return []
                except (s.pop.error_proto, OSError) as exc:
                    n = getattr(exc, "which", None) or numbers[done]
                    if isinstance(exc, s.pop.error_proto) and is_reply(exc):
                        skip(s, self.result, n, "the server refused TOP "
                             "%d: %s" % (n, server_text(exc)))
                        return numbers[numbers.index(n) + 1:]
                    raise failed(s.pop, "TOP %d" % n, exc)
                done += 1
                size = s.sizes.get(n, 0)
                limit = self.over_limit(size)
                if limit is not None:
                    self.defer(numbers[done - 1:], limit)
                    return []
                self.verdict(n, size, head)
        finally:
            try:
                it.close()          # drains the TOPs still in flight
            except (s.pop.error_proto, OSError):
                pass

    def stopping(self):
        stop = self.s.stop
        return stop is not None and stop.code is not None

    def verdict(self, n, size, head):
        """Run the filter on message `n`'s header, act on its exit."""
        s, acct = self.s, self.acct
        head = head.replace(b"\r\n", b"\n")
        command = external.expand(acct.filter,
                                  headers.envelope_sender(head), size)
        outcome = external.run(command, head, stopping=self.stopping)
        s.check_stop()          # a filter killed by the stop is no verdict
        if outcome.stderr:
            s.out.verbose("%s: %s: the filter said: %s" % (
                acct.name, label(s, n), outcome.last_line()))
        if outcome.code == 0:
            self.take(n, size)
        elif outcome.code == 1:
            self.leave(n, "left by the filter")
        elif outcome.code == 2:
            self.discard(n, "marked by the filter (exit 2)")
        else:
            skip(s, self.result, n, "the filter %s" % outcome.describe())


def to_delete(s, state, committed, sel):
    """What --delete deletes now, in this session: (message numbers,
    how many of them were never fetched)."""
    acct = s.acct
    if not acct.delete:
        return [], 0
    if s.uid is not None:
        # what this run and earlier ones put on disk (recorded in the
        # state) but did not delete: a run killed before QUIT, or run
        # without --delete; with --keep-days only once old enough
        oldest = faults.now() - acct.keep_days * DAY \
            if acct.keep_days else None
        doomed = {n for n, u in s.uid.items()
                  if s.is_listed(n) and u in state.delivered
                  and (oldest is None or state.delivered[u] <= oldest)}
    elif acct.keep_days:
        # nothing dates a message without a UIDL
        s.out.warn("%s: the server has no UIDL, so --keep-days cannot tell "
                   "how long a message has been fetched: nothing fetched "
                   "is deleted" % acct.name)
        doomed = set()
    else:
        doomed = set(committed)         # this connection's, no UIDL
    unfetched = set()
    if sel is not None:
        if sel.discard_uidls and s.uid is not None:
            number = {u: n for n, u in s.uid.items()}
            unfetched.update(number[u] for u in sel.discard_uidls
                             if u in number)
        if sel.discard_numbers and s.conn is sel.conn:
            unfetched.update(sel.discard_numbers)
    unfetched -= doomed
    return sorted(doomed | unfetched), len(unfetched)
