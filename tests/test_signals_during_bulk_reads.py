"""A signal handler runs promptly while a bulk read keeps receiving data.

A signal arriving during a RETR whose data never stops coming: its
handler runs, and its exception propagates out of retr(), within a
generous bound (not when the response ends), as with poplib; the
connection stays coherent afterwards.
"""
import signal
import time

import pytest

from scripted_server import ScriptedServer


class Interrupt(Exception):
    pass


STREAM_PIECE = b"".join(b"stream %05d " % i + b"z" * 60 + b"\r\n"
                        for i in range(200))          # about 15 KiB


def _is_stream_line_suffix(line):
    """Is `line` the end of one of STREAM_PIECE's lines (digits are
    wildcards)?  What readline() returns after an interrupted read."""
    template = b"stream 00000 " + b"z" * 60 + b"\r\n"
    if not line.endswith(b"\r\n") or len(line) > len(template):
        return False
    tail = template[len(template) - len(line):]
    return all(a == b or (48 <= a <= 57 and 48 <= b <= 57)
               for a, b in zip(line, tail))


def _endless_retr(conn):
    conn.send(b"+OK hi\r\n")
    conn.recv_line(timeout=5)
    conn.send(b"+OK endless\r\n")
    end = time.monotonic() + 10          # ~3 MB/s for at most 10 s
    while time.monotonic() < end:
        conn.send(STREAM_PIECE)
        conn.stall(0.005)
    # then EOF: the response never ends


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
@pytest.mark.parametrize("delivery", ["other-thread", "default"])
def test_signal_handler_runs_during_bulk_read(mod, delivery):
    """SIGALRM 0.2 s into an endless RETR; the handler raises.  The
    exception must leave retr() within 2 s of the timer (poplib: within
    milliseconds).

    "other-thread": SIGALRM is blocked in the main thread, so the kernel
    delivers it to another thread and the main thread's recv() is never
    interrupted (no EINTR): only a C loop that checks for pending signals
    lets the handler run.  Deterministic.  "default": the kernel picks
    the thread; the main thread may then be inside a blocking recv() and
    get EINTR, so a broken build can pass this variant by luck."""
    fired = []

    def handler(signum, frame):
        fired.append(time.monotonic())
        raise Interrupt()

    with ScriptedServer(_endless_retr, timeout=30) as srv:
        client = mod.POP3(srv.host, srv.port, timeout=15)

        def attempt():
            try:
                client.retr(1)
            except Interrupt:
                return "interrupted", time.monotonic()
            except BaseException as exc:
                return "raised %r" % (exc,), time.monotonic()
            return "returned", time.monotonic()

        old = signal.signal(signal.SIGALRM, handler)
        masked = False
        try:
            if delivery == "other-thread":
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
                masked = True
            start = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            try:
                what, when = attempt()
            except Interrupt:            # the handler ran after retr() ended
                what, when = "handler ran late", time.monotonic()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            if masked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
            signal.signal(signal.SIGALRM, old)
        delay = when - (start + 0.2)
        assert what == "interrupted", (what, delay)
        assert delay < 2.0, delay
        assert fired and fired[0] - (start + 0.2) < 2.0

        # the connection is still coherent: the stream goes on where the
        # interrupted read left it, and closing works
        try:
            line = client.file.readline()
        except (OSError, ValueError):
            pass
        else:
            assert _is_stream_line_suffix(line), line
        client.close()
        assert client.sock is None and client.file is None
