"""The ``cpoplib fetch`` command line: options, the TOML config file,
several accounts at once (threads), the summary and the exit status."""
import argparse
import sys
import threading

from . import durable, faults, oauth_setup
from .accounts import BATCH_MESSAGES, Account, resolve_credentials
from .errors import (EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, FetchError,
                     oserror_text)
from .output import PROG, Output, size_text
from .session import Result, fetch_account


EPILOG = """\
exit codes: 0 ok; 1 usage or configuration error (no password); 2 cannot
connect, TLS or certificate failure, connection lost; 3 authentication
failed; 4 mailbox busy ([IN-USE], [LOGIN-DELAY], another fetcher running
for the account, mbox locked); 5 cannot write the destination or the
state file; 6 other POP3 error.  Several accounts: the highest code.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, "%s: error: %s\n" % (self.prog, message))


def build_parser():
    p = _Parser(prog=PROG, epilog=EPILOG, allow_abbrev=False,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Download new messages of a POP3 mailbox to a "
                            "Maildir, an mbox or .eml files.")
    c = p.add_argument_group("connection")
    c.add_argument("--host")
    c.add_argument("--port", type=int)
    c.add_argument("--ssl", action="store_true", default=None,
                   help="implicit TLS (POP3S, port 995)")
    c.add_argument("--starttls", action="store_true", default=None,
                   help="STLS after connecting")
    c.add_argument("--cafile", help="trust these CA certificates")
    c.add_argument("--insecure", action="store_true", default=None,
                   help="do not verify the certificate (warns)")
    c.add_argument("--timeout", type=float, default=None,
                   help="socket timeout in seconds (default 60)")
    a = p.add_argument_group("authentication")
    a.add_argument("--user")
    a.add_argument("--password", dest="refused_password",
                   help=argparse.SUPPRESS)
    a.add_argument("--password-env", metavar="NAME",
                   help="take the password from environment variable NAME")
    a.add_argument("--password-command", metavar="CMD",
                   help="run CMD (a shell command); its output is the "
                        "password")
    a.add_argument("--no-netrc", dest="netrc", action="store_false",
                   default=None, help="do not look in ~/.netrc")
    a.add_argument("--auth", metavar="MECH",
                   help="SASL mechanism for login() (default: the "
                        "strongest offered)")
    a.add_argument("--token-command", metavar="CMD",
                   help="OAuth 2.0: run CMD for the access token")
    a.add_argument("--allow-plaintext", action="store_true", default=None,
                   help="allow a cleartext password without TLS")
    d = p.add_argument_group("destination")
    d.add_argument("--maildir", metavar="DIR")
    d.add_argument("--mbox", metavar="FILE")
    d.add_argument("--eml-dir", metavar="DIR")
    d.add_argument("--dry-run", action="store_true", default=None,
                   help="fetch and count, write nothing")
    s = p.add_argument_group("what to fetch")
    s.add_argument("--state", metavar="FILE",
                   help="UIDL state file (default: under "
                        "$XDG_STATE_HOME/cpoplib/)")
    s.add_argument("--all", action="store_true", default=None,
                   help="fetch every message, not only new ones")
    s.add_argument("--delete", action="store_true", default=None,
                   help="delete on the server what is durably on disk")
    s.add_argument("--keep", action="store_true",
                   help="keep messages on the server (the default)")
    s.add_argument("--batch", type=int, metavar="N",
                   help="sync and commit every N messages (default %d)"
                        % BATCH_MESSAGES)
    s.add_argument("--window", type=int, metavar="N",
                   help="RETR commands in flight (default: fetch_many's)")
    s.add_argument("--sync", choices=durable.SYNC_MODES,
                   help="how a batch of Maildir or .eml files is made "
                        "durable: fs = one syncfs(2) of the destination's "
                        "filesystem, file = fsync of each file; auto (the "
                        "default) = fs on Linux 5.17+ with ext4, XFS or "
                        "btrfs, else file")
    oauth_setup.add_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("-q", "--quiet", action="store_true")
    o.add_argument("-v", "--verbose", action="store_true")
    o.add_argument("--config", metavar="FILE",
                   help="accounts from a TOML file (see README)")
    o.add_argument("--jobs", type=int, default=4, metavar="N",
                   help="accounts fetched at once (default 4)")
    return p


ACCOUNT_OPTIONS = [k for k in Account.FIELDS if k != "name"]


def accounts_from_args(args):
    if args.keep and args.delete:
        raise FetchError(EXIT_USAGE, "--keep and --delete exclude each "
                         "other")
    options = {k: getattr(args, k, None) for k in ACCOUNT_OPTIONS}
    if args.config:
        return accounts_from_config(args.config, options)
    return [Account(**options)]


def _load_toml(path):
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        try:
            import tomli as tomllib
        except ImportError:
            raise FetchError(EXIT_USAGE, "--config needs Python 3.11+ or "
                             "the tomli package (pip install tomli)")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise FetchError(EXIT_USAGE, "--config: %s" % oserror_text(exc))
    except tomllib.TOMLDecodeError as exc:
        raise FetchError(EXIT_USAGE, "--config %s: %s" % (path, exc))


def accounts_from_config(path, overrides):
    """[defaults] and [accounts.NAME] tables; keys as the long options
    with '_' for '-'.  Options given on the command line win."""
    data = _load_toml(path)
    defaults = data.get("defaults", {})
    tables = data.get("accounts")
    if not isinstance(tables, dict) or not tables:
        raise FetchError(EXIT_USAGE, "--config %s: no [accounts.NAME] "
                         "table" % path)
    accounts = []
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise FetchError(EXIT_USAGE, "--config: accounts.%s is not a "
                             "table" % name)
        options = dict(defaults)
        options.update(table)
        options = {k.replace("-", "_"): v for k, v in options.items()}
        if "password" in options:
            raise FetchError(EXIT_USAGE, "--config: accounts.%s: no "
                             "plain passwords; use password_env, "
                             "password_command or ~/.netrc" % name)
        options.update((k, v) for k, v in overrides.items()
                       if v is not None)
        options["name"] = name
        accounts.append(Account(**options))
    return accounts


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    faults.load()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.refused_password is not None:
        parser.error("a password is never taken on the command line (other "
                     "users can see it): use --password-env, "
                     "--password-command, ~/.netrc or the prompt")
    out = Output(quiet=args.quiet, verbose=args.verbose)
    try:
        accounts = accounts_from_args(args)
        for acct in accounts:
            oauth_setup.prepare(acct, out)   # profile, --email, OAuth
            acct.check()
        interactive = sys.stdin.isatty() and len(accounts) == 1
        for acct in accounts:          # prompts, in the main thread
            if not oauth_setup.resolve(acct):
                resolve_credentials(acct, interactive)
            if acct.name.startswith("?@"):
                acct.name = "%s@%s" % (acct.user, acct.host)
        paths = [a.state_path() for a in accounts]
        if len(set(paths)) != len(paths):
            raise FetchError(EXIT_USAGE, "two accounts share a state file")
    except FetchError as exc:
        out.error(exc.message)
        return exc.code
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_INTERRUPTED
    if len(accounts) == 1:
        results = [fetch_account(accounts[0], out)]
    else:
        results = _fetch_concurrently(accounts, out, max(1, args.jobs))
    code = EXIT_OK
    for r in results:
        if r.error:
            out.error("%s: %s" % (r.name, r.error) if len(results) > 1
                      else r.error)
        code = max(code, r.code)
        if r.error and not r.messages:
            continue
        rate = r.bytes / r.seconds if r.seconds > 0 else 0.0
        out.summary("%s: %d messages, %d bytes in %.2f s (%s/s)%s%s" % (
            r.name, r.messages, r.bytes, r.seconds, size_text(rate),
            ", %d deleted" % r.deleted if r.deleted else "",
            "" if not r.error else ", failed"))
    return code


def _fetch_concurrently(accounts, out, jobs):
    results = [None] * len(accounts)
    todo = list(enumerate(accounts))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i, acct = todo.pop(0)
            results[i] = fetch_account(acct, out)

    threads = [threading.Thread(target=worker, daemon=True,
                                name="cpoplib-fetch-%d" % i)
               for i in range(min(jobs, len(accounts)))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        out.error("interrupted")
        for i, r in enumerate(results):
            if r is None:
                results[i] = Result(accounts[i].name)
                results[i].code = EXIT_INTERRUPTED
                results[i].error = "interrupted"
    return results
