"""The benchmark workloads: what the server serves and what a client does.

A workload's ``run(client)`` is the timed part: it gets a connected,
logged-in client (``poplib.POP3`` or ``cpoplib.POP3``, or their ``_SSL``
variants) and returns everything the calls returned, so that the runner
can check that both modules agree.  Connecting, logging in and QUIT are
not timed.  ``split_floor`` needs no client: it times ``bytes.split`` of
the wire form of the ``retr_4mib`` messages, the floor any line splitter
has to beat.
"""

from cpoplib._server import SyntheticMailbox, make_mailbox, render_wire

MiB = 1 << 20

# Mailboxes, by name, as plain data (they are sent to the server process).
# kind "list": messages really rendered; "synthetic": sizes and uids only,
# bodies made on demand (LIST/UIDL never need them).
_MAILBOXES = {
    "big4": dict(kind="list", count=4, size=4 * MiB, line_len=70, seed=4),
    "huge": dict(kind="list", count=1, size=64 * MiB, line_len=70, seed=64),
    "small": dict(kind="list", count=2000, size=4096, line_len=70, seed=2),
    "virtual": dict(kind="synthetic", count=100_000, size=200, seed=100),
}
_QUICK_MAILBOXES = {
    "big4": dict(_MAILBOXES["big4"], count=1),
    "small": dict(_MAILBOXES["small"], count=200),
    "virtual": dict(_MAILBOXES["virtual"], count=10_000),
}


def repeat_block(block, seed):
    """The block a "repeat" message is made of: one make_mailbox message
    of exactly `block` bytes (CRLF lines, dot-led and 8-bit lines; it
    starts with a header line, so a message of repeated blocks is
    dot-stuffed block by block)."""
    return make_mailbox(1, block, line_len=70, seed=seed)[0]


def repeat_mailbox(count, blocks, block=MiB, seed=0):
    """`count` messages, each `blocks` copies of repeat_block(): cheap to
    make at any size (the fetch benchmarks' 100 MiB and 1 GiB)."""
    one = repeat_block(block, seed)
    return [one * blocks for _ in range(count)]


def mailbox_spec(name, quick):
    table = _QUICK_MAILBOXES if quick else _MAILBOXES
    return dict(table.get(name) or _MAILBOXES[name])


def build_mailbox(spec):
    """The messages of a mailbox spec: a list of bytes or a
    SyntheticMailbox."""
    spec = dict(spec)
    kind = spec.pop("kind")
    if kind == "synthetic":
        return SyntheticMailbox(**spec)
    if kind == "repeat":
        return repeat_mailbox(**spec)
    return make_mailbox(**spec)


class Workload:
    name = ""
    description = ""
    mailbox = None        # mailbox name, or None for no server
    tls = False
    full_only = False     # skipped with --quick
    client = True         # False: module-independent (split_floor)

    def __init__(self, quick):
        self.quick = quick
        self.spec = mailbox_spec(self.mailbox, quick) if self.mailbox else None

    def params(self):
        return {"mailbox": self.spec, "tls": self.tls}

    def prepare(self):
        """Untimed set-up in the client process (split_floor only)."""

    def run(self, client):
        raise NotImplementedError

    def nbytes(self, result):
        """Payload bytes moved by one run (for MB/s), or None."""
        return None


def _octets(results):
    return sum(r[2] for r in results)


class RetrBig(Workload):
    name = "retr_4mib"
    description = "RETR of 4 MiB messages (~70-byte lines), 4 per round"
    mailbox = "big4"

    def run(self, client):
        retr = client.retr
        return [retr(i) for i in range(1, self.spec["count"] + 1)]

    def nbytes(self, result):
        return self.spec["count"] * self.spec["size"]


class RetrHuge(RetrBig):
    name = "retr_64mib"
    description = "RETR of one 64 MiB message"
    mailbox = "huge"
    full_only = True


class RetrSmall(RetrBig):
    name = "retr_4kib"
    description = "RETR of 2,000 messages of 4 KiB"
    mailbox = "small"


class RetrBigTLS(RetrBig):
    name = "retr_4mib_tls"
    description = "retr_4mib over POP3_SSL (TLS, self-signed certificate)"
    tls = True
    full_only = True


class TopHeaders(Workload):
    name = "top_headers"
    description = "TOP n 0 (headers only) of 2,000 messages"
    mailbox = "small"

    def run(self, client):
        top = client.top
        return [top(i, 0) for i in range(1, self.spec["count"] + 1)]

    def nbytes(self, result):
        return _octets(result)


class List100k(Workload):
    name = "list_100k"
    description = "LIST of a 100,000-message mailbox"
    mailbox = "virtual"

    def run(self, client):
        return client.list()

    def nbytes(self, result):
        return result[2]


class Uidl100k(List100k):
    name = "uidl_100k"
    description = "UIDL of a 100,000-message mailbox"

    def run(self, client):
        return client.uidl()


class Noop(Workload):
    name = "noop_5000"
    description = "5,000 NOOP round trips"
    mailbox = "small"

    def __init__(self, quick):
        super().__init__(quick)
        self.count = 500 if quick else 5000

    def params(self):
        return dict(super().params(), count=self.count)

    def run(self, client):
        noop = client.noop
        return [noop() for _ in range(self.count)]


class SplitFloor(Workload):
    name = "split_floor"
    description = ("bytes.split(b'\\r\\n') of the retr_4mib wire messages: "
                   "the floor for retr_4mib")
    mailbox = "big4"
    client = False

    def prepare(self):
        self.wires = [render_wire(m) for m in build_mailbox(self.spec)]

    def run(self, client=None):
        return [w.split(b"\r\n") for w in self.wires]

    def nbytes(self, result):
        return self.spec["count"] * self.spec["size"]


WORKLOAD_CLASSES = (RetrBig, SplitFloor, RetrHuge, RetrSmall, TopHeaders,
                    List100k, Uidl100k, Noop, RetrBigTLS)
NAMES = tuple(c.name for c in WORKLOAD_CLASSES)


def make_workloads(quick, only=None):
    """The workloads to run, in report order."""
    out = []
    for cls in WORKLOAD_CLASSES:
        if only is not None and cls.name not in only:
            continue
        if quick and cls.full_only and only is None:
            continue
        out.append(cls(quick))
    return out


def get_workload(name, quick):
    for cls in WORKLOAD_CLASSES:
        if cls.name == name:
            return cls(quick)
    raise KeyError(name)
