"""cpoplib.aio: an asyncio POP3 client on cpoplib's C core.

``POP3`` and ``POP3_SSL`` have every command of cpoplib's blocking
classes as a coroutine, with the same arguments, return values and
exceptions (``error_proto`` and the response-code classes of
``cpoplib``)::

    async with cpoplib.aio.POP3_SSL("pop.example.org") as conn:
        await conn.login("user", "secret")
        async for number, message in conn.fetch_many(range(1, 21)):
            ...

The bytes go straight from the event loop into a C buffer (an
``asyncio.BufferedProtocol`` whose ``get_buffer()`` is the C engine's,
``_cpoplib.ResponseEngine``); lines, bodies, octets, limits and replies
are read there by the same C code the blocking client uses.  No Python
code runs per line: once per read from the network and once per
response.

Ordering.  Commands called by concurrent tasks on one connection are
queued in the order they are called and each reply goes to the command
that asked for it, never to another.  They are pipelined (sent without
waiting for the replies before them) when the server announced
PIPELINING in a CAPA the connection has seen (``capa()``, ``login()``,
``fetch_many()``, ...); otherwise each is sent when the reply before it
has arrived.  ``stls()``, ``auth()``, ``login()`` and ``quit()`` are
exchanges: they wait until everything queued before them is answered and
hold the connection until they end; commands called meanwhile wait
behind them.

Cancellation and time-outs.  A command cancelled (``task.cancel()``,
``asyncio.timeout()``) or timed out (``timeout=``: a deadline for the
whole command, from sending it to the last byte of its reply) before it
was sent is dropped; after it was sent, the rest of its reply is read and
dropped in the background, so the connection stays in step -- unless
that takes more than ``drain_limit`` bytes or ``drain_timeout`` seconds,
or the reply was cut off, or an exchange (``login()``, ``stls()``, ...)
was interrupted midway: then the connection is closed, and every later
command raises ``ConnectionClosedError`` saying why.

Differences from the blocking classes: there is no ``sock``, ``file`` or
hook methods (``_putline``, ``_getresp``, ...) to override, the
connection is made by ``await conn.connect()`` (or ``async with``, or
``open_pop3()``), a failure that leaves the stream inside a reply (a line
longer than ``_MAXLINE``, EOF, past ``MAX_RESPONSE_SIZE``) closes the
connection, and a ``fetch_into()`` whose ``write()`` fails drains the
rest of the message instead of closing.
"""

import asyncio
import base64
import collections
import collections.abc
import os
import socket
import sys

try:
    import ssl as _ssl
except ImportError:  # as poplib: no ssl, no POP3_SSL
    _ssl = None

from . import _cpoplib
from ._cpoplib import (
    POP3_PORT,
    POP3_SSL_PORT,
    FetchWindow,
    ResponseEngine,
    SASLClient,
    error_proto,
)

__all__ = ["POP3", "POP3_SSL", "open_pop3", "ConnectionClosedError"]

_CRLF = b"\r\n"
_encode_command = _cpoplib._encode_command


class ConnectionClosedError(error_proto):
    """The connection is closed (by close(), quit(), the server, or after
    a reply could not be read to its end); the message says why."""


class _Expect:
    """A command sent (or waiting to be sent) and the reply it expects:
    `read` is the engine's method for that kind of reply."""

    __slots__ = ("read", "multiline", "future", "abandoned", "data",
                 "chunks", "overdue")

    def __init__(self, read, multiline, future, data):
        self.read = read
        self.multiline = multiline
        self.future = future
        self.abandoned = False
        self.data = data
        self.chunks = None          # stream(): the chunks not taken yet
        self.overdue = None


class _Protocol(asyncio.BufferedProtocol):
    """The event loop's side: receives into the engine's buffer and lets
    the client read what is complete."""

    def __init__(self, client):
        self._client = client
        engine = client._engine
        # the engine's own method: no Python frame per read
        self.get_buffer = engine.get_buffer
        self._updated = engine.buffer_updated

    def connection_made(self, transport):
        self._client._transport = transport

    def buffer_updated(self, nbytes):
        self._updated(nbytes)
        self._client._pump()

    def eof_received(self):
        self._client._engine.eof_received()
        self._client._pump()
        return False

    def connection_lost(self, exc):
        self._client._lost(exc)


def _default_timeout(timeout):
    if timeout is socket._GLOBAL_DEFAULT_TIMEOUT:
        timeout = socket.getdefaulttimeout()
    if timeout is not None and not timeout:
        raise ValueError("Non-blocking socket (timeout=0) is not supported")
    return timeout


class POP3:
    """An asyncio POP3 connection (RFC 1939) on cpoplib's C core; see the
    module's docstring.  Nothing happens until connect() (or ``async
    with``): it connects, within `timeout`, and reads the greeting."""

    encoding = "UTF-8"
    timestamp = _cpoplib.POP3.timestamp
    #: bytes of cancelled commands' replies read in the background before
    #: the connection is closed instead
    drain_limit = 16 * 1024 * 1024
    #: seconds such a reply may take to arrive before the connection is
    #: closed instead
    drain_timeout = 30.0

    def __init__(self, host, port=POP3_PORT,
                 timeout=socket._GLOBAL_DEFAULT_TIMEOUT):
        self.host = host
        self.port = port
        self.timeout = _default_timeout(timeout)
        self.welcome = None
        self._engine = ResponseEngine()
        self._transport = None
        self._protocol = None
        self._loop = None
        self._inflight = collections.deque()
        self._unsent = collections.deque()
        self._gate = asyncio.Lock()
        self._idle_waiters = []
        self._closed = None           # why, once closed
        self._lost_waiter = None
        self._pipelining = None       # CAPA's PIPELINING, once known
        self._tls_established = False

    def __repr__(self):
        state = ("closed" if self._closed is not None
                 else "connected" if self._transport is not None
                 else "not connected")
        return "<%s %s:%s %s>" % (type(self).__name__, self.host, self.port,
                                  state)

    # ---- connecting ----

    def _ssl_context(self):
        return None

    async def connect(self):
        """Connect and read the greeting; returns it.  Raises the audit
        event poplib.connect."""
        if self._transport is not None or self._closed is not None:
            raise RuntimeError("connect() was called already")
        sys.audit("poplib.connect", self, self.host, self.port)
        self._loop = loop = asyncio.get_running_loop()
        context = self._ssl_context()
        self._protocol = protocol = _Protocol(self)
        start = loop.time()
        kwargs = {}
        if context is not None:
            kwargs = {"ssl": context, "server_hostname": self.host}
        coro = loop.create_connection(lambda: protocol, self.host, self.port,
                                      **kwargs)
        try:
            if self.timeout is None:
                await coro
            else:
                await asyncio.wait_for(coro, self.timeout)
        except asyncio.TimeoutError:
            self._shut("the connection timed out")
            raise TimeoutError("timed out") from None
        except BaseException:
            self._shut("the connection failed")
            raise
        self._lost_waiter = loop.create_future()
        left = None if self.timeout is None else max(
            self.timeout - (loop.time() - start), 1e-3)
        exp = self._submit(None, self._engine.short, False)
        self.welcome = await self._wait(exp, left)
        return self.welcome

    async def __aenter__(self):
        if self._transport is None and self._closed is None:
            await self.connect()
        return self

    async def __aexit__(self, exc_type, exc_value, traceback):
        """Normal exit: quit() (QUIT commits DELE) and close.  Exit by an
        exception: close() without QUIT, so the server rolls back
        deletions."""
        if exc_type is not None or self._closed is not None:
            await self.close()
            return None
        try:
            await self.quit()
        except BaseException:
            await self.close()
            raise
        return None

    # ---- sending and receiving ----

    def _check_open(self):
        if self._closed is not None:
            raise ConnectionClosedError("-ERR connection closed: "
                                        + self._closed)
        if self._transport is None:
            raise ConnectionClosedError("-ERR not connected: await "
                                        "connect() first")

    def _put(self, exp):
        """Send a queued command now."""
        sys.audit("poplib.putline", self, exp.data)
        self._transport.write(exp.data + _CRLF)
        exp.data = None
        self._inflight.append(exp)

    def _submit(self, line, read, multiline):
        """Queue command `line` (a str; None: nothing to send, the reply
        comes by itself) expecting a reply read by `read`; returns its
        _Expect.  ValueError for a control character, before anything is
        sent."""
        self._check_open()
        data = None if line is None else _encode_command(line, self.encoding)
        exp = _Expect(read, multiline, self._loop.create_future(), data)
        if data is None:
            self._inflight.append(exp)
        elif not self._unsent and (not self._inflight or self._pipelining):
            self._put(exp)
        else:
            self._unsent.append(exp)
        if self._engine.buffered and self._inflight[0] is exp:
            self._pump()        # its reply (the greeting) came already
        return exp

    def _submit_many(self, items, pipelined=None):
        """Several commands, in one write as far as they may go now
        (pipelined: all of them, whatever CAPA said)."""
        exps = []
        chunks = []
        if pipelined is None:
            pipelined = self._pipelining
        pipelined = pipelined and not self._unsent
        for line, read, multiline in items:
            self._check_open()
            data = _encode_command(line, self.encoding)
            exp = _Expect(read, multiline, self._loop.create_future(), data)
            exps.append(exp)
            if pipelined or (not self._inflight and not chunks):
                sys.audit("poplib.putline", self, data)
                chunks.append(data + _CRLF)
                exp.data = None
                self._inflight.append(exp)
            else:
                self._unsent.append(exp)
        if chunks:
            self._transport.write(b"".join(chunks))
        return exps

    async def _wait(self, exp, timeout=-1.0):
        """The reply of `exp`, within the connection's timeout (or
        `timeout`); a cancelled or timed out command is abandoned."""
        if timeout == -1.0:
            timeout = self.timeout
        fut = exp.future
        handle = None
        if timeout is not None and not fut.done():
            handle = self._loop.call_later(timeout, self._expire, exp)
        try:
            return await fut
        except asyncio.CancelledError:
            self._abandon(exp)
            raise
        finally:
            if handle is not None:
                handle.cancel()

    def _expire(self, exp):
        if not exp.future.done():
            exp.future.set_exception(TimeoutError("timed out"))
            self._abandon(exp)

    def _abandon(self, exp):
        """Nobody waits for exp's reply any more: drop it if it was not
        sent, else read it into nothing."""
        if exp.abandoned:
            return
        exp.abandoned = True
        if not exp.future.done():
            exp.future.cancel()
        if exp.data is not None:
            try:
                self._unsent.remove(exp)
            except ValueError:
                pass
            return
        if exp in self._inflight and self._closed is None:
            exp.overdue = self._loop.call_later(self.drain_timeout,
                                                self._drain_overdue, exp)

    def _drain_overdue(self, exp):
        if exp in self._inflight:
            self._shut("the reply of a cancelled command did not arrive "
                       "within drain_timeout")

    def _pump(self):
        """Read every reply that is complete, in order, and hand each to
        its command; then send what may go."""
        inflight = self._inflight
        engine = self._engine
        while inflight:
            exp = inflight[0]
            try:
                if exp.abandoned:
                    res = engine.skip(exp.multiline)
                    if engine.response_bytes > self.drain_limit:
                        self._shut("the reply of a cancelled command was "
                                   "larger than drain_limit")
                        return
                else:
                    res = exp.read()
            except error_proto as exc:
                if engine.broken:
                    self._fail(exp, exc)
                    return
                inflight.popleft()
                if not exp.future.done():
                    exp.future.set_exception(exc)
                continue
            except BaseException as exc:
                self._fail(exp, exc)
                return
            if res is None:
                break
            if exp.chunks is not None:          # stream(): (chunk, done)
                chunk, done = res
                if chunk:
                    exp.chunks.append(chunk)
                if not done:
                    self._wake(exp)
                    continue
                exp.chunks.append(None)
                inflight.popleft()
                self._wake(exp)
                continue
            inflight.popleft()
            if exp.overdue is not None:
                exp.overdue.cancel()
            if not exp.future.done():
                exp.future.set_result(res)
        self._send_waiting()

    def _wake(self, exp):
        """stream(): chunks are waiting for fetch_into()."""
        waiter = exp.future
        if not waiter.done():
            waiter.set_result(None)

    def _send_waiting(self):
        unsent = self._unsent
        if unsent and self._closed is None and (
                not self._inflight or self._pipelining):
            if self._pipelining:
                chunks = []
                while unsent:
                    exp = unsent.popleft()
                    sys.audit("poplib.putline", self, exp.data)
                    chunks.append(exp.data + _CRLF)
                    exp.data = None
                    self._inflight.append(exp)
                self._transport.write(b"".join(chunks))
            else:
                self._put(unsent.popleft())
        if not self._inflight and not unsent:
            self._engine.trim()
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _fail(self, exp, exc):
        """A reply was cut off: exp gets the error, the rest learn that
        the connection is closed."""
        if exp.chunks is not None:
            exp.chunks.append(exc)
            self._wake(exp)
        elif not exp.future.done():
            exp.future.set_exception(exc)
        if self._inflight and self._inflight[0] is exp:
            self._inflight.popleft()
        self._shut("a reply was cut off (%s)" % (exc,))

    def _shut(self, reason):
        """Close the connection; every command still waiting gets
        ConnectionClosedError(reason)."""
        if self._closed is None:
            self._closed = reason
        error = ConnectionClosedError("-ERR connection closed: "
                                      + self._closed)
        pending = list(self._inflight) + list(self._unsent)
        self._inflight.clear()
        self._unsent.clear()
        for exp in pending:
            if exp.overdue is not None:
                exp.overdue.cancel()
            if exp.chunks is not None:
                exp.chunks.append(error)
                self._wake(exp)
            elif not exp.future.done():
                exp.future.set_exception(error)
                exp.future.exception()    # raised where awaited, if at all
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
        transport = self._transport
        if transport is not None:
            transport.abort()

    def _lost(self, exc):
        transport, self._transport = self._transport, None
        if (self._closed is None and self._inflight and transport is not None
                and transport.get_extra_info("ssl_object") is None
                and isinstance(exc, (BrokenPipeError, ConnectionResetError))):
            # a write failed (the server closed while commands were in
            # flight): what it sent before is still in the socket.  Not
            # over TLS: the socket holds records, not replies.
            if self._salvage(transport):
                exc = None
        if self._closed is None and self._inflight:
            # the replies complete so far go to their commands; a reply
            # cut off by EOF gets the engine's error_proto('-ERR EOF'),
            # by a connection error that error
            if exc is None:
                self._engine.eof_received()
            self._pump()
            if self._closed is None and self._inflight:
                self._fail(self._inflight[0], exc if exc is not None
                           else error_proto("-ERR EOF"))
        if self._closed is None:
            self._shut("the server closed it" if exc is None
                       else "it was lost (%r)" % (exc,))
        waiter = self._lost_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _salvage(self, transport):
        """Read what the kernel still holds for a transport whose write
        failed; True if it read to the end of the stream."""
        sock = transport.get_extra_info("socket")
        try:
            fd = os.dup(sock.fileno())
        except (AttributeError, OSError, ValueError):
            return False
        engine = self._engine
        with socket.socket(fileno=fd) as raw:
            raw.setblocking(False)
            while True:
                view = engine.get_buffer(-1)
                try:
                    n = raw.recv_into(view)
                except OSError:
                    view.release()
                    return False
                view.release()
                if n == 0:
                    return True
                engine.buffer_updated(n)

    async def _idle(self):
        """Until everything queued so far is answered."""
        if self._inflight or self._unsent:
            waiter = self._loop.create_future()
            self._idle_waiters.append(waiter)
            await waiter

    async def _command(self, line, read, multiline=False):
        async with self._gate:
            exp = self._submit(line, read, multiline)
        return await self._wait(exp)

    async def _exclusive_enter(self):
        await self._gate.acquire()
        try:
            self._check_open()
            await self._idle()
        except BaseException:
            self._gate.release()
            raise

    async def _exchange_step(self, line, read, multiline=False):
        """One command inside an exchange (the gate is held)."""
        return await self._wait(self._submit(line, read, multiline))

    # ---- the commands ----

    async def getwelcome(self):
        """The server's greeting line."""
        return self.welcome

    async def user(self, user):
        """Send USER."""
        return await self._command("USER %s" % user, self._engine.short)

    async def pass_(self, pswd):
        """Send PASS; the server usually locks the mailbox until quit()."""
        return await self._command("PASS %s" % pswd, self._engine.short)

    async def stat(self):
        """(message count, mailbox size) as two ints."""
        resp = await self._command("STAT", self._engine.short)
        return _cpoplib._stat_result(resp.split())

    async def list(self, which=None):
        """Without an argument: (response, ['msgnum octets', ...],
        octets); with one: the scan listing line of that message."""
        if which is not None:
            return await self._command("LIST %s" % which, self._engine.short)
        self._engine.check()
        return await self._command("LIST", self._engine.long, True)

    async def retr(self, which):
        """(response, [line, ...], octets) of a message."""
        self._engine.check()
        return await self._command("RETR %s" % which, self._engine.long,
                                   True)

    async def dele(self, which):
        """Mark a message for deletion."""
        return await self._command("DELE %s" % which, self._engine.short)

    async def noop(self):
        """Send NOOP."""
        return await self._command("NOOP", self._engine.short)

    async def rset(self):
        """Unmark messages marked for deletion."""
        return await self._command("RSET", self._engine.short)

    async def rpop(self, user):
        """Send RPOP."""
        return await self._command("RPOP %s" % user, self._engine.short)

    async def utf8(self):
        """Ask for UTF-8 mode (RFC 6856)."""
        return await self._command("UTF8", self._engine.short)

    async def top(self, which, howmuch):
        """The headers and the first howmuch body lines of a message."""
        self._engine.check()
        return await self._command("TOP %s %s" % (which, howmuch),
                                   self._engine.long, True)

    async def uidl(self, which=None):
        """Unique ids: (response, ['msgnum uid', ...], octets), or the
        line of one message."""
        if which is not None:
            return await self._command("UIDL %s" % which, self._engine.short)
        self._engine.check()
        return await self._command("UIDL", self._engine.long, True)

    async def apop(self, user, password):
        """Log in with APOP (MD5 of the greeting's timestamp and the
        password)."""
        return await self._apop(user, password, self._command)

    async def _apop(self, user, password, run):
        secret = password.encode(self.encoding) if isinstance(password, str) \
            else bytes(password, self.encoding)
        digest = _cpoplib._apop_digest(self.welcome, self.timestamp, secret)
        return await run("APOP %s %s" % (user, digest), self._engine.short)

    async def capa(self):
        """The server's capabilities (RFC 2449) as a dict of lists."""
        return await self._capa(self._command)

    async def _capa(self, run):
        try:
            self._engine.check()
            resp = await run("CAPA", self._engine.long, True)
            caps = _cpoplib._capa_from_lines(resp[1])
        except ConnectionClosedError:
            raise
        except error_proto:
            raise error_proto("-ERR CAPA not supported by server")
        self._pipelining = "PIPELINING" in caps
        return caps

    async def _server_pipelines(self):
        if self._pipelining is None:
            try:
                await self.capa()
            except error_proto as exc:
                context = exc.__context__
                if not (_is_err_reply(exc) or _is_err_reply(context)):
                    raise
                self._pipelining = False
        return self._pipelining

    async def quit(self):
        """Send QUIT (the server commits deletions) and close."""
        await self._exclusive_enter()
        try:
            resp = await self._exchange_step("QUIT", self._engine.short)
        finally:
            self._gate.release()
        await self.close()
        return resp

    async def close(self):
        """Close the connection without sending anything; commands still
        waiting get ConnectionClosedError."""
        transport = self._transport
        if self._closed is None:
            self._shut("close() was called")
        waiter = self._lost_waiter
        if transport is not None and waiter is not None:
            try:
                await asyncio.wait_for(asyncio.shield(waiter), 5.0)
            except asyncio.TimeoutError:
                pass

    async def stls(self, context=None):
        """Switch the connection to TLS with STLS (RFC 2595), with
        loop.start_tls(); what the server sent after its +OK is dropped."""
        if _ssl is None:
            raise error_proto("-ERR TLS support missing")
        if self._tls_established:
            raise error_proto("-ERR TLS session already established")
        await self._exclusive_enter()
        try:
            caps = await self._capa(self._exchange_step)
            if "STLS" not in caps:
                raise error_proto("-ERR STLS not supported by server")
            if context is None:
                context = _ssl._create_stdlib_context()
            resp = await self._interruptible("STLS", self._engine.short)
            self._engine.clear()
            try:
                transport = await self._deadline(self._loop.start_tls(
                    self._transport, self._protocol, context,
                    server_hostname=self.host))
            except BaseException:
                self._shut("the TLS handshake after STLS failed")
                raise
            self._transport = transport
            self._tls_established = True
            self._pipelining = None       # capabilities may change
        finally:
            self._gate.release()
        return resp

    async def _deadline(self, awaitable):
        if self.timeout is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, self.timeout)
        except asyncio.TimeoutError:
            raise TimeoutError("timed out") from None

    # ---- cpoplib's additions ----

    async def fetch(self, which):
        """A message as one bytes object: dot-unstuffed, every line
        ending in CRLF, as b''.join(line + b'\\r\\n' for line in
        retr(which)[1]) gives it."""
        self._engine.check()
        return await self._command("RETR %s" % which, self._engine.message,
                                   True)

    async def fetch_into(self, which, file):
        """A message into file.write() (a plain or an async write) in
        bounded memory; returns the number of bytes written."""
        write = getattr(file, "write", None)
        if write is None or not callable(write):
            raise TypeError("fetch_into() needs a file with a write() "
                            "method, not %.200s" % type(file).__name__)
        self._engine.check()
        async with self._gate:
            exp = self._submit("RETR %s" % which, self._engine.stream, True)
            exp.chunks = collections.deque()
        written = 0
        deadline = None if self.timeout is None \
            else self._loop.time() + self.timeout
        try:
            while True:
                while not exp.chunks:
                    exp.future = self._loop.create_future()
                    await self._wait(exp, None if deadline is None else
                                     max(deadline - self._loop.time(), 0.0))
                chunk = exp.chunks.popleft()
                if chunk is None:
                    return written
                if isinstance(chunk, BaseException):
                    raise chunk
                written += await _write_all(write, chunk)
        except BaseException:
            if exp in self._inflight or exp in self._unsent:
                exp.chunks = None
                self._abandon(exp)
            raise

    def fetch_many(self, which, *, delete=False, pipeline=None, window=None,
                   sizes=None):
        """An async iterator of (which, message) for each number in
        which, in order, each message as fetch() returns it; pipelined
        with the blocking fetch_many()'s window (adaptive from 8 up to
        128, or `window`; 32 MiB of known `sizes` in flight at most).
        With delete=True a message is deleted (DELE, committed at quit())
        once the caller asks for the next one.  On -ERR, error_proto is
        raised with the message number as its `which` attribute;
        aclose() (or leaving `async for` early) drops the replies in
        flight and deletes nothing more."""
        if sizes is not None and not hasattr(type(sizes), "__getitem__"):
            raise TypeError("sizes must be a mapping of message numbers to "
                            "sizes, not %.200s" % type(sizes).__name__)
        self._engine.check()
        return _FetchMany(self, list(which), bool(delete), pipeline,
                          FetchWindow(window), sizes)

    async def dele_many(self, which):
        """DELE for each number in which, pipelined when the server
        pipelines; the list of responses.  On -ERR nothing more is sent,
        the replies in flight are read, and error_proto is raised with
        the message number as its `which` attribute."""
        return await self._short_many("DELE %s", list(which))

    async def _short_many(self, fmt, numbers):
        """fmt % n for each of numbers (one-line replies), pipelined when
        the server pipelines: the responses, or error_proto (with
        `which`) for the first -ERR once the replies in flight are
        read."""
        if len(numbers) > 1:
            await self._server_pipelines()
        short = self._engine.short
        responses = []
        failure = None
        pos = 0
        step = 128 if self._pipelining else 1
        while pos < len(numbers) and failure is None:
            batch = numbers[pos:pos + step]
            async with self._gate:
                exps = self._submit_many(
                    [(fmt % n, short, False) for n in batch])
            for n, exp in zip(batch, exps):
                try:
                    responses.append(await self._wait(exp))
                except error_proto as exc:
                    if not _is_err_reply(exc):
                        raise
                    if failure is None:
                        exc.which = n
                        failure = exc
            pos += len(batch)
        if failure is not None:
            raise failure
        return responses

    async def listing_maps(self):
        """(list_map(), uidl_map()) from one round trip when the server
        pipelines; the second is None when UIDL gets -ERR."""
        return await self._with_uidl_map(
            ("LIST", self._listing_list, True), self.list_map)

    async def stat_and_uidl_map(self):
        """(stat(), uidl_map()) from one round trip when the server
        pipelines; the second is None when UIDL gets -ERR."""
        return await self._with_uidl_map(
            ("STAT", self._stat_of_reply, False), self.stat)

    def _stat_of_reply(self):
        return _cpoplib._stat_result(self._engine.short().split())

    async def _with_uidl_map(self, first, alone):
        """(what the command `first` gives, uidl_map() or None when UIDL
        gets -ERR): both in one write when the server pipelines, else
        alone() and then UIDL."""
        pipelines = await self._server_pipelines()
        self._engine.check()
        if not pipelines:
            result = await alone()
            try:
                uids = await self.uidl_map()
            except error_proto as exc:
                if not _is_err_reply(exc):
                    raise
                uids = None
            return result, uids
        async with self._gate:
            exp_first, exp_uidl = self._submit_many([
                first, ("UIDL", self._listing_uidl, True)])
        try:
            result = await self._wait(exp_first)
        except BaseException:
            self._abandon(exp_uidl)
            raise
        try:
            uids = await self._wait(exp_uidl)
        except error_proto as exc:
            if not _is_err_reply(exc):
                raise
            uids = None
        return result, uids

    async def list_many(self, which):
        """{number: octets} from LIST n for each number in which,
        pipelined as dele_many() is; -ERR raises error_proto with the
        number as its `which` attribute, once the replies in flight are
        read."""
        numbers = list(which)
        responses = await self._short_many("LIST %s", numbers)
        return dict(_cpoplib._scan_listing(n, resp)
                    for n, resp in zip(numbers, responses))

    def _listing_list(self):
        return self._engine.listing("LIST")

    def _listing_uidl(self):
        return self._engine.listing("UIDL")

    async def uidl_map(self):
        """{message number: unique id (bytes)} from one UIDL."""
        self._engine.check()
        return await self._command("UIDL", self._listing_uidl, True)

    async def list_map(self):
        """{message number: size in octets} from one LIST."""
        self._engine.check()
        return await self._command("LIST", self._listing_list, True)

    # ---- authentication ----

    async def auth(self, mechanism, authobject=None, initial_response=None):
        """AUTH (RFC 5034) as CPython main's poplib does it: with
        initial_response sent on the AUTH line, or with authobject, a
        callable taking each decoded challenge and returning the response
        (bytes, str or None; b'*' cancels; it may be a coroutine
        function)."""
        if authobject is not None and initial_response is not None:
            raise ValueError("authobject and initial_response are mutually "
                             "exclusive")
        mech = f"{mechanism}"
        if initial_response is not None:
            ir = initial_response
            if isinstance(ir, str):
                ir = bytes(ir, self.encoding)
            b64 = base64.b64encode(ir).decode("ascii")
            return await self._command(f"AUTH {mech} {b64}".rstrip(),
                                       self._engine.short)
        if authobject is None:
            return await self._command(f"AUTH {mech}", self._engine.short)
        await self._exclusive_enter()
        try:
            line = f"AUTH {mech}"
            while True:
                resp = await self._interruptible(line, self._engine.short)
                if resp[:3] == b"+OK":
                    return resp
                text = resp[1:].lstrip(b" ")
                if text:
                    try:
                        challenge = base64.b64decode(text)
                    except Exception:
                        padded = text + b"=" * (-len(text) % 4)
                        challenge = base64.b64decode(padded, validate=False)
                else:
                    challenge = b""
                try:
                    response = authobject(challenge)
                    if asyncio.iscoroutine(response):
                        response = await response
                except BaseException:
                    # the server waits inside the exchange
                    self._shut("auth()'s authobject failed mid-exchange")
                    raise
                if response is None:
                    response = b""
                elif isinstance(response, str):
                    response = bytes(response, self.encoding)
                if response == b"*":
                    return await self._interruptible("*", self._engine.short)
                line = base64.b64encode(response).decode("ascii")
        finally:
            self._gate.release()

    async def _interruptible(self, line, read):
        """A step of an exchange: a cancellation or time-out midway
        leaves the server inside the exchange, so the connection is
        closed."""
        try:
            return await self._exchange_step(line, read)
        except (asyncio.CancelledError, TimeoutError):
            self._shut("an authentication exchange was interrupted")
            raise

    async def login(self, user, password=None, *, mechanism=None,
                    token=None, allow_plaintext=False):
        """Log in with the strongest mechanism the server offers, as the
        blocking login() does (SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, APOP,
        PLAIN, LOGIN, USER/PASS; OAUTHBEARER or XOAUTH2 with token=;
        with neither, over TLS, EXTERNAL: the TLS client certificate);
        SCRAM's key derivation runs in the loop's default executor, so the
        event loop never waits for it."""
        if not isinstance(user, str):
            raise TypeError("user must be str, not %.100s"
                            % type(user).__name__)
        if password is not None and token is not None:
            raise ValueError("login() needs either a password or a token "
                             "(not both)")
        if password is not None and not isinstance(password, str):
            raise TypeError("password must be str, not %.100s"
                            % type(password).__name__)
        allow = bool(allow_plaintext)
        await self._exclusive_enter()
        try:
            return await self._login(user, password, mechanism, token, allow)
        finally:
            self._gate.release()

    async def _login(self, user, password, mechanism, token, allow):
        run = self._exchange_step
        if password is None and token is None:
            return await self._login_external(user, mechanism, run)
        if mechanism is not None:
            name = SASLClient.check(mechanism, token is not None,
                                    self._tls_established, allow)
            if name == "EXTERNAL":
                raise ValueError("mechanism %r takes no password or token "
                                 "(the TLS client certificate is the "
                                 "credential)" % (mechanism,))
        else:
            caps = await self._capa_or_none(run)
            apop = bool(self.timestamp.match(self.welcome))
            name = SASLClient.pick(caps.get("SASL"), token is not None, apop)
            name = SASLClient.check(name, token is not None,
                                    self._tls_established, allow)
        if token is not None:
            secret = token() if callable(token) else token
            if not isinstance(secret, str):
                raise TypeError("the token must be a str (or a callable "
                                "returning one), not %.100s"
                                % type(secret).__name__)
        else:
            secret = password
        if name == "APOP":
            return await self._apop(user, secret, run)
        if name == "USER":
            await run("USER %s" % user, self._engine.short)
            return await run("PASS %s" % secret, self._engine.short)
        sasl = SASLClient(name, user, secret)
        del secret
        return await self._sasl_exchange(sasl)

    async def _capa_or_none(self, run):
        """CAPA for login()'s choice: {} when the server refuses it."""
        try:
            return await self._capa(run)
        except ConnectionClosedError:
            raise
        except error_proto:
            return {}

    async def _login_external(self, user, mechanism, run):
        """login() without a password or a token: EXTERNAL, named or
        offered over TLS (the blocking login()'s rule)."""
        if mechanism is not None:
            if SASLClient.check(mechanism, False, self._tls_established,
                                False) != "EXTERNAL":
                raise ValueError("login() needs either a password or a "
                                 "token (not both) with mechanism %r"
                                 % (mechanism,))
        else:
            offered = []
            if self._tls_established:
                caps = await self._capa_or_none(run)
                offered = [m.upper() for m in caps.get("SASL", ())]
            if "EXTERNAL" not in offered:
                raise ValueError("login() needs either a password or a "
                                 "token (not both); without them only "
                                 "EXTERNAL (a TLS client certificate) can "
                                 "log in, and the server does not offer "
                                 "it on this connection")
        return await self._sasl_exchange(SASLClient("EXTERNAL", user, ""))

    async def _sasl_exchange(self, sasl):
        loop = self._loop
        deadline = None if self.timeout is None else loop.time() + self.timeout
        threaded = sasl.mechanism.startswith("SCRAM-")
        line = sasl.begin()
        while True:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                self._shut("an authentication exchange timed out")
                raise TimeoutError("timed out: the authentication exchange "
                                   "took longer than the connection's "
                                   "timeout")
            try:
                exp = self._submit(line, self._engine.short, False)
                resp = await self._wait(exp, left)
            except error_proto as exc:
                if isinstance(exc, ConnectionClosedError):
                    raise
                raised, after = sasl.refused(exc)
                if after == "close":
                    self._shut("a login was refused mid-exchange")
                raise raised
            except (asyncio.CancelledError, TimeoutError):
                self._shut("an authentication exchange was interrupted")
                raise
            try:
                kind, line = sasl.feed(resp)
                if kind == "step":
                    left = None if deadline is None else max(
                        deadline - loop.time(), 1e-3)
                    if threaded:
                        line = await self._threaded_step(sasl, left)
                    else:
                        line = sasl.step(left)
            except (error_proto, ValueError, MemoryError, TimeoutError,
                    RuntimeError) as exc:
                await self._after_failure(getattr(exc, "after", "close"))
                raise
            if kind == "done":
                return resp

    async def _threaded_step(self, sasl, left):
        future = self._loop.run_in_executor(None, sasl.step, left)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            sasl.stop()
            self._shut("an authentication exchange was interrupted")
            raise

    async def _after_failure(self, after):
        """A failed exchange: cancel it with '*' (RFC 5034: the server
        answers -ERR and the session goes on) or close."""
        if after == "in-step":
            return
        if after == "cancel":
            try:
                await self._exchange_step("*", self._engine.short)
            except error_proto as exc:
                if (not isinstance(exc, ConnectionClosedError)
                        and isinstance(exc.args[0], bytes)
                        and exc.args[0].startswith(b"-ERR")):
                    return
            except BaseException:
                pass
        self._shut("a login failed mid-exchange")


class POP3_SSL(POP3):
    """An asyncio POP3 connection over TLS from the first byte (POP3S).
    Without a context, the one of ssl._create_stdlib_context() is used,
    as poplib does."""

    def __init__(self, host, port=POP3_SSL_PORT, *,
                 timeout=socket._GLOBAL_DEFAULT_TIMEOUT, context=None):
        if _ssl is None:
            raise RuntimeError("the ssl module is not available")
        if context is None:
            context = _ssl._create_stdlib_context()
        self.context = context
        super().__init__(host, port, timeout)
        self._tls_established = True

    def _ssl_context(self):
        return self.context

    async def stls(self, context=None):
        """Always raises error_proto: the session is already TLS."""
        raise error_proto("-ERR TLS session already established")


async def open_pop3(host, port=None, *, timeout=socket._GLOBAL_DEFAULT_TIMEOUT,
                    ssl=None):
    """A connected POP3 (or, with ssl=True or an ssl.SSLContext, POP3_SSL)
    connection, its greeting read."""
    if ssl:
        conn = POP3_SSL(host, POP3_SSL_PORT if port is None else port,
                        timeout=timeout,
                        context=None if ssl is True else ssl)
    else:
        conn = POP3(host, POP3_PORT if port is None else port, timeout)
    await conn.connect()
    return conn


def _is_err_reply(exc):
    return (isinstance(exc, error_proto)
            and not isinstance(exc, ConnectionClosedError)
            and len(exc.args) == 1 and isinstance(exc.args[0], bytes))


async def _write_all(write, chunk):
    """write(chunk) until all of it is taken (a raw file may take part of
    it; None counts as all); write may return an awaitable."""
    done = 0
    size = len(chunk)
    part = chunk
    while done < size:
        res = write(part)
        if hasattr(res, "__await__"):
            res = await res
        if res is None:
            break
        n = res.__index__()
        if n <= 0 or n > len(part):
            raise OSError("write() returned %d for %d bytes" % (n, len(part)))
        done += n
        part = memoryview(chunk)[done:]
    return size


class _FetchMany:
    """fetch_many()'s async iterator: RETRs in flight as FetchWindow (the
    blocking iterator's rule) allows, the messages in order."""

    def __init__(self, conn, which, delete, pipeline, window, sizes):
        self._conn = conn
        self._which = which
        self._delete = delete
        self._pipeline = pipeline
        self._win = window
        self._sizes = sizes
        self._queue = collections.deque()   # (kind, index, size, exp)
        self._next = 0
        self._retr_in_flight = 0
        self._bytes_in_flight = 0
        self._to_delete = None
        self._started = False
        self._finished = False
        self._pipe = False

    @property
    def window(self):
        """RETR commands let in flight now."""
        return self._win.window

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._finished:
            raise StopAsyncIteration
        conn = self._conn
        try:
            if not self._started:
                self._started = True
                pipe = self._pipeline
                if pipe is None and self._which:
                    pipe = await conn._server_pipelines()
                if not pipe:
                    self._win.single()
                self._pipe = bool(pipe)
                self._win.start()
            await self._refill()
            while True:
                if not self._queue:
                    self._finish()
                    raise StopAsyncIteration
                kind, index, size, exp = self._queue[0]
                try:
                    res = await conn._wait(exp)
                except error_proto as exc:
                    self._queue.popleft()
                    if _is_err_reply(exc):
                        exc.which = self._which[index]
                    raise
                self._queue.popleft()
                if kind == "RETR":
                    self._retr_in_flight -= 1
                    self._bytes_in_flight -= size
                    self._win.received(len(res))
                    if self._delete:
                        self._to_delete = index
                    return self._which[index], res
        except StopAsyncIteration:
            raise
        except BaseException:
            self._finish()
            raise

    async def _refill(self):
        conn = self._conn
        items = []
        plan = []
        if self._to_delete is not None:
            index, self._to_delete = self._to_delete, None
            items.append(("DELE %s" % self._which[index], conn._engine.short,
                          False))
            plan.append(("DELE", index, 0))
        sizes = self._sizes
        while self._next < len(self._which):
            index = self._next
            size = 0
            if sizes is not None:
                size = FetchWindow.known_size(sizes, self._which[index])
            if not self._win.may_send(self._retr_in_flight,
                                      self._bytes_in_flight, size):
                break
            items.append(("RETR %s" % self._which[index],
                          conn._engine.message, True))
            plan.append(("RETR", index, size))
            self._next += 1
            self._retr_in_flight += 1
            self._bytes_in_flight += size
        if items:
            async with conn._gate:
                exps = conn._submit_many(items, self._pipe)
            for (kind, index, size), exp in zip(plan, exps):
                self._queue.append((kind, index, size, exp))

    def _finish(self):
        """Stop: the replies in flight are read into nothing in the
        background; nothing more is deleted."""
        if self._finished:
            return
        self._finished = True
        self._to_delete = None
        for _, _, _, exp in self._queue:
            self._conn._abandon(exp)
        self._queue.clear()

    async def aclose(self):
        """Stop early (see _finish)."""
        self._finish()

