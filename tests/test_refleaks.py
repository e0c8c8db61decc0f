"""Leak, subinterpreter and allocation-failure tests for cpoplib.

* Hot paths (retr, top, list, uidl, capa, stat, apop, -ERR replies,
  exceptions raised while parsing, STLS) run thousands of times against
  an in-process server; after a warm-up, sys.gettotalrefcount() (debug
  builds), tracemalloc's traced memory and len(gc.get_objects()) must
  not grow with the number of iterations.
* The extension is imported and used in subinterpreters (where the
  interpreter offers a way to create them), in a subprocess.
* With _testcapi.set_nomemory, each allocation on the parse path of a
  retr fails in turn (canned responses over a socketpair), in a
  subprocess: only MemoryError or success is allowed, never a crash or
  a SystemError.

The same checks run on the stdlib's poplib as a control where useful.
"""
import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

import poplib
import cpoplib          # deliberately not importorskip: missing == failure

from scripted_server import (ScriptedServer, client_tls_context,
                             reference_pop3_class)

# the stdlib side is the reference (stdlib + cpoplib's two security fixes)
MODULES = {"poplib": poplib, "cpoplib": cpoplib}
CLASSES = {"poplib": reference_pop3_class(), "cpoplib": cpoplib.POP3}
ITERATIONS = int(os.environ.get("CPOPLIB_LEAK_ITERATIONS", "2000"))
WARMUP = 200

TS = b"<1896.697170952@dbc.mtview.ca.us>"
REPLIES = {
    b"RETR 1": b"+OK 120 octets\r\nFrom: a@b\r\nSubject: leak\r\n\r\n"
               b"..dot-stuffed\r\nbody \xff\x00\r\n.\r\n",
    b"TOP 1 0": b"+OK\r\nFrom: a@b\r\n\n\r.\n",
    b"LIST": b"+OK 2 messages\r\n1 120\r\n2 " + str(2 ** 70).encode() + b"\r\n.\r\n",
    b"LIST 1": b"+OK 1 120\r\n",
    b"UIDL": b"+OK\r\n1 " + b"U" * 70 + b"\r\n.\r\n",
    b"CAPA": b"+OK\r\nTOP\r\nUSER\r\nSASL PLAIN LOGIN\r\nSTLS\r\n.\r\n",
    b"STAT": b"+OK 2 320\r\n",
    b"NOOP": b"-ERR [SYS/TEMP] busy\r\n",
    b"RETR 9": b"-ERR no such message\r\n",
    b"UIDL 1": b"+OK 1 \x1b[31mx\r\n",
    b"RSET": b"+OK\r\n",
}


def serve_forever(conn):
    """Answer commands from REPLIES until QUIT or EOF; APOP: +OK; STLS:
    real TLS, once."""
    conn.send(b"+OK ready " + TS + b"\r\n")
    while True:
        line = conn.recv_line().rstrip(b"\r\n")
        if line == b"QUIT":
            conn.send(b"+OK bye\r\n")
            return
        if line.startswith(b"APOP "):
            conn.send(b"+OK maildrop locked\r\n")
        elif line == b"STLS":
            conn.send(b"+OK begin TLS\r\n")
            conn.start_tls()
        else:
            conn.send(REPLIES.get(line, b"-ERR unknown\r\n"))


def exercise(client, mod):
    client.retr(1)
    client.top(1, 0)
    client.list()
    client.list(1)
    client.uidl()
    client.uidl(1)
    client.capa()
    client.stat()
    client.rset()
    for call in (client.noop, lambda: client.retr(9)):
        try:
            call()
        except mod.error_proto:
            pass
    try:
        client.user("a\r\nDELE 1")          # ValueError, nothing sent
    except ValueError:
        pass
    try:
        client.apop("bob", "\udcff")        # UnicodeEncodeError, nothing sent
    except UnicodeEncodeError:
        pass


def traced_memory():
    """Python-allocator memory traced since tracemalloc.start(), minus the
    scripted server's own buffers (its thread may be inside a 64 KiB
    recv() at any moment) and tracemalloc's bookkeeping."""
    snap = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, "*scripted_server.py"),
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "*threading.py"),
    ])
    return sum(stat.size for stat in snap.statistics("filename"))


def snapshot():
    gc.collect()
    gc.collect()
    refs = sys.gettotalrefcount() if hasattr(sys, "gettotalrefcount") else None
    return refs, traced_memory(), len(gc.get_objects())


def assert_no_growth(before, after, iterations, what):
    refs0, mem0, objs0 = before
    refs1, mem1, objs1 = after
    if refs0 is not None:
        # a leak of one reference per iteration would show as >= iterations
        assert refs1 - refs0 < iterations // 10, (what, refs1 - refs0)
    assert mem1 - mem0 < 16 * 1024, (what, "tracemalloc", mem1 - mem0)
    assert objs1 - objs0 < iterations // 20, (what, "gc objects", objs1 - objs0)


def measure_hot_paths(name):
    mod = MODULES[name]
    with ScriptedServer(serve_forever, timeout=120, record=False) as srv:
        client = CLASSES[name](srv.host, srv.port, timeout=10)
        client.apop("bob", "secret")
        for _ in range(WARMUP):
            exercise(client, mod)
        tracemalloc.start()
        try:
            before = snapshot()
            for _ in range(ITERATIONS):
                exercise(client, mod)
            after = snapshot()
        finally:
            tracemalloc.stop()
        client.quit()
        srv.join()
    assert_no_growth(before, after, ITERATIONS, name)


def _one_stls_session(mod):
    with ScriptedServer(serve_forever) as srv:
        client = mod.POP3(srv.host, srv.port, timeout=10)
        client.stls(context=CTX)
        client.retr(1)
        try:
            client.stls(context=CTX)
        except mod.error_proto:
            pass
        client.quit()
        srv.join()


CTX = client_tls_context()


def measure_stls(name):
    mod = MODULES[name]
    n = max(ITERATIONS // 20, 50)
    for _ in range(10):
        _one_stls_session(mod)
    tracemalloc.start()
    try:
        before = snapshot()
        for _ in range(n):
            _one_stls_session(mod)
        after = snapshot()
    finally:
        tracemalloc.stop()
    refs0, mem0, objs0 = before
    refs1, mem1, objs1 = after
    if refs0 is not None:
        assert refs1 - refs0 < n, refs1 - refs0
    assert mem1 - mem0 < 128 * 1024, mem1 - mem0
    assert objs1 - objs0 < n // 2, objs1 - objs0


def measure_error_paths(name="cpoplib"):
    """Exceptions raised while parsing (line too long, EOF, CAPA decode
    errors) on fresh connections."""
    def session():
        script = [(None, b"+OK hi\r\n"),
                  (b"CAPA", b"+OK\r\nX-\xff\r\n.\r\n"),
                  (b"RETR 1", b"+OK\r\n" + b"x" * 3000 + b"\r\n.\r\n")]
        with ScriptedServer(script) as srv:
            client = cpoplib.POP3(srv.host, srv.port, timeout=10)
            for call in (client.capa, lambda: client.retr(1), client.noop):
                try:
                    call()
                except (UnicodeDecodeError, cpoplib.error_proto):
                    pass
            client.close()
            srv.join()

    for _ in range(20):
        session()
    n = max(ITERATIONS // 10, 100)
    tracemalloc.start()
    try:
        before = snapshot()
        for _ in range(n):
            session()
        after = snapshot()
    finally:
        tracemalloc.stop()
    assert after[1] - before[1] < 64 * 1024, after[1] - before[1]
    assert after[2] - before[2] < n // 2, after[2] - before[2]
    if before[0] is not None:
        assert after[0] - before[0] < n, after[0] - before[0]


def _in_subprocess(func, name):
    """Run a measure_* function in a fresh interpreter: audit hooks,
    threads and caches left by other test modules must not count."""
    code = ("import sys; sys.path.insert(0, %r); import test_refleaks as t; "
            "t.%s(%r); print('MEASURE-OK')"
            % (os.path.dirname(os.path.abspath(__file__)), func, name))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0 and "MEASURE-OK" in proc.stdout, \
        proc.stderr[-4000:]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_hot_paths_do_not_leak(name):
    """retr/top/list/uidl/capa/stat/apop/-ERR/ValueError paths, after a
    warm-up: no growth in total refcount (debug builds), traced memory
    or number of gc-tracked objects over ITERATIONS rounds."""
    _in_subprocess("measure_hot_paths", name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_stls_does_not_leak(name):
    """Whole sessions with STLS (and a refused second STLS)."""
    _in_subprocess("measure_stls", name)


def test_error_paths_do_not_leak():
    """Sessions ending in parse errors (CAPA decode error, line too long,
    EOF)."""
    _in_subprocess("measure_error_paths", "cpoplib")


# ---------------------------------------------------------------------------
# Subinterpreters

_SUBINTERP_BODY = textwrap.dedent(r'''
    import socket, threading
    import cpoplib
    lst = socket.create_server(("127.0.0.1", 0))
    lst.settimeout(20)
    def serve():
        s, _ = lst.accept()
        s.settimeout(20)
        s.sendall(b"+OK hi\r\n")
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"+OK\r\n..a\r\nb\r\n.\r\n")
        f.readline()
        s.sendall(b"+OK bye\r\n")
        f.close(); s.close()
    # not a daemon thread: isolated interpreters refuse those
    t = threading.Thread(target=serve); t.start()
    c = cpoplib.POP3(*lst.getsockname(), timeout=10)
    assert c.retr(1) == (b"+OK", [b".a", b"b"], 7), c.retr
    assert c.quit() == b"+OK bye"
    t.join(); lst.close()
    try:
        raise cpoplib.error_proto("x")
    except cpoplib.error_proto as e:
        assert e.args == ("x",)
    print("SUBINTERP-OK", flush=True)
''')

_SUBINTERP_DRIVER = textwrap.dedent(r'''
    import sys, gc
    kind, body = sys.argv[1], sys.argv[2]
    import cpoplib                       # the main interpreter too
    if kind == "run_in_subinterp":
        import _testcapi
        for _ in range(3):
            rc = _testcapi.run_in_subinterp(body)
            assert rc == 0, rc
    elif kind == "interpreters":
        try:
            from test.support import interpreters
        except ImportError:
            import _xxsubinterpreters as interpreters
            for _ in range(3):
                interp = interpreters.create()
                interpreters.run_string(interp, body)
                interpreters.destroy(interp)
        else:
            for _ in range(3):
                interp = interpreters.create()
                interp.exec(body) if hasattr(interp, "exec") else interp.run(body)
                interp.close()
    # the main interpreter still works
    import poplib
    assert cpoplib.error_proto is not poplib.error_proto
    gc.collect()
    print("MAIN-OK", flush=True)
''')


def _have(module, attr=None):
    try:
        m = __import__(module, fromlist=["x"])
    except ImportError:
        return False
    return attr is None or hasattr(m, attr)


def test_reimport_in_legacy_subinterpreter():
    """Import and use cpoplib in three successive legacy subinterpreters
    (shared GIL), via _testcapi.run_in_subinterp."""
    if not _have("_testcapi", "run_in_subinterp"):
        pytest.skip("_testcapi.run_in_subinterp not available")
    proc = subprocess.run([sys.executable, "-c", _SUBINTERP_DRIVER,
                           "run_in_subinterp", _SUBINTERP_BODY],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert proc.stdout.count("SUBINTERP-OK") == 3, proc.stdout + proc.stderr
    assert "MAIN-OK" in proc.stdout


def test_import_in_isolated_subinterpreter():
    """3.12+: interpreters created by test.support.interpreters (or
    _xxsubinterpreters) have their own GIL.  The extension declares
    Py_MOD_PER_INTERPRETER_GIL_SUPPORTED (no C globals hold Python
    objects), so it must import and work there, three times over."""
    if sys.version_info < (3, 12):
        pytest.skip("per-interpreter GIL subinterpreters need Python 3.12+")
    if not (_have("test.support.interpreters") or _have("_xxsubinterpreters")):
        pytest.skip("no subinterpreter module in this build")
    proc = subprocess.run([sys.executable, "-c", _SUBINTERP_DRIVER,
                           "interpreters", _SUBINTERP_BODY],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert proc.stdout.count("SUBINTERP-OK") == 3, proc.stdout
    assert "MAIN-OK" in proc.stdout


# ---------------------------------------------------------------------------
# Allocation failures

_NOMEM_DRIVER = textwrap.dedent(r'''
    import gc, socket, sys, importlib
    import _testcapi
    mod = importlib.import_module(sys.argv[1])
    call = sys.argv[2]
    GREETING = b"+OK ready <1.2@h>\r\n"
    REPLY = {
        "retr": b"+OK 3 lines\r\nSubject: x\r\n..stuffed\r\n\r\n\rcr\n.\r\n",
        "capa": b"+OK\r\nTOP\r\nSASL PLAIN LOGIN\r\n.\r\n",
        "stat": b"+OK 2 " + str(2 ** 70).encode() + b"\r\n",
        "uidl": b"+OK\r\n1 " + b"U" * 80 + b"\r\n.\r\n",
    }[call]
    pending = []

    class Canned(mod.POP3):
        def _create_socket(self, timeout):
            a, b = socket.socketpair()
            a.settimeout(5)
            b.sendall(GREETING + REPLY)
            pending.append(b)
            return a

    def run_call(c):
        if call == "retr":
            return c.retr(1)
        if call == "uidl":
            return c.uidl()
        return getattr(c, call)()

    # reference result with normal memory
    c = Canned("canned", 0)
    expected = run_call(c)
    c.close()
    outcomes = {}
    i = 0
    for i in range(5000):
        c = Canned("canned", 0)
        gc.collect()
        _testcapi.set_nomemory(i, 0)
        try:
            result = run_call(c)
            kind = "ok"
        except MemoryError:
            kind = "MemoryError"
        except BaseException as exc:
            kind = type(exc).__name__
        finally:
            _testcapi.remove_mem_hooks()
        c.close()
        for s in pending:
            s.close()
        del pending[:]
        outcomes[kind] = outcomes.get(kind, 0) + 1
        if kind == "SystemError":
            print("SYSTEMERROR at allocation", i, flush=True)
        if kind not in ("ok", "MemoryError"):
            print("UNEXPECTED", kind, "at allocation", i, flush=True)
        if kind == "ok":
            assert result == expected, (i, result, expected)
            break
    print("ALLOCATIONS", i, "OUTCOMES", sorted(outcomes.items()), flush=True)
''')


@pytest.mark.skipif(not _have("_testcapi", "set_nomemory"),
                    reason="_testcapi.set_nomemory not available")
@pytest.mark.parametrize("call", ["retr", "capa", "stat", "uidl"])
def test_allocation_failure_on_parse_path(call):
    """Every allocation of a retr (capa, stat, uidl) fails in turn: the
    call raises MemoryError or succeeds with the right result; a crash
    (the subprocess dies), a SystemError or any other exception fails
    the test."""
    proc = subprocess.run([sys.executable, "-c", _NOMEM_DRIVER, "cpoplib", call],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:],
                                  proc.stderr[-3000:])
    assert "UNEXPECTED" not in proc.stdout, proc.stdout[-3000:]
    assert "ALLOCATIONS" in proc.stdout, proc.stdout[-3000:]
