"""Find an e-mail address's POP3 server without being told the host.

``discover(address)`` tries, in order:

1. a known provider's domain (cpoplib.providers), e.g. gmail.com;
2. RFC 6186 SRV records: ``_pop3s._tcp.DOMAIN`` (implicit TLS), then
   ``_pop3._tcp.DOMAIN`` (then STARTTLS is required); a target of "."
   means the service is not offered;
3. the domain's MX records: pointing at Google (Google Workspace) or at
   Microsoft (Exchange Online), that provider's profile;

and returns a Choice saying what it found and how.  Nothing else is
guessed (no "pop.DOMAIN" probing).

DNS goes through dnspython when it is installed (``pip install
'cpoplib[dns]'``), else through the small stub resolver here (UDP, TCP
when the answer is truncated; standard library only), which asks the
name servers of /etc/resolv.conf.  ``CPOPLIB_DNS_SERVER=ADDR[:PORT]``
(``[ADDR]:PORT`` for IPv6) points either at another server.

DNS answers are not authenticated: a Choice is printed before it is
used, and ``--host`` (or host = in the config) pins the server.
"""

import os
import random
import secrets
import socket
import struct

from . import providers

__all__ = ["Choice", "AutoconfigError", "DNSError", "discover",
           "StubResolver", "DnspythonResolver", "default_resolver",
           "SRV", "MX"]

TYPE_MX = 15
TYPE_SRV = 33
CLASS_IN = 1

# MX host suffixes of the providers autoconfiguration recognises
MX_PROFILES = (
    (("google.com", "googlemail.com", "smtp.goog"), "gmail"),
    (("mail.protection.outlook.com",), "outlook"),
)


class AutoconfigError(Exception):
    """No POP3 server could be found (str() says what was tried)."""


class DNSError(AutoconfigError):
    """A DNS query failed (time-out, SERVFAIL, a malformed answer)."""


class SRV:
    def __init__(self, priority, weight, port, target):
        self.priority, self.weight = priority, weight
        self.port, self.target = port, target

    def __repr__(self):
        return "SRV(%d, %d, %d, %r)" % (self.priority, self.weight,
                                        self.port, self.target)


class MX:
    def __init__(self, preference, exchange):
        self.preference, self.exchange = preference, exchange

    def __repr__(self):
        return "MX(%d, %r)" % (self.preference, self.exchange)


class Choice:
    """What autoconfiguration chose: host, port, tls ("ssl" or
    "starttls"), user (the login name), profile (a providers.Profile or
    None) and how (a sentence: what it was found from)."""

    def __init__(self, host, port, tls, user, profile=None, how=""):
        self.host, self.port, self.tls = host, port, tls
        self.user, self.profile, self.how = user, profile, how

    def describe(self):
        what = "%s:%d (%s)" % (self.host, self.port,
                               "TLS" if self.tls == "ssl" else "STARTTLS")
        if self.profile is not None:
            what = "%s, %s" % (self.profile.title, what)
        return "%s: %s, user %s" % (self.how, what, self.user)

    def __repr__(self):
        return "<Choice %s>" % self.describe()


# --------------------------------------------------------------------------
# the stub resolver

def _nameserver_override():
    spec = os.environ.get("CPOPLIB_DNS_SERVER", "").strip()
    if not spec:
        return None
    return [parse_server(spec)]


def parse_server(spec, default_port=53):
    """"ADDR", "ADDR:PORT", "[V6]:PORT" or a bare IPv6 address."""
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif spec.count(":") == 1:
        host, _, port = spec.partition(":")
    else:
        host, port = spec, ""
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise DNSError("not a DNS server address: %r" % spec)


def system_nameservers(path="/etc/resolv.conf"):
    servers = []
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    servers.append((fields[1].split("%")[0], 53))
    except OSError:
        pass
    return servers or [("127.0.0.1", 53)]


def _encode_name(name):
    labels = []
    for label in name.rstrip(".").split("."):
        if not label:
            raise DNSError("empty label in %r" % name)
        try:
            raw = label.encode("ascii")
        except UnicodeEncodeError:
            raw = label.encode("idna")
        if len(raw) > 63:
            raise DNSError("label too long in %r" % name)
        labels.append(bytes([len(raw)]) + raw)
    return b"".join(labels) + b"\0"


def _read_name(msg, pos):
    """(name, position after it) with compression (RFC 1035 4.1.4)."""
    labels = []
    end = None
    jumps = 0
    while True:
        if pos >= len(msg):
            raise DNSError("truncated name in the answer")
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise DNSError("truncated pointer in the answer")
            if end is None:
                end = pos + 2
            jumps += 1
            if jumps > 32:
                raise DNSError("name compression loop in the answer")
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
            continue
        if length & 0xC0:
            raise DNSError("bad label type in the answer")
        pos += 1
        if length == 0:
            break
        labels.append(msg[pos:pos + length].decode("ascii", "replace"))
        pos += length
    return ".".join(labels).lower(), (end if end is not None else pos)


def build_query(name, qtype, ident):
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)  # RD
    return header + _encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def parse_answer(msg, name, qtype, ident):
    """The records of type qtype in a response; [] for NXDOMAIN or no
    data.  Raises DNSError for a mismatched or failed response; returns
    None when it is truncated (TC: ask again over TCP)."""
    if len(msg) < 12:
        raise DNSError("short DNS answer")
    rid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
    if rid != ident or not flags & 0x8000:
        raise DNSError("DNS answer does not match the query")
    if flags & 0x0200:
        return None
    rcode = flags & 0x000F
    if rcode == 3:
        return []
    if rcode:
        raise DNSError("DNS server answered rcode %d for %s" % (rcode, name))
    pos = 12
    for _ in range(qd):
        qname, pos = _read_name(msg, pos)
        if pos + 4 > len(msg):
            raise DNSError("truncated question in the answer")
        qt, _qc = struct.unpack("!HH", msg[pos:pos + 4])
        pos += 4
        if qname != name.rstrip(".").lower() or qt != qtype:
            raise DNSError("DNS answer is for another question")
    records = []
    for _ in range(an):
        _owner, pos = _read_name(msg, pos)
        if pos + 10 > len(msg):
            raise DNSError("truncated record in the answer")
        rtype, _rclass, _ttl, rdlen = struct.unpack("!HHIH", msg[pos:pos + 10])
        pos += 10
        rdata_end = pos + rdlen
        if rdata_end > len(msg):
            raise DNSError("truncated record data in the answer")
        if rtype == qtype == TYPE_SRV:
            if rdlen < 7:
                raise DNSError("short SRV record")
            prio, weight, port = struct.unpack("!HHH", msg[pos:pos + 6])
            target, _ = _read_name(msg, pos + 6)
            records.append(SRV(prio, weight, port, target))
        elif rtype == qtype == TYPE_MX:
            if rdlen < 3:
                raise DNSError("short MX record")
            (pref,) = struct.unpack("!H", msg[pos:pos + 2])
            exchange, _ = _read_name(msg, pos + 2)
            records.append(MX(pref, exchange))
        pos = rdata_end                 # CNAMEs and the rest: skipped
    return records


class StubResolver:
    """SRV and MX look-ups over UDP (TCP when truncated) against
    nameservers ([(addr, port)], default: CPOPLIB_DNS_SERVER, else
    /etc/resolv.conf)."""

    name = "built-in"

    def __init__(self, nameservers=None, timeout=3.0, attempts=2):
        self.nameservers = (nameservers or _nameserver_override()
                            or system_nameservers())
        self.timeout = timeout
        self.attempts = attempts

    def _family(self, addr):
        return socket.AF_INET6 if ":" in addr else socket.AF_INET

    def _udp(self, server, query):
        with socket.socket(self._family(server[0]), socket.SOCK_DGRAM) as s:
            s.settimeout(self.timeout)
            s.connect(server)           # only the server's datagrams
            s.send(query)
            return s.recv(65535)

    def _tcp(self, server, query):
        with socket.create_connection(server, timeout=self.timeout) as s:
            s.sendall(struct.pack("!H", len(query)) + query)
            data = b""
            while len(data) < 2 or len(data) < 2 + struct.unpack(
                    "!H", data[:2])[0]:
                chunk = s.recv(65535)
                if not chunk:
                    raise DNSError("DNS server closed the TCP connection")
                data += chunk
            return data[2:2 + struct.unpack("!H", data[:2])[0]]

    def query(self, name, qtype):
        last = None
        for _ in range(self.attempts):
            for server in self.nameservers:
                ident = secrets.randbelow(1 << 16)
                query = build_query(name, qtype, ident)
                try:
                    records = parse_answer(self._udp(server, query), name,
                                           qtype, ident)
                    if records is None:         # truncated: ask over TCP
                        records = parse_answer(self._tcp(server, query),
                                               name, qtype, ident)
                        if records is None:
                            raise DNSError("truncated answer over TCP")
                    return records
                except (OSError, DNSError) as exc:
                    last = exc
        raise DNSError("DNS query for %s failed: %s" % (name, last))

    def srv(self, name):
        return self.query(name, TYPE_SRV)

    def mx(self, name):
        return self.query(name, TYPE_MX)


class DnspythonResolver:
    """The same two look-ups through dnspython."""

    name = "dnspython"

    def __init__(self, nameservers=None, timeout=3.0):
        import dns.resolver

        servers = nameservers or _nameserver_override()
        if servers:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [addr for addr, _ in servers]
            self.resolver.port = servers[0][1]
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.lifetime = timeout * 2
        self.resolver.timeout = timeout

    def _query(self, name, rdtype):
        import dns.exception
        import dns.resolver

        try:
            return self.resolver.resolve(name, rdtype, tcp=False,
                                         raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return []
        except dns.exception.DNSException as exc:
            raise DNSError("DNS query for %s failed: %s" % (name, exc))

    def srv(self, name):
        return [SRV(r.priority, r.weight, r.port,
                    r.target.to_text(omit_final_dot=True).lower())
                for r in self._query(name, "SRV")]

    def mx(self, name):
        return [MX(r.preference,
                   r.exchange.to_text(omit_final_dot=True).lower())
                for r in self._query(name, "MX")]


def default_resolver(kind="auto", nameservers=None):
    """dnspython's resolver if installed ("auto"), or as named
    ("dnspython", "builtin")."""
    if kind in ("auto", "dnspython"):
        try:
            return DnspythonResolver(nameservers)
        except ImportError:
            if kind == "dnspython":
                raise AutoconfigError("dnspython is not installed (pip "
                                      "install 'cpoplib[dns]')")
    return StubResolver(nameservers)


# --------------------------------------------------------------------------
# the choice

def order_srv(records, rng=None):
    """RFC 2782: lowest priority first; within a priority, a weighted
    random order (weight 0 records last but not never)."""
    rng = rng or random.Random()
    out = []
    for prio in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == prio]
        group.sort(key=lambda r: r.weight)          # zeros first, as 2782
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total)
            acc = 0
            for i, r in enumerate(group):
                acc += r.weight
                if acc >= pick:
                    out.append(group.pop(i))
                    break
    return out


def _domain_of(address):
    local, at, domain = (address or "").strip().rpartition("@")
    if not at or not local or not domain or "." not in domain:
        raise AutoconfigError("not an e-mail address: %r" % address)
    return domain.lower().rstrip(".")


def _mx_profile(records):
    for rec in sorted(records, key=lambda r: r.preference):
        host = rec.exchange.lower().rstrip(".")
        for suffixes, name in MX_PROFILES:
            if any(host == s or host.endswith("." + s) for s in suffixes):
                return providers.PROFILES[name], host
    return None, None


def discover(address, resolver=None, log=None):
    """The Choice for address (see the module docstring); log(text), if
    given, hears each step."""
    say = log or (lambda text: None)
    domain = _domain_of(address)
    profile = providers.for_domain(domain)
    if profile is not None:
        if profile.refused:
            raise AutoconfigError("%s is %s: %s" % (domain, profile.title,
                                                    profile.refused))
        return Choice(profile.host, profile.port, profile.tls,
                      profile.user_for(address), profile,
                      "%s is a known provider's domain" % domain)
    resolver = resolver or default_resolver()
    tried = []
    for service, tls in (("_pop3s._tcp", providers.SSL),
                         ("_pop3._tcp", providers.STARTTLS)):
        name = "%s.%s" % (service, domain)
        say("looking up SRV %s (%s resolver)" % (name, resolver.name))
        records = resolver.srv(name)
        tried.append("no SRV %s" % name if not records else
                     "SRV %s: service not offered" % name)
        if records and all(r.target in ("", ".") for r in records):
            continue                    # RFC 6186: "." = not offered
        usable = [r for r in order_srv(records) if r.target not in ("", ".")]
        if usable:
            best = usable[0]
            return Choice(best.target, best.port, tls, address, None,
                          "SRV record %s" % name)
    say("looking up MX %s" % domain)
    mx = resolver.mx(domain)
    profile, host = _mx_profile(mx)
    if profile is not None:
        return Choice(profile.host, profile.port, profile.tls,
                      profile.user_for(address), profile,
                      "MX of %s is %s" % (domain, host))
    tried.append("MX %s" % ("points at neither Google nor Microsoft"
                            if mx else "none"))
    raise AutoconfigError("cannot find the POP3 server of %s (%s); give "
                          "--host" % (domain, "; ".join(tried)))
