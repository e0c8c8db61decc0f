"""The TLS of an account: its SSLContext, and the certificate pins that
are checked in the handshake.

What each setting does (docs/fetcher/tls.rst says it for users):

``cafile`` / the system's CAs
    the chain is verified and the certificate must be for the host name
    (``tls_host``, else ``host``): ssl's own checks, in the handshake.
``insecure``
    nothing is verified (a warning says so).
``fingerprint`` (one or more SHA-256 fingerprints)
    once the handshake is done, before a byte of POP3 is sent, the
    certificate's SHA-256 must be one of them.  The pin replaces the CA
    chain and host name checks (as mpop's ``tls_fingerprint`` does: a
    pinned certificate is mostly a self-signed one), unless
    ``also_verify_ca``, which keeps them as well.
``tofu`` (trust on first use)
    the same check against the fingerprint recorded in the account's state;
    with none recorded yet (first contact) the certificate is trusted and
    its fingerprint recorded before anything is sent; another certificate
    later is refused, unless it is the one ``tofu_accept`` names.  CA and
    host name: as for ``fingerprint``.
``tls_host``
    the name sent as SNI and checked against the certificate, while the
    connection goes to ``host``.
``cert`` / ``key``
    a client certificate (SSLContext.load_cert_chain()); without a
    password, login() then uses SASL EXTERNAL.

The checks run inside SSLSocket.do_handshake() (CheckedContext makes
CheckedSocket its socket class), so they hold for implicit TLS and for
STLS alike, whoever wraps the socket: a refused certificate is an
ssl.SSLError (CertificateRefused) raised by the handshake, the socket is
closed by ssl itself, and no command (no CAPA, USER, PASS, AUTH) is ever
sent over it.
"""
import hashlib
import os
import ssl

from .errors import EXIT_USAGE, FetchError, oserror_text

HEX = "0123456789abcdefABCDEF"


def fingerprint(der, algorithm="sha256"):
    """A certificate's fingerprint as openssl prints it, with the
    algorithm's name in front: SHA256:3F:A1:... (upper case)."""
    digest = hashlib.new(algorithm, der).digest()
    return "%s:%s" % (algorithm.upper(),
                      ":".join("%02X" % b for b in digest))


def _shown(text):
    text = text if len(text) <= 40 else text[:37] + "..."
    return repr(text)


def parse_fingerprint(text):
    """A SHA-256 fingerprint in the form fingerprint() gives, from
    "SHA256:" (optional, any case, also "SHA-256:") and 64 hexadecimal
    digits, with or without a colon between every two; ValueError with a
    one-line reason otherwise, worded to follow the setting's name ("must
    be ...")."""
    body = text.strip()
    algorithm = None
    head, colon, rest = body.partition(":")
    if colon and head.upper().replace("-", "") in ("SHA256", "SHA1",
                                                   "MD5"):
        algorithm = head.upper().replace("-", "")
        body = rest
    if algorithm in ("SHA1", "MD5"):
        raise ValueError("must be a SHA-256 fingerprint, not %s (openssl "
                         "x509 -noout -fingerprint -sha256 -in CERT prints "
                         "it)" % algorithm)
    digits = body.replace(":", "")
    pairs = body.split(":")
    well_formed = (len(digits) == 64 and all(c in HEX for c in digits)
                   and (len(pairs) == 1
                        or (len(pairs) == 32
                            and all(len(p) == 2 for p in pairs))))
    if not well_formed:
        if len(digits) == 40 and all(c in HEX for c in digits):
            why = "this is a SHA-1 fingerprint (40 digits)"
        elif algorithm and len(body) in (43, 44) and ":" not in body:
            why = "base64, as ssh prints fingerprints, is not taken"
        else:
            why = "not %s" % _shown(text)
        raise ValueError("must be \"SHA256:\" and 32 bytes in hex (64 "
                         "digits, a colon between bytes allowed): %s" % why)
    return "SHA256:" + ":".join(digits[i:i + 2].upper()
                                for i in range(0, 64, 2))


class CertificateRefused(ssl.SSLError):
    """The server's certificate is not a pinned one (or not the one
    trusted on first use); raised in the handshake."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class Checker:
    """An account's pins (``fingerprint``, ``tofu``), checked by
    CheckedSocket after every handshake of the account's connections.
    With ``tofu``, settle() records the certificate of a first contact (or
    the one ``tofu_accept`` accepts) in `state` unless record is false
    (--dry-run, --serverinfo: nothing written)."""

    def __init__(self, acct, state=None, record=True):
        self.name = acct.name
        self.where = "%s:%d" % (acct.host, acct.port)
        self.pins = tuple(acct.fingerprint or ())
        self.tofu = acct.tofu
        self.accept = acct.tofu_accept
        self.state = state
        self.record = record and state is not None
        self.trusted = state.tofu if state is not None else None
        self.new = None             # a fingerprint settle() records
        self.seen = None            # the last certificate's fingerprint

    @classmethod
    def for_account(cls, acct, state=None, record=True):
        """A Checker, or None for an account without pins."""
        if not (acct.fingerprint or acct.tofu):
            return None
        return cls(acct, state, record)

    def check(self, sock):
        der = sock.getpeercert(binary_form=True)
        if der is None:
            raise CertificateRefused("%s presented no certificate"
                                     % self.where)
        seen = self.seen = fingerprint(der)
        if self.pins and seen not in self.pins:
            raise CertificateRefused(
                "%s: the server's certificate is not the pinned one "
                "(--fingerprint): it is %s; pinned: %s"
                % (self.where, seen, ", ".join(self.pins)))
        if not self.tofu or seen == self.trusted:
            return
        if self.trusted is None:
            if self.accept is not None and seen != self.accept:
                raise CertificateRefused(
                    "%s: the server's certificate is %s, not the one "
                    "--tofu-accept names (%s)"
                    % (self.where, seen, self.accept))
            self.new = seen             # first contact
            return
        if seen == self.accept:
            self.new = seen
            return
        raise CertificateRefused(
            "%s: the server's certificate changed since it was first "
            "trusted (--tofu): recorded %s, now %s; if you expected that "
            "(a renewal), accept the new one with --tofu-accept %s"
            % (self.where, self.trusted, seen, seen))

    def settle(self, out):
        """After a connection's handshake, before anything is sent: a
        certificate trusted now (first contact, --tofu-accept) is
        recorded durably in the state, and said on stderr."""
        if self.new is None:
            return
        new, self.new = self.new, None
        old, self.trusted = self.trusted, new
        if self.record:
            self.state.set_tofu(new)
            where = "recorded in the account's state"
        else:
            where = "not recorded (nothing is written in this mode)"
        if old is None:
            out.warn("%s: trusting the certificate of %s on first use "
                     "(--tofu): %s; %s" % (self.name, self.where, new,
                                           where))
        else:
            out.warn("%s: trusting the new certificate of %s "
                     "(--tofu-accept): %s in place of %s; %s"
                     % (self.name, self.where, new, old, where))


class CheckedSocket(ssl.SSLSocket):
    """ssl.SSLSocket whose handshake ends with its context's checker."""

    def do_handshake(self, block=False):
        super().do_handshake(block)
        checker = getattr(self.context, "checker", None)
        if checker is not None:
            checker.check(self)


class CheckedContext(ssl.SSLContext):
    """An SSLContext that sends tls_host (if set) as the server name,
    whatever name the caller gives (POP3_SSL and stls() give the host),
    and makes CheckedSocket sockets."""

    tls_host = None
    checker = None

    def wrap_socket(self, sock, server_hostname=None, **kwargs):
        if self.tls_host is not None:
            server_hostname = self.tls_host
        return super().wrap_socket(sock, server_hostname=server_hostname,
                                   **kwargs)


CheckedContext.sslsocket_class = CheckedSocket


def verifies_ca(acct):
    """Whether the CA chain and the host name are checked."""
    pinned = bool(acct.fingerprint) or acct.tofu
    return not acct.insecure and (not pinned or acct.also_verify_ca)


def make_context(acct, out, checker=None):
    """The SSLContext of an account's connections (see the module
    docstring); FetchError(EXIT_USAGE) for a CA file or a client
    certificate that cannot be loaded."""
    ctx = CheckedContext(ssl.PROTOCOL_TLS_CLIENT)
    # what create_default_context() adds (3.13: VERIFY_X509_STRICT, ...)
    ctx.verify_flags = ssl.create_default_context().verify_flags
    if acct.insecure:
        out.warn("--insecure: the server's certificate is not verified")
    if not verifies_ca(acct):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        try:
            if acct.cafile:
                ctx.load_verify_locations(os.path.expanduser(acct.cafile))
            else:
                ctx.load_default_certs()
        except (OSError, ssl.SSLError) as exc:
            raise FetchError(EXIT_USAGE, "--cafile %s: %s"
                             % (acct.cafile, oserror_text(exc)))
    if acct.cert:
        load_client_certificate(ctx, acct.cert, acct.key)
    ctx.tls_host = acct.tls_host
    ctx.checker = checker
    return ctx


def load_client_certificate(ctx, cert, key):
    try:
        ctx.load_cert_chain(os.path.expanduser(cert),
                            key and os.path.expanduser(key))
    except ssl.SSLError as exc:
        # ssl says only "[SSL] PEM lib (_ssl.c:NNNN)" for most of these
        what = "--cert %s%s" % (cert, " --key %s" % key if key else "")
        why = ("not a PEM certificate and the key that goes with it"
               if key else "not a PEM certificate with its key in the same "
               "file (else give the key with --key)")
        raise FetchError(EXIT_USAGE, "%s: %s (%s)" % (
            what, why, exc.reason or str(exc.strerror or exc).split(" (")[0]))
    except OSError as exc:
        raise FetchError(EXIT_USAGE, "--cert %s%s: %s" % (
            cert, " --key %s" % key if key else "", oserror_text(exc)))


def check_client_certificate(cert, key):
    """Before anything connects: the files load (FetchError otherwise)."""
    load_client_certificate(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert,
                            key)
