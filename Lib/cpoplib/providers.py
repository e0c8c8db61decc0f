"""Mail providers' POP3 profiles: where the server is, how to log in, and
the provider's quirks, as data (PROFILES) and a few functions over it.

Plain data, no imports beyond the standard library's basics: the
fetcher reads it for ``--provider``/``provider =`` and autoconfiguration
reads its domains.  Each profile lists the pages its values come from
(``sources``; the README's provider table is built from the same
values).
"""

__all__ = ["Profile", "PROFILES", "ProviderError", "get", "for_domain",
           "names", "login_name", "check_credentials", "login_failure_hint",
           "another_session"]

SSL = "ssl"              # implicit TLS (POP3S)
STARTTLS = "starttls"

OAUTH = "oauth"                      # OAuth 2.0 only
PASSWORD = "password"                # a password (an app password)
OAUTH_OR_PASSWORD = "oauth-or-password"

# Gmail hands out a limited batch per session: at most this many sessions
# per run unless the account says otherwise
DEFAULT_MAX_SESSIONS = 10


class ProviderError(Exception):
    """A profile that cannot be used as asked; str() says why."""


class Profile:
    """One provider's POP3 settings and quirks.

    host, port, tls (SSL or STARTTLS); auth (OAUTH, PASSWORD,
    OAUTH_OR_PASSWORD) and oauth_provider (a cpoplib.oauth provider);
    username: "address" (the whole e-mail address) or "localpart";
    domains: its mail domains (for autoconfiguration);
    password_hint: what to say when a password login fails;
    session_loop: the server serves a batch per session, so run sessions
    (QUIT, reconnect) until one brings nothing new, at most max_sessions;
    always_quit: end every session with QUIT (the server records what a
    session handed out only at QUIT); recent_prefix: a user-name prefix
    the server understands (Gmail's "recent:"); refused: the reason this
    provider cannot be used over POP3 (None if it can); sources: URLs.
    """

    def __init__(self, name, title, host=None, port=None, tls=SSL,
                 auth=PASSWORD, oauth_provider=None, username="address",
                 domains=(), password_hint=None, session_loop=False,
                 max_sessions=1, always_quit=False, recent_prefix=None,
                 refused=None, notes=None, sources=()):
        self.name = name
        self.title = title
        self.host = host
        self.port = port
        self.tls = tls
        self.auth = auth
        self.oauth_provider = oauth_provider
        self.username = username
        self.domains = tuple(domains)
        self.password_hint = password_hint
        self.session_loop = session_loop
        self.max_sessions = max_sessions
        self.always_quit = always_quit
        self.recent_prefix = recent_prefix
        self.refused = refused
        self.notes = notes
        self.sources = tuple(sources)

    def __repr__(self):
        return "<cpoplib.providers.Profile %s>" % self.name

    @property
    def oauth_capable(self):
        return self.auth in (OAUTH, OAUTH_OR_PASSWORD)

    def user_for(self, address):
        """The login name for an e-mail address under this profile."""
        if self.username == "localpart":
            return address.rpartition("@")[0] or address
        return address


PROFILES = {
    "gmail": Profile(
        "gmail", "Gmail / Google Workspace",
        host="pop.gmail.com", port=995, tls=SSL,
        auth=OAUTH_OR_PASSWORD, oauth_provider="google",
        domains=("gmail.com", "googlemail.com"),
        password_hint="Gmail takes OAuth 2.0 (oauth_client_id, then "
                      "`cpoplib oauth`) or, for a personal account with "
                      "2-Step Verification, an app password; Google "
                      "Workspace accounts need OAuth; POP must be enabled "
                      "in Gmail's settings (Forwarding and POP/IMAP)",
        session_loop=True, max_sessions=DEFAULT_MAX_SESSIONS,
        always_quit=True, recent_prefix="recent:",
        notes="a batch of messages per session, marked as downloaded at "
              "QUIT: sessions are repeated until one brings nothing new",
        sources=(
            "https://developers.google.com/gmail/imap/imap-smtp",
            "https://github.com/thunderbird/autoconfig/blob/master/ispdb/"
            "googlemail.com.xml",
        )),
    "outlook": Profile(
        "outlook", "Outlook.com / Microsoft 365",
        host="outlook.office365.com", port=995, tls=SSL,
        auth=OAUTH, oauth_provider="microsoft",
        domains=("outlook.com", "hotmail.com", "live.com", "msn.com",
                 "hotmail.co.uk", "hotmail.de", "hotmail.fr", "live.de",
                 "live.co.uk", "outlook.de", "outlook.fr"),
        password_hint="Outlook.com and Microsoft 365 accept only OAuth 2.0 "
                      "for POP3; POP must be enabled in Outlook.com's "
                      "settings (Forwarding and IMAP) or by the tenant's "
                      "administrator",
        sources=(
            "https://support.microsoft.com/en-us/office/"
            "pop-imap-and-smtp-settings-8361e398-8af4-4e97-b147-"
            "6c6c4ac95353",
        )),
    "yahoo": Profile(
        "yahoo", "Yahoo Mail",
        host="pop.mail.yahoo.com", port=995, tls=SSL, auth=PASSWORD,
        domains=("yahoo.com", "yahoo.co.uk", "yahoo.de", "yahoo.fr",
                 "yahoo.it", "yahoo.es", "yahoo.com.au", "ymail.com",
                 "rocketmail.com", "myyahoo.com"),
        password_hint="Yahoo Mail needs an app password (Account Security, "
                      "Generate app password), not the account's password; "
                      "its OAuth is not open to self-registered apps",
        sources=(
            "https://help.yahoo.com/kb/new-mail-for-desktop/"
            "pop-access-settings-instructions-yahoo-mail-sln4724.html",
            "https://github.com/thunderbird/autoconfig/blob/master/ispdb/"
            "yahoo.com.xml",
        )),
    "gmx": Profile(
        "gmx", "GMX",
        host="pop.gmx.net", port=995, tls=SSL, auth=PASSWORD,
        domains=("gmx.net", "gmx.de", "gmx.at", "gmx.ch", "gmx.eu",
                 "gmx.org", "gmx.info", "gmx.biz"),
        password_hint="GMX: allow access by POP3 and IMAP once in the "
                      "e-mail settings; with two-factor authentication use "
                      "an app-specific password",
        sources=(
            "https://hilfe.gmx.net/pop-imap/einschalten.html",
            "https://github.com/thunderbird/autoconfig/blob/master/ispdb/"
            "gmx.net.xml",
        )),
    "webde": Profile(
        "webde", "WEB.DE",
        host="pop3.web.de", port=995, tls=SSL, auth=PASSWORD,
        username="localpart", domains=("web.de",),
        password_hint="WEB.DE: allow access by POP3 and IMAP once in the "
                      "e-mail settings; with two-factor authentication use "
                      "an app-specific password; WEB.DE also refuses "
                      "logins more often than every 15 minutes",
        notes="fetch at most every 15 minutes",
        sources=(
            "https://hilfe.web.de/pop-imap/einschalten.html",
            "https://github.com/thunderbird/autoconfig/blob/master/ispdb/"
            "web.de.xml",
        )),
    "fastmail": Profile(
        "fastmail", "Fastmail",
        host="pop.fastmail.com", port=995, tls=SSL, auth=PASSWORD,
        domains=("fastmail.com", "fastmail.fm", "fastmail.net",
                 "fastmail.org", "fastmail.to", "fastmail.us",
                 "fastmail.de", "fastmail.co.uk", "messagingengine.com"),
        password_hint="Fastmail needs an app password for POP "
                      "(Settings, Privacy & Security, App passwords), not "
                      "the account's password",
        sources=(
            "https://www.fastmail.help/hc/en-us/articles/1500000279921",
            "https://github.com/thunderbird/autoconfig/blob/master/ispdb/"
            "messagingengine.com.xml",
        )),
    "icloud": Profile(
        "icloud", "iCloud Mail",
        domains=("icloud.com", "me.com", "mac.com"),
        refused="iCloud Mail has no POP3 service (IMAP only)",
        sources=(
            "https://support.apple.com/HT202304",
            "https://github.com/thunderbird/autoconfig/blob/master/ispdb/"
            "me.com.xml",
        )),
}


def names(usable_only=True):
    """The profile names (those that can be used, by default)."""
    return sorted(n for n, p in PROFILES.items()
                  if not (usable_only and p.refused))


def get(name):
    """The profile called name; ProviderError if unknown or refused."""
    profile = PROFILES.get((name or "").lower())
    if profile is None:
        raise ProviderError("unknown provider %r (known: %s)"
                            % (name, ", ".join(names())))
    if profile.refused:
        raise ProviderError("%s cannot be used: %s" % (profile.title,
                                                       profile.refused))
    return profile


def for_domain(domain):
    """The profile whose mail domains include domain (refused ones too),
    or None."""
    domain = (domain or "").lower().rstrip(".")
    for profile in PROFILES.values():
        if domain in profile.domains:
            return profile
    return None


def login_name(profile, user, recent=False):
    """The name to log in with: Gmail's "recent:" mode prefixes it (the
    last 30 days of mail, whatever other clients fetched already)."""
    if not recent:
        return user
    if profile is None or not profile.recent_prefix:
        raise ProviderError("the recent: mode is Gmail's; %s has none"
                            % (profile.title if profile else "this server"))
    if user.startswith(profile.recent_prefix):
        return user
    return profile.recent_prefix + user


def check_credentials(profile, password_configured, oauth_configured):
    """Refuses a combination the provider cannot accept (a password for
    an OAuth-only provider, OAuth for a password-only one); returns
    "oauth" or "password", the method to use (None: no decision)."""
    if profile.auth == OAUTH:
        if password_configured:
            raise ProviderError(
                "%s accepts only OAuth 2.0 for POP3 (passwords are refused "
                "since September 2024): remove the password settings, set "
                "oauth_client_id and run `cpoplib oauth`" % profile.title)
        return "oauth"
    if profile.auth == PASSWORD:
        if oauth_configured:
            raise ProviderError("%s: OAuth is not available to "
                                "self-registered apps; use an app "
                                "password" % profile.title)
        return "password"
    if oauth_configured:
        return "oauth"
    return "password" if password_configured else None


def login_failure_hint(profile, used_oauth):
    """What to add to a failed login's message, or None."""
    if profile is None:
        return None
    if used_oauth:
        return None
    return profile.password_hint


def another_session(profile, sessions_done, new_in_last, max_sessions=None):
    """The session-loop rule: True when the run should QUIT, reconnect
    and look again (the last session brought something new and the bound
    is not reached)."""
    if profile is None or not profile.session_loop:
        return False
    bound = max_sessions or profile.max_sessions
    return new_in_last > 0 and sessions_done < bound
