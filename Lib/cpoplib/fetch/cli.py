"""The ``cpoplib fetch`` command line: the options (made from
settings.SETTINGS), the TOML config file, the accounts it names, several
accounts at once (threads), a summary line as each account ends, SIGINT
and SIGTERM, and the exit status."""
import argparse
import os
import sys
import threading

from . import config, faults, reference, settings
from .errors import (EXIT_INTERRUPTED, EXIT_TERMINATED,
                     EXIT_USAGE, FetchError, combined, oserror_text)
from .output import PROG, Output

EXAMPLES = """\
examples:
  # new mail into ~/Mail (a Maildir), the password from the environment
  POP_PASSWORD=... cpoplib fetch --ssl --host pop.example.org \\
      --user alice --password-env POP_PASSWORD --maildir ~/Mail
  # move the mail: delete on the server what is safely on disk
  cpoplib fetch --starttls --host pop.example.org --user alice \\
      --password-command "pass show pop/alice" --mbox ~/mail.mbox --delete
  # how much is there, without writing or deleting anything
  cpoplib fetch --ssl --host pop.example.org --user alice --dry-run
  # the accounts of ~/.config/cpoplib/fetch.toml; then only "work", keeping
  # its mail on the server whatever the file says
  cpoplib fetch
  cpoplib fetch work --keep

config file: [defaults] and [accounts.NAME] tables, keys as the long
options with "_" ("keep = true" also works); the command line overrides an
account's table, which overrides [defaults].  Default file:
$XDG_CONFIG_HOME/cpoplib/fetch.toml (~/.config/...), read when the command
line names no server (--config, --host, --email or --provider).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise FetchError(EXIT_USAGE, message)


class _Given(argparse.Action):
    """Records (option, value) of a setting in namespace.given; a boolean
    setting's last option gives false, the others true."""

    def __init__(self, option_strings, dest, setting, **kw):
        self.setting = setting
        nargs = 0 if setting.kind == "bool" else None
        super().__init__(option_strings, dest, nargs=nargs, **kw)

    def __call__(self, parser, namespace, value, option_string=None):
        s = self.setting
        if s.kind == "bool":
            value = option_string != s.flags[-1]
        else:
            value = s.check(s.parse_arg(value, option_string),
                            option_string)
        namespace.given.setdefault(s.name, []).append((option_string,
                                                       value))


def _help(s):
    """A setting's --help text: its help, the values allowed, the default
    (from the schema, as the manual's reference)."""
    notes = []
    if s.kind == "bool":
        if s.default:
            notes.append("default: %s" % s.flags[0])
    else:
        if s.range_words() and s.name != "auth":
            notes.append(s.range_words())
        if s.default is not None or s.default_text is not None:
            notes.append("default: %s" % s.default_words())
    text = s.help + (" (%s)" % "; ".join(notes) if notes else "")
    return text.replace("%", "%%")      # argparse formats help with %


def build_parser():
    import cpoplib
    p = _Parser(prog=PROG, allow_abbrev=False, add_help=False,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog=EXAMPLES + "\n" + reference.exit_code_lines(),
                usage="%(prog)s [OPTIONS] [ACCOUNT ...]",
                description="Download the new messages of POP3 mailboxes "
                            "to a Maildir, an mbox or .eml files.")
    p.add_argument("accounts", nargs="*", metavar="ACCOUNT",
                   help="fetch only these accounts of the config file")
    g = p.add_argument_group("general")
    g.add_argument("-h", "--help", action="help",
                   help="show this help and exit")
    g.add_argument("--version", action="version",
                   version="%s %s" % (PROG, cpoplib.__version__),
                   help="print the version and exit")
    g.add_argument("--config", metavar="FILE",
                   help="the accounts of this TOML file (default: "
                        "$XDG_CONFIG_HOME/cpoplib/fetch.toml, unless "
                        "--host, --email or --provider is given)")
    groups = {name: p.add_argument_group(name) for name in settings.GROUPS}
    for s in settings.SETTINGS:
        kw = {} if s.kind == "bool" else {"metavar": s.metavar}
        groups[s.group].add_argument(*s.flags, action=_Given, setting=s,
                                     dest="given_" + s.name,
                                     help=_help(s), **kw)
    groups["authentication"].add_argument(
        "--password", dest="refused_password", help=argparse.SUPPRESS)
    p.set_defaults(given=None)
    return p


def parse_args(argv):
    parser = build_parser()
    ns = argparse.Namespace(given={})
    args = parser.parse_args(argv, ns)
    if args.refused_password is not None:
        raise FetchError(EXIT_USAGE, "a password is never taken on the "
                         "command line (other users can see it): use "
                         "--password-env, --password-command, "
                         "--password-keyring, ~/.netrc or the prompt")
    values = {}
    for name, uses in args.given.items():
        if settings.BY_NAME[name].kind == "fingerprints":
            # a repeated --fingerprint adds one more allowed certificate
            values[name] = tuple(dict.fromkeys(
                fp for _, value in uses for fp in value))
            continue
        distinct = {}
        for flag, value in uses:
            distinct.setdefault(value, flag)
        if len(distinct) > 1:
            raise FetchError(EXIT_USAGE, "%s contradict each other" % (
                " and ".join(distinct.values())))
        values[name] = uses[0][1]
    flag = {s.name: s.flags[0] if values.get(s.name) is not False
            else s.flags[-1] for s in settings.SETTINGS}
    config.check_exclusive(values, "", lambda m: flag[m])
    return args, values


def _load_toml(path):
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        try:
            import tomli as tomllib
        except ImportError:
            raise FetchError(EXIT_USAGE, "a config file needs Python 3.11+ "
                             "or the tomli package (pip install tomli)")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise FetchError(EXIT_USAGE, "config file: %s" % oserror_text(exc))
    except tomllib.TOMLDecodeError as exc:
        raise FetchError(EXIT_USAGE, "%s: %s" % (path, exc))
    except UnicodeDecodeError as exc:
        raise FetchError(EXIT_USAGE, "%s: not UTF-8 text (%s)" % (path, exc))


def default_config_path():
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(
        os.path.expanduser("~"), ".config")
    return os.path.join(base, "cpoplib", "fetch.toml")


def plan(argv):
    """(accounts, run settings) from the command line and the config file;
    FetchError(EXIT_USAGE) for anything wrong in either, before anything
    connects."""
    args, cli_values = parse_args(argv)
    from .accounts import Account       # not for --help: subprocess, ...
    path = args.config
    # a server named on the command line: no config file is read
    named = any(k in cli_values for k in ("host", "email", "provider"))
    if path is None and not named:
        path = default_config_path()
        if not os.path.exists(path):
            if args.accounts:
                raise FetchError(EXIT_USAGE, "no config file %s for the "
                                 "accounts named" % path)
            raise FetchError(EXIT_USAGE, "no server (--host, --email or "
                             "--provider) and no config file %s (--config "
                             "FILE)" % path)
    if path is None:
        if args.accounts:
            raise FetchError(EXIT_USAGE, "ACCOUNT names are for a config "
                             "file (--config FILE), not with --host, "
                             "--email or --provider")
        run = config.merge([cli_values])
        return [Account(None, run, "the command line", [cli_values])], run
    defaults, tables = config.config_accounts(_load_toml(path), path)
    for name in args.accounts:
        if name not in tables:
            raise FetchError(EXIT_USAGE, "%s has no account %r%s" % (
                path, name, settings.did_you_mean(name, tables)))
    names = list(dict.fromkeys(args.accounts)) or list(tables)
    account_defaults = {k: v for k, v in defaults.items()
                        if settings.BY_NAME[k].scope == "account"}
    levels = {name: [account_defaults, tables[name], cli_values]
              for name in names}
    accounts = [Account(name, config.merge(levels[name]),
                        "[accounts.%s]" % name, levels[name])
                for name in names]
    return accounts, config.merge([defaults, cli_values])


class Stop:
    """A request to stop (SIGINT, SIGTERM) for the account threads: each
    checks it between messages; stop() also shuts down the connections in
    use, so that nobody waits on the network."""

    def __init__(self):
        self.code = None
        self.lock = threading.Lock()
        self.conns = set()

    def request(self, code):
        with self.lock:
            if self.code is None:
                self.code = code
            conns = list(self.conns)
        import socket
        for conn in conns:
            sock = getattr(conn, "sock", None)
            try:
                # the socket's own shutdown, also under TLS (SSLSocket's
                # would drop its TLS state under the thread reading it):
                # every read and write on it fails from now on, so no
                # QUIT can go out and nothing is deleted
                if sock is not None:
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except (OSError, ValueError, TypeError):
                pass

    def add(self, conn):
        with self.lock:
            self.conns.add(conn)
            return self.code

    def discard(self, conn):
        with self.lock:
            self.conns.discard(conn)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv=None):
    import signal
    if argv is None:
        argv = sys.argv[1:]
    try:
        faults.load()
    except FetchError as exc:
        Output().error(exc.message)
        return exc.code
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt_code(exc):
    return EXIT_TERMINATED if isinstance(exc, Terminated) \
        else EXIT_INTERRUPTED


def _main(argv):
    out = Output()
    try:
        accounts, run = plan(argv)
    except FetchError as exc:
        out.error(exc.message)
        return exc.code
    except SystemExit as exc:           # --help, --version
        return exc.code
    except KeyboardInterrupt as exc:
        out.error("interrupted")
        return _interrupt_code(exc)
    out = Output(quiet=run["quiet"], verbose=run["verbose"])
    several = len(accounts) > 1
    ready, codes = [], []
    try:
        from . import oauth_setup
        for acct in accounts:
            try:
                # the provider profile or what --email finds, then the
                # checks: a usage error in any, and nothing connects
                oauth_setup.prepare(acct, out)
                acct.check()
            except FetchError as exc:
                if acct.name:
                    exc.message = "%s: %s" % (acct.source, exc.message)
                raise
        if run["serverinfo"]:
            # what the servers offer; nothing fetched, nothing written
            from . import serverinfo
            return serverinfo.main(accounts, out)
        interactive = sys.stdin.isatty() and not several
        from .accounts import resolve_credentials
        for acct in accounts:          # prompts, in the main thread
            try:
                if not oauth_setup.resolve(acct):   # built-in OAuth 2.0
                    resolve_credentials(acct, interactive)
            except FetchError as exc:   # this account only
                out.error("%s: %s" % (acct.name, exc.message)
                          if several or acct.source.startswith("[")
                          else exc.message)
                codes.append(exc.code)
                continue
            if acct.default_name:     # the user is known now
                acct.name = "%s@%s" % (acct.user, acct.host)
            ready.append(acct)
        paths = [a.state_file() for a in ready]
        if len(set(paths)) != len(paths):
            raise FetchError(EXIT_USAGE, "two accounts share a state file")
    except FetchError as exc:
        out.error(exc.message)
        return exc.code
    except KeyboardInterrupt as exc:
        out.error("interrupted")
        return _interrupt_code(exc)
    results = _fetch_all(ready, out, run["jobs"], several)
    return combined(codes + [r.code for r in results])


def _fetch_all(accounts, out, jobs, several):
    """Runs the accounts in at most `jobs` threads; the summary of each
    as it ends.  The main thread waits, and takes SIGINT and SIGTERM."""
    from .session import Result, fetch_account
    stop = Stop()
    results = [None] * len(accounts)
    todo = list(enumerate(accounts))
    lock = threading.Lock()

    running = [0]
    finished = threading.Event()

    def worker():
        try:
            while True:
                with lock:
                    if not todo or stop.code is not None:
                        return
                    i, acct = todo.pop(0)
                r = fetch_account(acct, out, stop)
                results[i] = r
                out.report(r, several)
        finally:
            with lock:
                running[0] -= 1
                if not running[0]:
                    finished.set()

    count = min(jobs, len(accounts))
    running[0] = count
    if not count:
        finished.set()
    for i in range(count):
        threading.Thread(target=worker, daemon=True,
                         name="cpoplib-fetch-%d" % i).start()
    # Event.wait, not Thread.join: a join that a signal's exception
    # interrupts can leave the thread looking finished while it runs
    while True:
        try:
            if finished.wait(0.2):
                break
        except KeyboardInterrupt as exc:
            stop.request(_interrupt_code(exc))
    never = [i for i, r in enumerate(results) if r is None]
    for i in never:
        results[i] = Result(accounts[i].name)
        results[i].code = stop.code or EXIT_INTERRUPTED
    if never:
        out.error("%s before %s started" % (
            "terminated" if stop.code == EXIT_TERMINATED else "interrupted"
            if stop.code else "stopped", ", ".join(accounts[i].name
                                                   for i in never)))
    return results
