"""The pipelining tests' POP3 server (tests/test_pipelining.py, and
tests/test_aio.py's ordering tests): PipelineServer answers one command at
a time, as POP3 servers do, and records what the client's pipelining
looked like from the other end -- how many commands were waiting
unanswered at most, how many arrived in one read, and how often it had
answered everything and had to wait for the client (a round trip).
Also the mailboxes it serves and a connection to it."""
import random
import socket
import threading

import cpoplib


GREETING = b"+OK pipeline test server ready\r\n"


def body(n, size, rng):
    """A message of about `size` bytes, with a dot-led line."""
    lines = [b"Subject: message %d" % n, b"", b".dot-led line of %d" % n]
    while sum(len(x) + 2 for x in lines) < size:
        lines.append(b"%d " % n + bytes(rng.choice(b"abcdefgh ")
                                        for _ in range(rng.randrange(10, 90))))
    return b"".join(x + b"\r\n" for x in lines)


def wire(data):
    return b"".join((b"." + x if x.startswith(b".") else x) + b"\r\n"
                    for x in data.split(b"\r\n")[:-1]) + b".\r\n"


class PipelineServer:
    """A POP3 server for one connection on 127.0.0.1, in a thread.

    messages   {n: bytes}, served by RETR (dot-stuffed)
    errors     RETR/DELE/LIST n of these numbers gets -ERR
    lying_list LIST n of this number answers for message n + 1
    eof_in     RETR of this number sends half the reply, then EOF
    rcvbuf     a small SO_RCVBUF, and reading only when everything
               received is answered (a server that does not read ahead)
    uidl       whether UIDL is known
    """

    def __init__(self, messages, pipelining=True, errors=(), eof_in=None,
                 rcvbuf=None, uidl=True, user_only=True, lying_list=None):
        self.messages = messages
        self.lying_list = lying_list
        self.pipelining = pipelining
        self.errors = set(errors)
        self.eof_in = eof_in
        self.rcvbuf = rcvbuf
        self.uidl = uidl
        self.user_only = user_only
        self.commands = []
        self.deleted = []
        self.quit = False
        self.max_waiting = 0      # commands received, not yet answered
        self.reads = []           # complete command lines per recv()
        # the command that ended each wait with every command answered
        # (the client's turn: a round trip)
        self.turns = []
        self.listener = socket.socket()
        if rcvbuf:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                                     rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.listener.close()
        self.thread.join(30)

    def _reply(self, cmd, arg):
        if cmd == b"CAPA":
            caps = [b"USER", b"TOP"] + ([b"UIDL"] if self.uidl else [])
            if self.pipelining:
                caps.append(b"PIPELINING")
            return b"+OK\r\n" + b"".join(c + b"\r\n" for c in caps) + b".\r\n"
        if cmd in (b"USER", b"PASS", b"NOOP"):
            return b"+OK\r\n"
        if cmd == b"LIST" and not arg:
            return b"+OK\r\n" + b"".join(
                b"%d %d\r\n" % (n, len(m)) for n, m in self.messages.items()
            ) + b".\r\n"
        if cmd == b"STAT":
            return b"+OK %d %d\r\n" % (
                len(self.messages), sum(map(len, self.messages.values())))
        if cmd == b"LIST":
            n = int(arg)
            if n in self.errors or n not in self.messages:
                return b"-ERR no such message %d\r\n" % n
            # lying_list: LIST n answered for message n + 1
            shown = n + 1 if n == self.lying_list else n
            return b"+OK %d %d\r\n" % (shown, len(self.messages[n]))
        if cmd == b"UIDL" and not arg and self.uidl:
            return b"+OK\r\n" + b"".join(
                b"%d uid-%d\r\n" % (n, n) for n in self.messages) + b".\r\n"
        if cmd == b"TOP":
            n, lines = map(int, arg.split())
            if n in self.errors or n not in self.messages:
                return b"-ERR no such message %d\r\n" % n
            return b"+OK\r\n" + wire(top_of(self.messages[n], lines))
        if cmd in (b"RETR", b"DELE"):
            n = int(arg)
            if n in self.errors or n not in self.messages:
                return b"-ERR no such message %d\r\n" % n
            if cmd == b"DELE":
                self.deleted.append(n)
                return b"+OK deleted\r\n"
            return b"+OK\r\n" + wire(self.messages[n])
        if cmd == b"QUIT":
            self.quit = True
            return b"+OK bye\r\n"
        return b"-ERR unknown command\r\n"

    def _serve(self):
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.settimeout(30)
        buf = b""
        try:
            sock.sendall(GREETING)
            while True:
                waited = b"\n" not in buf     # all answered: a round trip
                if b"\n" not in buf or not self.rcvbuf:
                    sock.setblocking(b"\n" not in buf)
                    sock.settimeout(30 if b"\n" not in buf else 0)
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, socket.timeout):
                        data = None
                    if data == b"":
                        return
                    if data:
                        self.reads.append(data.count(b"\n"))
                        buf += data
                sock.settimeout(30)
                self.max_waiting = max(self.max_waiting, buf.count(b"\n"))
                line, _, buf = buf.partition(b"\n")
                self.commands.append(line.rstrip(b"\r"))
                if waited:
                    self.turns.append(line.split()[0].upper())
                cmd, _, arg = line.strip().partition(b" ")
                cmd = cmd.upper()
                if cmd == b"RETR" and self.eof_in is not None \
                        and int(arg) == self.eof_in:
                    reply = b"+OK\r\n" + wire(self.messages[int(arg)])
                    sock.sendall(reply[:len(reply) // 2])
                    sock.shutdown(socket.SHUT_WR)
                    return
                sock.sendall(self._reply(cmd, arg))
                if cmd == b"QUIT":
                    return
        except OSError:
            return
        finally:
            sock.close()


def top_of(message, lines):
    """What TOP n LINES gives of `message` (CRLF bytes): the headers, the
    blank line, the first LINES lines of the body."""
    head, _, body = message.partition(b"\r\n\r\n")
    kept = body.split(b"\r\n")[:-1][:lines]
    return head + b"\r\n\r\n" + b"".join(x + b"\r\n" for x in kept)


def mailbox(count, size=2000, seed=7):
    rng = random.Random(seed)
    return {n: body(n, size, rng) for n in range(1, count + 1)}


def connect(srv):
    conn = cpoplib.POP3("127.0.0.1", srv.port, timeout=20)
    conn.user("u")
    conn.pass_("p")
    return conn


# ---- the adaptive window ----
