"""The examples of the README and the manual, found and run.

examples() finds every ``.. code-block:: python``, ``sh`` and ``toml``
block of README.rst and docs/**/*.rst.  A block preceded by the comment
``.. example-not-run: REASON`` is listed with that reason and not run.

run_in_child(path, line) -- the entry point of ``python -m doc_examples
FILE LINE`` -- runs one Python example the way a reader would, in a fresh
interpreter and an empty directory, against the tests' Dovecot: the host
names the examples use (pop.example.org, outlook.office365.com, ...)
resolve to it and their ports 110 and 995 are its plain and TLS ports (by
wrapping socket.create_connection() and the event loop's
create_connection(), which cpoplib and cpoplib.aio connect with), and
ssl.create_default_context() trusts its test CA.  The environment gives
the ports, the CA and the names (CPOPLIB_EXAMPLES, JSON).  Nothing else
of the example is changed; a coroutine function named main is run with
asyncio.run() once the block has run.
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_RUN = re.compile(r"^\.\. example-not-run: (.+)$")


class Example:
    def __init__(self, path, line, language, code, not_run):
        self.path = path            # relative to ROOT
        self.line = line            # of the directive, 1-based
        self.language = language
        self.code = code
        self.not_run = not_run      # None, or the reason

    @property
    def name(self):
        return "%s:%d" % (self.path, self.line)


def _files():
    yield "README.rst"
    for top, dirs, names in os.walk(os.path.join(ROOT, "docs")):
        dirs[:] = sorted(d for d in dirs if not d.startswith("_"))
        for name in sorted(names):
            if name.endswith(".rst"):
                yield os.path.relpath(os.path.join(top, name), ROOT)


def examples():
    found = []
    for rel in _files():
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            lines = f.read().split("\n")
        for i, line in enumerate(lines):
            directive = line.strip()
            if not directive.startswith(".. code-block::"):
                continue
            language = directive.split("::", 1)[1].strip()
            # the body's indent: that of its first non-blank line, deeper
            # than the directive's (reST allows any)
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            outer = len(line) - len(line.lstrip())
            indent = len(lines[j]) - len(lines[j].lstrip()) \
                if j < len(lines) else outer + 1
            if indent <= outer:
                raise ValueError("%s:%d: a code-block without a body"
                                 % (rel, i + 1))
            j = i + 1
            body = []
            while j < len(lines) and (not lines[j].strip() or
                                      lines[j].startswith(" " * indent)):
                body.append(lines[j][indent:])
                j += 1
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            match = NOT_RUN.match(lines[k].strip()) if k >= 0 else None
            found.append(Example(rel, i + 1, language,
                                 "\n".join(body).strip("\n") + "\n",
                                 match.group(1) if match else None))
    return found


def shell_commands(code):
    """The commands of a sh block: continuation lines joined, comments
    and blank lines dropped."""
    joined = code.replace("\\\n", " ")
    commands = []
    for line in joined.split("\n"):
        line = line.strip()
        if line and not line.startswith("#"):
            commands.append(line.split(" #", 1)[0].strip())
    return commands


# ---- in the child ----

def _install_redirects(env):
    import asyncio.base_events
    import socket
    import ssl

    names = set(env["names"])
    ports = {int(k): v for k, v in env["ports"].items()}

    def where(host, port):
        if host in names:
            return "127.0.0.1", ports.get(int(port), port)
        return host, port

    create_connection = socket.create_connection

    def redirected(address, *args, **kwargs):
        return create_connection(where(*address), *args, **kwargs)

    socket.create_connection = redirected

    loop_create = asyncio.base_events.BaseEventLoop.create_connection

    async def loop_redirected(self, protocol_factory, host=None, port=None,
                              **kwargs):
        if kwargs.get("ssl") and host in names:
            kwargs.setdefault("server_hostname", host)
        host, port = where(host, port) if host is not None else (host, port)
        return await loop_create(self, protocol_factory, host, port,
                                 **kwargs)

    asyncio.base_events.BaseEventLoop.create_connection = loop_redirected

    default_context = ssl.create_default_context

    def trusting(*args, **kwargs):
        ctx = default_context(*args, **kwargs)
        ctx.load_verify_locations(env["cafile"])
        return ctx

    ssl.create_default_context = trusting


def run_in_child(path, line):
    env = json.loads(os.environ["CPOPLIB_EXAMPLES"])
    for example in examples():
        if example.path == path and example.line == line:
            break
    else:
        raise SystemExit("no example at %s:%d" % (path, line))
    _install_redirects(env)
    namespace = {"__name__": "__main__"}
    code = compile(example.code, "%s:%d" % (path, line), "exec")
    exec(code, namespace)
    main = namespace.get("main")
    if main is not None:
        import asyncio
        import inspect
        if inspect.iscoroutinefunction(main):
            asyncio.run(main())


if __name__ == "__main__":
    run_in_child(sys.argv[1], int(sys.argv[2]))
