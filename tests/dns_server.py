"""A DNS server on 127.0.0.1 for the autoconfiguration tests (dnslib, in
threads of the test process): UDP and TCP on one port, answering from a
small zone the test fills in.

    with LocalDNS() as dns:
        dns.add("_pop3s._tcp.example.org", "SRV", (0, 1, 995, "pop.example.org"))
        dns.add("example.org", "MX", (10, "aspmx.l.google.com"))
        resolver = StubResolver([dns.address])

Names that the zone has no record of get NXDOMAIN; known names without
records of the asked type get an empty answer.  ``queries`` records
(name, type, "udp" or "tcp").  With ``udp_limit`` set, UDP answers
larger than that are truncated (TC), as a real server does past 512
octets without EDNS.
"""
import threading

from dnslib import MX, QTYPE, RCODE, RR, SRV
from dnslib.server import DNSHandler, DNSLogger, DNSServer

HOST = "127.0.0.1"


class _Zone:
    def __init__(self):
        self.records = {}
        self.queries = []
        self.lock = threading.Lock()

    def resolve(self, request, handler):
        reply = request.reply()
        q = request.q
        name = str(q.qname).rstrip(".").lower()
        qtype = QTYPE[q.qtype]
        with self.lock:
            self.queries.append((name, qtype, handler.protocol))
            known = any(n == name for n, _ in self.records)
            rdatas = list(self.records.get((name, qtype), ()))
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
        for rdata in rdatas:
            reply.add_answer(RR(q.qname, q.qtype, rdata=rdata, ttl=60))
        return reply


class LocalDNS:
    def __init__(self, udp_limit=0):
        self.zone = _Zone()
        self.udp_limit = udp_limit
        self._servers = []

    @property
    def queries(self):
        with self.zone.lock:
            return list(self.zone.queries)

    def add(self, name, rtype, value):
        if rtype == "SRV":
            prio, weight, port, target = value
            rdata = SRV(prio, weight, port, target)
        elif rtype == "MX":
            pref, exchange = value
            rdata = MX(exchange, pref)
        else:
            raise ValueError(rtype)
        with self.zone.lock:
            self.zone.records.setdefault((name.lower(), rtype), []).append(
                rdata)

    def start(self):
        limit = self.udp_limit

        class Handler(DNSHandler):
            udplen = limit

        quiet = DNSLogger("-request,-reply,-truncated,-error")
        for attempt in range(5):
            udp = DNSServer(self.zone, HOST, 0, logger=quiet, handler=Handler)
            self.port = udp.server.server_address[1]
            try:
                tcp = DNSServer(self.zone, HOST, self.port, tcp=True,
                                logger=quiet, handler=Handler)
            except OSError:
                udp.server.server_close()
                continue
            break
        else:
            raise RuntimeError("no port free for UDP and TCP")
        self._servers = [udp, tcp]
        for s in self._servers:
            s.server.daemon_threads = True
            s.thread = threading.Thread(target=s.server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        daemon=True)
            s.thread.start()
        self.address = (HOST, self.port)
        self.spec = "%s:%d" % self.address
        return self

    def stop(self):
        for s in self._servers:
            s.server.shutdown()
            s.server.server_close()
            s.thread.join(5)
        self._servers = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
