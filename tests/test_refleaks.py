"""Leak, subinterpreter and allocation-failure tests for cpoplib.

* Hot paths (retr, top, list, uidl, capa, stat, apop, -ERR replies,
  exceptions raised while parsing, STLS; fetch, fetch_into, fetch_many,
  top_many, dele_many, listing_maps, stat_and_uidl_map, list_many) run
  thousands of times against an in-process server; after a warm-up,
  sys.gettotalrefcount() (debug builds), tracemalloc's traced memory and
  len(gc.get_objects()) must not grow with the number of iterations.  On a release build only the
  last two are checked; CI runs this module on a debug interpreter too
  (.ci/debug-refleaks), where CPOPLIB_REQUIRE_TOTALREFCOUNT=1 makes a
  missing sys.gettotalrefcount() a failure.
* The extension is imported and used in subinterpreters, in a
  subprocess: legacy ones (_testcapi.run_in_subinterp) on every version,
  and on 3.12+ isolated ones with their own GIL, through the module each
  version has for that (see _INTERPRETERS_API).
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
    b"TOP 9 0": b"-ERR no such message\r\n",
    b"LIST": b"+OK 2 messages\r\n1 120\r\n2 " + str(2 ** 70).encode() + b"\r\n.\r\n",
    b"LIST 1": b"+OK 1 120\r\n",
    b"UIDL": b"+OK\r\n1 " + b"U" * 70 + b"\r\n.\r\n",
    b"CAPA": b"+OK\r\nTOP\r\nUSER\r\nSASL PLAIN LOGIN\r\nSTLS\r\n.\r\n",
    b"STAT": b"+OK 2 320\r\n",
    b"NOOP": b"-ERR [SYS/TEMP] busy\r\n",
    b"RETR 9": b"-ERR no such message\r\n",
    b"UIDL 1": b"+OK 1 \x1b[31mx\r\n",
    b"RSET": b"+OK\r\n",
    b"DELE 1": b"+OK deleted\r\n",
    b"DELE 9": b"-ERR no such message\r\n",
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


class _Sink:
    def write(self, data):
        return len(data)


def exercise_retrieval(client, mod):
    """cpoplib's own retrieval methods, their -ERR paths included."""
    client.fetch(1)
    client.fetch_into(1, _Sink())
    list(client.fetch_many([1, 1, 1], pipeline=True, sizes={1: 120}))
    list(client.fetch_many([1, 1], pipeline=True, window=2))
    it = client.fetch_many([1, 1, 1, 1], pipeline=True)
    next(it)
    it.close()                              # an early stop drains
    client.dele_many([1, 1])
    client.list_many([1, 1])
    client.stat_and_uidl_map()
    list(client.top_many([1, 1, 1], 0, pipeline=True))
    it = client.top_many([1, 1, 1], 0, pipeline=True)
    next(it)
    it.close()
    for bad in ("0", -1):
        try:
            client.top_many([1], bad)        # refused, nothing sent
        except (TypeError, ValueError):
            pass
    for call in (lambda: list(client.fetch_many([1, 9, 1], pipeline=True)),
                 lambda: list(client.top_many([1, 9, 1], 0, pipeline=True)),
                 lambda: client.dele_many([1, 9, 1]),
                 lambda: client.list_many([1, 1, 9, 1]),
                 client.stat_and_uidl_map,
                 client.listing_maps):       # 2**70 is no size: malformed
        try:
            call()
        except mod.error_proto:
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


def total_refs():
    """sys.gettotalrefcount() after two collections; None on a release
    build, unless CPOPLIB_REQUIRE_TOTALREFCOUNT=1 (the debug-interpreter
    CI job) makes that a failure."""
    gc.collect()
    gc.collect()
    if hasattr(sys, "gettotalrefcount"):
        return sys.gettotalrefcount()
    assert os.environ.get("CPOPLIB_REQUIRE_TOTALREFCOUNT", "") in ("", "0"), \
        "CPOPLIB_REQUIRE_TOTALREFCOUNT is set but %s is not a debug " \
        "build (no sys.gettotalrefcount)" % sys.executable
    return None


def measure(run, n):
    """Growth of (total refcount or None, traced memory, gc objects)
    over n calls of run().

    The total refcount is read before tracemalloc starts and after it
    stops, so that nothing tracemalloc keeps while tracing counts.  A
    dry run of the whole measurement comes first: the first measurement
    in a process fills caches of its own (57 references on 3.11-dbg,
    129 on 3.15-dbg), which would otherwise count as growth."""
    _measure_once(lambda: None, 1)
    return _measure_once(run, n)


def _measure_once(run, n):
    refs0 = total_refs()
    tracemalloc.start()
    try:
        gc.collect()
        gc.collect()
        mem0, objs0 = traced_memory(), len(gc.get_objects())
        for _ in range(n):
            run()
        gc.collect()
        gc.collect()
        mem1, objs1 = traced_memory(), len(gc.get_objects())
    finally:
        tracemalloc.stop()
    refs1 = total_refs()
    return (None if refs0 is None else refs1 - refs0,
            mem1 - mem0, objs1 - objs0)


def measure_hot_paths(name):
    mod = MODULES[name]
    with ScriptedServer(serve_forever, timeout=120, record=False) as srv:
        client = CLASSES[name](srv.host, srv.port, timeout=10)
        client.apop("bob", "secret")
        for _ in range(WARMUP):
            exercise(client, mod)
        refs, mem, objs = measure(lambda: exercise(client, mod), ITERATIONS)
        client.quit()
        srv.join()
    print("GROWTH", name, "refs", refs, "memory", mem, "objects", objs)
    if refs is not None:
        # a leak of one reference per iteration would show as >= ITERATIONS
        assert refs < ITERATIONS // 10, (name, "total refcount", refs)
    assert mem < 16 * 1024, (name, "tracemalloc", mem)
    assert objs < ITERATIONS // 20, (name, "gc objects", objs)


def measure_retrieval(name="cpoplib"):
    with ScriptedServer(serve_forever, timeout=120, record=False) as srv:
        client = cpoplib.POP3(srv.host, srv.port, timeout=10)
        for _ in range(WARMUP):
            exercise_retrieval(client, cpoplib)
        n = max(ITERATIONS // 4, 100)
        refs, mem, objs = measure(lambda: exercise_retrieval(client, cpoplib),
                                  n)
        client.quit()
        srv.join()
    print("GROWTH", name, "refs", refs, "memory", mem, "objects", objs)
    if refs is not None:
        assert refs < n // 10, (name, "total refcount", refs)
    assert mem < 16 * 1024, (name, "tracemalloc", mem)
    assert objs < n // 20, (name, "gc objects", objs)


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


CTX = client_tls_context(verify=False)


def measure_stls(name):
    mod = MODULES[name]
    n = max(ITERATIONS // 20, 50)
    for _ in range(10):
        _one_stls_session(mod)
    refs, mem, objs = measure(lambda: _one_stls_session(mod), n)
    print("GROWTH", name, "refs", refs, "memory", mem, "objects", objs)
    if refs is not None:
        assert refs < n // 4, (name, "total refcount", refs)
    assert mem < 128 * 1024, (name, "tracemalloc", mem)
    assert objs < n // 2, (name, "gc objects", objs)


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
    refs, mem, objs = measure(session, n)
    print("GROWTH", name, "refs", refs, "memory", mem, "objects", objs)
    if refs is not None:
        assert refs < n // 4, (name, "total refcount", refs)
    assert mem < 64 * 1024, (name, "tracemalloc", mem)
    assert objs < n // 2, (name, "gc objects", objs)


def _in_subprocess(func, name):
    """Run a measure_* function in a fresh interpreter: audit hooks,
    threads and caches left by other test modules must not count.  The
    child imports this module (and scripted_server) from this directory,
    which its PYTHONPATH names."""
    code = "import test_refleaks as t; t.%s(%r); print('MEASURE-OK')" % (
        func, name)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [tests_dir, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=600)
    sys.stdout.write(proc.stdout)       # the GROWTH line (pytest -rP shows it)
    assert proc.returncode == 0 and "MEASURE-OK" in proc.stdout, \
        proc.stderr[-4000:]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_hot_paths_do_not_leak(name):
    """retr/top/list/uidl/capa/stat/apop/-ERR/ValueError paths, after a
    warm-up: no growth in total refcount (debug builds), traced memory
    or number of gc-tracked objects over ITERATIONS rounds."""
    _in_subprocess("measure_hot_paths", name)


def test_retrieval_does_not_leak():
    """fetch, fetch_into, fetch_many (adaptive, fixed, closed early, -ERR
    mid-batch), top_many, dele_many, list_many, listing_maps and
    stat_and_uidl_map, their error paths too."""
    _in_subprocess("measure_retrieval", "cpoplib")


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

# How each version creates an isolated interpreter (own GIL), keyed on the
# version, never on what happens to import: 3.12's test.support.interpreters
# (Interpreter.run), 3.13's (Interpreter.exec), 3.14's public
# concurrent.interpreters (PEP 734).  A version newer than the table uses
# the newest entry.
_INTERPRETERS_API = [
    ((3, 14), "concurrent.interpreters", "exec"),
    ((3, 13), "test.support.interpreters", "exec"),
    ((3, 12), "test.support.interpreters", "run"),
]


def interpreters_api(version=None):
    """(module name, method name) for isolated subinterpreters on
    `version` (default: the running one); None before 3.12."""
    version = tuple((version or sys.version_info)[:2])
    for since, module, method in _INTERPRETERS_API:
        if version >= since:
            return module, method
    return None


_SUBINTERP_DRIVER = textwrap.dedent(r'''
    import gc, importlib, sys
    kind, body = sys.argv[1], sys.argv[2]
    import cpoplib                       # the main interpreter too
    if kind == "run_in_subinterp":
        import _testcapi
        for _ in range(3):
            rc = _testcapi.run_in_subinterp(body)
            assert rc == 0, rc
    else:
        module, method = kind.split(":")
        interpreters = importlib.import_module(module)
        for _ in range(3):
            interp = interpreters.create()
            # it must really have its own GIL
            if sys.version_info >= (3, 13):
                import _interpreters
                gil = _interpreters.get_config(interp.id).gil
                assert gil == "own", gil
            else:
                assert interp.isolated, "not an isolated interpreter"
            getattr(interp, method)(body)
            interp.close()
    # the main interpreter still works
    import poplib
    assert cpoplib.error_proto is not poplib.error_proto
    gc.collect()
    print("MAIN-OK", flush=True)
''')


def _testcapi_or_fail():
    """_testcapi is part of every CPython's test modules (pyenv builds;
    Debian's libpython3.X-testsuite, or -dbg): missing is a failure, not
    a skip."""
    try:
        import _testcapi
    except ImportError as exc:
        pytest.fail("%s has no _testcapi (%s): on Debian/Ubuntu install "
                    "libpython3.%d-testsuite"
                    % (sys.executable, exc, sys.version_info[1]))
    return _testcapi


def test_reimport_in_legacy_subinterpreter():
    """Import and use cpoplib in three successive legacy subinterpreters
    (shared GIL), via _testcapi.run_in_subinterp."""
    _testcapi_or_fail()
    proc = subprocess.run([sys.executable, "-c", _SUBINTERP_DRIVER,
                           "run_in_subinterp", _SUBINTERP_BODY],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert proc.stdout.count("SUBINTERP-OK") == 3, proc.stdout + proc.stderr
    assert "MAIN-OK" in proc.stdout


def test_interpreters_api_table():
    """The table follows the versions: the public module from 3.14 on,
    test.support's before, nothing before 3.12."""
    assert interpreters_api((3, 11)) is None
    assert interpreters_api((3, 12)) == ("test.support.interpreters", "run")
    assert interpreters_api((3, 13)) == ("test.support.interpreters", "exec")
    assert interpreters_api((3, 14)) == ("concurrent.interpreters", "exec")
    assert interpreters_api((3, 15)) == ("concurrent.interpreters", "exec")


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="per-interpreter GIL subinterpreters are new in "
                           "Python 3.12")
def test_import_in_isolated_subinterpreter():
    """3.12+: interpreters with their own GIL, created with the module
    this version has for that (interpreters_api()).  The extension
    declares Py_MOD_PER_INTERPRETER_GIL_SUPPORTED (no C globals hold
    Python objects), so it must import and work there, three times over.
    The module missing fails the test: the version has it."""
    module, method = interpreters_api()
    proc = subprocess.run([sys.executable, "-c", _SUBINTERP_DRIVER,
                           "%s:%s" % (module, method), _SUBINTERP_BODY],
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


@pytest.mark.parametrize("call", ["retr", "capa", "stat", "uidl"])
def test_allocation_failure_on_parse_path(call):
    """Every allocation of a retr (capa, stat, uidl) fails in turn: the
    call raises MemoryError or succeeds with the right result; a crash
    (the subprocess dies), a SystemError or any other exception fails
    the test."""
    _testcapi_or_fail()
    proc = subprocess.run([sys.executable, "-c", _NOMEM_DRIVER, "cpoplib", call],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:],
                                  proc.stderr[-3000:])
    assert "UNEXPECTED" not in proc.stdout, proc.stdout[-3000:]
    assert "ALLOCATIONS" in proc.stdout, proc.stdout[-3000:]
