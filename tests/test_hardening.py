"""Regression tests for the hardening review of the C core.

Each section names the bug it guards against.  Wherever the standard
library's poplib defines the answer, the scenario is run with poplib and
cpoplib side by side (the `mod` fixture of conftest.py, or both modules inside one
test; side_by_side.py)
and the outcomes are compared; cpoplib-only behaviour (the reentrancy
guard, MAX_RESPONSE_SIZE, the SocketReader extras) is asserted directly.

No test measures speed: the few timed checks use generous bounds that only
a gross regression (a signal handler run seconds late, a quadratic
readline) can exceed.  Every server is bounded in time and every client
has a socket timeout.
"""
import copy
import gc
import inspect
import io
import os
import pydoc
import re
import socket
import subprocess
import sys
import textwrap
import time
import tracemalloc
from unittest import mock

import pytest

import poplib
import cpoplib          # deliberately not importorskip: missing == failure

from scripted_server import ANY, ScriptedServer, client_tls_context

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------
# 7. Fidelity gaps

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
                                  context=client_tls_context())
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


# ---------------------------------------------------------------------------
# 8. Resources and the SocketReader file API

@pytest.mark.parametrize("how", ["getline", "retr"])
def test_buffer_shrinks_after_giant_line(mod, monkeypatch, how):
    """One 50 MiB line (with _MAXLINE raised for it), then a short
    command: the memory still held afterwards is back to (almost) nothing,
    as with poplib, whose buffer never grows."""
    size = 50 << 20
    giant = b"+" + b"g" * size + b"\r\n"
    if how == "retr":
        reply = b"+OK\r\n" + giant + b".\r\n"
    else:
        reply = giant
    monkeypatch.setattr(mod, "_MAXLINE", size + 1024)
    script = [(None, b"+OK hi\r\n"), (ANY, reply), (b"NOOP", b"+OK noop\r\n")]
    with ScriptedServer(script, timeout=60) as srv:
        client = mod.POP3(srv.host, srv.port, timeout=30)
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            if how == "retr":
                result = client.retr(1)
                assert len(result[1][0]) == size + 1
            else:
                client._putcmd("RETR 1")
                result = client._getline()
                assert len(result[0]) == size + 1
            del result
            assert client.noop() == b"+OK noop"
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        client.close()
    assert held < 4 << 20, "%.1f MiB still held" % (held / 2 ** 20)


def _reader_session(module):
    data = b"a\r\nbb\r\nccc\r\ndddd\r\neeeee\r\nfff\r\n"
    with ScriptedServer([(None, b"+OK hi\r\n" + data)]) as srv:
        client = module.POP3(srv.host, srv.port, timeout=5)
        f = client.file
        out = [f.isatty(), f.flush(), f.name == client.sock.fileno(),
               type(f.name) is int, f.readlines(4)]
        collected = bytearray()
        while len(collected) < 11:
            buf = bytearray(min(4, 11 - len(collected)))
            n = f.readinto1(buf)
            assert 0 < n <= len(buf)
            collected += buf[:n]
        out.append(bytes(collected))
        out.append(f.readlines())
        out.append(f.readinto1(bytearray(4)))     # EOF
        out.append(f.readlines())
        out.append(f.readlines(1))
        client.close()
    return out


def test_socket_reader_readlines_readinto1_like_stdlib_file():
    ref = _reader_session(poplib)
    assert ref == [False, None, True, True, [b"a\r\n", b"bb\r\n"],
                   b"ccc\r\ndddd\r\n", [b"eeeee\r\n", b"fff\r\n"], 0, [], []]
    assert _reader_session(cpoplib) == ref


UNSUPPORTED = [("tell", ()), ("seek", (0,)), ("seek", (0, 2)),
               ("write", (b"x",)), ("truncate", ()), ("truncate", (0,)),
               ("writelines", ([b"x"],))]


@pytest.mark.parametrize("name,args", UNSUPPORTED,
                         ids=["%s%d" % (n, len(a)) for n, a in UNSUPPORTED])
def test_socket_reader_unsupported_operations(mod, name, args):
    with ScriptedServer([(None, b"+OK hi\r\n")]) as srv:
        client = mod.POP3(srv.host, srv.port, timeout=5)
        with pytest.raises(io.UnsupportedOperation):
            getattr(client.file, name)(*args)
        client.close()


def test_socket_reader_detach_unsupported():
    with ScriptedServer([(None, b"+OK hi\r\n")]) as srv:
        client = cpoplib.POP3(srv.host, srv.port, timeout=5)
        with pytest.raises(io.UnsupportedOperation):
            client.file.detach()
        client.close()


CLOSED_CALLS = [("readlines", ()), ("readinto1", (bytearray(2),)),
                ("isatty", ()), ("flush", ()), ("read", ()),
                ("readline", ()), ("read1", (1,)), ("peek", ()),
                ("readinto", (bytearray(2),)), ("fileno", ()),
                ("readable", ()), ("tell", ()), ("seek", (0,)),
                ("truncate", ()), ("writelines", ([b"x"],)),
                ("write", (b"x",))]


@pytest.mark.parametrize("name,args", CLOSED_CALLS,
                         ids=[n for n, _ in CLOSED_CALLS])
def test_socket_reader_closed_file(mod, name, args):
    with ScriptedServer([(None, b"+OK hi\r\nmore\r\n")]) as srv:
        client = mod.POP3(srv.host, srv.port, timeout=5)
        f = client.file
        f.close()
        assert f.closed
        with pytest.raises(ValueError):
            getattr(f, name)(*args)
        with pytest.raises(ValueError):
            iter(f)
        client.close()


def _time_unbounded_readline(module, tls, size):
    line = b"x" * size + b"\r\n"

    def handler(conn):
        if tls:
            conn.start_tls()
        conn.send(b"+OK hi\r\n")
        conn.send(line + b"+OK tail\r\n")

    with ScriptedServer(handler, timeout=60) as srv:
        if tls:
            client = module.POP3_SSL(srv.host, srv.port, timeout=30,
                                     context=client_tls_context())
        else:
            client = module.POP3(srv.host, srv.port, timeout=30)
        start = time.perf_counter()
        got = client.file.readline()
        elapsed = time.perf_counter() - start
        assert got == line
        assert client.file.readline() == b"+OK tail\r\n"
        client.close()
    return elapsed


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_unbounded_readline_of_huge_line_is_not_quadratic(tls):
    """p.file.readline() of one 32 MiB line: at most 3x poplib's time on
    the same data (best of two runs each).  Over TLS every recv_into()
    returns at most one 16 KiB record, which is where rescanning the whole
    buffer after each read shows (about 18x poplib's time before the fix).
    Under the sanitizer job (CPOPLIB_SANITIZED=1), where only the
    extension is instrumented, the bound is 8x."""
    factor = 8 if os.environ.get("CPOPLIB_SANITIZED") else 3
    size = 32 << 20
    ref = min(_time_unbounded_readline(poplib, tls, size) for _ in range(2))
    got = min(_time_unbounded_readline(cpoplib, tls, size) for _ in range(2))
    assert got <= factor * max(ref, 0.02), (got, ref)


# ---------------------------------------------------------------------------
# 9. tp_clear of the POP3 type cleared self->module, which the methods
#    dereference.

_TP_CLEAR_SCRIPT = textwrap.dedent("""
    import ctypes, gc, sys
    sys.path.insert(0, sys.argv[1])
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
    proc = subprocess.run([sys.executable, "-c", _TP_CLEAR_SCRIPT, TESTS_DIR],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode >= 0, (
        "killed by signal %d; output:\n%s%s"
        % (-proc.returncode, proc.stdout, proc.stderr))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("DONE"), proc.stdout
