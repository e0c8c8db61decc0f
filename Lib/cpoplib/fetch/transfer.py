"""The transfer of one account's messages: fetch_many() into the
destination, committing every batch through the state.

One bad message is that message's failure, not the account's:

* larger than the cap by its LIST size: never asked for (selection.py
  leaves it out);
* a -ERR to its RETR: fetch_many() has read every reply in flight, the
  connection is in step, the rest is fetched with a new fetch_many();
* a line or a reply past the cap (a server whose LIST size was wrong):
  the rest of that reply is still on the wire, so the connection is
  closed (without QUIT: nothing is deleted), a new one opened and listed
  again, and the rest fetched there (by UIDL: their numbers may differ).

Such a message is reported by number and UIDL, left on the server and
not recorded, so that the next run tries it again; the exit status is
EXIT_SKIPPED.  The line limit is the cap (core.py), not poplib's 2048:
reading with it from the start is what keeps a mailbox with long-lined
mail drainable without a reconnection per message.

With --add-received each message gets its Received: field (headers.py)
before the destination sees it.  A destination with max_batch (the MDA:
what it delivered cannot be taken back) commits after that many
messages, whatever --batch says."""
from . import faults, headers
from .accounts import BATCH_BYTES
from .errors import EXIT_PROTOCOL, FetchError
from .selection import label, skip
from .session import failed, is_reply, lost, server_text

RECONNECTIONS = 10      # at most this many per run


class Transfer:
    def __init__(self, session, dest, state, result, started):
        self.s = session
        self.acct = session.acct
        self.out = session.out
        self.dest, self.state, self.result = dest, state, result
        self.started = started
        self.committed = []         # this connection's message numbers
        self.batch = []
        self.batch_bytes = 0
        self.reconnections = 0

    def skip(self, n, why):
        skip(self.s, self.result, n, why)

    def commit(self):
        if not self.batch:
            return
        self.dest.sync()
        faults.fault("synced")
        if not self.acct.dry_run:
            uid = self.s.uid or {}
            self.state.record_batch([uid[n] for n in self.batch if n in uid],
                                    self.dest.pending(),
                                    self.dest.state_record())
            faults.fault("committed")
            self.dest.publish()
            faults.fault("published")
        self.committed.extend(self.batch)
        self.out.verbose("%s: %d messages on disk" % (
            self.acct.name, self.result.messages))
        self.batch, self.batch_bytes = [], 0

    def run(self, numbers):
        """Fetches `numbers` (chosen by selection.choose(): none larger
        than the cap by its LIST size); returns the FetchError that stopped
        the transfer early (the connection lost) or None.  A delivery error
        is raised after committing what was fully written."""
        sizes = self.s.sizes
        wanted = list(numbers)
        self.total = len(wanted)
        self.total_bytes = sum(sizes.get(n, 0) for n in wanted)
        try:
            failure = None
            while wanted and failure is None:
                wanted, failure = self.segment(wanted)
        except BaseException:
            self.out.end_progress(self.acct.name)
            try:
                self.commit()       # what was fully written is kept
            except FetchError:
                pass
            raise
        self.commit()
        self.out.end_progress(self.acct.name)
        return failure

    def segment(self, numbers):
        """One fetch_many() over `numbers`: (what is left to fetch, the
        failure that ends the transfer or None)."""
        s = self.s
        it = s.conn.fetch_many(numbers, window=self.acct.window,
                               sizes=s.sizes)
        done = 0
        try:
            while True:
                s.check_stop()
                try:
                    item = next(it)
                except StopIteration:
                    break
                except (s.pop.error_proto, OSError) as exc:
                    n = getattr(exc, "which", None) or numbers[done]
                    rest = numbers[numbers.index(n) + 1:] \
                        if n in numbers else numbers[done + 1:]
                    return self.failed_message(n, rest, exc)
                n, data = item
                done += 1
                self.deliver(n, data)
        finally:
            try:
                it.close()
            except (s.pop.error_proto, OSError):
                pass
        self.out.verbose("%s: RETR window %s (%s)" % (
            self.acct.name, it.window,
            "fixed" if self.acct.window else "adaptive, where it got to"))
        return [], None

    def deliver(self, n, data):
        if self.acct.add_received:
            data = self.received() + data
        self.dest.deliver(data, label(self.s, n))
        faults.fault("delivered")
        self.batch.append(n)
        self.batch_bytes += len(data)
        r = self.result
        r.messages += 1
        r.bytes += len(data)
        self.out.progress(self.acct.name, r.messages, self.total, r.bytes,
                          self.total_bytes, self.started)
        # a destination that cannot stage (the MDA) has a batch of one
        if len(self.batch) >= min(self.acct.batch,
                                  self.dest.max_batch or self.acct.batch) \
                or self.batch_bytes >= BATCH_BYTES:
            self.commit()

    def received(self):
        """--add-received: the Received: field for a message fetched now
        on the current connection."""
        import cpoplib
        acct = self.acct
        try:
            peer = self.s.conn.sock.getpeername()[0]
        except (AttributeError, OSError, IndexError, TypeError):
            peer = None
        return headers.received(acct.host, peer, acct.user,
                                getattr(acct, "config_name", None),
                                acct.ssl or acct.starttls, faults.now(),
                                cpoplib.__version__)

    def failed_message(self, n, rest, exc):
        s = self.s
        if isinstance(exc, s.pop.error_proto) and is_reply(exc):
            self.skip(n, "the server refused RETR %d: %s"
                      % (n, server_text(exc)))
            return rest, None                   # still in step
        text = server_text(exc)
        if isinstance(exc, OSError) or text == "-ERR EOF":
            return [], lost("RETR %d" % n, exc)
        if text not in ("line too long", "response too long"):
            return [], failed(s.pop, "RETR %d" % n, exc)
        self.skip(n, "%s than max_message_size (%d MiB) allows" % (
            "a line longer" if text == "line too long" else "larger",
            self.acct.max_message_size))
        return self.reconnect(rest)

    def reconnect(self, rest):
        """The connection is out of step: commit, open a new one, find
        the rest there (by UIDL)."""
        if self.reconnections >= RECONNECTIONS:
            return [], FetchError(EXIT_PROTOCOL, "stopped after %d "
                                  "reconnections for messages too large"
                                  % RECONNECTIONS)
        self.reconnections += 1
        self.commit()
        old_uid, old_count = self.s.uid, self.s.count
        self.out.verbose("%s: reconnecting for the other %d messages"
                         % (self.acct.name, len(rest)))
        self.s.reopen()
        self.committed = []       # numbers of the old connection
        if old_uid is None or self.s.uid is None:
            if self.s.count != old_count:
                return [], FetchError(EXIT_PROTOCOL, "the mailbox changed "
                                      "and the server has no UIDL: the "
                                      "rest is left for the next run")
        else:
            number = {u: n for n, u in self.s.uid.items()}
            rest = [number[old_uid[n]] for n in rest
                    if old_uid.get(n) in number]
        self.s.need_sizes(rest)       # a new session's sizes (LIST n)
        return rest, None
