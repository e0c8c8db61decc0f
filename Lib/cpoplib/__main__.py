"""python -m cpoplib demo: cpoplib next to the standard library's poplib.

Starts cpoplib's embedded in-memory POP3 server on a loopback port, fetches
its whole mailbox with poplib and with cpoplib (STAT, LIST, UIDL, RETR of
every message, TOP of some), checks that both return exactly the same
results and prints how long each took.

python -m cpoplib run PROGRAM [ARGS...]: runs a Python program (a console
script, ``-m MODULE`` or a script path) with cpoplib installed as poplib;
see cpoplib/_run.py.

python -m cpoplib fetch [OPTIONS] (also the ``cpoplib`` console script):
downloads a POP3 mailbox to a Maildir, an mbox or .eml files; see
cpoplib/fetch/ (the fetch command).

python -m cpoplib oauth [ACCOUNT...] [--device | --browser]: authorizes
the fetcher's OAuth 2.0 accounts and stores their tokens; see
cpoplib/fetch/oauth_command.py.

python -m cpoplib bench [OPTIONS]: runs the project's benchmark suite
(``python -m benchmarks [OPTIONS]``), which ships with the source (a git
checkout or the sdist), not with the wheel; see bench_command().
"""

import argparse
import sys
import time

# `fetch` and `run` must start fast: what only the demo needs is imported
# by the demo.

MiB = 1 << 20


def demo_mailbox(seed=2024):
    """A few hundred messages of mixed sizes, a few of them large."""
    import random

    from cpoplib._server import make_mailbox

    rng = random.Random(seed)
    sizes = [rng.choice((600, 1500, 4096, 12_000, 40_000, 90_000))
             + rng.randrange(2000) for _ in range(296)]
    sizes += [3 * MiB, 3 * MiB + 12345, 2 * MiB, 5 * MiB // 2]
    rng.shuffle(sizes)
    return make_mailbox(len(sizes), sizes, line_len=70, dot_lines=True,
                        seed=seed)


def fetch_all(module, port, top_every=10, top_lines=5):
    """Everything a mail client would fetch, as plain data."""
    client = module.POP3("127.0.0.1", port, timeout=60)
    try:
        client.user("demo")
        client.pass_("demo")
        out = {"stat": client.stat(), "list": client.list(),
               "uidl": client.uidl()}
        count = out["stat"][0]
        out["retr"] = [client.retr(i) for i in range(1, count + 1)]
        out["top"] = [client.top(i, top_lines)
                      for i in range(1, count + 1, top_every)]
        out["quit"] = client.quit()
    finally:
        client.close()
    return out


_LEAVES = (bytes, int, str, type(None))


def difference(a, b, path="result"):
    """Where two fetch results differ (value or type), in words, or None."""
    if type(a) is not type(b):
        return "%s: poplib gave %s, cpoplib %s" % (
            path, type(a).__name__, type(b).__name__)
    if isinstance(a, dict):
        for key in a:
            d = difference(a[key], b.get(key), "%s[%r]" % (path, key))
            if d:
                return d
        return None
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return "%s: poplib gave %d items, cpoplib %d" % (
                path, len(a), len(b))
        if a == b and all(type(x) is type(y) and type(x) in _LEAVES
                          for x, y in zip(a, b)):
            return None                  # the fast path: lists of bytes
        for i, (x, y) in enumerate(zip(a, b)):
            d = difference(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    if a != b:
        return "%s: poplib %.80r, cpoplib %.80r" % (path, a, b)
    return None


def run_demo(rounds):
    import poplib
    import statistics

    import cpoplib
    from cpoplib._server import Server

    t_start = time.perf_counter()
    messages = demo_mailbox()
    total = sum(map(len, messages))
    large = sum(len(m) >= MiB for m in messages)
    dotted = sum(b"\r\n." in m for m in messages)
    sides = [("poplib (stdlib)", poplib), ("cpoplib", cpoplib)]
    times = {name: [] for name, _ in sides}
    print("cpoplib demo: %d messages, %.1f MiB (%d of them over 1 MiB, %d "
          "with dot-led lines), on an in-process loopback server"
          % (len(messages), total / MiB, large, dotted))
    with Server(messages) as srv:
        del messages
        reference = None
        # One untimed warm-up round, then `rounds` timed ones.
        for r in range(rounds + 1):
            for name, module in sides:       # alternate: A B A B ...
                t0 = time.perf_counter()
                result = fetch_all(module, srv.port)
                if r:
                    times[name].append(time.perf_counter() - t0)
                if reference is None:
                    reference = result
                else:
                    where = difference(reference, result)
                    if where:
                        print("\nFAIL: %s returned something else than "
                              "poplib.\n  %s" % (name, where),
                              file=sys.stderr)
                        return 1
                del result
    n_retr = len(reference["retr"])
    n_top = len(reference["top"])
    del reference

    med = {name: statistics.median(v) for name, v in times.items()}
    print("\nEach side ran %d times, alternately, after a warm-up; "
          "medians of the whole fetch (connect, STAT, LIST, UIDL, %d RETR, %d TOP, QUIT):\n"
          % (rounds, n_retr, n_top))
    print("  %-16s %10s %10s" % ("module", "time", "MB/s"))
    for name, _ in sides:
        print("  %-16s %8.3f s %10.1f" % (name, med[name],
                                          total / med[name] / 1e6))
    print("\n  speed-up, poplib time / cpoplib time: %.2fx"
          % (med[sides[0][0]] / med[sides[1][0]]))
    print("  results identical: yes (all %d fetches compared)"
          % (2 * rounds + 2))
    print("  (demo took %.1f s; for careful numbers run "
          "`python -m benchmarks` from a source checkout)"
          % (time.perf_counter() - t_start))
    return 0


def _plain(text):
    """A docstring's reStructuredText as the plain text of --help."""
    return text.replace("``", "")


def run_command(argv):
    """`run`'s words are the program's command line, not ours: they are
    not parsed by argparse (whose options would swallow the program's)."""
    from cpoplib import _run

    if not argv or argv[0] in ("-h", "--help"):
        print(_run.USAGE)
        print()
        print(_plain(_run.__doc__.split("\n\n", 1)[1].strip()))
        return 0 if argv else 2
    try:
        resolved = _run.resolve(argv)
    except _run.RunError as exc:
        print("python -m cpoplib run: %s\n%s" % (exc, _run.USAGE),
              file=sys.stderr)
        return 2
    return _run.execute(*resolved)


def _is_cpoplib_tree(root):
    """A cpoplib source tree: benchmarks/, the tests' Dovecot fixture and
    a pyproject.toml naming the project cpoplib."""
    import os

    try:
        with open(os.path.join(root, "pyproject.toml"),
                  encoding="utf-8") as f:
            named = any(line.replace(" ", "").strip() == 'name="cpoplib"'
                        for line in f)
    except OSError:
        return False
    return (named
            and os.path.isfile(os.path.join(root, "benchmarks", "runner.py"))
            and os.path.isfile(os.path.join(root, "tests",
                                            "dovecot_server.py")))


def find_source_tree():
    """The cpoplib source tree to take benchmarks/ from: the one this
    cpoplib was imported from (an in-place or editable build), else the
    current directory or one of its parents; None if there is none."""
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.dirname(os.path.dirname(here))]   # Lib/cpoplib
    path = os.getcwd()
    while True:
        candidates.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for root in candidates:
        if _is_cpoplib_tree(root):
            return root
    return None


def bench_command(argv):
    """`cpoplib bench ARGS` is `python -m benchmarks ARGS` run from the
    source tree: one benchmark suite, whichever way it is started."""
    root = find_source_tree()
    if root is None:
        print("cpoplib bench: the benchmark suite is part of cpoplib's "
              "source, not of the installed package; run this command "
              "inside a checkout or an unpacked sdist (pip download "
              "--no-binary :all: --no-deps cpoplib)", file=sys.stderr)
        return 2
    print("cpoplib bench: the benchmark suite of %s" % root,
          file=sys.stderr)
    if sys.path[:1] != [root]:
        sys.path.insert(0, root)
    import importlib

    runner = importlib.import_module("benchmarks.runner")
    return runner.main(argv)


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "run":
        return run_command(argv[1:])
    if argv and argv[0] == "bench":
        return bench_command(argv[1:])
    if argv and argv[0] == "fetch":
        from cpoplib.fetch import cli
        return cli.main(argv[1:])
    if argv and argv[0] == "oauth":
        from cpoplib.fetch import oauth_command
        return oauth_command.main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m cpoplib",
        description="cpoplib: a C-accelerated drop-in replacement for "
                    "the standard library's poplib.")
    from cpoplib import __version__
    parser.add_argument("--version", action="version",
                        version="cpoplib %s" % __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="fetch a generated mailbox from an embedded loopback "
                     "server with poplib and cpoplib; compare results and "
                     "speed",
        description=_plain(__doc__.split("\n\n")[1].strip()))
    demo.add_argument("--rounds", type=int, default=5,
                      help="runs per module, alternating (default 5, "
                           "at least 3)")
    sub.add_parser(
        "run", add_help=False,
        help="run PROGRAM [ARGS...] (a console script, -m MODULE or a "
             "script path) with cpoplib installed as poplib; "
             "'run --help' for details")
    sub.add_parser(
        "bench", add_help=False,
        help="run the benchmark suite of a source checkout ('bench --help' "
             "for its options: in-memory, --dovecot, --fetch, --tools)")
    sub.add_parser(
        "fetch", add_help=False,
        help="download a POP3 mailbox to a Maildir, an mbox or .eml files "
             "(only new messages; 'fetch --help' for details)")
    sub.add_parser(
        "oauth", add_help=False,
        help="authorize the fetcher's OAuth 2.0 accounts once (browser or "
             "device flow) and store their tokens ('oauth --help')")
    args = parser.parse_args(argv)
    if args.command != "demo":
        parser.print_help()
        return 2
    if args.rounds < 3:
        demo.error("--rounds must be at least 3")
    return run_demo(args.rounds)


if __name__ == "__main__":
    sys.exit(main())
