"""A wide-area link between a POP3 client and a server on this machine.

    python -m benchmarks.linkemu --listen-port 0 --target HOST:PORT \\
                                 --rtt MS [--rate MBIT] [--queue KIB]
    python -m benchmarks.linkemu --calibrate        # measures itself

A TCP proxy on 127.0.0.1: every connection accepted on the listening
port is forwarded to --target, and the bytes going either way cross an
emulated link, one per direction, shared by all connections (as the
access line of one mailbox host would be):

* **propagation delay**: every byte reaches the other side RTT/2 after
  it left the bottleneck (so a request/response pair costs one RTT);
* **a bottleneck rate** (optional, Mbit/s of TCP payload, each
  direction): bytes leave the bottleneck no faster than the rate, in
  segments of about 0.5 ms of data (at least 1,448 bytes, at most
  64 KiB); a segment is released whole when its last byte has arrived,
  as a store-and-forward hop would;
* **a bounded queue** in front of the bottleneck (--queue, default one
  bandwidth-delay product plus 64 KiB).  Nothing is dropped: when the
  queue is full the proxy stops reading from the sender, whose socket
  buffers then fill and whose writes block, which is what TCP's flow
  control makes of a full path.  Without a rate, the bytes held in the
  delay line (per direction) are bounded the same way (default 16 MiB).
  Bytes released but not yet taken by a slow receiver count too: a
  client that neither reads nor stops writing blocks, as on a real link.
* **connection set-up**: the proxy opens its connection to the server
  1.5 RTT after it accepted the client's, so the server's greeting
  reaches the client 2 RTT after connect() began, as after a real TCP
  handshake (the client's connect() itself returns at once: the kernel
  completes it on loopback).  --no-handshake turns this off.
* **close and half-close** travel like data: a FIN (shutdown or close)
  is passed on after every byte before it, and a reset (ECONNRESET,
  or a write to a side that is gone) closes the far side abortively
  after the same delay.

What it does not model: packet loss, TCP slow start and congestion
control (the path behaves like a TCP connection whose window is already
open), header overhead (the rate is payload), and the ACK clock: both
ends talk TCP to the proxy over loopback, so their ACKs come back in
microseconds and Nagle's algorithm never holds a small write for a
round trip as it would on a real path.

It runs in a process of its own (LinkEmulator starts one): a single
thread around epoll(7), whose descriptor it waits for with select(2)
(microsecond timeouts; epoll's are in whole milliseconds); what each
connection waits for is registered when it changes, so a round of the
loop costs its events and due timers, not the number of connections
(a thousand at once are served), reading up to 256 KiB at a time, keeping each
direction's segments in a FIFO of (arrival time, connection, bytes) --
arrival times only grow, so the FIFO's head is always the next timer
-- and writing released segments with sendmsg() (scatter-gather, no
copy).  The proxy's own kernel socket buffers are kept small
(--sockbuf, default 128 KiB) so that few bytes wait outside the model.

At exit (SIGTERM, SIGINT, or end of standard input with --stdin-control)
it prints one JSON line of statistics to standard error: connections,
bytes each way, how late releases were (mean and max), its CPU time.

Python API::

    with LinkEmulator(("127.0.0.1", 110), rtt_ms=50, rate_mbit=100) as link:
        poplib.POP3("127.0.0.1", link.port)
"""

import argparse
import collections
import errno
import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

READ_SIZE = 256 * 1024
MIN_SEGMENT = 1448
MAX_SEGMENT = 64 * 1024
SEGMENT_SECONDS = 0.0005
OUT_LIMIT = 256 * 1024          # released, not taken by the receiver
DEFAULT_SOCKBUF = 128 * 1024
DEFAULT_QUEUE_NO_RATE = 16 * 1024 * 1024
QUEUE_MARGIN = 64 * 1024
IOV_MAX = 512
NAGLE_MSS = 1448                # a 1500-byte MTU path with TCP timestamps
# A select() sleeping longer than EARLY_AFTER returns EARLY_BY sooner and
# the loop sleeps the rest: on this kind of machine a 20 ms sleep ends
# ~150 µs late, a 0.3 ms one ~25 µs late.
EARLY_AFTER = 0.001
EARLY_BY = 0.0003

EOF, RESET = "eof", "reset"


class _Stop(Exception):
    """SIGTERM or SIGINT: leave the loop (select() would otherwise be
    restarted after the handler)."""


_RESET_ERRORS = (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN,
                 errno.ECONNABORTED, errno.ETIMEDOUT)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_queue(rtt_ms, rate_mbit):
    """Bytes the bottleneck queue holds by default: one bandwidth-delay
    product plus a margin; without a rate, a fixed bound on the delay
    line."""
    if not rate_mbit:
        return DEFAULT_QUEUE_NO_RATE
    return int(rate_mbit * 1e6 / 8 * rtt_ms / 1e3) + QUEUE_MARGIN


def describe(rtt_ms, rate_mbit, nagle=False):
    """'50 ms / 100 Mbit/s', '50 ms', '50 ms / 100 Mbit/s, Nagle',
    'loopback'."""
    if rtt_ms is None:
        return "loopback"
    text = "%g ms" % rtt_ms
    if rate_mbit:
        text += " / %g Mbit/s" % rate_mbit
    if nagle:
        text += ", Nagle"
    return text


# --------------------------------------------------------------------------
# the emulator's event loop (runs in the child process)

class Direction:
    """One direction of the link: the bottleneck and the delay line,
    shared by every connection."""

    def __init__(self, delay, rate_mbit, queue_limit):
        self.delay = delay
        self.rate = rate_mbit * 1e6 / 8 if rate_mbit else None  # bytes/s
        self.queue_limit = queue_limit
        self.segment = (min(MAX_SEGMENT, max(MIN_SEGMENT,
                                             int(self.rate * SEGMENT_SECONDS)))
                        if self.rate else None)
        self.last_departure = 0.0
        self.line = collections.deque()   # (arrival, pipe, bytes or marker)
        self.held = 0                     # bytes in the line
        self.bytes = 0
        self.max_backlog = 0
        self.blocked = set()              # pipes waiting for queue room

    def backlog(self, now):
        """Bytes waiting for the bottleneck (not yet serialised)."""
        if self.rate is None:
            return 0
        return max(0.0, self.last_departure - now) * self.rate

    def accepting(self, now):
        if self.rate is None:
            return self.held < self.queue_limit
        return self.backlog(now) < self.queue_limit

    def unblocks_at(self):
        """When a full bottleneck queue is below its limit again."""
        return self.last_departure - self.queue_limit / self.rate

    def push(self, pipe, data, now):
        n = len(data)
        self.bytes += n
        self.held += n
        line = self.line
        if self.rate is None:
            line.append((now + self.delay, pipe, data))
            return
        dep = max(now, self.last_departure)
        view = memoryview(data)
        seg, rate, delay = self.segment, self.rate, self.delay
        for i in range(0, n, seg):
            piece = view[i:i + seg]
            dep += len(piece) / rate
            line.append((dep + delay, pipe, piece))
        self.last_departure = dep
        backlog = (dep - now) * rate
        if backlog > self.max_backlog:
            self.max_backlog = backlog

    def push_marker(self, pipe, marker, now):
        """A FIN or a reset: after every byte before it."""
        self.line.append((max(now, self.last_departure) + self.delay,
                          pipe, marker))


class Pipe:
    """One connection's bytes in one direction: src -> link -> dst."""

    def __init__(self, conn, src, dst, direction):
        self.conn = conn
        self.src = src
        self.dst = dst
        self.direction = direction
        self.reading = True               # src not at EOF / not failed
        self.pending = collections.deque()  # released, not yet sent
        self.pending_bytes = 0
        self.fin = False                  # pass on a FIN once pending is sent
        self.done = False                 # FIN passed on
        self.nagle = None                 # bytes held by Nagle (--nagle)
        self.small_acked_at = 0.0         # the last partial segment's ACK


class Connection:
    def __init__(self, client, connect_at):
        self.client = client
        self.server = None                # made at once, connected later
        self.connect_at = connect_at      # when to open the server side
        self.connected = False
        self.closed = False
        self.resetting = False            # a reset is crossing the link
        self.up = self.down = None


class Emulator:
    def __init__(self, listener, target, rtt_ms, rate_mbit, queue_bytes,
                 handshake=True, sockbuf=DEFAULT_SOCKBUF, control=None,
                 nagle=False):
        self.listener = listener
        self.nagle = nagle
        self.target = target
        delay = rtt_ms / 2e3
        self.delay = delay
        self.handshake = 3 * delay if handshake else 0.0
        if queue_bytes is None:
            queue_bytes = default_queue(rtt_ms, rate_mbit)
        self.up = Direction(delay, rate_mbit, queue_bytes)
        self.down = Direction(delay, rate_mbit, queue_bytes)
        self.sockbuf = sockbuf
        self.control = control
        self.conns = set()
        self.connect_queue = collections.deque()  # by connect_at (grows)
        self.dirty = set()                # interest to recompute
        self.ep = None                    # the epoll object, in run()
        self.masks = {}                   # fd -> registered event mask
        self.by_fd = {}                   # fd -> (connection, is client)
        self.stopping = False
        self.stats = {"connections": 0, "late_sum": 0.0, "late_max": 0.0,
                      "releases": 0, "connect_failures": 0}

    # -- sockets --------------------------------------------------------

    def _tune(self, sock):
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.sockbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.sockbuf)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sockbuf)

    def _accept(self, now):
        for _ in range(64):             # a burst of connects, a few rounds
            try:
                client, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            self._accepted(client, now)

    def _accepted(self, client, now):
        self._tune(client)
        conn = Connection(client, now + self.handshake)
        server = conn.server = socket.socket(socket.AF_INET,
                                             socket.SOCK_STREAM)
        self._tune(server)
        # the client's bytes cross the link while the server side opens
        conn.up = Pipe(conn, client, server, self.up)
        conn.down = Pipe(conn, server, client, self.down)
        if self.nagle:
            conn.up.nagle = bytearray()
        self.conns.add(conn)
        self.connect_queue.append(conn)
        self.by_fd[client.fileno()] = (conn, True)
        self.by_fd[server.fileno()] = (conn, False)
        self.dirty.add(conn)
        self.stats["connections"] += 1

    def _open_server(self, conn):
        conn.connect_at = None
        self.dirty.add(conn)
        err = conn.server.connect_ex(self.target)
        if err not in (0, errno.EINPROGRESS):
            self.stats["connect_failures"] += 1
            self._abort(conn)

    def _connect_done(self, conn):
        self.dirty.add(conn)
        err = conn.server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.stats["connect_failures"] += 1
            self._abort(conn)
            return
        conn.connected = True

    @staticmethod
    def _hard_close(sock):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()

    def _abort(self, conn):
        """Close both sides with a reset (what a reset on one side makes
        of the other, once it has crossed the link)."""
        if conn.closed:
            return
        conn.closed = True
        self._forget(conn)
        for sock in (conn.client, conn.server):
            self._hard_close(sock)
        for pipe in (conn.up, conn.down):
            pipe.reading = False
            pipe.pending.clear()
            pipe.pending_bytes = 0

    def _close(self, conn):
        conn.closed = True
        self._forget(conn)
        conn.client.close()
        conn.server.close()

    # -- which sockets are waited for -----------------------------------

    def _forget(self, conn):
        """conn is closing: its sockets leave the epoll set."""
        self.conns.discard(conn)
        self.dirty.discard(conn)
        for pipe in (conn.up, conn.down):
            pipe.direction.blocked.discard(pipe)
        for sock in (conn.client, conn.server):
            fd = sock.fileno()
            if fd < 0:
                continue
            self.by_fd.pop(fd, None)
            if self.masks.pop(fd, 0):
                self.ep.unregister(fd)

    def _wants_read(self, pipe, now):
        """Whether pipe.src is to be read now; a pipe held back only
        because its direction's queue is full waits in direction.blocked
        (taken up again once the queue has room)."""
        conn = pipe.conn
        if (not pipe.reading or pipe.pending_bytes >= OUT_LIMIT
                or (pipe is conn.down and not conn.connected)):
            return False
        if pipe.direction.accepting(now):
            return True
        pipe.direction.blocked.add(pipe)
        return False

    def _set_mask(self, sock, mask):
        fd = sock.fileno()
        old = self.masks.get(fd, 0)
        if mask == old:
            return
        # a socket with nothing to wait for leaves the set: epoll would
        # still report its errors and hang-ups, over and over
        if not old:
            self.ep.register(fd, mask)
        elif not mask:
            self.ep.unregister(fd)
        else:
            self.ep.modify(fd, mask)
        if mask:
            self.masks[fd] = mask
        else:
            self.masks.pop(fd, None)

    def _update(self, conn, now):
        """Register what conn's two sockets are to be waited for: the
        conditions the old select() loop tested on every round."""
        if conn.closed:
            return
        up, down = conn.up, conn.down
        client = server = 0
        if self._wants_read(up, now):
            client |= select.EPOLLIN
        if down.pending and conn.connected:
            client |= select.EPOLLOUT
        if self._wants_read(down, now):
            server |= select.EPOLLIN
        if conn.connect_at is None and not conn.connected:
            server |= select.EPOLLOUT           # connect() completing
        elif up.pending and conn.connected:
            server |= select.EPOLLOUT
        self._set_mask(conn.client, client)
        self._set_mask(conn.server, server)

    # -- moving bytes ---------------------------------------------------

    def _read(self, pipe, now):
        self.dirty.add(pipe.conn)
        try:
            data = pipe.src.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno not in _RESET_ERRORS:
                raise
            self._reset_across(pipe, now)
            return
        if data:
            if pipe.nagle is None:
                pipe.direction.push(pipe, data, now)
            else:
                pipe.nagle += data
                self._nagle(pipe, now)
        else:
            pipe.reading = False
            if pipe.nagle:                # a FIN takes what is held along
                pipe.direction.push(pipe, bytes(pipe.nagle), now)
                pipe.nagle.clear()
            pipe.direction.push_marker(pipe, EOF, now)

    def _nagle(self, pipe, now):
        """The client's Nagle algorithm as Linux applies it on a real
        path (with Minshall's change): full segments go at once; a
        partial one waits while an earlier partial one is unacknowledged,
        and goes when its ACK is back.  The ACK is taken to leave the
        server with the first byte it sends after the segment arrived
        (behind what already waits in the bottleneck), one delay later
        it is back."""
        held = pipe.nagle
        full = len(held) - len(held) % NAGLE_MSS
        d = pipe.direction
        if full:
            d.push(pipe, bytes(held[:full]), now)
            del held[:full]
        if held and now >= pipe.small_acked_at:
            d.push(pipe, bytes(held), now)
            held.clear()
            arrival = d.line[-1][0]
            back = self.down if d is self.up else self.up
            pipe.small_acked_at = (max(arrival, back.last_departure)
                                   + back.delay)

    def _release(self, direction, now):
        line = direction.line
        stats = self.stats
        touched = []
        while line and line[0][0] <= now:
            arrival, pipe, data = line.popleft()
            late = now - arrival
            stats["late_sum"] += late
            stats["releases"] += 1
            if late > stats["late_max"]:
                stats["late_max"] = late
            if data is EOF:
                pipe.fin = True
            elif data is RESET:
                self._abort(pipe.conn)
                continue
            else:
                direction.held -= len(data)
                if pipe.conn.closed:
                    continue
                self.dirty.add(pipe.conn)
                pipe.pending.append(data)
                pipe.pending_bytes += len(data)
            if not touched or touched[-1] is not pipe:
                touched.append(pipe)
        for pipe in touched:
            if not pipe.conn.closed and pipe.conn.connected:
                self._write(pipe, now)

    def _write(self, pipe, now):
        self.dirty.add(pipe.conn)
        pending = pipe.pending
        while pending:
            bufs = list(pending) if len(pending) <= IOV_MAX else \
                [pending[i] for i in range(IOV_MAX)]
            try:
                sent = pipe.dst.sendmsg(bufs)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in _RESET_ERRORS:
                    raise
                self._peer_gone(pipe, now)
                return
            pipe.pending_bytes -= sent
            while sent:
                head = pending[0]
                if len(head) <= sent:
                    sent -= len(head)
                    pending.popleft()
                else:
                    pending[0] = memoryview(head)[sent:]
                    sent = 0
        if pipe.fin and not pipe.done:
            pipe.done = True
            try:
                pipe.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            other = pipe.conn.up if pipe is pipe.conn.down else pipe.conn.down
            if other.done:
                self._close(pipe.conn)

    def _peer_gone(self, pipe, now):
        """pipe.dst refused bytes: it is gone.  Its side stops, and the
        sender learns it (a reset) after crossing the link back."""
        conn = pipe.conn
        pipe.pending.clear()
        pipe.pending_bytes = 0
        pipe.reading = False
        self._reset_across(conn.up if pipe is conn.down else conn.down, now)

    @staticmethod
    def _reset_across(pipe, now):
        """pipe.src is gone: read no more from it, and send its reset
        across the link to pipe.dst (once per connection)."""
        pipe.reading = False
        if not pipe.conn.resetting:
            pipe.conn.resetting = True
            pipe.direction.push_marker(pipe, RESET, now)

    # -- the loop -------------------------------------------------------

    def run(self):
        """The event loop: epoll for readiness, its own descriptor waited
        for by select() for the timeout (epoll's are whole milliseconds,
        select()'s microseconds; the epoll descriptor is made first, so
        it is below select()'s FD_SETSIZE whatever the connections'
        are).  Per round it costs the events and the timers that are due,
        not the connections: what a connection waits for is registered
        when it changes."""
        listener = self.listener
        listener.setblocking(False)
        ep = self.ep = select.epoll()
        try:
            self._loop(ep, listener)
        finally:
            for conn in list(self.conns):
                if not conn.closed:
                    self._abort(conn)
            ep.close()

    def _loop(self, ep, listener):
        up, down = self.up, self.down
        mono = time.monotonic
        lfd = listener.fileno()
        ep.register(lfd, select.EPOLLIN)
        cfd = None
        if self.control is not None:
            cfd = self.control.fileno()
            ep.register(cfd, select.EPOLLIN)
        epfd = [ep.fileno()]
        queue = self.connect_queue
        dirty = self.dirty
        while not self.stopping:
            now = mono()
            if up.line and up.line[0][0] <= now:
                self._release(up, now)
            if down.line and down.line[0][0] <= now:
                self._release(down, now)
            while queue and (queue[0].closed or queue[0].connect_at is None
                             or queue[0].connect_at <= now):
                conn = queue.popleft()
                if not conn.closed and conn.connect_at is not None:
                    self._open_server(conn)
            deadline = queue[0].connect_at if queue else None
            if self.nagle:
                for conn in list(self.conns):
                    pipe = conn.up
                    if not pipe.nagle:
                        continue
                    if pipe.small_acked_at <= now:
                        self._nagle(pipe, now)
                    elif deadline is None or pipe.small_acked_at < deadline:
                        deadline = pipe.small_acked_at
            for d in (up, down):
                if d.blocked:
                    if d.accepting(now):
                        dirty.update(p.conn for p in d.blocked)
                        d.blocked.clear()
                    elif d.rate is not None:
                        t = d.unblocks_at()
                        if deadline is None or t < deadline:
                            deadline = t
            while dirty:
                self._update(dirty.pop(), now)
            for d in (up, down):
                if d.line and (deadline is None or d.line[0][0] < deadline):
                    deadline = d.line[0][0]
            if deadline is None:
                timeout = None
            else:
                timeout = max(0.0, deadline - mono())
                if timeout > EARLY_AFTER:
                    # long sleeps end late (idle states): wake up early
                    # and take the rest as a short one
                    timeout -= EARLY_BY
            try:
                ready, _, _ = select.select(epfd, [], [], timeout)
            except InterruptedError:
                continue
            if not ready:
                continue
            events = ep.poll(0)
            now = mono()
            for fd, ev in events:
                if fd == lfd:
                    self._accept(now)
                    continue
                if fd == cfd:
                    if not os.read(cfd, 4096):
                        self.stopping = True
                    continue
                entry = self.by_fd.get(fd)
                if entry is None:
                    continue
                conn, is_client = entry
                if conn.closed:
                    continue
                self._dispatch(conn, is_client, ev, now)

    def _dispatch(self, conn, is_client, ev, now):
        trouble = ev & (select.EPOLLERR | select.EPOLLHUP)
        if is_client:
            reading, writing = conn.up, conn.down
        else:
            reading, writing = conn.down, conn.up
            if (ev & select.EPOLLOUT or trouble) and not conn.connected \
                    and conn.connect_at is None:
                self._connect_done(conn)
                if conn.closed or not conn.connected:
                    return
                # what arrived while connecting goes now
                if conn.up.pending or conn.up.fin:
                    self._write(conn.up, now)
                return
        if (ev & select.EPOLLOUT or trouble) and writing.pending \
                and conn.connected and not conn.closed:
            self._write(writing, now)
        if (ev & select.EPOLLIN or trouble) and not conn.closed \
                and reading.reading:
            if reading.direction.accepting(now):
                self._read(reading, now)
            else:
                self.dirty.add(conn)    # held back until the queue has room
        self.dirty.add(conn)

    def report(self):
        s = dict(self.stats)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        s["cpu_s"] = ru.ru_utime + ru.ru_stime
        s["bytes_up"] = self.up.bytes
        s["bytes_down"] = self.down.bytes
        s["max_backlog_up"] = int(self.up.max_backlog)
        s["max_backlog_down"] = int(self.down.max_backlog)
        s["late_mean_us"] = (s.pop("late_sum") / s["releases"] * 1e6
                             if s["releases"] else 0.0)
        s["late_max_us"] = s.pop("late_max") * 1e6
        return s


# --------------------------------------------------------------------------
# the API: an emulator in a child process

def parse_target(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("target must be HOST:PORT, not %r" % text)
    return host or "127.0.0.1", int(port)


class LinkEmulator:
    """A link emulator process in front of `target` ((host, port) or
    "HOST:PORT"); `port` is where to connect instead.  rtt_ms=0 and no
    rate gives a plain (but still proxied) connection."""

    def __init__(self, target, rtt_ms=0, rate_mbit=None, queue_bytes=None,
                 handshake=True, sockbuf=DEFAULT_SOCKBUF, listen_port=0,
                 nagle=False):
        if isinstance(target, str):
            target = parse_target(target)
        self.target = tuple(target)
        self.rtt_ms = rtt_ms
        self.rate_mbit = rate_mbit
        self.queue_bytes = queue_bytes
        self.handshake = handshake
        self.sockbuf = sockbuf
        self.listen_port = listen_port
        self.nagle = nagle
        self.proc = None
        self.port = None
        self.stats = None

    @property
    def host(self):
        return "127.0.0.1"

    def __str__(self):
        return describe(self.rtt_ms, self.rate_mbit, self.nagle)

    def start(self):
        cmd = [sys.executable, "-m", "benchmarks.linkemu", "--stdin-control",
               "--listen-port", str(self.listen_port),
               "--target", "%s:%d" % self.target,
               "--rtt", repr(float(self.rtt_ms)),
               "--sockbuf", str(self.sockbuf // 1024)]
        if self.rate_mbit:
            cmd += ["--rate", repr(float(self.rate_mbit))]
        if self.queue_bytes is not None:
            cmd += ["--queue", str(max(1, self.queue_bytes // 1024))]
        if not self.handshake:
            cmd.append("--no-handshake")
        if self.nagle:
            cmd.append("--nagle")
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"]
                                    if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            err = self.proc.stderr.read().decode(errors="replace")
            self.proc.wait()
            raise RuntimeError("link emulator did not start: %s" % err[-2000:])
        self.port = int(line)
        return self

    def cpu_seconds(self):
        """User + system CPU time the emulator process used so far."""
        try:
            with open("/proc/%d/stat" % self.proc.pid, "rb") as f:
                stat = f.read()
        except OSError:
            return None
        fields = stat[stat.rfind(b")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        """Stops the process; returns its statistics (a dict, see the
        module docstring), also kept in self.stats."""
        proc, self.proc = self.proc, None
        if proc is None:
            return self.stats
        try:
            # closes its standard input: the process's signal to stop
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        proc.stdout.close()
        text = err.decode(errors="replace")
        if proc.returncode != 0:
            sys.stderr.write("link emulator (%s) exited with %d:\n%s"
                             % (self, proc.returncode, text[-4000:]))
        for line in reversed(text.splitlines()):
            if line.startswith("{"):
                try:
                    self.stats = json.loads(line)
                except ValueError:
                    pass
                break
        return self.stats

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# calibration: does the emulator do what it says?

class ThreadedServer:
    """A listening socket on 127.0.0.1 handing each accepted connection to
    handler(conn) in a thread of this process (closed afterwards); the
    handlers' exceptions are kept in `errors` (join() raises them)."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.errors = []
        self.threads = []
        self._acceptor = threading.Thread(target=self._serve, daemon=True)
        self._acceptor.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._run, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, c):
        try:
            with c:
                self.handler(c)
        except Exception as exc:
            self.errors.append(exc)

    def join(self, timeout=10):
        for t in list(self.threads):
            t.join(timeout)
        if self.errors:
            raise self.errors[0]

    def close(self):
        """Stops accepting and waits for the accepting thread: close()
        alone does not wake a thread blocked in accept() on Linux, so it
        would outlive the server (and the process's tests)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes accept()
        except OSError:
            pass
        self.sock.close()
        self._acceptor.join(10)


def recv_exactly(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def calibration_handler(c):
    """Echo (b'E'), sink (b'U' + 8-byte length: reads that many, answers
    b'K') and source (b'D' + 8-byte length: sends that many bytes).  It
    greets each connection with b'G' (as a POP3 server would, so that a
    client timing from the greeting on leaves connection set-up out),
    then reads one mode byte."""
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sendall(b"G")
    mode = recv_exactly(c, 1)
    if mode == b"E":
        while True:
            data = c.recv(65536)
            if not data:
                break
            c.sendall(data)
    elif mode == b"U":
        n = struct.unpack("!Q", recv_exactly(c, 8))[0]
        buf = bytearray(1 << 20)
        while n:
            got = c.recv_into(buf, min(n, len(buf)))
            if not got:
                raise EOFError
            n -= got
        c.sendall(b"K")
    elif mode == b"D":
        n = struct.unpack("!Q", recv_exactly(c, 8))[0]
        mv = memoryview(b"x" * (1 << 20))
        while n:
            n -= c.send(mv[:min(n, len(mv))])


def _test_connection(port):
    """A connection to calibration_handler through `port`, greeted."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if s.recv(1) != b"G":
        raise RuntimeError("no greeting")
    return s


def measure_ping(port, count):
    """(median, min, max) round trip (s) of `count` one-byte
    ping-pongs on one connection, after one that is not counted."""
    s = _test_connection(port)
    s.sendall(b"Ep")
    if s.recv(16) != b"p":
        raise RuntimeError("echo broke")
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        s.sendall(b"p")
        if s.recv(16) != b"p":
            raise RuntimeError("echo broke")
        times.append(time.perf_counter() - t0)
    s.close()
    times.sort()
    return times[len(times) // 2], times[0], times[-1]


def measure_bulk(port, nbytes, direction):
    """Bulk transfer of nbytes: 'down' (server to client) or 'up'.
    Returns (seconds from the request to the last byte (down) or to the
    sink's answer (up): ideally RTT + nbytes / rate; the receiver's rate
    from its first read to its last (down only), bytes/s)."""
    s = _test_connection(port)
    if direction == "down":
        buf = bytearray(1 << 20)
        t0 = time.perf_counter()
        s.sendall(b"D" + struct.pack("!Q", nbytes))
        got = s.recv_into(buf)
        t_first = time.perf_counter()
        left = nbytes - got
        while left:
            n = s.recv_into(buf)
            if not n:
                raise EOFError
            left -= n
        t_end = time.perf_counter()
        s.close()
        return t_end - t0, (nbytes - got) / (t_end - t_first)
    block = memoryview(b"y" * (1 << 20))
    t0 = time.perf_counter()
    s.sendall(b"U" + struct.pack("!Q", nbytes))
    left = nbytes
    while left:
        left -= s.send(block[:min(left, len(block))])
    if s.recv(1) != b"K":
        raise RuntimeError("sink broke")
    t_end = time.perf_counter()
    s.close()
    return t_end - t0, None


def calibrate(args, out=sys.stdout):
    """Ping-pong RTT at each --cal-rtts value and bulk rate (down and up)
    at each --cal-rates value; prints a Markdown table, returns rows."""
    server = ThreadedServer(calibration_handler)
    rows = []
    try:
        for rtt in args.cal_rtts:
            with LinkEmulator(("127.0.0.1", server.port), rtt_ms=rtt) as link:
                c0 = link.cpu_seconds()
                med, lo, hi = measure_ping(link.port, args.pings)
                cpu = link.cpu_seconds() - c0
            rows.append({"what": "ping-pong", "rtt_ms": rtt,
                         "median_ms": med * 1e3, "min_ms": lo * 1e3,
                         "max_ms": hi * 1e3,
                         "error": (med * 1e3 - rtt) / rtt if rtt else None,
                         "stats": link.stats, "cpu_s": cpu})
        for rate in args.cal_rates:
            rtt = args.cal_bulk_rtt
            # about 2 s of data, at least 8 MB
            nbytes = max(8_000_000, int(rate * 1e6 / 8 * args.cal_seconds))
            for direction in ("down", "up"):
                with LinkEmulator(("127.0.0.1", server.port), rtt_ms=rtt,
                                  rate_mbit=rate) as link:
                    measure_bulk(link.port, 1_000_000, direction)
                    c0 = link.cpu_seconds()
                    total, steady = measure_bulk(link.port, nbytes, direction)
                    cpu = link.cpu_seconds() - c0
                ideal = rtt / 1e3 + nbytes * 8 / (rate * 1e6)
                mbit = nbytes * 8 / (total - rtt / 1e3) / 1e6
                rows.append({"what": "bulk " + direction, "rtt_ms": rtt,
                             "rate_mbit": rate, "bytes": nbytes,
                             "seconds": total, "ideal_s": ideal,
                             "achieved_mbit": mbit,
                             "steady_mbit": steady and steady * 8 / 1e6,
                             "error": (mbit - rate) / rate,
                             "cpu_s": cpu, "cpu_share": cpu / total,
                             "stats": link.stats})
    finally:
        server.close()
    lines = ["| check | set | measured | error | emulator CPU | late "
             "(mean / max) |", "|---|--:|--:|--:|--:|--:|"]
    for r in rows:
        st = r["stats"] or {}
        late = "%.0f / %.0f µs" % (st.get("late_mean_us", 0),
                                   st.get("late_max_us", 0))
        if r["what"] == "ping-pong":
            lines.append("| ping-pong (median of %d) | RTT %g ms | %.2f ms "
                         "(%.2f–%.2f) | %s | %.2f s | %s |" % (
                             args.pings, r["rtt_ms"], r["median_ms"],
                             r["min_ms"], r["max_ms"],
                             "%+.1f %%" % (r["error"] * 100)
                             if r["error"] is not None else "—",
                             r["cpu_s"], late))
        else:
            lines.append("| %s, %s MB, RTT %g ms | %g Mbit/s | %.1f Mbit/s "
                         "(%.3f s; ideal %.3f s)%s | %+.1f %% | %.2f s (%.0f "
                         "%% of a core) | %s |" % (
                             r["what"], "{:,.0f}".format(r["bytes"] / 1e6),
                             r["rtt_ms"], r["rate_mbit"], r["achieved_mbit"],
                             r["seconds"], r["ideal_s"],
                             "; steady %.1f" % r["steady_mbit"]
                             if r["steady_mbit"] else "",
                             r["error"] * 100, r["cpu_s"],
                             r["cpu_share"] * 100, late))
    out.write("\n".join(lines) + "\n")
    return rows


# --------------------------------------------------------------------------
# command line

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.linkemu",
        description="A TCP proxy on 127.0.0.1 adding a delay, a rate limit "
                    "and a bounded queue to each direction (see "
                    "benchmarks/README.md).  Prints the port it listens on.")
    p.add_argument("--listen-port", type=int, default=0,
                   help="port on 127.0.0.1 (default 0: any free one)")
    p.add_argument("--target", metavar="HOST:PORT",
                   help="where to forward connections")
    p.add_argument("--rtt", type=float, default=0.0, metavar="MS",
                   help="round-trip time added, ms (half each way)")
    p.add_argument("--rate", type=float, metavar="MBIT",
                   help="bottleneck rate per direction, Mbit/s of payload "
                        "(default: none)")
    p.add_argument("--queue", type=int, metavar="KIB",
                   help="bottleneck queue per direction, KiB (default: one "
                        "bandwidth-delay product + 64 KiB; without --rate, "
                        "bytes in the delay line: 16 MiB)")
    p.add_argument("--sockbuf", type=int, default=DEFAULT_SOCKBUF // 1024,
                   metavar="KIB", help="SO_RCVBUF/SO_SNDBUF of the proxy's "
                   "sockets (default %d; 0: the kernel's)"
                   % (DEFAULT_SOCKBUF // 1024))
    p.add_argument("--no-handshake", action="store_true",
                   help="open the server connection at once, not 1.5 RTT "
                        "after accepting")
    p.add_argument("--nagle", action="store_true",
                   help="hold the client's small writes as its Nagle "
                        "algorithm would on a real path (the client's "
                        "own kernel cannot: its ACKs come over loopback)")
    p.add_argument("--stdin-control", action="store_true",
                   help="exit when standard input ends")
    c = p.add_argument_group("calibration (instead of proxying)")
    c.add_argument("--calibrate", action="store_true",
                   help="measure ping-pong RTT and bulk rates through "
                        "the emulator and print a table")
    c.add_argument("--cal-rtts", default="10,50,200",
                   help="RTTs (ms) of the ping-pong check")
    c.add_argument("--cal-rates", default="20,100,1000",
                   help="rates (Mbit/s) of the bulk check")
    c.add_argument("--cal-bulk-rtt", type=float, default=10.0,
                   help="RTT (ms) of the bulk check")
    c.add_argument("--cal-seconds", type=float, default=2.0,
                   help="seconds of data per bulk check")
    c.add_argument("--pings", type=int, default=50)
    c.add_argument("--json", metavar="PATH", help="calibration rows as JSON")
    a = p.parse_args(argv)
    if a.calibrate:
        a.cal_rtts = [float(x) for x in a.cal_rtts.split(",") if x.strip()]
        a.cal_rates = [float(x) for x in a.cal_rates.split(",") if x.strip()]
    elif not a.target:
        p.error("--target is required")
    if a.rtt < 0 or (a.rate is not None and a.rate <= 0):
        p.error("--rtt must be >= 0 and --rate > 0")
    return a


def _tight_timers():
    """Ask Linux for 1 µs of timer slack instead of 50 µs: releases are
    timed by select()'s timeout."""
    try:
        import ctypes
        PR_SET_TIMERSLACK = 29
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1000, 0,
                                                0, 0)
    except (ImportError, OSError, AttributeError):
        pass


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.calibrate:
        rows = calibrate(args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
        return 0
    target = parse_target(args.target)
    _tight_timers()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.sockbuf:
        # accepted sockets inherit these from the listener
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                            args.sockbuf * 1024)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                            args.sockbuf * 1024)
    listener.bind(("127.0.0.1", args.listen_port))
    listener.listen(4096)         # a thousand clients connecting at once
    emu = Emulator(listener, target, args.rtt, args.rate,
                   args.queue * 1024 if args.queue else None,
                   handshake=not args.no_handshake,
                   sockbuf=args.sockbuf * 1024, nagle=args.nagle,
                   control=sys.stdin if args.stdin_control else None)

    def stop(signum, frame):
        raise _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write("%d\n" % listener.getsockname()[1])
    sys.stdout.flush()
    try:
        emu.run()
    except _Stop:
        pass
    finally:
        listener.close()
        sys.stderr.write(json.dumps(emu.report()) + "\n")
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
