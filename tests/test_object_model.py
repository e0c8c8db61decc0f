"""cpoplib's classes and module behave as Python objects like poplib's.

What code written against poplib does with the classes and module beyond
POP3 itself: patching the base class's _create_socket or the module's
socket.create_connection, hooks supplied by __getattribute__,
copy.copy(), the module attributes poplib imports, mock.create_autospec,
inspect.signature of every method, pydoc, not importing inspect; and a
POP3 object whose tp_clear has run (as the garbage collector may, in a
cycle) whose methods then raise instead of crashing.
"""
import copy
import inspect
import os
import poplib
import pydoc
import re
import socket
import subprocess
import sys
import textwrap
from unittest import mock

import pytest

import cpoplib          # deliberately not importorskip: missing == failure

from scripted_server import ScriptedServer, client_tls_context

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def _tls_greeting_server():
    def handler(conn):
        conn.start_tls()
        conn.send(b"+OK tls hi\r\n")
        try:
            conn.recv_line(timeout=5)
        except socket.timeout:
            return
        conn.send(b"+OK noop\r\n")
    return ScriptedServer(handler)


def test_pop3_ssl_uses_patched_base_create_socket(mod):
    """POP3_SSL._create_socket goes through POP3._create_socket (poplib
    calls it explicitly), so patching the base class is honoured."""
    class Sentinel(Exception):
        pass

    def refuse(self, timeout):
        raise Sentinel(type(self).__name__, timeout)

    with mock.patch.object(mod.POP3, "_create_socket", refuse):
        with pytest.raises(Sentinel) as info:
            mod.POP3_SSL("127.0.0.1", 9, timeout=3)
    assert info.value.args == ("POP3_SSL", 3)

    calls = []

    def plain(self, timeout):
        calls.append(timeout)
        return socket.create_connection((self.host, self.port), timeout)

    with _tls_greeting_server() as srv:
        with mock.patch.object(mod.POP3, "_create_socket", plain):
            client = mod.POP3_SSL(srv.host, srv.port, timeout=7,
                                  context=client_tls_context(verify=False))
        assert calls == [7]
        assert client.welcome == b"+OK tls hi"
        assert client.noop() == b"+OK noop"
        client.close()


def _getattribute_session(module):
    calls = []

    class Spy(module.POP3):
        def __getattribute__(self, name):
            value = super().__getattribute__(name)
            if name in ("_getline", "_putline"):
                def hook(*args):
                    calls.append((name,) + args)
                    return value(*args)
                return hook
            return value

    script = [(None, b"+OK hi\r\n"), (b"NOOP", b"+OK noop\r\n"),
              (b"RETR 1", b"+OK\r\na\r\n..b\r\n.\r\n")]
    with ScriptedServer(script) as srv:
        client = Spy(srv.host, srv.port, timeout=5)
        results = [client.noop(), client.retr(1)]
        client.close()
    return results, calls


def test_hooks_supplied_by_getattribute_are_called():
    ref = _getattribute_session(poplib)
    got = _getattribute_session(cpoplib)
    assert got == ref
    assert ("_putline", b"RETR 1") in ref[1]
    # greeting, NOOP's reply, and the four lines of RETR's reply
    assert len([c for c in ref[1] if c[0] == "_getline"]) == 6


def test_copy_copy(mod):
    class Sub(mod.POP3):
        pass

    script = [(None, b"+OK hi\r\n"), (b"NOOP", b"+OK noop\r\n")]
    for cls in (mod.POP3, Sub):
        with ScriptedServer(script) as srv:
            client = cls(srv.host, srv.port, timeout=5)
            twin = copy.copy(client)
            assert type(twin) is cls
            assert twin is not client
            assert twin.sock is client.sock
            assert twin.file is client.file
            assert twin.welcome is client.welcome
            assert vars(twin) == vars(client)
            assert twin.noop() == b"+OK noop"     # shares the connection
            client.close()


@pytest.mark.parametrize("name", ["socket", "ssl", "errno", "re", "sys"])
def test_module_attributes(name):
    assert getattr(cpoplib, name) is getattr(poplib, name)


def test_patch_module_socket_create_connection(mod):
    real = socket.create_connection
    with ScriptedServer([(None, b"+OK hi\r\n")]) as srv:
        target = mod.__name__ + ".socket.create_connection"
        with mock.patch(target, side_effect=real) as patched:
            client = mod.POP3(srv.host, srv.port, timeout=4)
        patched.assert_called_once_with((srv.host, srv.port), 4)
        assert client.welcome == b"+OK hi"
        client.close()


def _autospec_outcomes(module):
    results = {}
    for cls_name in ("POP3", "POP3_SSL"):
        spec = mock.create_autospec(getattr(module, cls_name))
        for args, kwargs in [((), {}), (("h",), {}), (("h", 1), {}),
                             (("h", 1, 2), {}), (("h", 1, 2, 3), {}),
                             ((1, 2, 3, 4), {}),
                             (("h", 1, 2, 3, 4, 5), {}),
                             (("h", 1, 2, 3, 4, 5, 6), {}),
                             ((), {"host": "h", "port": 1, "timeout": 2}),
                             (("h",), {"context": None}),
                             (("h",), {"bogus": 1})]:
            try:
                spec(*args, **kwargs)
                results[cls_name, args, tuple(kwargs)] = "ok"
            except TypeError:
                results[cls_name, args, tuple(kwargs)] = "TypeError"
        instance = spec("h")
        for name in dir(poplib.POP3):
            if (name.startswith("__")
                    or not callable(getattr(poplib.POP3, name))):
                continue
            for nargs in range(4):
                try:
                    getattr(instance, name)(*range(1, nargs + 1))
                    results[cls_name, name, nargs] = "ok"
                except TypeError:
                    results[cls_name, name, nargs] = "TypeError"
    return results


def test_create_autospec_checks_arguments_like_stdlib():
    """Constructors: an autospec'd class checks its arguments as poplib's
    does.  (Methods: mock checks arguments only for Python functions, so
    autospec'd C methods accept anything whatever their signature; their
    signatures are compared with inspect below.)"""
    ref = _autospec_outcomes(poplib)
    got = _autospec_outcomes(cpoplib)
    assert ref["POP3", (1, 2, 3, 4), ()] == "TypeError"
    assert ref["POP3", ("h",), ()] == "ok"
    ctor = [k for k in ref if isinstance(k[1], tuple)]
    assert len(ctor) == 22
    diff = {k: (ref[k], got.get(k)) for k in ctor if got.get(k) != ref[k]}
    assert not diff


@pytest.mark.parametrize("cls", ["POP3", "POP3_SSL"])
def test_method_signatures_match_stdlib(cls):
    """Every method of poplib's class has the same parameters in cpoplib
    (names, kinds, defaults), `self` being positional-only in C."""
    checked = 0
    for name in dir(getattr(poplib, cls)):
        theirs = getattr(getattr(poplib, cls), name)
        if name.startswith("__") or not inspect.isfunction(theirs):
            continue
        ours = inspect.signature(getattr(getattr(cpoplib, cls), name))
        theirs = inspect.signature(theirs)
        strip = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
                 if p.name == "self" else p
                 for p in ours.parameters.values()]
        assert list(theirs.parameters.values()) == strip, name
        checked += 1
    assert checked >= 25


@pytest.mark.parametrize("cls", ["POP3", "POP3_SSL"])
def test_init_signature_matches_stdlib(cls):
    ours = inspect.signature(getattr(cpoplib, cls).__init__)
    theirs = inspect.signature(getattr(poplib, cls).__init__)
    assert ([(p.name, p.kind, p.default) for p in ours.parameters.values()]
            == [(p.name, p.kind, p.default)
                for p in theirs.parameters.values()])
    assert ours == theirs


def test_pydoc_shows_signature_once_and_real_init(mod):
    text = pydoc.render_doc(mod.POP3, renderer=pydoc.plaintext)
    assert text.count("POP3(host, port=110") == 1, text[:600]
    init_lines = [ln for ln in text.splitlines() if "__init__(" in ln]
    assert len(init_lines) == 1, init_lines
    assert re.search(r"__init__\(self, host, port=110, timeout=",
                     init_lines[0]), init_lines
    assert "*args" not in init_lines[0]


def test_import_does_not_import_inspect():
    code = ("import sys, cpoplib; "
            "print(cpoplib.POP3.__module__, 'inspect' in sys.modules)")
    env = dict(os.environ)
    # -I makes CPython itself leak at exit under the sanitizer job's
    # LeakSanitizer (PYTHONMALLOC is ignored): not what is tested here
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    proc = subprocess.run([sys.executable, "-I", "-c", code], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["cpoplib._cpoplib", "False"]


# After tp_clear (which the garbage collector runs on an object in a cycle)
# the methods raise, never crash: tp_clear once cleared self->module, which
# the methods dereference.  Run in a child, which a crash kills.

_TP_CLEAR_SCRIPT = textwrap.dedent("""
    import ctypes, gc
    from scripted_server import ScriptedServer
    import cpoplib

    Py_tp_clear = 51        # Include/typeslots.h
    get_slot = ctypes.pythonapi.PyType_GetSlot
    get_slot.restype = ctypes.c_void_p
    get_slot.argtypes = [ctypes.py_object, ctypes.c_int]
    clear = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object)(
        get_slot(cpoplib.POP3, Py_tp_clear))

    class Sub(cpoplib.POP3):
        pass

    for cls in (cpoplib.POP3, Sub):
        script = [(None, b"+OK hi\\r\\n"), (b"NOOP", b"+OK\\r\\n")]
        with ScriptedServer(script, idle_eof=1) as srv:
            p = cls(srv.host, srv.port, timeout=5)
            print("clear", clear(p), flush=True)
            for name in ("getwelcome", "noop", "retr", "close", "quit"):
                try:
                    args = (1,) if name == "retr" else ()
                    print(name, repr(getattr(p, name)(*args)), flush=True)
                except Exception as exc:
                    print(name, type(exc).__name__, flush=True)
            del p
            gc.collect()
    print("DONE", flush=True)
""")


def test_tp_clear_then_methods_do_not_crash():
    # the child imports scripted_server from this directory
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", _TP_CLEAR_SCRIPT],
                          env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode >= 0, (
        "killed by signal %d; output:\n%s%s"
        % (-proc.returncode, proc.stdout, proc.stderr))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("DONE"), proc.stdout
