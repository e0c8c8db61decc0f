"""Running the Dovecot benchmarks through emulated links (benchmarks/
linkemu.py): the options, the emulators in front of the server, and the
link-matrix table both ``--dovecot`` and ``--tools`` print.

A link is (RTT, rate) or loopback (no emulator at all).  ``--rtt MS
[--rate MBIT]`` gives one, ``--links 10:1000,50:100,200:20`` several
(each RTT_MS:RATE_MBIT; RATE may be left out for a delay alone), and
loopback is run first unless ``--no-loopback`` says otherwise.  Every
client of the mode runs through every link; each link's row of numbers
is read against that link's ceiling (benchmarks/_ceiling.py: every RETR
in flight), whose ideal is RTT + bytes on the wire / rate.
"""

import contextlib

from . import runner
from .linkemu import LinkEmulator, describe

CEILING = "ceiling (all RETR in flight)"


class Link:
    def __init__(self, rtt_ms=None, rate_mbit=None, queue_kib=None,
                 nagle=False):
        self.rtt_ms = rtt_ms
        self.rate_mbit = rate_mbit
        self.queue_kib = queue_kib
        self.nagle = nagle

    @property
    def loopback(self):
        return self.rtt_ms is None

    @property
    def label(self):
        return describe(self.rtt_ms, self.rate_mbit, self.nagle)

    def ideal(self, wire_bytes, round_trips=1):
        """Seconds the link needs at best for `round_trips` exchanges
        and wire_bytes of replies: RTTs plus serialisation (None on
        loopback)."""
        if self.loopback:
            return None
        t = round_trips * self.rtt_ms / 1e3
        if self.rate_mbit:
            t += wire_bytes * 8 / (self.rate_mbit * 1e6)
        return t

    def as_dict(self):
        return {"label": self.label, "rtt_ms": self.rtt_ms,
                "rate_mbit": self.rate_mbit, "queue_kib": self.queue_kib,
                "nagle": self.nagle}

    @classmethod
    def from_dict(cls, d):
        return cls(d["rtt_ms"], d["rate_mbit"], d.get("queue_kib"),
                   d.get("nagle", False))


def parse_link(text, queue_kib=None, nagle=False):
    """RTT_MS[:RATE_MBIT[:nagle]] -> Link."""
    fields = text.strip().split(":")
    if len(fields) == 3 and fields[2].strip() == "nagle":
        nagle = True
        fields.pop()
    try:
        if len(fields) > 2:
            raise ValueError
        rate = fields[1] if len(fields) == 2 else ""
        link = Link(float(fields[0]), float(rate) if rate.strip() else None,
                    queue_kib, nagle)
    except ValueError:
        raise ValueError("a link is RTT_MS:RATE_MBIT[:nagle] (e.g. 50:100), "
                         "not %r" % text) from None
    if link.rtt_ms < 0 or (link.rate_mbit is not None
                           and link.rate_mbit <= 0):
        raise ValueError("link %r: RTT must be >= 0, rate > 0" % text)
    return link


def add_arguments(p, windows_help):
    g = p.add_argument_group(
        "emulated links (benchmarks/linkemu.py; see benchmarks/README.md)")
    g.add_argument("--rtt", type=float, metavar="MS",
                   help="run every client through a link of this "
                        "round-trip time")
    g.add_argument("--rate", type=float, metavar="MBIT",
                   help="with --rtt: the link's rate each way, Mbit/s")
    g.add_argument("--queue", type=int, metavar="KIB",
                   help="the link's queue each way (default: one "
                        "bandwidth-delay product + 64 KiB)")
    g.add_argument("--links", metavar="RTT:RATE,...",
                   help="a matrix: every client through each of these "
                        "links, e.g. 10:1000,50:100,200:20, after loopback "
                        "(RTT:RATE:nagle: with --nagle for that link)")
    g.add_argument("--nagle", action="store_true",
                   help="the emulator holds the clients' small writes as "
                        "their Nagle algorithm would on a real path "
                        "(linkemu --nagle)")
    g.add_argument("--no-loopback", action="store_true",
                   help="with --links: leave out the loopback "
                        "column")
    g.add_argument("--link-windows", metavar="W,...",
                   help=windows_help)
    return g


def links_from_args(args, parser):
    """The links to run ([] unless --rtt or --links was given)."""
    if args.rate is not None and args.rtt is None and not args.links:
        parser.error("--rate needs --rtt")
    links = []
    try:
        if args.rtt is not None:
            links.append(parse_link("%r:%s" % (args.rtt, args.rate or ""),
                                    args.queue, args.nagle))
        if args.links:
            links += [parse_link(t, args.queue, args.nagle)
                      for t in args.links.split(",") if t.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    if links and not args.no_loopback and args.rtt is None:
        links.insert(0, Link())
    return links


def parse_windows(text):
    return [int(w) for w in text.split(",") if w.strip()] if text else []


class Through:
    """The server as clients see it through `link`: host, pop3_port,
    pop3s_port and tls_hostname, each port a LinkEmulator in front of
    Dovecot's (only those asked for: `ports`, names of attributes).  On
    loopback, the server's own ports."""

    def __init__(self, server, link, ports=("pop3_port",)):
        self.server = server
        self.link = link
        self.host = server.host
        self.tls_hostname = server.tls_hostname
        self.pop3_port = server.pop3_port
        self.pop3s_port = getattr(server, "pop3s_port", None)
        self.emulators = []
        self._ports = ports

    def __enter__(self):
        if self.link.loopback:
            return self
        try:
            for name in self._ports:
                emu = LinkEmulator(
                    (self.server.host, getattr(self.server, name)),
                    rtt_ms=self.link.rtt_ms, rate_mbit=self.link.rate_mbit,
                    queue_bytes=(self.link.queue_kib * 1024
                                 if self.link.queue_kib else None),
                    nagle=self.link.nagle)
                emu.start()
                self.emulators.append(emu)
                setattr(self, name, emu.port)
                self.host = emu.host
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        stats = [emu.stop() for emu in self.emulators]
        self.emulators = []
        self.stats = stats

    def cpu_seconds(self):
        """CPU time of the emulator processes so far (0 on loopback)."""
        return sum(emu.cpu_seconds() or 0 for emu in self.emulators)


@contextlib.contextmanager
def cpu_share(through, out):
    """Records in out["emulator_cpu_s"] / out["emulator_wall_s"] what the
    emulators used while the block ran."""
    import time
    c0, t0 = through.cpu_seconds(), time.perf_counter()
    yield
    out["emulator_cpu_s"] = through.cpu_seconds() - c0
    out["emulator_wall_s"] = time.perf_counter() - t0


# --------------------------------------------------------------------------
# the matrix table

def matrix_table(results, links, labels, value="median"):
    """| client | link 1 | link 2 | ...: each cell the median (spread)
    and ÷ that link's ceiling.  results: {link label: {client label:
    summarize() output}}."""
    lines = ["| client | " + " | ".join(l.label for l in links) + " |",
             "|---|" + "--:|" * len(links)]
    for label in labels:
        cells = []
        for link in links:
            res = results.get(link.label, {})
            d = res.get(label)
            ceiling = res.get(CEILING)
            if d is None:
                cells.append("—")
                continue
            cell = "%s (%s–%s)" % (runner.fmt_time(d[value]),
                                   runner.fmt_time(d["min"]),
                                   runner.fmt_time(d["max"]))
            if ceiling is not None and label != CEILING:
                cell += " **%.2f×**" % (d[value] / ceiling[value])
            cells.append(cell)
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    return lines


def cpu_table(results, links, labels):
    """Client CPU medians, one row per client."""
    lines = ["| client CPU | " + " | ".join(l.label for l in links) + " |",
             "|---|" + "--:|" * len(links)]
    for label in labels:
        cells = []
        for link in links:
            d = results.get(link.label, {}).get(label)
            cells.append(runner.fmt_time(d["cpu_median"])
                         if d and "cpu_median" in d else "—")
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    return lines


def link_lines(report_links, wire_bytes, round_trips=1, trips_text="RTT"):
    """One line per emulated link: its ideal time (round_trips RTTs,
    described by trips_text, plus wire_bytes at the rate), and the CPU
    its emulator used during the timed rounds."""
    out = []
    for ld in report_links:
        if ld.get("rtt_ms") is None:
            continue
        link = Link.from_dict(ld)
        text = "%s: ideal %s (%s + %s bytes of replies / rate)" % (
            ld["label"], runner.fmt_time(link.ideal(wire_bytes, round_trips)),
            trips_text, "{:,}".format(wire_bytes))
        if ld.get("emulator_wall_s"):
            text += "; emulator CPU %.1f s in %.0f s of rounds (%.0f %% of "\
                    "a core)" % (ld["emulator_cpu_s"], ld["emulator_wall_s"],
                                 100 * ld["emulator_cpu_s"]
                                 / ld["emulator_wall_s"])
        if ld.get("queue_kib"):
            text += "; queue %d KiB" % ld["queue_kib"]
        out.append(text)
    return out
