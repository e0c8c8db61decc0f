"""``cpoplib fetch --serverinfo``: what a server offers, printed on
stdout -- the greeting, the TLS version and cipher, the certificate
(subject, issuer, validity, names, fingerprints, how it was checked), the
capabilities with what each means, whether APOP is offered -- before
logging in and, when the account has a password (or a client
certificate, or a token) configured, after it (servers may announce more
once they know the user).  Nothing is fetched and nothing is written: no
state, no lock, no destination; a certificate trusted on first use is
shown, not recorded.  The connection is made exactly as ``cpoplib fetch``
makes it (session.connect(): the same TLS settings and pins), and closed
with QUIT.

The certificate's fields are read from its DER here (certificate_fields())
rather than from SSLSocket.getpeercert(), which gives nothing unless the
chain was verified.
"""
import datetime
import sys

from . import core, session, tls
from .errors import EXIT_CONNECT, EXIT_OK, FetchError, oserror_text

# ---- the certificate ----------------------------------------------------

ATTRIBUTES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST",
    "2.5.4.9": "street", "2.5.4.10": "O", "2.5.4.11": "OU",
    "2.5.4.5": "serialNumber", "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID", "1.2.840.113549.1.9.1":
    "emailAddress",
}
SUBJECT_ALT_NAME = "2.5.29.17"


class _DER:
    """A cursor over DER: next() gives (tag, body) of the element at the
    cursor and moves past it."""

    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def more(self):
        return self.pos < len(self.data)

    def next(self):
        d, p = self.data, self.pos
        if p + 2 > len(d):
            raise ValueError("truncated DER")
        tag, n = d[p], d[p + 1]
        p += 2
        if n & 0x80:
            k = n & 0x7f
            if k == 0 or k > 4 or p + k > len(d):
                raise ValueError("bad DER length")
            n = int.from_bytes(d[p:p + k], "big")
            p += k
        if p + n > len(d):
            raise ValueError("truncated DER")
        self.pos = p + n
        return tag, d[p:p + n]

    def peek(self):
        return self.data[self.pos] if self.more() else None


def _oid(body):
    if not body:
        raise ValueError("empty OID")
    first = body[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    value = 0
    for b in body[1:]:
        value = (value << 7) | (b & 0x7f)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def _text(tag, body):
    codec = {0x1e: "utf-16-be", 0x1c: "utf-32-be", 0x14: "latin-1"}.get(
        tag, "utf-8")
    text = body.decode(codec, "replace")
    return "".join(c if c.isprintable() else "\\x%02x" % ord(c)
                   for c in text)


def _name(body):
    """A Name (RDNSequence) as "O=..., CN=..." in the certificate's
    order."""
    out = []
    rdns = _DER(body)
    while rdns.more():
        _, rdn = rdns.next()                     # SET
        atvs = _DER(rdn)
        while atvs.more():
            _, atv = atvs.next()                 # SEQUENCE
            inner = _DER(atv)
            _, oid = inner.next()
            tag, value = inner.next()
            key = ATTRIBUTES.get(_oid(oid), _oid(oid))
            out.append("%s=%s" % (key, _text(tag, value)))
    return ", ".join(out)


def _time(tag, body):
    text = body.decode("ascii")
    if tag == 0x17:                              # UTCTime, YYMMDDHHMMSSZ
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text
    return datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc)


def _alt_names(body):
    names = []
    seq = _DER(body)
    _, general = seq.next()
    items = _DER(general)
    while items.more():
        tag, value = items.next()
        if tag == 0x82:
            names.append("DNS:" + _text(0x16, value))
        elif tag == 0x87 and len(value) in (4, 16):
            import ipaddress
            names.append("IP:%s" % ipaddress.ip_address(value))
        elif tag == 0x81:
            names.append("email:" + _text(0x16, value))
        elif tag == 0x86:
            names.append("URI:" + _text(0x16, value))
    return names


def certificate_fields(der):
    """{subject, issuer, not_before, not_after (aware datetimes), serial
    (hex), names (subjectAltName entries), sha256, sha1} of a DER
    certificate; ValueError if it cannot be read."""
    top = _DER(der)
    _, cert = top.next()
    _, tbs = _DER(cert).next()
    f = _DER(tbs)
    if f.peek() == 0xa0:                         # [0] version
        f.next()
    _, serial = f.next()
    f.next()                                     # signature algorithm
    _, issuer = f.next()
    _, validity = f.next()
    _, subject = f.next()
    f.next()                                     # subjectPublicKeyInfo
    names = []
    while f.more():
        tag, body = f.next()
        if tag != 0xa3:                          # [3] extensions
            continue
        _, exts = _DER(body).next()
        e = _DER(exts)
        while e.more():
            _, ext = e.next()
            x = _DER(ext)
            _, oid = x.next()
            tag, value = x.next()
            if tag == 0x01:                      # critical
                tag, value = x.next()
            if _oid(oid) == SUBJECT_ALT_NAME:
                names = _alt_names(value)
    v = _DER(validity)
    not_before = _time(*v.next())
    not_after = _time(*v.next())
    return {"subject": _name(subject), "issuer": _name(issuer),
            "not_before": not_before, "not_after": not_after,
            "serial": serial.lstrip(b"\0").hex().upper() or "0",
            "names": names, "sha256": tls.fingerprint(der),
            "sha1": tls.fingerprint(der, "sha1")}


# ---- the capabilities ---------------------------------------------------

CAPABILITIES = {
    "TOP": "TOP: a message's headers and first lines (RFC 2449)",
    "USER": "USER/PASS login",
    "SASL": "SASL authentication (RFC 5034)",
    "RESP-CODES": "extended response codes such as [IN-USE] and "
                  "[LOGIN-DELAY] (RFC 2449)",
    "AUTH-RESP-CODE": "[AUTH] marks a refused login as a credentials "
                      "problem (RFC 3206)",
    "LOGIN-DELAY": "the least time between two logins, in seconds "
                   "(RFC 2449)",
    "PIPELINING": "commands may be sent without waiting for replies "
                  "(RFC 2449; cpoplib pipelines RETR, LIST+UIDL, DELE)",
    "EXPIRE": "how long the server keeps mail, in days (RFC 2449)",
    "UIDL": "unique message ids: the fetcher fetches only new mail",
    "IMPLEMENTATION": "the server software",
    "STLS": "STARTTLS: TLS on this connection (RFC 2595; --starttls)",
    "UTF8": "UTF-8 user names and messages (RFC 6856)",
    "LANG": "responses in other languages (RFC 6856)",
    "CAPA": "the capability list itself",
}

MECHANISM_NOTES = {
    "SCRAM-SHA-256": "password, never sent; the server proves it knows "
                     "it (built in)",
    "SCRAM-SHA-1": "password, never sent; the server proves it knows it "
                   "(built in)",
    "CRAM-MD5": "password, never sent (built in)",
    "PLAIN": "password, sent as it is: TLS needed (built in)",
    "LOGIN": "password, sent as it is: TLS needed (built in)",
    "XOAUTH2": "OAuth 2.0 access token (built in)",
    "OAUTHBEARER": "OAuth 2.0 access token, RFC 7628 (built in)",
    "EXTERNAL": "a TLS client certificate, RFC 4422 (built in; --cert)",
    "GSSAPI": "Kerberos (not built in)",
    "ANONYMOUS": "no credentials (not built in)",
}


def _argument_note(name, args):
    if name == "LOGIN-DELAY" and args:
        return "%s s%s" % (args[0], " (per user)" if args[1:2] == ["USER"]
                           else "")
    if name == "EXPIRE" and args:
        if args[0] == "NEVER":
            return "never deleted by the server"
        if args[0] == "0":
            return "0: deleted once retrieved; mail is not kept"
        return "%s days%s" % (args[0], " (per user)"
                              if args[1:2] == ["USER"] else "")
    if name == "UTF8" and args[:1] == ["USER"]:
        return "UTF-8 user names too"
    return None


def capability_lines(caps):
    """The lines describing a capa() dict, one capability a line (SASL:
    one line per mechanism)."""
    lines = []
    for name in sorted(caps):
        args = caps[name]
        meaning = CAPABILITIES.get(name, "not known to cpoplib")
        shown = " ".join([name] + list(args)) if name != "SASL" else name
        note = _argument_note(name, args)
        lines.append("  %-22s %s%s" % (shown, meaning,
                                       ": " + note if note else ""))
        if name == "SASL":
            for mech in args:
                lines.append("    %-20s %s" % (mech, MECHANISM_NOTES.get(
                    mech.upper(), "not built in")))
    return lines


# ---- one account --------------------------------------------------------

def _capa(pop, conn):
    try:
        return conn.capa()
    except pop.error_proto as exc:
        if not session.is_reply(exc):
            raise session.lost("CAPA", exc)
        return None                     # -ERR: no CAPA (RFC 1939)
    except OSError as exc:
        raise session.lost("CAPA", exc)


def _login_configured(acct):
    from .accounts import _netrc_entry
    if (acct.password_env or acct.password_command or acct.password_keyring
            or acct.token_command or acct.cert
            or getattr(acct, "use_oauth", False)):
        return True
    if acct.netrc:
        found = _netrc_entry(acct.host)
        return bool(found and found[2])
    return False


def _resolve(acct):
    """Credentials as fetching resolves them, but never a prompt:
    whether serverinfo logs in."""
    from . import oauth_setup
    from .accounts import resolve_credentials
    if not _login_configured(acct):
        return False
    if not oauth_setup.resolve(acct):
        resolve_credentials(acct, interactive=False)
    return True


def _certificate_check(acct, checker):
    if acct.insecure:
        return "not verified (--insecure)"
    parts = []
    if tls.verifies_ca(acct):
        parts.append("chain verified (%s) for the name %s" % (
            "--cafile %s" % acct.cafile if acct.cafile
            else "the system's CAs", acct.tls_host or acct.host))
    if acct.fingerprint:
        parts.append("pinned: one of the --fingerprint values")
    if acct.tofu:
        parts.append("first contact: trusted, not recorded"
                     if checker is not None and checker.new is not None
                     else "the one trusted on first use (--tofu)")
    if not tls.verifies_ca(acct):
        parts.append("CA chain and host name not checked (the pin "
                     "replaces them; --also-verify-ca)")
    return "; ".join(parts)


def show(acct, out, stream):
    """Prints what the account's server offers; FetchError on failure
    (after printing what was learnt)."""
    write = stream.write
    pop = core.pop3_module(acct.max_message_size)
    state = None
    if acct.tofu and acct.user:
        from .state import State
        state = State.load(acct.state_file(), acct.name)
    checker = tls.Checker.for_account(acct, state, record=False)
    logs_in = _resolve(acct)
    conn = session.connect(pop, acct, out, checker)
    try:
        check = _certificate_check(acct, checker)
        if checker is not None:
            checker.settle(out)
        write("server      %s:%d%s\n" % (
            acct.host, acct.port, " (TLS name %s)" % acct.tls_host
            if acct.tls_host else ""))
        welcome = conn.getwelcome()
        write("greeting    %s\n" % welcome.decode("utf-8", "replace"))
        sock = conn.sock
        if acct.ssl or acct.starttls:
            name, _, bits = sock.cipher()
            write("TLS         %s, %s (%d bits)%s\n" % (
                sock.version(), name, bits,
                ", after STLS" if acct.starttls else ", implicit (POP3S)"))
            _write_certificate(write, sock.getpeercert(binary_form=True),
                               check)
        else:
            write("TLS         none: plain POP3, nothing is encrypted\n")
        apop = conn.timestamp.match(welcome)
        write("APOP        %s\n" % (
            "offered (the greeting has a timestamp %s)"
            % apop.group(1).decode("ascii", "replace") if apop
            else "not offered (no timestamp in the greeting)"))
        before = _capa(pop, conn)
        _write_capabilities(write, "capabilities before login", before,
                            None)
        stream.flush()
        if not logs_in:
            write("login       not tried: no password, token or client "
                  "certificate configured\n")
        else:
            try:
                session.authenticate(pop, conn, acct, out)
            except FetchError as exc:
                write("login       failed: %s\n" % exc.message)
                raise
            write("login       as %s: logged in\n" % acct.user)
            after = _capa(pop, conn)
            _write_capabilities(write, "capabilities after login", after,
                                before)
        stream.flush()
        try:
            conn.quit()
        except (pop.error_proto, OSError):
            pass                # nothing was changed: no QUIT to commit
    finally:
        session._close_quietly(conn)


def _write_certificate(write, der, check):
    write("certificate %s\n" % check)
    try:
        f = certificate_fields(der)
    except (ValueError, UnicodeError, IndexError) as exc:
        write("  (cannot read it: %s)\n" % exc)
        write("  SHA-256   %s\n" % tls.fingerprint(der))
        return
    now = datetime.datetime.now(datetime.timezone.utc)
    left = (f["not_after"] - now).days
    state = ("expired" if now > f["not_after"] else "not valid yet"
             if now < f["not_before"] else "%d days left" % left)
    write("  subject   %s\n" % f["subject"])
    write("  issuer    %s\n" % f["issuer"])
    write("  valid     %s to %s (%s)\n" % (
        f["not_before"].strftime("%Y-%m-%d %H:%M:%S UTC"),
        f["not_after"].strftime("%Y-%m-%d %H:%M:%S UTC"), state))
    if f["names"]:
        write("  names     %s\n" % ", ".join(f["names"]))
    write("  serial    %s\n" % f["serial"])
    write("  SHA-256   %s\n" % f["sha256"])
    write("  SHA-1     %s\n" % f["sha1"])


def _write_capabilities(write, title, caps, before):
    if caps is None:
        write("%s: none (CAPA refused: an RFC 1939 server)\n" % title)
        return
    if before is not None and caps == before:
        write("%s: the same\n" % title)
        return
    write("%s:\n" % title)
    for line in capability_lines(caps):
        write(line + "\n")
    if before is not None:
        gone = sorted(set(before) - set(caps))
        new = sorted(set(caps) - set(before))
        changed = sorted(n for n in set(caps) & set(before)
                         if caps[n] != before[n])
        for what, names in (("new", new), ("changed", changed),
                            ("gone", gone)):
            if names:
                write("  (%s after login: %s)\n" % (what, ", ".join(names)))


def main(accounts, out, stream=None):
    """--serverinfo for each account in turn: the exit status."""
    from .errors import combined
    stream = stream or sys.stdout
    codes = []
    for i, acct in enumerate(accounts):
        if len(accounts) > 1:
            stream.write("%s== %s ==\n" % ("\n" if i else "", acct.name))
        try:
            show(acct, out, stream)
            codes.append(EXIT_OK)
        except FetchError as exc:
            out.error("%s: %s" % (acct.name, exc.message)
                      if len(accounts) > 1 else exc.message)
            codes.append(exc.code)
        except OSError as exc:
            out.error("%s: %s" % (acct.name, oserror_text(exc)))
            codes.append(EXIT_CONNECT)
        stream.flush()
    return combined(codes)
