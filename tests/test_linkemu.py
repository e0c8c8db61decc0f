"""The benchmarks' link emulator (benchmarks/linkemu.py): a TCP proxy that
adds delay and a rate limit.  Correctness only, with loose bounds: the
delay is at least what was asked, bytes arrive intact and in order both
ways, FIN and half-close cross it, and a sender that nobody reads from
is blocked after a bounded number of bytes.  Its accuracy is measured by
``python -m benchmarks.linkemu --calibrate``, not here."""

import os
import socket
import sys
import threading
import time

import pytest

from benchmarks.linkemu import (LinkEmulator, ThreadedServer, parse_target,
                                recv_exactly)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the emulator's tests run on Linux")


def echo(conn):
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def connect(link):
    s = socket.create_connection(("127.0.0.1", link.port), timeout=20)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


@pytest.fixture
def echo_server():
    srv = ThreadedServer(echo)
    yield srv
    srv.close()


def test_threaded_server_close_ends_its_thread():
    """No thread of a closed server stays blocked in accept() (they outlived
    the test process's interpreter, and the sanitizer job counted what
    their frames held as leaks)."""
    before = set(threading.enumerate())
    srv = ThreadedServer(echo)
    srv.close()
    deadline = time.monotonic() + 10
    while set(threading.enumerate()) - before and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    assert not set(threading.enumerate()) - before


def test_parse_target():
    assert parse_target("127.0.0.1:110") == ("127.0.0.1", 110)
    assert parse_target(":995") == ("127.0.0.1", 995)
    with pytest.raises(ValueError):
        parse_target("localhost")


def test_round_trip_is_at_least_the_rtt(echo_server):
    rtt = 0.040
    with LinkEmulator(("127.0.0.1", echo_server.port), rtt_ms=rtt * 1e3) \
            as link:
        with connect(link) as s:
            times = []
            for i in range(6):
                t0 = time.perf_counter()
                s.sendall(b"%d" % i)
                assert recv_exactly(s, 1) == b"%d" % i
                times.append(time.perf_counter() - t0)
    # the first exchange also waits for the emulated handshake
    assert times[0] >= 2 * rtt
    assert min(times) >= rtt
    assert sorted(times)[len(times) // 2] < rtt + 0.5   # loose: CI is noisy
    assert link.stats["connections"] == 1


def test_bytes_intact_and_in_order_both_ways(echo_server):
    # a rate, so data is cut into many segments; writes of uneven sizes
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with LinkEmulator(("127.0.0.1", echo_server.port), rtt_ms=4,
                      rate_mbit=400) as link:
        socks = [connect(link) for _ in range(2)]
        got = [bytearray() for _ in socks]

        def reader(s, out):
            while len(out) < len(payload):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                out += chunk

        readers = [threading.Thread(target=reader, args=(s, out))
                   for s, out in zip(socks, got)]
        for t in readers:
            t.start()
        sizes = [1, 7, 1500, 65536, 300000, 4096 * 3 + 5]
        for s in socks:
            pos = i = 0
            while pos < len(payload):
                n = sizes[i % len(sizes)]
                s.sendall(payload[pos:pos + n])
                pos += n
                i += 1
        for t in readers:
            t.join(30)
        for s in socks:
            s.close()
        echo_server.join()          # the FINs reached the server
    for out in got:
        assert len(out) == len(payload)
        assert bytes(out) == payload
    assert link.stats["bytes_up"] == 2 * len(payload)
    assert link.stats["bytes_down"] == 2 * len(payload)


def test_half_close_and_close_cross_the_link():
    events = {}

    def handler(conn):
        # reads until the client's FIN, then answers and closes
        data = bytearray()
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        events["server_eof"] = time.perf_counter()
        conn.sendall(b"got %d bytes" % len(data))

    srv = ThreadedServer(handler)
    rtt = 0.030
    try:
        with LinkEmulator(("127.0.0.1", srv.port), rtt_ms=rtt * 1e3) as link:
            with connect(link) as s:
                s.sendall(b"x" * 10000)
                t_fin = time.perf_counter()
                s.shutdown(socket.SHUT_WR)
                # the other direction still works after our FIN
                answer = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break                  # the server's close
                    answer += chunk
                t_eof = time.perf_counter()
        srv.join()
    finally:
        srv.close()
    assert answer == b"got 10000 bytes"
    # the FIN took at least the one-way delay (and waited for the
    # handshake), the answer and the server's FIN another one
    assert events["server_eof"] - t_fin >= rtt / 2
    assert t_eof - t_fin >= rtt


def test_server_close_reaches_client_as_eof():
    def handler(conn):
        conn.sendall(b"bye")

    srv = ThreadedServer(handler)
    try:
        with LinkEmulator(("127.0.0.1", srv.port), rtt_ms=10) as link:
            with connect(link) as s:
                assert recv_exactly(s, 3) == b"bye"
                assert s.recv(10) == b""
        srv.join()
    finally:
        srv.close()


def test_a_sender_nobody_reads_from_is_blocked():
    """The server never reads: what the client can write without
    blocking is bounded (the queue, the proxy's small socket buffers,
    the kernel's) instead of growing without end in the proxy."""
    release = threading.Event()

    def handler(conn):
        release.wait(20)

    srv = ThreadedServer(handler)
    limit = 64 * 1024 * 1024
    try:
        with LinkEmulator(("127.0.0.1", srv.port), rtt_ms=2, rate_mbit=100,
                          queue_bytes=256 * 1024) as link:
            with connect(link) as s:
                s.setblocking(False)
                block = b"z" * 65536
                sent = 0
                quiet_since = time.monotonic()
                while sent < limit and time.monotonic() - quiet_since < 1.0:
                    try:
                        sent += s.send(block)
                        quiet_since = time.monotonic()
                    except BlockingIOError:
                        time.sleep(0.01)
                release.set()
        srv.join()
    finally:
        release.set()
        srv.close()
    assert 0 < sent < limit


def test_more_connections_than_select_can_wait_for(echo_server):
    """600 connections at once: the emulator holds 1,200 sockets, more
    than select()'s FD_SETSIZE (1,024) allows (it was a select() loop,
    and at 1,000 concurrent sessions it stopped).  Every one gets its
    own bytes back, and no sooner than the RTT."""
    import resource
    n = 600
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * n + 256      # this process: clients and the echo server's
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip("RLIMIT_NOFILE's hard limit %d is below %d" % (hard, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        with LinkEmulator(("127.0.0.1", echo_server.port), rtt_ms=20) as link:
            socks = [connect(link) for _ in range(n)]
            try:
                t0 = time.monotonic()
                for i, s in enumerate(socks):
                    s.sendall(b"%05d" % i)
                got = [recv_exactly(s, 5) for s in socks]
                elapsed = time.monotonic() - t0
            finally:
                for s in socks:
                    s.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert got == [b"%05d" % i for i in range(n)]
    assert elapsed >= 0.020


def test_nagle_holds_a_small_write_until_the_last_one_is_acked(echo_server):
    """--nagle: the second of two small writes waits for the first one's
    ACK (one RTT) before it crosses, as a client's Nagle algorithm makes
    it on a real path; without it both cross at once."""
    rtt = 0.060
    done = {}
    for nagle in (False, True):
        with LinkEmulator(("127.0.0.1", echo_server.port), rtt_ms=rtt * 1e3,
                          nagle=nagle) as link:
            with connect(link) as s:
                s.sendall(b"0")
                assert recv_exactly(s, 1) == b"0"     # past the handshake
                t0 = time.perf_counter()
                s.sendall(b"a")
                time.sleep(0.005)       # two writes, not one, for the proxy
                s.sendall(b"b")
                assert recv_exactly(s, 2) == b"ab"
                done[nagle] = time.perf_counter() - t0
    assert done[False] >= rtt
    assert done[True] >= 2 * rtt
    assert done[False] < done[True]
