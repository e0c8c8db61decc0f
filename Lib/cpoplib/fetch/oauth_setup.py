"""The fetcher's providers, autoconfiguration and built-in OAuth 2.0: what
their settings (the group "providers and OAuth 2.0" of settings.SETTINGS)
do, as the hooks the rest of the fetcher calls:

``prepare(acct, out)``      before Account.check(): the provider profile
                            or autoconfiguration from ``email`` (host,
                            port, TLS, user), the credential rules of
                            the profile
``resolve(acct)``           instead of resolve_credentials() for an
                            account that logs in with built-in OAuth:
                            acct.token becomes a TokenSource
``connect_and_login()``     session: connect and log in, once more with
                            a refreshed token after a refusal; OAuth
                            failures as FetchError (exit 3 with "run
                            `cpoplib oauth ACCOUNT` again")
``run_sessions()``          session: the provider's session loop (Gmail)

cpoplib.oauth, cpoplib.autoconfig and DNS modules are imported only
when an account uses them: ``cpoplib fetch --help`` imports none.
"""
import threading

from .errors import EXIT_AUTH, EXIT_CONNECT, EXIT_USAGE, FetchError

PROVIDER_NAMES = ("gmail", "outlook", "yahoo", "gmx", "webde", "fastmail")
OAUTH_PROVIDERS = ("google", "microsoft")
STORES = ("file", "keyring")


# --------------------------------------------------------------------------
# before Account.check()

def _password_configured(acct):
    return bool(acct.password_env or acct.password_command
                or acct.password_keyring)


def _oauth_configured(acct):
    return bool(acct.oauth_client_id or acct.oauth_provider
                or acct.oauth_token_url)


def prepare(acct, out):
    """Applies the provider profile (or what autoconfiguration finds for
    acct.email) to the connection settings the account leaves open, and
    decides the login method.  Sets acct.profile and acct.use_oauth."""
    acct.config_name = acct.name            # None: the command line
    acct.profile = None
    acct.use_oauth = False
    acct.oauth_source = None
    from cpoplib import providers

    profile = None
    if acct.provider:
        try:
            profile = providers.get(acct.provider)
        except providers.ProviderError as exc:
            raise FetchError(EXIT_USAGE, str(exc))
    elif acct.email and not acct.host:
        from cpoplib import autoconfig

        try:
            choice = autoconfig.discover(acct.email)
        except autoconfig.AutoconfigError as exc:
            raise FetchError(EXIT_USAGE, "--email: %s" % exc)
        profile = choice.profile
        if acct.user:
            choice.user = acct.user
        out.summary("%s: %s%s" % (getattr(out, "prog", None) or out_prog(),
                                  acct.name + ": " if acct.name else "",
                                  choice.describe()))
        acct.host = choice.host
        if acct.port is None:
            acct.port = choice.port
        if not (acct.ssl or acct.starttls):
            acct.ssl = choice.tls == "ssl"
            acct.starttls = choice.tls == "starttls"
        if not acct.user:
            acct.user = choice.user
    if profile is not None:
        if not acct.host:
            acct.host = profile.host
            if acct.port is None:
                acct.port = profile.port
        if not (acct.ssl or acct.starttls):
            acct.ssl = profile.tls == providers.SSL
            acct.starttls = profile.tls == providers.STARTTLS
        if not acct.user and acct.email:
            acct.user = profile.user_for(acct.email)
        try:
            method = providers.check_credentials(
                profile, _password_configured(acct),
                _oauth_configured(acct) or bool(acct.token_command))
        except providers.ProviderError as exc:
            raise FetchError(EXIT_USAGE, str(exc))
        acct.profile = profile
        if method == "oauth" and not acct.token_command:
            acct.use_oauth = True
            if not acct.oauth_provider:     # oauth_*_url override it
                acct.oauth_provider = profile.oauth_provider
    elif _oauth_configured(acct) and not acct.token_command:
        acct.use_oauth = True
    if not acct.user and acct.email:
        acct.user = acct.email
    if acct.gmail_recent and acct.user:
        try:
            acct.user = providers.login_name(profile, acct.user, True)
        except providers.ProviderError as exc:
            raise FetchError(EXIT_USAGE, str(exc))
    if acct.use_oauth and not acct.oauth_client_id:
        raise FetchError(EXIT_USAGE, "%s needs OAuth 2.0: set "
                         "oauth_client_id (--oauth-client-id) to your app "
                         "registration's client ID (the manual: registering a "
                         "client ID), then run `cpoplib oauth`"
                         % (profile.title if profile else "this account"))


def out_prog():
    from .output import PROG
    return PROG


# --------------------------------------------------------------------------
# credentials

_sources: dict = {}     # (store kind, key) -> TokenSource
_sources_lock = threading.Lock()


def _secret_from(cmd):
    """The client secret, from running `cmd` once, when first needed."""
    from .accounts import _run_command

    cache = []

    def secret():
        if not cache:
            cache.append(_run_command(cmd, "oauth_client_secret_command"))
        return cache[0]
    return secret


def oauth_client(acct):
    from cpoplib import oauth

    cmd = acct.oauth_client_secret_command
    secret = _secret_from(cmd) if cmd else None
    try:
        return oauth.client(acct.oauth_provider,
                            client_id=acct.oauth_client_id,
                            client_secret=secret, tenant=acct.oauth_tenant,
                            scope=acct.oauth_scope,
                            authorize_url=acct.oauth_authorize_url,
                            device_url=acct.oauth_device_url,
                            token_url=acct.oauth_token_url)
    except oauth.OAuthError as exc:
        raise FetchError(EXIT_USAGE, "OAuth: %s" % exc)


def token_source(acct):
    """The account's TokenSource: one per stored key in the process, so
    accounts sharing tokens do not refresh (and rotate) them twice."""
    from cpoplib import oauth

    client = oauth_client(acct)
    if not acct.user:
        raise FetchError(EXIT_USAGE, "no user name (--user or --email)")
    key = oauth.token_key(acct.user, client.client_id, client.token_url)
    try:
        store = oauth.make_store(acct.oauth_store)
    except oauth.OAuthError as exc:
        raise FetchError(EXIT_USAGE, "oauth_store: %s" % exc)
    with _sources_lock:
        ident = (store.kind, key)
        source = _sources.get(ident)
        if source is None or source.client.client_id != client.client_id:
            source = _sources[ident] = oauth.TokenSource(client, store, key)
    return source


def resolve(acct):
    """Credentials of an account that uses built-in OAuth (True), or
    False: resolve_credentials() does the rest."""
    if not getattr(acct, "use_oauth", False):
        return False
    acct.oauth_source = acct.token = token_source(acct)
    return True


def again(acct):
    if acct.config_name:
        return "run `cpoplib oauth %s` again" % acct.config_name
    return "run `cpoplib oauth` with the same options again"


def _oauth_failure(acct, exc):
    from cpoplib import oauth

    if isinstance(exc, oauth.AuthorizationRequired):
        return FetchError(EXIT_AUTH, "OAuth for %s: %s: %s" % (
            acct.user, exc, again(acct)))
    code = EXIT_CONNECT if str(exc).startswith("cannot reach") else EXIT_AUTH
    return FetchError(code, "OAuth for %s: %s" % (acct.user, exc))


# --------------------------------------------------------------------------
# the session

def connect_and_login(acct, out, open_connection, login, drop):
    """open_connection() and login(conn) (session.py's); with built-in
    OAuth a refused token is refreshed once and the login repeated on a
    new connection (a server may close it after a failed AUTH).  drop(conn)
    closes a connection given up on."""
    source = getattr(acct, "oauth_source", None)
    profile = getattr(acct, "profile", None)
    conn = open_connection()
    try:
        try:
            login(conn)
        except FetchError as exc:
            if exc.code != EXIT_AUTH:
                raise
            if source is None:
                from cpoplib import providers
                hint = providers.login_failure_hint(
                    profile, bool(acct.token_command))
                if hint:
                    raise FetchError(exc.code, "%s (%s)" % (exc.message,
                                                            hint))
                raise
            out.verbose("%s: the server refused the access token: "
                        "refreshing it" % acct.name)
            source.refresh()
            drop(conn)
            conn = open_connection()
            login(conn)
    except Exception as exc:
        drop(conn)
        if source is not None:
            from cpoplib import oauth
            if isinstance(exc, oauth.OAuthError):
                raise _oauth_failure(acct, exc)
        raise
    except BaseException:
        drop(conn)
        raise
    return conn


def run_sessions(acct, out, result, one_session):
    """one_session() once, or, for a profile with a session loop (Gmail),
    again while the last session brought new messages, at most
    max_sessions times; each session ends with QUIT."""
    from cpoplib import providers

    profile = getattr(acct, "profile", None)
    looping = (profile is not None and profile.session_loop
               and not acct.dry_run and not acct.all)
    sessions = 0
    while True:
        before = result.messages
        one_session()
        sessions += 1
        new = result.messages - before
        # a per-run limit reached (--max-messages, --max-bytes): no more
        if not looping or result.deferred or not providers.another_session(
                profile, sessions, new, acct.max_sessions):
            break
        out.verbose("%s: session %d brought %d new messages: once more"
                    % (acct.name, sessions, new))
    bound = acct.max_sessions or (profile.max_sessions if profile else 1)
    if looping and new and sessions >= bound:
        out.warn("%s: stopped after %d sessions (max_sessions); %s may "
                 "hold more: run again" % (acct.name, sessions,
                                           profile.title))
    result.sessions = sessions
