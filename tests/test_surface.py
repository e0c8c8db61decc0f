"""cpoplib's additions to poplib's surface: response-code exceptions, the
context manager, install()/uninstall(), ``python -m cpoplib run``,
__version__, typing files and package metadata.

The same additions against a real Dovecot (and the real getmail6) are in
test_dovecot_surface.py.
"""
import ast
import importlib.metadata
import os
import pathlib
import pickle
import poplib
import subprocess
import sys
import textwrap
import types

import pytest

import cpoplib
from cpoplib import _cpoplib

from scripted_server import (ScriptedServer, Step, client_tls_context,
                             default_respond, responder)

CODE_CLASSES = {
    "IN-USE": cpoplib.InUseError,
    "LOGIN-DELAY": cpoplib.LoginDelayError,
    "SYS/TEMP": cpoplib.SysTempError,
    "SYS/PERM": cpoplib.SysPermError,
    "AUTH": cpoplib.AuthError,
    "UTF8": cpoplib.UTF8Error,
}


def connect(module, server, cls="POP3", **kw):
    return getattr(module, cls)("127.0.0.1", server.port, timeout=10, **kw)


def error_from_user(module, reply):
    """The exception module's USER raises when the server answers reply."""
    def respond(line):
        if line.upper().startswith(b"USER"):
            return reply + b"\r\n"
        return default_respond(line)
    with ScriptedServer(responder(respond)) as srv:
        c = connect(module, srv)
        try:
            with pytest.raises(poplib.error_proto) as info:
                c.user("bob")
        finally:
            c.close()
    return info.value


# ---- response codes ----

def test_one_exported_class_per_code():
    for code, cls in CODE_CLASSES.items():
        assert cls.response_code == code
        assert issubclass(cls, cpoplib.ResponseCodeError)
        assert getattr(cpoplib, cls.__name__) is cls
    assert issubclass(cpoplib.ResponseCodeError, cpoplib.error_proto)
    assert issubclass(cpoplib.ResponseCodeError, poplib.error_proto)
    assert len(set(CODE_CLASSES.values())) == 6
    # __all__ stays poplib's: `from cpoplib import *` binds the same names
    assert cpoplib.__all__ == poplib.__all__


@pytest.mark.parametrize("code", sorted(CODE_CLASSES))
def test_each_code_raises_its_class_with_poplibs_args(code):
    reply = b"-ERR [" + code.encode() + b"] something went wrong"
    ours = error_from_user(cpoplib, reply)
    theirs = error_from_user(poplib, reply)
    assert type(theirs) is poplib.error_proto
    assert type(ours) is CODE_CLASSES[code]
    assert ours.args == theirs.args == (reply,)
    assert type(ours.args[0]) is bytes
    assert str(ours) == str(theirs)
    assert (ours.code, ours.text) == (code, "something went wrong")


@pytest.mark.parametrize("reply, cls, code, text", [
    # hierarchy: an unknown sub-level is raised as its known parent
    (b"-ERR [SYS/TEMP/DISK-FULL] full", cpoplib.SysTempError,
     "SYS/TEMP/DISK-FULL", "full"),
    (b"-ERR [AUTH/EXPIRED] expired", cpoplib.AuthError, "AUTH/EXPIRED",
     "expired"),
    # case-insensitive; code in upper case
    (b"-ERR [in-use] locked", cpoplib.InUseError, "IN-USE", "locked"),
    (b"-ERR [Sys/Perm] broken", cpoplib.SysPermError, "SYS/PERM", "broken"),
    # a well-formed code no class knows
    (b"-ERR [X-VENDOR] nope", cpoplib.ResponseCodeError, "X-VENDOR", "nope"),
    (b"-ERR [SYS] nope", cpoplib.ResponseCodeError, "SYS", "nope"),
    (b"-ERR [SYS/OTHER] nope", cpoplib.ResponseCodeError, "SYS/OTHER",
     "nope"),
    # no text, text without the space, text that is not UTF-8
    (b"-ERR [IN-USE]", cpoplib.InUseError, "IN-USE", ""),
    (b"-ERR [IN-USE]locked", cpoplib.InUseError, "IN-USE", "locked"),
    (b"-ERR [AUTH] caf\xe9 \xc3\xbc", cpoplib.AuthError, "AUTH",
     "caf\ufffd \u00fc"),
    (b"-ERR [AUTH]  two spaces ", cpoplib.AuthError, "AUTH",
     " two spaces "),
])
def test_code_grammar(reply, cls, code, text):
    exc = error_from_user(cpoplib, reply)
    assert type(exc) is cls
    assert exc.args == (reply,)
    assert (exc.code, exc.text) == (code, text)


@pytest.mark.parametrize("reply", [
    b"-ERR no code here",
    b"-ERR",
    b"-ERR [IN-USE locked",          # no closing bracket
    b"-ERR  [IN-USE] two spaces",    # the code must follow "-ERR "
    b"-ERR [] empty",
    b"-ERR [IN USE] space in code",
    b"-ERR [/IN-USE] empty level",
    b"-ERR [IN-USE/] empty level",
    b"-ERR [IN-USE\x01] control byte",
    b"-ERR [IN-USE\xc3\xa9] non-ASCII",
    b"-err [IN-USE] lower-case status",
    b"garbage [IN-USE]",
    b"ERR [IN-USE]",
])
def test_reply_without_a_valid_code_is_plain_error_proto(reply):
    exc = error_from_user(cpoplib, reply)
    assert type(exc) is cpoplib.error_proto
    assert exc.args == error_from_user(poplib, reply).args == (reply,)
    assert not hasattr(exc, "code")


def test_code_in_greeting_raised_by_constructor():
    greeting = b"-ERR [SYS/TEMP] come back later\r\n"
    with ScriptedServer(responder(greeting=greeting)) as srv:
        with pytest.raises(cpoplib.SysTempError) as info:
            connect(cpoplib, srv)
    assert info.value.args == (b"-ERR [SYS/TEMP] come back later",)
    assert info.value.text == "come back later"


def test_code_on_multiline_commands_and_pop3_ssl():
    def respond(line):
        if line.upper().startswith((b"RETR", b"LIST", b"UIDL", b"TOP")):
            return b"-ERR [SYS/PERM] storage broken\r\n"
        return default_respond(line)
    with ScriptedServer(responder(respond, tls="after-stls")) as srv:
        c = cpoplib.POP3("localhost", srv.port, timeout=10)
        c.stls(client_tls_context(verify=True, check_hostname=True))
        for call in (lambda: c.retr(1), c.list, c.uidl, lambda: c.top(1, 0)):
            with pytest.raises(cpoplib.SysPermError) as info:
                call()
            assert info.value.args == (b"-ERR [SYS/PERM] storage broken",)
        c.quit()


def test_caught_by_poplib_handlers_and_pickled():
    exc = error_from_user(cpoplib, b"-ERR [LOGIN-DELAY] wait 900 s")
    try:
        raise exc
    except poplib.error_proto as caught:       # existing handlers still work
        assert caught is exc
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is cpoplib.LoginDelayError
    assert clone.args == exc.args
    assert (clone.code, clone.text) == ("LOGIN-DELAY", "wait 900 s")


def test_classes_built_by_hand():
    exc = cpoplib.InUseError(b"-ERR [IN-USE] x")
    assert (exc.code, exc.text) == ("IN-USE", "x")
    exc = cpoplib.InUseError("no reply at hand")
    assert (exc.code, exc.text) == ("IN-USE", "")
    assert cpoplib.ResponseCodeError().code == ""


def test_python_getline_override_still_classified():
    # _getresp stays the C one: it classifies what a Python _getline gives
    class Sub(cpoplib.POP3):
        def _getline(self):
            line, octets = super()._getline()
            if line.startswith(b"-ERR"):
                line = b"-ERR [IN-USE] rewritten"
            return line, octets

    with ScriptedServer(responder(lambda line: b"-ERR plain\r\n")) as srv:
        c = Sub("127.0.0.1", srv.port, timeout=10)
        with pytest.raises(cpoplib.InUseError):
            c.noop()
        c.close()


def test_python_getresp_override_raises_what_it_raises():
    # documented: a Python _getresp that raises error_proto itself is not
    # rewritten (here the stdlib class, as code copied from poplib does)
    class Sub(cpoplib.POP3):
        def _getresp(self):
            resp, o = self._getline()
            if not resp.startswith(b"+"):
                raise poplib.error_proto(resp)
            return resp

    reply = b"-ERR [IN-USE] locked\r\n"
    with ScriptedServer(responder(lambda line: reply)) as srv:
        c = Sub("127.0.0.1", srv.port, timeout=10)
        with pytest.raises(poplib.error_proto) as info:
            c.noop()
        c.close()
    assert type(info.value) is poplib.error_proto


@pytest.fixture
def classifier():
    """Restores the package's classifier after a test replaced it."""
    yield _cpoplib._set_response_classifier
    _cpoplib._set_response_classifier(cpoplib._classify_response)


def run_noop(reply):
    with ScriptedServer(responder(lambda line: reply)) as srv:
        c = connect(cpoplib, srv)
        try:
            c.noop()
        finally:
            c.close()


def test_classifier_registration(classifier):
    with pytest.raises(TypeError):
        classifier(42)
    classifier(None)                          # unregistered: plain class
    with pytest.raises(cpoplib.error_proto) as info:
        run_noop(b"-ERR [IN-USE] x\r\n")
    assert type(info.value) is cpoplib.error_proto

    classifier(lambda reply: None)            # None: plain class
    with pytest.raises(cpoplib.error_proto) as info:
        run_noop(b"-ERR [IN-USE] x\r\n")
    assert type(info.value) is cpoplib.error_proto

    seen = []
    classifier(lambda reply: seen.append(reply) or cpoplib.AuthError)
    with pytest.raises(cpoplib.AuthError):
        run_noop(b"-ERR [IN-USE] x\r\n")
    with pytest.raises(cpoplib.error_proto) as info:
        run_noop(b"-ERR no code\r\n")         # not even asked
    assert type(info.value) is cpoplib.error_proto
    assert seen == [b"-ERR [IN-USE] x"]


@pytest.mark.parametrize("bad", [ValueError, 42, "x", poplib.error_proto])
def test_classifier_returning_a_wrong_class_is_a_type_error(classifier, bad):
    classifier(lambda reply: bad)
    with pytest.raises(TypeError, match="subclass of error_proto"):
        run_noop(b"-ERR [IN-USE] x\r\n")


def test_classifier_exception_propagates(classifier):
    def broken(reply):
        raise LookupError("classifier failed")
    classifier(broken)
    with pytest.raises(LookupError, match="classifier failed"):
        run_noop(b"-ERR [IN-USE] x\r\n")


def test_classifier_reregistering_itself_during_the_call(classifier):
    # the C core holds its own reference while the classifier runs
    def once(reply):
        classifier(None)
        return cpoplib.InUseError
    classifier(once)
    with pytest.raises(cpoplib.InUseError):
        run_noop(b"-ERR [IN-USE] x\r\n")
    with pytest.raises(cpoplib.error_proto) as info:
        run_noop(b"-ERR [IN-USE] x\r\n")
    assert type(info.value) is cpoplib.error_proto


# ---- context manager ----

class Boom(Exception):
    pass


def test_with_quits_on_normal_exit():
    with ScriptedServer(responder()) as srv:
        with connect(cpoplib, srv) as c:
            assert isinstance(c, cpoplib.POP3)
            c.user("bob")
            c.dele(1)
        assert c.sock is None and c.file is None
    assert srv.commands == [b"USER bob\r\n", b"DELE 1\r\n", b"QUIT\r\n"]


def test_with_closes_without_quit_on_exception():
    with ScriptedServer(responder()) as srv:
        with pytest.raises(Boom) as info:
            with connect(cpoplib, srv) as c:
                c.dele(1)
                raise Boom("original")
        assert c.sock is None and c.file is None
    assert srv.commands == [b"DELE 1\r\n"]           # no QUIT
    assert str(info.value) == "original"


def test_with_base_exception_also_skips_quit():
    with ScriptedServer(responder()) as srv:
        with pytest.raises(KeyboardInterrupt):
            with connect(cpoplib, srv) as c:
                c.noop()
                raise KeyboardInterrupt
        assert c.sock is None
    assert srv.commands == [b"NOOP\r\n"]


def test_with_never_masks_the_original_exception():
    class FailingClose(cpoplib.POP3):
        def close(self):
            super().close()
            raise OSError("close failed")

    with ScriptedServer(responder(), connections=2) as srv:
        with pytest.raises(Boom):
            with FailingClose("127.0.0.1", srv.port, timeout=10):
                raise Boom
        # the same when the connection is already gone
        with pytest.raises(Boom):
            with FailingClose("127.0.0.1", srv.port, timeout=10) as c:
                c.sock.close()
                raise Boom
    assert b"QUIT\r\n" not in srv.commands


def test_with_failed_quit_raises_and_closes():
    def respond(line):
        if line.upper().startswith(b"QUIT"):
            return b"-ERR [SYS/TEMP] could not commit\r\n"
        return default_respond(line)
    with ScriptedServer(responder(respond)) as srv:
        with pytest.raises(cpoplib.SysTempError):
            with connect(cpoplib, srv) as c:
                c.dele(1)
        assert c.sock is None and c.file is None      # closed anyway
    assert srv.commands == [b"DELE 1\r\n", b"QUIT\r\n"]


def test_with_after_quit_or_close_sends_nothing_more():
    with ScriptedServer(responder(), connections=2) as srv:
        with connect(cpoplib, srv) as c:
            c.quit()
        with connect(cpoplib, srv) as c:
            c.close()
    assert srv.commands == [b"QUIT\r\n"]


def test_with_calls_subclass_quit_and_close():
    calls = []

    class Sub(cpoplib.POP3):
        def quit(self):
            calls.append("quit")
            return super().quit()

        def close(self):
            calls.append("close")
            super().close()

    with ScriptedServer(responder(), connections=2) as srv:
        with Sub("127.0.0.1", srv.port, timeout=10):
            pass
        with pytest.raises(Boom):
            with Sub("127.0.0.1", srv.port, timeout=10):
                raise Boom
    assert calls == ["quit", "close", "close"]


def test_with_pop3_ssl():
    # implicit TLS: the handshake first, then the greeting
    script = [Step(None, b"", after="tls"),
              Step(None, b"+OK hello\r\n"),
              (b"NOOP", b"+OK\r\n"),
              (b"QUIT", b"+OK bye\r\n")]
    with ScriptedServer(script) as srv:
        with cpoplib.POP3_SSL(srv.host, srv.port, timeout=10,
                              context=client_tls_context(verify=False)) as c:
            assert c.noop() == b"+OK"
        assert c.sock is None
    assert srv.commands == [b"NOOP\r\n", b"QUIT\r\n"]


def test_enter_exit_are_on_the_class_and_visible_to_inspect():
    assert cpoplib.POP3.__enter__.__qualname__ == "POP3.__enter__"
    assert cpoplib.POP3_SSL.__exit__ is cpoplib.POP3.__exit__
    # poplib's own classes are untouched
    assert not hasattr(poplib.POP3, "__enter__")


# ---- install() / uninstall() ----

def run_python(code, *args, env=None, cwd=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, *args, "-c", code] if code
                          else [sys.executable, *args],
                          capture_output=True, text=True, timeout=120,
                          env=full_env, cwd=cwd)


def test_install_and_uninstall():
    proc = run_python(textwrap.dedent("""
        import sys
        import cpoplib
        std = sys.modules["poplib"]
        assert std.__name__ == "poplib" and std is not cpoplib

        cpoplib.install()
        cpoplib.install()                       # idempotent
        import poplib
        from poplib import POP3, POP3_SSL, error_proto
        assert poplib is cpoplib
        assert POP3 is cpoplib.POP3 and POP3_SSL is cpoplib.POP3_SSL
        assert error_proto is cpoplib.error_proto
        poplib._MAXLINE = 1 << 20               # what getmail does
        assert cpoplib._MAXLINE == 1 << 20

        cpoplib.uninstall()
        import poplib as again
        assert again is std
        assert poplib is cpoplib                # references stay theirs
        cpoplib.uninstall()                     # not installed: no-op
        assert sys.modules["poplib"] is std

        # poplib not imported yet: uninstall() leaves nothing behind, so
        # the next import loads the standard module afresh
        del sys.modules["poplib"]
        cpoplib.install()
        assert sys.modules["poplib"] is cpoplib
        cpoplib.uninstall()
        assert "poplib" not in sys.modules
        import poplib as fresh
        assert fresh is not cpoplib and hasattr(fresh, "POP3")
        assert fresh.POP3 is not cpoplib.POP3
        print("ok")
    """))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"


# ---- python -m cpoplib run ----

PROBE = textwrap.dedent("""
    import sys
    import poplib
    print(repr((poplib.__name__, poplib.POP3.__module__, sys.argv[1:],
                __name__)))
    sys.exit(int(sys.argv[-1]) if sys.argv[-1].isdigit() else 0)
""")


def probe_output(proc):
    assert proc.stderr == ""
    return ast.literal_eval(proc.stdout.strip().splitlines()[-1])


def test_run_script_path(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE + "import helper\nprint(helper.HERE)\n")
    (tmp_path / "helper.py").write_text("HERE = 'script dir on sys.path'\n")
    proc = run_python(None, "-m", "cpoplib", "run", str(script), "a", "-x",
                      "3")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.splitlines()
    assert ast.literal_eval(lines[0]) == (
        "cpoplib", "cpoplib._cpoplib", ["a", "-x", "3"], "__main__")
    # sys.exit(3) ran before the last two lines; exit status is the
    # program's
    assert len(lines) == 1


def test_run_script_path_sets_its_directory_first(tmp_path):
    (tmp_path / "helper.py").write_text("HERE = 'found'\n")
    script = tmp_path / "prog.py"
    script.write_text("import sys, helper\n"
                      "print(helper.HERE, sys.argv[0] == %r)\n"
                      % str(script))
    proc = run_python(None, "-m", "cpoplib", "run", str(script))
    assert (proc.returncode, proc.stdout) == (0, "found True\n"), proc.stderr


def test_run_module(tmp_path):
    pkg = tmp_path / "probepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text(PROBE)
    proc = run_python(None, "-m", "cpoplib", "run", "-m", "probepkg.tool",
                      "--flag", "0", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert probe_output(proc) == (
        "cpoplib", "cpoplib._cpoplib", ["--flag", "0"], "__main__")


def test_run_console_script_entry_point(tmp_path):
    # an installed distribution with a console_scripts entry point
    (tmp_path / "probeprog.py").write_text(textwrap.dedent("""
        import sys
        def main():
            import poplib
            print(repr((poplib.__name__, sys.argv[1:])))
            return 7
    """))
    dist = tmp_path / "probeprog-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: probeprog\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[console_scripts]\ncpoplib-probe-prog = probeprog:main\n")
    proc = run_python(None, "-m", "cpoplib", "run", "cpoplib-probe-prog",
                      "x", env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 7, proc.stderr
    assert ast.literal_eval(proc.stdout.strip()) == ("cpoplib", ["x"])


def test_run_python_command_on_path(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    prog = bindir / "cpoplib-probe-script"
    prog.write_text("#!/usr/bin/env python3\n" + PROBE)
    prog.chmod(0o755)
    path = str(bindir) + os.pathsep + os.environ.get("PATH", "")
    proc = run_python(None, "-m", "cpoplib", "run", "cpoplib-probe-script",
                      "5", env={"PATH": path})
    assert proc.returncode == 5, proc.stderr
    assert probe_output(proc) == ("cpoplib", "cpoplib._cpoplib", ["5"],
                                  "__main__")


def test_run_refuses_what_it_cannot_run(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shell = bindir / "cpoplib-probe-shell"
    shell.write_text("#!/bin/sh\necho hi\n")
    shell.chmod(0o755)
    env = {"PATH": str(bindir) + os.pathsep + os.environ.get("PATH", "")}
    cases = {
        (): "usage:",
        ("cpoplib-probe-shell",): "is not a Python program",
        ("cpoplib-no-such-program",): "no such console script",
        ("-m",): "-m needs a module name",
        ("--frobnicate",): "unknown option",
        (str(tmp_path / "missing" / "x.py"),): "no such file",
    }
    for args, message in cases.items():
        proc = run_python(None, "-m", "cpoplib", "run", *args, env=env)
        assert proc.returncode == 2, (args, proc)
        assert message in proc.stdout + proc.stderr, (args, proc)
    proc = run_python(None, "-m", "cpoplib", "run", "--help")
    assert proc.returncode == 0 and "console_scripts" in proc.stdout


@pytest.mark.parametrize("command", [["--help"], ["demo", "--help"],
                                     ["run", "--help"], ["fetch", "--help"],
                                     ["oauth", "--help"]],
                         ids=lambda c: " ".join(c))
def test_help_is_plain_text(command):
    """--help prints no reStructuredText markup of the docstrings it is
    made from."""
    proc = run_python(None, "-m", "cpoplib", *command)
    assert proc.returncode == 0, proc
    assert "``" not in proc.stdout, proc.stdout
    if command[0] == "demo":            # its own paragraph, not the rest
        assert "embedded" in proc.stdout and "oauth" not in proc.stdout


def test_run_program_exception_gives_traceback_and_status_1(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("raise LookupError('from the program')\n")
    proc = run_python(None, "-m", "cpoplib", "run", str(script))
    assert proc.returncode == 1
    assert "LookupError: from the program" in proc.stderr


def test_main_help_lists_demo_and_run():
    proc = run_python(None, "-m", "cpoplib", "--help")
    assert proc.returncode == 0
    assert "demo" in proc.stdout and "run" in proc.stdout
    proc = run_python(None, "-m", "cpoplib", "demo", "--rounds", "1")
    assert proc.returncode == 2 and "at least 3" in proc.stderr


SOURCE_ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_bench_runs_the_benchmark_suite_of_the_source_tree(tmp_path):
    """`cpoplib bench ARGS` is `python -m benchmarks ARGS`: the same
    options (shown by --help), found from the tree it is run in."""
    if not (SOURCE_ROOT / "benchmarks" / "runner.py").is_file():
        pytest.skip("no benchmarks/ next to the tests")
    suite = run_python(None, "-m", "benchmarks", "--help", cwd=SOURCE_ROOT)
    assert suite.returncode == 0, suite.stderr
    sub = SOURCE_ROOT / "tests"           # found from a subdirectory too
    proc = run_python(None, "-m", "cpoplib", "bench", "--help", cwd=sub)
    assert proc.returncode == 0, proc.stderr
    assert "--tools" in proc.stdout and "--dovecot" in proc.stdout
    assert proc.stdout == suite.stdout
    proc = run_python(None, "-m", "cpoplib", "bench", "--tools", "--help",
                      cwd=SOURCE_ROOT)
    assert proc.returncode == 0 and "mpop" in proc.stdout, proc.stderr
    proc = run_python(None, "-m", "cpoplib", "--help")
    assert "bench" in proc.stdout


def test_bench_ignores_a_foreign_benchmarks_package(tmp_path):
    """A benchmarks/ package that is not cpoplib's, in a parent of the
    current directory, is never imported."""
    root = tmp_path / "other"
    (root / "benchmarks").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "benchmarks" / "__init__.py").write_text("")
    (root / "benchmarks" / "runner.py").write_text(
        "def main(argv):\n    print('FOREIGN')\n    return 0\n")
    (root / "tests" / "dovecot_server.py").write_text("")
    (root / "pyproject.toml").write_text('[project]\nname = "other"\n')
    sub = root / "sub"
    sub.mkdir()
    from cpoplib import __main__ as cli
    here = os.getcwd()
    os.chdir(sub)
    try:
        found = cli.find_source_tree()
    finally:
        os.chdir(here)
    assert found != str(root)
    proc = run_python(None, "-m", "cpoplib", "bench", "--help", cwd=sub)
    assert "FOREIGN" not in proc.stdout


def test_bench_outside_a_source_tree(monkeypatch, capsys):
    from cpoplib import __main__ as cli
    monkeypatch.setattr(cli, "find_source_tree", lambda: None)
    assert cli.main(["bench"]) == 2
    assert ("the benchmark suite is part of cpoplib's source"
            in capsys.readouterr().err)


# ---- version, typing files, metadata ----

PACKAGE_DIR = pathlib.Path(cpoplib.__file__).parent


def test_version():
    assert cpoplib.__version__ == importlib.metadata.version("cpoplib")
    assert all(part.isdigit() for part in cpoplib.__version__.split("."))


def test_typing_files_are_installed():
    assert (PACKAGE_DIR / "py.typed").is_file()
    for stub in ("__init__.pyi", "_cpoplib.pyi"):
        assert (PACKAGE_DIR / stub).is_file(), stub


def _stub_names(path):
    """Names bound at the top level of a stub (ignoring version checks)."""
    names = set()
    tree = ast.parse(path.read_text())

    def visit(body):
        for node in body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.AnnAssign):
                names.add(node.target.id)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets
                             if isinstance(t, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    names.add((alias.asname or alias.name).split(".")[0])
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
    visit(tree.body)
    return names


@pytest.mark.parametrize("module, stub", [
    (cpoplib, "__init__.pyi"), (_cpoplib, "_cpoplib.pyi")])
def test_stubs_name_every_public_attribute(module, stub):
    # the full check is stubtest in CI; this catches a name added to the
    # module without a stub on every test run
    public = {n for n, v in vars(module).items()
              if (not n.startswith("_") or n in ("_MAXLINE", "__version__"))
              and not isinstance(v, types.ModuleType)}
    missing = public - _stub_names(PACKAGE_DIR / stub)
    assert not missing, "not in %s: %s" % (stub, sorted(missing))


def test_stub_classes_name_every_public_method():
    tree = ast.parse((PACKAGE_DIR / "_cpoplib.pyi").read_text())
    stub_classes = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            stub_classes.setdefault(node.name, set()).update(
                n.name if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                else getattr(getattr(n, "target", None), "id", None)
                for n in ast.walk(node)
                if isinstance(n, (ast.FunctionDef, ast.AnnAssign)))
    for cls in (cpoplib.POP3, cpoplib.POP3_SSL, _cpoplib.SocketReader):
        public = {n for n in vars(cls) if not n.startswith("_")}
        missing = public - stub_classes[cls.__name__]
        assert not missing, (cls.__name__, sorted(missing))


def test_metadata():
    meta = importlib.metadata.metadata("cpoplib")
    classifiers = meta.get_all("Classifier")
    for minor in range(10, 16):
        assert "Programming Language :: Python :: 3.%d" % minor in classifiers
    assert "Typing :: Typed" in classifiers
    assert meta["License-Expression"] == "MIT" or meta["License"] == "MIT"
    assert meta["Requires-Python"] == ">=3.10"
