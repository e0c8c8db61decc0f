"""The settings of ``cpoplib fetch``: one table (SETTINGS) with each
setting's kind, default, allowed values and help text.  The command line
(cli.build_parser), the checks of the TOML config, ``--help`` and the
manual's reference (reference.py, docs/fetcher/reference.rst) are all
made from it.

Values are checked exactly: a boolean is ``true``/``false`` and nothing
else (never the string ``"false"``), an integer is never a boolean, every
range is checked before anything connects.

Precedence, per setting (config.py applies it): the command line, then
the account's table, then ``[defaults]``, then the built-in default.  A level that gives two
settings of one exclusive group (``ssl``/``starttls``; ``maildir``/
``mbox``/``eml_dir``/``mda``; ``password_env``/``password_command``/
``password_keyring``/``token_command``; ``cafile``/``insecure``;
``fingerprint``/``tofu``/``insecure``) is refused; a level that gives
one of them overrides the whole group of the levels below (``--mbox`` on
the command line replaces ``maildir`` from the file).

``python -m cpoplib.fetch.reference --write docs/fetcher/reference.rst``
rewrites the reference from this table; tests/test_fetch_config.py checks
that the file is what it writes.
"""
import difflib
import math
import re

from .durable import SYNC_MODES
from .errors import EXIT_USAGE, FetchError

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "APOP", "PLAIN",
              "LOGIN", "USER", "OAUTHBEARER", "XOAUTH2", "EXTERNAL")
MiB = 1 << 20

KIND_TEXT = {"bool": "boolean", "int": "integer", "number": "number",
             "text": "string", "path": "string", "choice": "string",
             "fingerprint": "string",
             "fingerprints": "string or array of strings",
             "size": "size"}

# A size: bytes, or a number with k, M or G -- powers of 1024, as
# max_message_size's MiB and the summary's KiB/MiB are (and mpop's k/m).
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
SIZE_WORDS = "like 500k, 10M or 2G (k, M, G: powers of 1024)"
MAX_SIZE = 1 << 40


def parse_size(text):
    """A size's text (``"10M"``, ``"512k"``, ``"300"``) as bytes, or None
    if it is not one."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([kKmMgG]?)\s*", text)
    if m is None:
        return None
    return int(m.group(1)) * SIZE_UNITS[m.group(2).lower()]


def size_words(n):
    """Bytes as a size's text, in the largest unit that divides them."""
    for unit, mult in (("G", 1 << 30), ("M", 1 << 20), ("k", 1 << 10)):
        if n and n % mult == 0:
            return "%d%s" % (n // mult, unit)
    return str(n)


class Setting:
    """One setting.  kind: bool, int, number (int or float), text, path
    (a string, ~ expanded), choice (one of `choices`), fingerprint (a
    certificate's SHA-256, tls.parse_fingerprint()), fingerprints (one
    or a list of them, a tuple once checked; the option may be repeated).
    scope: "account" (also in an account's table), "run" (command line
    and [defaults] only) or "cli" (command line only).  exclusive: a
    group name, or a tuple of them.  flags: the command line's options,
    the second one of a boolean setting giving false."""

    def __init__(self, name, kind, default, help, group, choices=None,
                 low=None, high=None, low_open=False, metavar=None,
                 flags=None, scope="account", exclusive=None,
                 default_text=None, toml_negative=None):
        self.name = name
        self.kind = kind
        self.default = default
        self.help = help
        self.group = group
        self.choices = choices
        self.low, self.high, self.low_open = low, high, low_open
        self.metavar = metavar or name.upper()
        dashed = "--" + name.replace("_", "-")
        if flags is None:
            flags = (dashed, "--no-" + name.replace("_", "-")) \
                if kind == "bool" else (dashed,)
        self.flags = flags
        self.scope = scope
        self.exclusive = exclusive
        self.default_text = default_text
        self.toml_negative = toml_negative     # "keep" for delete

    def groups(self):
        """The exclusive groups the setting belongs to."""
        if self.exclusive is None:
            return ()
        return self.exclusive if isinstance(self.exclusive, tuple) \
            else (self.exclusive,)

    def default_words(self):
        if self.default_text is not None:
            return self.default_text
        if self.kind == "bool":
            return "true" if self.default else "false"
        return "none" if self.default is None else str(self.default)

    def range_words(self):
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind == "size":
            return "%s to %s" % (size_words(self.low), size_words(self.high))
        if self.low is not None and self.high is not None:
            if self.low_open:
                return "> %s, at most %s" % (self.low, self.high)
            return "%s to %s" % (self.low, self.high)
        return ""

    # ---- checking one value ----

    def check(self, value, where):
        """`value` (from TOML or parsed from the command line) checked
        exactly; FetchError(EXIT_USAGE) naming `where` otherwise."""
        k = self.kind
        if k in ("fingerprint", "fingerprints"):
            return self._check_fingerprints(value, where)
        ok = {"bool": type(value) is bool,
              "int": type(value) is int,
              "number": type(value) in (int, float),
              "size": type(value) in (int, str),
              }.get(k, type(value) is str)
        if k == "size" and type(value) is str:
            parsed = parse_size(value)
            if parsed is None:
                raise FetchError(EXIT_USAGE, "%s must be a size, %s, not "
                                 "%s" % (where, SIZE_WORDS, describe(value)))
            value = parsed
        if not ok:
            raise FetchError(EXIT_USAGE, "%s must be %s (%s), not %s" % (
                where, "a " + KIND_TEXT[k] if k != "int" else "an integer",
                self.example(), describe(value)))
        if k == "number" and not math.isfinite(value):
            raise FetchError(EXIT_USAGE, "%s must be a finite number, not "
                             "%s" % (where, value))
        if k in ("text", "path", "choice"):
            if not value:
                raise FetchError(EXIT_USAGE, "%s must not be empty" % where)
            if self.metavar == "CMD" and not value.strip():
                # sh -c " " exits 0: an MDA that "delivers" by discarding
                raise FetchError(EXIT_USAGE, "%s must be a shell command, "
                                 "not blank" % where)
            if "\0" in value:
                raise FetchError(EXIT_USAGE, "%s must not contain a NUL "
                                 "character" % where)
        if k == "choice":
            canon = {c.lower(): c for c in self.choices}
            if value.lower() not in canon:
                raise FetchError(EXIT_USAGE, "%s must be one of %s, not %r%s"
                                 % (where, ", ".join(self.choices), value,
                                    did_you_mean(value, self.choices)))
            value = canon[value.lower()]
        shown = size_words(value) if k == "size" else value
        if self.low is not None and (value < self.low or (
                self.low_open and value == self.low)):
            raise FetchError(EXIT_USAGE, "%s must be %s, not %s" % (
                where, self.range_words(), shown))
        if self.high is not None and value > self.high:
            raise FetchError(EXIT_USAGE, "%s must be %s, not %s" % (
                where, self.range_words(), shown))
        return value

    def _check_fingerprints(self, value, where):
        from .tls import parse_fingerprint
        many = self.kind == "fingerprints"
        items = value if many and isinstance(value, list) else [value]
        if many and not items:
            raise FetchError(EXIT_USAGE, "%s must not be an empty array"
                             % where)
        checked = []
        for item in items:
            if type(item) is not str:
                raise FetchError(EXIT_USAGE, "%s must be %s (%s), not %s" % (
                    where, "a string or an array of strings" if many
                    else "a string", self.example(), describe(item)))
            try:
                checked.append(parse_fingerprint(item))
            except ValueError as exc:
                raise FetchError(EXIT_USAGE, "%s %s" % (where, exc))
        return tuple(dict.fromkeys(checked)) if many else checked[0]

    def example(self):
        if self.kind in ("fingerprint", "fingerprints"):
            return 'like "SHA256:3F:A1:...", 32 bytes in hex'
        return {"bool": "true or false", "int": "like 10",
                "number": "like 30 or 2.5", "text": 'like "text"',
                "size": 'bytes, or a string %s' % SIZE_WORDS,
                "path": 'a file name like "~/Mail"',
                "choice": " or ".join('"%s"' % c for c in self.choices or ()),
                }[self.kind]

    def parse_arg(self, text, flag):
        """A command-line argument to a value (then check())."""
        if self.kind == "int":
            try:
                return int(text, 10)
            except ValueError:
                raise FetchError(EXIT_USAGE, "%s needs an integer, not %r"
                                 % (flag, text))
        if self.kind == "number":
            try:
                return float(text)
            except ValueError:
                raise FetchError(EXIT_USAGE, "%s needs a number, not %r"
                                 % (flag, text))
        if self.kind == "size":
            size = parse_size(text)
            if size is None:
                raise FetchError(EXIT_USAGE, "%s needs a size, %s, not %r"
                                 % (flag, SIZE_WORDS, text))
            return size
        return text


def describe(value):
    """A TOML value as the error message names it."""
    if type(value) is bool:
        return "the boolean %s" % ("true" if value else "false")
    if type(value) is str:
        return "the string %s" % _quoted(value)
    if type(value) is int:
        return "the integer %d" % value
    if type(value) is float:
        return "the number %r" % value
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return "a %s" % type(value).__name__


def _quoted(text):
    text = text if len(text) <= 40 else text[:37] + "..."
    return '"%s"' % text.encode("unicode_escape").decode("ascii").replace(
        '"', '\\"')


def did_you_mean(word, candidates):
    close = difflib.get_close_matches(str(word), list(candidates), n=1,
                                      cutoff=0.6)
    return "; did you mean %s?" % close[0] if close else ""


_S = Setting
SETTINGS = (
    # connection
    _S("host", "text", None, "the POP3 server's host name or address",
      "connection"),
    _S("port", "int", None, "the server's port", "connection", low=1,
      high=65535, default_text="110, or 995 with --ssl"),
    _S("ssl", "bool", False, "implicit TLS (POP3S)", "connection",
      exclusive="tls"),
    _S("starttls", "bool", False, "plain POP3, then STLS to turn on TLS "
      "before logging in", "connection", exclusive="tls"),
    _S("cafile", "path", None, "trust the CA certificates in FILE instead "
      "of the system's (with --ssl or --starttls)", "connection",
      metavar="FILE", exclusive="verify"),
    _S("insecure", "bool", False, "do not verify the server's certificate "
      "(says so on stderr; with --ssl or --starttls)", "connection",
      exclusive=("verify", "pin")),
    _S("timeout", "number", 60.0, "socket timeout in seconds", "connection",
      low=0, low_open=True, high=86400, metavar="SECONDS",
      default_text="60"),
    # TLS: pins, the name checked, a client certificate (what they do:
    # tls.py; docs/fetcher/tls.rst)
    _S("tls_host", "text", None, "check the server's certificate for NAME "
      "and send NAME in the TLS handshake (SNI) while connecting to --host "
      "(an address, another name)", "connection", metavar="NAME"),
    _S("fingerprint", "fingerprints", None, "pin the server's certificate: "
      "the SHA-256 of its DER, as `openssl x509 -noout -fingerprint "
      "-sha256` prints it; repeat the option (or give a list) to allow "
      "several; checked after the TLS handshake, before anything is sent; "
      "the pin replaces the CA and host name checks unless "
      "--also-verify-ca", "connection", metavar="SHA256:HEX",
      exclusive="pin"),
    _S("tofu", "bool", False, "trust on first use: on first contact record "
      "the certificate's SHA-256 in the account's state (and print it), "
      "afterwards refuse any other certificate (exit 2); replaces the CA "
      "and host name checks unless --also-verify-ca", "connection",
      exclusive="pin"),
    _S("tofu_accept", "fingerprint", None, "with --tofu: trust the server's "
      "new certificate if it is this one (the refusal names it), "
      "replacing the recorded one", "connection", metavar="SHA256:HEX",
      scope="cli"),
    _S("also_verify_ca", "bool", False, "with --fingerprint or --tofu: "
      "verify the CA chain (--cafile or the system's) and the host name as "
      "well as the pin", "connection"),
    _S("cert", "path", None, "present this TLS client certificate (PEM; "
      "the key too unless --key); without a password it logs in with SASL "
      "EXTERNAL", "connection", metavar="FILE"),
    _S("key", "path", None, "the private key of --cert (PEM)",
      "connection", metavar="FILE"),
    _S("serverinfo", "bool", False, "print what the server offers "
      "(greeting, TLS, certificate, capabilities; before and after logging "
      "in when a password or certificate is configured) and exit: nothing "
      "fetched, nothing written", "connection", scope="cli"),
    # authentication
    _S("user", "text", None, "the user name (or the login of ~/.netrc's "
      "entry for the host)", "authentication"),
    _S("password_env", "text", None, "take the password from environment "
      "variable NAME", "authentication", metavar="NAME",
      exclusive="secret"),
    _S("password_command", "text", None, "run CMD (a shell command); its "
      "output, without the final newline, is the password",
      "authentication", metavar="CMD", exclusive="secret"),
    _S("password_keyring", "bool", False, "take the password from the OS "
      "keyring (the keyring package): service cpoplib, user name "
      "USER@HOST; store it with `keyring set cpoplib USER@HOST`",
      "authentication", exclusive="secret"),
    _S("token_command", "text", None, "OAuth 2.0: run CMD for the access "
      "token (with XOAUTH2 or OAUTHBEARER)", "authentication",
      metavar="CMD", exclusive="secret"),
    _S("netrc", "bool", True, "look for the password (and the user name) "
      "in ~/.netrc", "authentication"),
    _S("auth", "choice", None, "the authentication mechanism",
      "authentication", choices=MECHANISMS, metavar="MECH",
      default_text="the strongest the server offers"),
    _S("allow_plaintext", "bool", False, "allow sending a cleartext "
      "password (USER/PASS, PLAIN, LOGIN) without TLS", "authentication"),
    # destination
    _S("maildir", "path", None, "deliver into the Maildir DIR (made if "
      "missing; an existing directory must be a Maildir or empty)",
      "destination", metavar="DIR", exclusive="destination"),
    _S("mbox", "path", None, "append to the mbox FILE (made if missing, "
      "mode 0600; an existing file must be an mbox or empty)",
      "destination", metavar="FILE", exclusive="destination"),
    _S("eml_dir", "path", None, "one .eml file per message in DIR",
      "destination", metavar="DIR", exclusive="destination"),
    # MDA delivery and the trace header (what they do: destinations.py,
    # headers.py; docs/fetcher/selection.rst)
    _S("mda", "text", None, "pipe each message to CMD (a shell command, "
      "%F the envelope sender), recorded once CMD exits 0; a failure "
      "stops the account (exit 5)", "destination", metavar="CMD",
      exclusive="destination"),
    _S("add_received", "bool", False, "prepend a Received: header naming "
      "the server, the account and the time", "destination"),
    _S("dry_run", "bool", False, "fetch and count, write nothing (no "
      "destination needed, nothing deleted: implies --keep)",
      "destination"),
    # what to fetch
    _S("state", "path", None, "the account's UIDL state file",
      "what to fetch", metavar="FILE",
      default_text="$XDG_STATE_HOME/cpoplib/USER@HOST_PORT-HASH.json"),
    _S("all", "bool", False, "fetch every message, not only new ones",
      "what to fetch"),
    _S("delete", "bool", False, "delete on the server what is durably on "
      "disk (--keep, or keep = true in a file: keep it)", "what to fetch",
      flags=("--delete", "--keep"), toml_negative="keep"),
    _S("batch", "int", 100, "make durable and record every N messages (or "
      "32 MiB)", "what to fetch", low=1, high=1 << 20, metavar="N"),
    _S("window", "int", None, "RETR commands in flight", "what to fetch",
      low=1, high=1024, metavar="N", default_text="adaptive"),
    _S("sync", "choice", "auto", "how a batch of Maildir or .eml files is "
      "made durable: fs = one syncfs(2) of the filesystem, file = fsync of "
      "each file; auto = fs on Linux 5.17+ with ext4, XFS or btrfs, else "
      "file", "what to fetch", choices=SYNC_MODES, metavar="MODE"),
    _S("max_message_size", "int", 128, "skip (and leave on the server) a "
      "message larger than this many MiB; a line may be as long",
      "what to fetch", low=1, high=4096, metavar="MIB"),
    _S("on_uidl_reset", "choice", "stop", "when none of the UIDLs in the "
      "state is on a non-empty server: stop (exit 6), or fetch every "
      "message as new", "what to fetch", choices=("stop", "fetch"),
      metavar="WHAT"),
    # selection (what it does: selection.py; docs/fetcher/selection.rst)
    _S("skip_larger", "size", None, "leave on the server, never fetched, "
      "a message larger than SIZE by its LIST size; 0: none; at most "
      "max_message_size", "what to fetch", low=0, high=MAX_SIZE,
      metavar="SIZE"),
    _S("delete_larger", "size", None, "with --delete: delete on the "
      "server, without fetching, a message larger than SIZE by its LIST "
      "size; 0: none",
      "what to fetch", low=0, high=MAX_SIZE, metavar="SIZE"),
    _S("max_messages", "int", None, "fetch at most N messages per run, "
      "the rest the next run; 0: no limit", "what to fetch", low=0,
      high=10 ** 9, metavar="N"),
    _S("max_bytes", "size", None, "fetch at most SIZE per run by LIST "
      "sizes, the first message always, the rest the next run; 0: no "
      "limit", "what to fetch", low=0, high=MAX_SIZE, metavar="SIZE"),
    _S("keep_days", "int", None, "with --delete: delete a fetched message "
      "only once it was first fetched N days ago; 0: at once",
      "what to fetch", low=0, high=36500, metavar="N"),
    _S("filter", "text", None, "run CMD (a shell command) on each new "
      "message's headers: exit 0 fetch, 1 leave on the server, 2 delete "
      "unfetched (with --delete), else an error for that message",
      "what to fetch", metavar="CMD"),
    # providers and OAuth 2.0 (what they do: oauth_setup.py)
    _S("provider", "text", None, "a provider profile (gmail, outlook, "
      "yahoo, gmx, webde, fastmail): host, port, TLS, login method and "
      "quirks", "providers and OAuth 2.0", metavar="NAME"),
    _S("email", "text", None, "without --host: find the server from the "
      "address (known provider, SRV records, MX); also the default --user",
      "providers and OAuth 2.0", metavar="ADDRESS"),
    _S("gmail_recent", "bool", False, "Gmail: log in as recent:USER (the "
      "last 30 days, whatever other clients fetched)",
      "providers and OAuth 2.0"),
    _S("max_sessions", "int", None, "a provider that hands out a batch per "
      "session (Gmail): at most N sessions per run",
      "providers and OAuth 2.0", low=1, high=1000, metavar="N",
      default_text="the profile's, 10 for Gmail"),
    _S("oauth_provider", "choice", None, "built-in OAuth 2.0 with this "
      "provider's endpoints (a profile implies it)",
      "providers and OAuth 2.0", choices=("google", "microsoft"),
      metavar="NAME"),
    _S("oauth_client_id", "text", None, "OAuth 2.0: your app "
      "registration's client ID", "providers and OAuth 2.0",
      metavar="ID"),
    _S("oauth_client_secret_command", "text", None, "OAuth 2.0: run CMD for "
      "the client secret (providers that issue one to installed apps: "
      "Google)", "providers and OAuth 2.0", metavar="CMD"),
    _S("oauth_tenant", "text", None, "OAuth 2.0, Microsoft: the tenant "
      "(organizations, consumers, a domain or an ID)",
      "providers and OAuth 2.0", metavar="TENANT", default_text="common"),
    _S("oauth_scope", "text", None, "OAuth 2.0: the scope",
      "providers and OAuth 2.0", metavar="SCOPE",
      default_text="the provider's POP scope"),
    _S("oauth_authorize_url", "text", None, "OAuth 2.0: the authorization "
      "endpoint", "providers and OAuth 2.0", metavar="URL",
      default_text="the provider's"),
    _S("oauth_device_url", "text", None, "OAuth 2.0: the device "
      "authorization endpoint", "providers and OAuth 2.0", metavar="URL",
      default_text="the provider's"),
    _S("oauth_token_url", "text", None, "OAuth 2.0: the token endpoint",
      "providers and OAuth 2.0", metavar="URL",
      default_text="the provider's"),
    _S("oauth_store", "choice", "file", "where OAuth 2.0 tokens are kept: "
      "file (under $XDG_STATE_HOME/cpoplib/oauth/, mode 0600) or keyring "
      "(the OS keyring; needs the keyring package)",
      "providers and OAuth 2.0", choices=("file", "keyring"),
      metavar="WHERE"),
    # output and the run
    _S("quiet", "bool", False, "no summary or progress lines", "output",
      flags=("-q", "--quiet", "--no-quiet"), scope="run"),
    _S("verbose", "bool", False, "say what each step does", "output",
      flags=("-v", "--verbose", "--no-verbose"), scope="run"),
    _S("jobs", "int", 4, "accounts fetched at once", "output", low=1,
      high=256, metavar="N", scope="run"),
)
del _S

BY_NAME = {s.name: s for s in SETTINGS}
GROUPS = ("connection", "authentication", "destination", "what to fetch",
          "providers and OAuth 2.0", "output")
EXCLUSIVE: "dict[str, list[str]]" = {}
for _s in SETTINGS:
    for _g in _s.groups():
        EXCLUSIVE.setdefault(_g, []).append(_s.name)
del _s, _g


# Settings that only say what --delete deletes: each needs delete = true
# (Account.check()), and --keep above them turns them off with it.
WITH_DELETE = ("delete_larger", "keep_days")
