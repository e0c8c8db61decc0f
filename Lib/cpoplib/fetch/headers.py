"""What the fetcher reads from or adds to a message's header: the
envelope sender (Return-Path, for the MDA's and the filter's ``%F``) and
the ``Received:`` trace field of ``--add-received``.

The Received: field follows RFC 5321's Time-stamp-line (section 4.4),
which is also a valid RFC 5322 ``received`` field::

    Received: from pop.example.org ([192.0.2.7])
    \tby laptop.example.net with POP3 (cpoplib fetch 1.0, TLS, account work)
    \tfor <alice@pop.example.org>; Tue, 05 Mar 2024 10:00:00 +0100

``from`` names the server (as --host gives it -- a name, or an address
literal -- with the address connected to as its TCP-info), ``by`` this
host, ``for`` the account as a mailbox
(the user name at the server), the comment the program, TLS if used and
the config's account name; the date is when the message was fetched.
"""
import email.utils
import ipaddress
import re
import socket
from datetime import datetime, timezone

# RFC 5321 4.1.2
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
DOMAIN = re.compile(r"%s(?:\.%s)*\Z" % (_LABEL, _LABEL))
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
DOT_STRING = re.compile(r"%s(?:\.%s)*\Z" % (ATEXT, ATEXT))


def header_block(data):
    """The header of a message (bytes, CRLF or LF line ends): everything
    before the first empty line."""
    m = re.search(rb"\r?\n\r?\n", data)
    if m is None:
        return data
    return data[:m.start() + 1]


def fields(data, name):
    """The values of header field `name` (case-insensitive), unfolded, as
    str (latin-1: every byte kept)."""
    wanted = name.lower().encode("ascii") + b":"
    values = []
    current = None
    for line in header_block(data).splitlines():
        if line[:1] in (b" ", b"\t") and current is not None:
            current.append(line)
            continue
        current = None
        if line.lower().startswith(wanted):
            current = [line[len(wanted):]]
            values.append(current)
    return [b"".join(v).decode("latin-1").strip() for v in values]


def envelope_sender(data):
    """The envelope sender the message's (first) Return-Path: names: the
    address inside its angle brackets; "" for the null sender ``<>``;
    None when there is no Return-Path."""
    found = fields(data, "Return-Path")
    if not found:
        return None
    value = found[0]
    m = re.search(r"<([^>]*)>", value)
    if m is not None:
        return m.group(1).strip()
    words = value.split()
    return words[0] if words else ""


# ---- Received: ----

def _address_literal(ip):
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if address.version == 6:
        return "[IPv6:%s]" % address.compressed
    return "[%s]" % address


def _domain(host):
    """`host` as an RFC 5321 Domain (A-labels for a name outside ASCII),
    or None if it cannot be one."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        name = host.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return name if DOMAIN.match(name) else None


def _local_part(user):
    """The user name as an RFC 5321 Local-part: a Dot-string, or a
    Quoted-string (what qtextSMTP cannot hold is a '?')."""
    if DOT_STRING.match(user):
        return user
    text = "".join(c if " " <= c <= "~" else "?" for c in user)
    return '"%s"' % re.sub(r'(["\\])', r"\\\1", text)


def _comment_text(text):
    """ctext with quoted-pairs for ( ) and backslash; outside printable
    ASCII a '?'."""
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return re.sub(r"([()\\])", r"\\\1", text)


def this_host():
    name = _domain(socket.gethostname())
    return name or "localhost"


def received(host, peer, user, account, tls, when, version):
    """The Received: field (bytes, CRLF, folded) for a message fetched
    from `host` (connected to address `peer`, or None) as `user`, for the
    config's account `account` (or None), at `when` (seconds since the
    epoch), by cpoplib `version`."""
    domain = _domain(host)
    peer_literal = None
    if peer:
        try:
            peer_literal = _address_literal(peer)
        except ValueError:
            pass
    if domain is not None:
        server = domain
        origin = domain + (" (%s)" % peer_literal if peer_literal else "")
    else:
        # an address for --host: an address literal, which RFC 5321's
        # Extended-Domain gives only with its TCP-info
        try:
            server = _address_literal(host)
        except ValueError:
            server = peer_literal
        if server is None:
            server = origin = "localhost"
        else:
            origin = "%s (%s)" % (server, peer_literal or server)
    notes = ["cpoplib fetch %s" % version]
    if tls:
        notes.append("TLS")
    if account:
        notes.append("account %s" % account)
    date = email.utils.format_datetime(
        datetime.fromtimestamp(when, timezone.utc).astimezone())
    lines = ["Received: from %s" % origin,
             "\tby %s with POP3 (%s)" % (this_host(),
                                         _comment_text(", ".join(notes))),
             "\tfor <%s@%s>; %s" % (_local_part(user or ""), server, date)]
    return "\r\n".join(lines).encode("ascii") + b"\r\n"
