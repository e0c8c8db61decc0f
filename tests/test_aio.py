"""cpoplib.aio against scripted and in-memory servers: the blocking
client's exact results and exceptions through the async API (the
differential corpus and generated transcripts cut at random byte
positions), -ERR and EOF at every position of a pipelined batch, the
ordering rule, cancellation at random points (seeded), time-outs, the
memory an idle session keeps, SCRAM off the event loop, and the same on
uvloop.

CPOPLIB_REQUIRE_UVLOOP=1 makes a missing uvloop fail instead of skip.
"""
import asyncio
import io
import os
import random
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings

import cpoplib
import cpoplib.aio as aio
from cpoplib._server import Server, make_mailbox

from scripted_server import ScriptedServer, Step, canon, exc_signature
from scram_server import scram_server
import differential as diff
from pipeline_server import PipelineServer, mailbox

try:
    import uvloop
except ImportError:          # not on every interpreter: see the README
    uvloop = None

LOOPS = ["asyncio", "uvloop"]


def run(coro, loop="asyncio"):
    if loop == "uvloop":
        if uvloop is None:
            coro.close()            # never to run: no "never awaited"
            if os.environ.get("CPOPLIB_REQUIRE_UVLOOP", "") == "1":
                pytest.fail("uvloop is not installed "
                            "(CPOPLIB_REQUIRE_UVLOOP=1)")
            pytest.skip("uvloop is not installed for this interpreter")
        return uvloop.run(coro)
    return asyncio.run(coro)


# ---------------------------------------------------------------------------
# the blocking client's results through the async API


async def aio_session(srv, ops):
    outcomes = []
    client = aio.POP3(srv.host, srv.port, timeout=diff.CLIENT_TIMEOUT)
    try:
        await client.connect()
        outcomes.append(("welcome", canon(client.welcome),
                         canon(await client.getwelcome())))
        for name, args in ops:
            outcomes.append((name, canon(await getattr(client, name)(*args))))
    except Exception as exc:
        outcomes.append(exc_signature(exc, cpoplib))
    finally:
        await client.close()
    return outcomes


def run_aio(script, ops):
    with ScriptedServer(script, idle_eof=diff.IDLE_EOF) as srv:
        outcomes = asyncio.run(aio_session(srv, ops))
        received = srv.join(timeout=15)
    return outcomes, received


def _gone(outcome):
    """An outcome that says the server had gone away."""
    text = str(outcome)
    return outcome[0] == "raise" and ("connection closed" in text
                                      or "-ERR EOF" in text)


def assert_same_as_blocking(script, ops):
    ref_outcomes, ref_received, _ = diff.run_session(
        cpoplib.POP3, cpoplib, script, ops)
    got, received = run_aio(script, ops)
    ref_outcomes = [o for o in ref_outcomes if o[0] != "close"]
    if _gone(got[-1]) and got != ref_outcomes:
        # after the server went away the async client says so instead of
        # sending into the closed connection; the blocking one then fails
        # too (-ERR EOF, a socket error, or AttributeError after quit())
        assert len(got) == len(ref_outcomes), (got, ref_outcomes)
        assert got[:-1] == ref_outcomes[:-1]
        assert ref_outcomes[-1][0] == "raise"
    if _gone(got[-1]):
        assert ref_received.startswith(received)
        return
    assert got == ref_outcomes
    assert received == ref_received


@pytest.mark.parametrize("name", sorted(diff.NASTY))
def test_corpus_as_blocking(name):
    script, ops = diff.NASTY[name]
    assert_same_as_blocking(script, ops)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(diff.transcript())
def test_generated_transcripts_as_blocking(case):
    """Generated transcripts, every reply cut at random byte positions
    (sometimes one byte at a time)."""
    steps, ops = case
    assert_same_as_blocking(steps, ops)


# ---------------------------------------------------------------------------
# the sans-IO engine on its own: any split of the stream gives the same


def engine_results(chunks, kinds):
    engine = cpoplib._cpoplib.ResponseEngine()
    results = []
    kinds = list(kinds)
    for chunk in chunks:
        view = engine.get_buffer(len(chunk))
        view[:len(chunk)] = chunk
        engine.buffer_updated(len(chunk))
        del view
        while kinds:
            try:
                res = getattr(engine, kinds[0])()
            except cpoplib.error_proto as exc:
                res = ("raise", exc.args)
            if res is None:
                break
            results.append(res)
            kinds.pop(0)
    return results, engine


def test_engine_any_split_gives_the_same():
    rng = random.Random(23)
    message = make_mailbox(1, 150000, seed=4)[0]
    stuffed = b"".join((b"." + line if line.startswith(b".") else line)
                       + b"\r\n" for line in message.split(b"\r\n")[:-1])
    stream = (b"+OK hi\r\n-ERR [IN-USE] locked\r\n"
              + b"+OK\r\n" + stuffed + b".\r\n"
              + b"+OK\r\na\r\n..b\r\n.\r\n"
              + b"+OK\r\n1 10\r\n2 20\r\n.\r\n")
    kinds = ["short", "short", "message", "long", "long"]
    whole, _ = engine_results([stream], kinds)
    assert whole[1] == ("raise", (b"-ERR [IN-USE] locked",))
    assert whole[2] == message
    assert whole[3] == (b"+OK", [b"a", b".b"], 7)
    for _ in range(40):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randrange(1, 60)))
        chunks = [stream[a:b] for a, b in zip([0] + cuts, cuts + [None])]
        got, engine = engine_results(chunks, kinds)
        assert got == whole
        assert engine.buffered == 0
    one_byte = [stream[i:i + 1] for i in range(len(stream))]
    assert engine_results(one_byte[:3000], kinds[:2])[0] == whole[:2]


def test_engine_typed_error_and_idle_memory():
    engine = cpoplib._cpoplib.ResponseEngine()
    engine.feed(b"-ERR [AUTH] bad password\r\n")
    with pytest.raises(cpoplib.AuthError) as info:
        engine.short()
    assert info.value.args == (b"-ERR [AUTH] bad password",)
    assert not engine.broken
    assert engine.capacity > 0
    engine.trim()
    assert engine.capacity == 0 and engine.buffered == 0


# ---------------------------------------------------------------------------
# pipelined batches: -ERR and EOF at every position


async def fetch_all_aio(port, numbers, **kwargs):
    conn = aio.POP3("127.0.0.1", port, timeout=20)
    await conn.connect()
    await conn.user("u")
    await conn.pass_("p")
    got = []
    exc = None
    try:
        async for item in conn.fetch_many(numbers, **kwargs):
            got.append(item)
    except Exception as e:          # noqa: BLE001 -- compared below
        exc = e
    after = None
    try:
        after = await conn.noop()
    except Exception as e:          # noqa: BLE001
        after = e
    await conn.close()
    return got, exc, after


def fetch_all_blocking(port, numbers, **kwargs):
    conn = cpoplib.POP3("127.0.0.1", port, timeout=20)
    conn.user("u")
    conn.pass_("p")
    got = []
    exc = None
    try:
        for item in conn.fetch_many(numbers, **kwargs):
            got.append(item)
    except Exception as e:          # noqa: BLE001
        exc = e
    conn.close()
    return got, exc


@pytest.mark.parametrize("where", range(1, 9))
def test_err_at_every_position_of_a_batch(where):
    msgs = mailbox(8, size=3000)
    with PipelineServer(msgs, errors={where}) as srv:
        got, exc, after = asyncio.run(fetch_all_aio(srv.port, range(1, 9),
                                                    delete=True))
    with PipelineServer(msgs, errors={where}) as srv:
        ref, ref_exc = fetch_all_blocking(srv.port, range(1, 9), delete=True)
    assert got == ref == [(n, msgs[n]) for n in range(1, where)]
    assert type(exc) is type(ref_exc) and exc.args == ref_exc.args
    assert exc.which == ref_exc.which
    assert after == b"+OK"                  # in step after the -ERR


@pytest.mark.parametrize("where", range(1, 9))
def test_eof_at_every_position_of_a_batch(where):
    msgs = mailbox(8, size=3000)
    with PipelineServer(msgs, eof_in=where) as srv:
        got, exc, after = asyncio.run(fetch_all_aio(srv.port, range(1, 9)))
    # every message before the cut one, whole, then the blocking client's
    # error_proto('-ERR EOF') (which commands in flight meet the closed
    # socket first, and whether a write fails, is up to the kernel: the
    # blocking client may get the same BrokenPipeError)
    assert got == [(n, msgs[n]) for n in range(1, where)]
    assert exc.args == ("-ERR EOF",) or isinstance(exc, ConnectionError)
    assert isinstance(after, aio.ConnectionClosedError)
    assert "connection closed" in after.args[0]


def test_fetch_many_window_and_pipelining():
    msgs = mailbox(300, size=1500)
    with PipelineServer(msgs) as srv:
        async def go():
            conn = await aio.open_pop3("127.0.0.1", srv.port, timeout=20)
            await conn.user("u")
            await conn.pass_("p")
            it = conn.fetch_many(range(1, 301))
            got = [item async for item in it]
            window = it.window
            await conn.quit()
            return got, window
        got, window = asyncio.run(go())
    assert got == [(n, msgs[n]) for n in range(1, 301)]
    assert window > 8                      # the adaptive window grew
    assert srv.max_waiting > 8             # commands really were in flight
    # no pipelining: one at a time
    with PipelineServer(msgs, pipelining=False) as srv:
        got, exc, after = asyncio.run(fetch_all_aio(srv.port, range(1, 21)))
    assert exc is None and got == [(n, msgs[n]) for n in range(1, 21)]
    assert srv.max_waiting == 1


# ---------------------------------------------------------------------------
# the claim/ordering rule


@pytest.mark.parametrize("loop", LOOPS)
def test_concurrent_commands_are_queued_in_order(loop):
    msgs = mailbox(40, size=800)
    with PipelineServer(msgs) as srv:
        async def go():
            conn = await aio.open_pop3("127.0.0.1", srv.port, timeout=20)
            await conn.user("u")
            await conn.pass_("p")
            before = len(srv.commands)
            # not known to pipeline yet: sent one at a time, in call order
            first = await asyncio.gather(*[conn.fetch(n) for n in range(1, 6)])
            waiting_serial = srv.max_waiting
            await conn.capa()           # PIPELINING: from now on pipelined
            calls = [conn.fetch(n) if n % 3 else conn.noop()
                     for n in range(1, 41)]
            results = await asyncio.gather(*calls)
            sent = srv.commands[before:]
            await conn.quit()
            return first, waiting_serial, results, sent
        first, waiting_serial, results, sent = run(go(), loop)
    assert first == [msgs[n] for n in range(1, 6)]
    assert waiting_serial == 1
    for n, res in zip(range(1, 41), results):
        assert res == (msgs[n] if n % 3 else b"+OK")
    expected = [b"RETR %d" % n for n in range(1, 6)] + [b"CAPA"] + [
        b"RETR %d" % n if n % 3 else b"NOOP" for n in range(1, 41)]
    assert sent[:len(expected)] == expected
    assert srv.max_waiting > 1              # pipelined after CAPA


def test_exchanges_wait_for_what_was_queued_before():
    msgs = mailbox(5, size=500)
    with PipelineServer(msgs) as srv:
        async def go():
            conn = await aio.open_pop3("127.0.0.1", srv.port, timeout=20)
            await conn.capa()
            order = []

            async def tagged(name, coro):
                res = await coro
                order.append(name)
                return res
            results = await asyncio.gather(
                tagged("noop1", conn.noop()),
                tagged("login", conn.login("u", "p", allow_plaintext=True)),
                tagged("noop2", conn.noop()),
                tagged("quit", conn.quit()),
            )
            return order, results
        order, results = asyncio.run(go())
    assert order == ["noop1", "login", "noop2", "quit"]
    assert srv.commands == [b"CAPA", b"NOOP", b"CAPA", b"USER u", b"PASS p",
                            b"NOOP", b"QUIT"]
    assert results[1] == results[2] == b"+OK"


# ---------------------------------------------------------------------------
# cancellation at random points (seeded), then a command that must work


CANCEL_CASES = int(os.environ.get("CPOPLIB_AIO_CANCEL_CASES", "3000"))


@pytest.mark.parametrize("loop", LOOPS)
def test_cancellation_at_random_points(loop):
    rng = random.Random(20240623)
    msgs = make_mailbox(30, 3000, seed=5)
    wire_sizes = {n: len(m) for n, m in enumerate(msgs, 1)}
    cases = CANCEL_CASES if loop == "asyncio" else CANCEL_CASES // 3
    with Server(msgs) as srv:
        async def go():
            expect_closed = completed = cancelled = 0
            deadline = time.monotonic() + 25
            conn = None
            done = 0
            for case in range(cases):
                if time.monotonic() > deadline:
                    break
                if conn is None:
                    conn = await aio.open_pop3("127.0.0.1", srv.port,
                                               timeout=10)
                    await conn.user("u")
                    await conn.pass_("p")
                    if rng.random() < 0.5:
                        await conn.capa()          # pipelined from now on
                n = rng.randrange(1, 31)
                kind = rng.randrange(6)
                if kind == 0:
                    coro = conn.fetch(n)
                elif kind == 1:
                    coro = conn.retr(n)
                elif kind == 2:
                    coro = conn.list_map()
                elif kind == 3:
                    coro = conn.fetch_into(n, io.BytesIO())
                elif kind == 4:
                    coro = _partial_fetch_many(conn, rng.randrange(1, 8))
                else:
                    coro = conn.stat()
                task = asyncio.ensure_future(coro)
                if rng.random() < 0.1:
                    # late: usually after the reply (the far end of the
                    # range, however slow the machine)
                    await asyncio.wait({task}, timeout=2)
                else:
                    for _ in range(rng.randrange(0, 8)):
                        await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                    completed += 1
                except asyncio.CancelledError:
                    cancelled += 1
                # the connection is in step, or says clearly it is closed
                k = rng.randrange(1, 31)
                try:
                    assert await conn.noop() == b"+OK"
                    assert await conn.list(k) == b"+OK %d %d" % (
                        k, wire_sizes[k])
                except aio.ConnectionClosedError as exc:
                    assert "connection closed" in exc.args[0]
                    expect_closed += 1
                    conn = None
                done += 1
            if conn is not None:
                await conn.quit()
            return done, expect_closed, completed, cancelled
        done, closed, completed, cancelled = run(go(), loop)
    assert done >= min(cases, 500)
    # both ends of the range were hit: cancelled before, during and after
    assert cancelled > done // 4 and completed > 0, (cancelled,
                                                              completed)
    assert closed == 0        # cancelled replies are drained, not fatal


async def _partial_fetch_many(conn, count):
    it = conn.fetch_many(range(1, 31))
    async for _ in it:
        count -= 1
        if count == 0:
            break
    await it.aclose()


def test_timeout_drains_then_next_command_works():
    script = [(None, b"+OK hi\r\n"),
              Step(b"RETR 1", b"+OK\r\nbody\r\n.\r\n", after=("stall", 0.0)),
              ]

    def handler(conn):
        conn.send(b"+OK hi\r\n")
        assert conn.recv_line() == b"RETR 1\r\n"
        time.sleep(0.6)                       # past the client's timeout
        conn.send(b"+OK\r\nbody\r\n.\r\n")
        assert conn.recv_line() == b"NOOP\r\n"
        conn.send(b"+OK still here\r\n")
        conn.recv_line()
        conn.send(b"+OK bye\r\n")

    del script
    with ScriptedServer(handler) as srv:
        async def go():
            conn = await aio.open_pop3(srv.host, srv.port, timeout=0.3)
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                await conn.fetch(1)
            assert 0.25 < time.monotonic() - t0 < 0.6
            conn.timeout = 5
            assert await conn.noop() == b"+OK still here"
            await conn.quit()
        asyncio.run(go())


def test_asyncio_timeout_cancels_the_command():
    if sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout() is new in 3.11")

    def handler(conn):
        conn.send(b"+OK hi\r\n")
        conn.recv_line()
        time.sleep(0.3)
        conn.send(b"+OK 1 2\r\n")
        conn.recv_line()
        conn.send(b"+OK\r\n")
    with ScriptedServer(handler) as srv:
        async def go():
            conn = await aio.open_pop3(srv.host, srv.port)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await conn.stat()
            assert await conn.noop() == b"+OK"
            await conn.close()
        asyncio.run(go())


# ---------------------------------------------------------------------------
# audit events, memory, SCRAM off the loop


def test_audit_events_are_the_blocking_ones(putlines):
    msgs = make_mailbox(3, 500, seed=2)
    events = []
    recording = [True]

    # An audit hook cannot be removed: it records only during this test,
    # and no object (a connection kept alive would keep its socket open
    # for the rest of the process)
    def hook(event, args):
        if recording and event == "poplib.connect":
            events.append((id(args[0]),) + tuple(args[1:]))
    sys.addaudithook(hook)
    with Server(msgs) as srv:
        port = srv.port
        blocking = cpoplib.POP3("127.0.0.1", port)
        for call in (lambda c: c.user("u"), lambda c: c.pass_("p"),
                     lambda c: c.stat(), lambda c: c.fetch(2)):
            call(blocking)
        blocking.quit()

        async def go():
            conn = aio.POP3("127.0.0.1", srv.port)
            await conn.connect()
            await conn.user("u")
            await conn.pass_("p")
            await conn.stat()
            await conn.fetch(2)
            await conn.quit()
            return conn
        conn = asyncio.run(go())
    recording.clear()
    assert putlines(conn) == putlines(blocking) == [
        b"USER u", b"PASS p", b"STAT", b"RETR 2", b"QUIT"]
    assert [args[1:] for args in events] == [("127.0.0.1", port)] * 2
    assert [args[0] for args in events] == [id(blocking), id(conn)]


def test_idle_session_keeps_no_buffer():
    msgs = make_mailbox(3, 200000, seed=2)
    with Server(msgs) as srv:
        async def go():
            conn = await aio.open_pop3("127.0.0.1", srv.port)
            await conn.user("u")
            await conn.pass_("p")
            assert conn._engine.capacity == 0
            assert len(await conn.fetch(1)) == len(msgs[0])
            assert conn._engine.capacity == 0     # given back when idle
            await conn.quit()
        asyncio.run(go())


def test_scram_derivation_does_not_block_the_loop():
    iterations = 600000               # about 0.3 s of SHA-256 here
    with ScriptedServer(scram_server("u", "pencil", iterations=iterations),
                        timeout=60) as srv:
        async def go():
            conn = await aio.open_pop3(srv.host, srv.port, timeout=30)
            gaps = []
            stop = asyncio.Event()

            async def ticker():
                last = time.monotonic()
                while not stop.is_set():
                    await asyncio.sleep(0.005)
                    now = time.monotonic()
                    gaps.append(now - last)
                    last = now
            tick = asyncio.ensure_future(ticker())
            t0 = time.monotonic()
            resp = await conn.login("u", "pencil", mechanism="SCRAM-SHA-256")
            took = time.monotonic() - t0
            stop.set()
            await tick
            assert resp == b"+OK Logged in."
            await conn.quit()
            return took, max(gaps)
        took, worst = asyncio.run(go())
    assert took > 0.05
    assert worst < took / 2


def test_scram_max_iterations_applies():
    with ScriptedServer(scram_server("u", "pencil", iterations=50000)) as srv:
        async def go():
            conn = await aio.open_pop3(srv.host, srv.port, timeout=10)
            old = cpoplib.SCRAM_MAX_ITERATIONS
            cpoplib.SCRAM_MAX_ITERATIONS = 10000
            try:
                with pytest.raises(cpoplib.error_proto,
                                   match="SCRAM-SHA-256") as info:
                    await conn.login("u", "pencil",
                                     mechanism="SCRAM-SHA-256")
            finally:
                cpoplib.SCRAM_MAX_ITERATIONS = old
            await conn.close()
            return info.value
        exc = asyncio.run(go())
    assert "iteration" in exc.args[0]


def test_login_without_a_secret_is_external_as_the_blocking_one():
    """login(user) with neither password nor token: EXTERNAL over TLS
    when offered (the client certificate is the credential); in the
    clear, or not offered: ValueError, as the blocking login() does."""
    import base64
    from scripted_server import CERTFILE, client_tls_context
    if CERTFILE is None:
        pytest.skip("no test certificate")

    def handler(conn):
        conn.start_tls()
        conn.send(b"+OK ready\r\n")
        for _ in range(2):
            if conn.recv_line() != b"CAPA\r\n":
                return
            conn.send(b"+OK\r\nSASL PLAIN EXTERNAL\r\n.\r\n")
            line = conn.recv_line()
            if line == b"AUTH EXTERNAL " + base64.b64encode(b"u") + b"\r\n":
                conn.send(b"+OK welcome\r\n")

    with ScriptedServer(handler) as srv:
        async def go():
            conn = aio.POP3_SSL(srv.host, srv.port, timeout=10,
                                context=client_tls_context(verify=False))
            await conn.connect()
            try:
                with pytest.raises(ValueError, match="takes no password"):
                    await conn.login("u", "p", mechanism="EXTERNAL")
                return await conn.login("u")
            finally:
                await conn.close()
        assert run(go()) == b"+OK welcome"
    assert [c for c in srv.commands] == [
        b"CAPA\r\n", b"AUTH EXTERNAL " + base64.b64encode(b"u") + b"\r\n"]

    with ScriptedServer([(None, b"+OK ready\r\n")]) as srv:
        async def plain():
            conn = aio.POP3(srv.host, srv.port, timeout=10)
            await conn.connect()
            try:
                with pytest.raises(ValueError, match="does not offer it"):
                    await conn.login("u")
            finally:
                await conn.close()
        run(plain())
        srv.join()
    assert srv.received == b""


def test_refusals_before_anything_is_sent():
    async def go():
        conn = aio.POP3("127.0.0.1", 9)
        with pytest.raises(aio.ConnectionClosedError, match="not connected"):
            await conn.noop()
        with pytest.raises(ValueError, match="timeout=0"):
            aio.POP3("127.0.0.1", 9, timeout=0)
    asyncio.run(go())
    with ScriptedServer([(None, b"+OK hi\r\n")]) as srv:
        async def go2():
            conn = await aio.open_pop3(srv.host, srv.port, timeout=5)
            with pytest.raises(ValueError, match="Control characters"):
                await conn.user("a\r\nDELE 1")
            with pytest.raises(cpoplib.error_proto, match="in the clear"):
                await conn.login("u", "p", mechanism="PLAIN")
            with pytest.raises(TypeError, match="write"):
                await conn.fetch_into(1, object())
            await conn.close()
            with pytest.raises(aio.ConnectionClosedError,
                               match="close\\(\\) was called"):
                await conn.stat()
        asyncio.run(go2())
        assert srv.join() == b""
