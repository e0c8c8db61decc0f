"""``cpoplib oauth [ACCOUNT...] [--device | --browser]``: authorize the
accounts that log in with built-in OAuth 2.0 once, and store their
tokens; ``cpoplib fetch`` then uses and refreshes them.

The accounts are those of ``cpoplib fetch`` with the same options and
``--config`` file (ACCOUNT names tables of the file; none: every account
of it that uses OAuth, or the one the options describe).  Nothing is
fetched and no POP3 server is contacted.

``--browser``: the authorization code grant with PKCE; the browser is
opened with the URL (``BROWSER`` picks it), which is also printed, and
comes back to a loopback address.  ``--device``: the device grant; it
prints a URL and a code to enter on any device.  Default: the browser,
unless none can be found and the provider has a device endpoint.
"""
import argparse
import sys

from . import oauth_setup
from .errors import EXIT_AUTH, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, \
    FetchError
from .output import Output

PROG = "cpoplib oauth"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise FetchError(EXIT_USAGE, message)


def build_parser():
    """This command's own options; the rest are cpoplib fetch's."""
    p = _Parser(prog=PROG, add_help=False, allow_abbrev=False,
                usage="%(prog)s [--device | --browser] [--wait SECONDS] "
                      "[FETCH OPTIONS] [ACCOUNT ...]",
                description="Authorize accounts that log in with OAuth 2.0 "
                            "and store their tokens.  The accounts and the "
                            "other options are those of cpoplib fetch "
                            "(cpoplib fetch --help); no destination is "
                            "needed.",
                epilog="exit codes: 0 authorized; 1 usage or configuration "
                       "error; 3 the authorization failed.")
    p.add_argument("-h", "--help", action="help",
                   help="show this help and exit")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--device", dest="flow", action="store_const",
                     const="device", help="the device flow: a URL and a "
                                          "code to enter on any device")
    how.add_argument("--browser", dest="flow", action="store_const",
                     const="browser", help="the browser flow (the "
                                           "default)")
    p.add_argument("--wait", type=_wait, default=300.0, metavar="SECONDS",
                   help="how long the browser flow waits, 1 to 3600 "
                        "(default 300)")
    return p


def _wait(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds, "
                                         "not %r" % text)
    if not 1 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be 1 to 3600 seconds, not "
                                         "%s" % text)
    return value


def _flow(acct, client, wanted):
    if wanted:
        return wanted
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        if client.device_url:
            return "device"
    return "browser"


def authorize(acct, flow, wait, out):
    """Runs the flow for one account and stores its tokens."""
    from cpoplib import oauth

    source = oauth_setup.token_source(acct)
    client = source.client
    flow = _flow(acct, client, flow)
    provider = oauth.PROVIDERS.get(client.provider or "")
    if (flow == "device" and provider is not None
            and not provider.device_scope_ok
            and not acct.oauth_device_url):
        raise FetchError(EXIT_USAGE, "%s: %s's device flow does not allow "
                         "the mail scope: use --browser" % (
                             acct.name, provider.title))

    def prompt(text):
        out.summary("%s: %s" % (acct.name, text))

    try:
        if flow == "device":
            tokens = client.device_flow(prompt=prompt)
        else:
            tokens = client.browser_flow(prompt=prompt, timeout=wait,
                                         login_hint=acct.user)
        source.record(tokens)
    except oauth.OAuthError as exc:
        raise FetchError(EXIT_AUTH, "%s: %s" % (acct.name, exc))
    if not tokens.refresh_token:
        out.warn("%s: no refresh token was issued: `cpoplib fetch` works "
                 "until the access token expires" % acct.name)
    out.summary("%s: authorized; tokens stored in %s" % (
        acct.name, source.store.where(source.key)))


class OAuthOutput(Output):
    """The fetcher's stderr output, under this command's name."""

    prog = PROG

    def error(self, text):
        self._write("%s: error: %s" % (PROG, text))

    def warn(self, text):
        self._write("%s: warning: %s" % (PROG, text))


def _output(verbose):
    return OAuthOutput(quiet=False, verbose=verbose)


def main(argv=None):
    from .cli import plan

    if argv is None:
        argv = sys.argv[1:]
    out = _output(False)
    try:
        try:
            args, rest = build_parser().parse_known_args(argv)
        except SystemExit as exc:       # --help
            return exc.code
        accounts, run = plan(rest)
        out = _output(run["verbose"])
        for acct in accounts:
            oauth_setup.prepare(acct, out)
            if not acct.name:
                acct.name = "%s@%s" % (acct.user, acct.host)
        todo = [a for a in accounts if a.use_oauth]
        if not todo:
            raise FetchError(EXIT_USAGE, "no account here uses built-in "
                             "OAuth 2.0 (set provider = \"gmail\" or "
                             "\"outlook\", or oauth_provider, and "
                             "oauth_client_id)")
        for acct in todo:
            authorize(acct, args.flow, args.wait, out)
    except FetchError as exc:
        out.error(exc.message)
        return exc.code
    except SystemExit as exc:           # cpoplib fetch --help, --version
        return exc.code
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_INTERRUPTED
    return EXIT_OK
