"""python -m cpoplib run: run a program with cpoplib installed as poplib.

``python -m cpoplib run PROGRAM [ARGS...]`` calls ``cpoplib.install()``
and then runs, in this same process and interpreter, whatever PROGRAM
names, with ``sys.argv`` set as if it had been started directly:

``-m MODULE``
    the module, as ``python -m MODULE`` would (``runpy``);
a path (contains a "/" or names an existing file)
    the script, as ``python PATH`` would (its directory first on
    ``sys.path``);
a name
    the ``console_scripts`` entry point of that name in this environment
    (what pip installs as a command), else a Python script of that name
    in this environment's scripts directory or on ``PATH`` (a command
    installed as a script file, such as getmail).

Only Python code that this interpreter runs is switched: programs the
program starts in other processes are not.  The exit status is the
program's.
"""

import importlib.metadata
import os
import runpy
import shutil
import sys
import sysconfig

USAGE = "usage: python -m cpoplib run (-m MODULE | PATH | COMMAND) [ARGS...]"


class RunError(Exception):
    """PROGRAM cannot be found or is not a Python program."""


def _is_python_script(path):
    """A file whose first line is a Python #! line, or a .py/.pyw file."""
    if path.endswith((".py", ".pyw")):
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def _entry_point(name):
    """The console_scripts entry point called `name`, or None."""
    eps = importlib.metadata.entry_points()
    if hasattr(eps, "select"):                         # 3.10+
        found = eps.select(group="console_scripts", name=name)
    else:                                              # pragma: no cover
        found = [ep for ep in eps.get("console_scripts", ())
                 if ep.name == name]
    for ep in found:
        return ep
    return None


def _which(name):
    """The command `name` in this environment's scripts directory (bin/
    of the venv, active or not), else on PATH; or None."""
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidate = os.path.join(scripts, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(name)


def resolve(argv):
    """(kind, target, args) for the words after `run`.

    kind is "module", "path" or "entry_point"; raises RunError."""
    if not argv:
        raise RunError("no program given")
    first, rest = argv[0], list(argv[1:])
    if first == "-m":
        if not rest:
            raise RunError("-m needs a module name")
        return "module", rest[0], rest[1:]
    if first.startswith("-"):
        raise RunError("unknown option %s" % first)
    if os.sep in first or (os.altsep and os.altsep in first) \
            or os.path.isfile(first):
        if not os.path.exists(first):
            raise RunError("%s: no such file" % first)
        return "path", first, rest
    ep = _entry_point(first)
    if ep is not None:
        return "entry_point", ep, rest
    found = _which(first)
    if found is None:
        raise RunError("%s: no such console script, module path or "
                       "command on PATH" % first)
    if not _is_python_script(found):
        raise RunError("%s (%s) is not a Python program: cpoplib can only "
                       "be installed into Python code run by this "
                       "interpreter" % (first, found))
    return "path", found, rest


def run(argv):
    """Install cpoplib and run the program.  Returns what to pass to
    sys.exit(): 0, or an entry point's return value; a SystemExit raised
    by the program propagates, as it would."""
    return execute(*resolve(argv))


def execute(kind, target, args):
    """run() after resolve()."""
    import cpoplib
    cpoplib.install()
    if kind == "module":
        sys.argv = [target, *args]     # runpy puts the file's path in [0]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
        return 0
    if kind == "path":
        sys.argv = [target, *args]
        directory = os.path.dirname(os.path.abspath(target))
        if not os.path.isdir(target):  # a directory or zip adds itself
            sys.path[0:1] = [directory]
        runpy.run_path(target, run_name="__main__")
        return 0
    # a console_scripts entry point: what pip's generated wrapper does,
    # but the caller does the sys.exit() of the result
    sys.argv = [_which(target.name) or target.name, *args]
    return target.load()()
