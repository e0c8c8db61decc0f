"""A POP3 server for the crash exploration whose mailbox really changes:
DELE marks a message for the session, QUIT expunges the marked messages
from the shared mailbox (RFC 1939's UPDATE state), a session that ends
without QUIT expunges nothing.  So the server state at any moment of a
recorded run is "the mailbox before the run, less what the run's QUIT
expunged if QUIT was processed".

The mailbox can be replaced between runs (``reset``), every QUIT is
logged with the UIDLs it expunged (``quits``), and ``down = True`` makes
the server greet with -ERR and hang up (a server that is unavailable for
one run).  Runs on a thread of the test process; one connection at a
time is all the fetcher makes.
"""
import socket
import threading

from cpoplib._server import render_wire


class ExpungingServer:
    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []          # [(uidl str, bytes CRLF)]
        self.quits = []             # [[uidl, ...] expunged], one per QUIT
        self.down = False
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.sock.getsockname()[:2]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name="crash-pop3")
        self._thread.start()

    def reset(self, messages):
        with self.lock:
            self.messages = list(messages)
            self.quits = []

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def close(self):
        self._stop = True
        try:
            socket.create_connection((self.host, self.port), 1).close()
        except OSError:
            pass
        self._thread.join(5)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _serve(self):
        while True:
            conn, _ = self.sock.accept()
            if self._stop:
                conn.close()
                return
            conn.settimeout(30)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self._session(conn)
            except Exception:       # a broken session; keep serving
                pass
            finally:
                conn.close()

    def _session(self, conn):
        rfile = conn.makefile("rb")
        send = conn.sendall
        if self.down:
            send(b"-ERR temporarily unavailable\r\n")
            return
        send(b"+OK crash-exploration POP3\r\n")
        with self.lock:
            box = list(self.messages)       # the maildrop, locked
        marked = set()
        while True:
            line = rfile.readline(4096)
            if not line:
                return                      # no QUIT: nothing expunged
            cmd, _, arg = line.strip().partition(b" ")
            cmd = cmd.upper()
            if cmd == b"CAPA":
                send(b"+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n")
            elif cmd in (b"USER", b"PASS", b"NOOP"):
                send(b"+OK\r\n")
            elif cmd in (b"LIST", b"UIDL") and not arg:
                rows = b"".join(
                    b"%d %s\r\n" % (n, uid.encode() if cmd == b"UIDL"
                                    else b"%d" % len(data))
                    for n, (uid, data) in enumerate(box, 1)
                    if n not in marked)
                send(b"+OK\r\n" + rows + b".\r\n")
            elif cmd in (b"RETR", b"DELE"):
                try:
                    n = int(arg)
                    if n in marked or not 1 <= n <= len(box):
                        raise ValueError
                except ValueError:
                    send(b"-ERR no such message\r\n")
                    continue
                if cmd == b"DELE":
                    marked.add(n)
                    send(b"+OK marked\r\n")
                else:
                    data = box[n - 1][1]
                    send(b"+OK %d octets\r\n" % len(data)
                         + render_wire(data))
            elif cmd == b"RSET":
                marked.clear()
                send(b"+OK\r\n")
            elif cmd == b"QUIT":
                gone = {box[n - 1][0] for n in marked}
                with self.lock:
                    self.messages = [m for m in self.messages
                                     if m[0] not in gone]
                    self.quits.append(sorted(gone))
                send(b"+OK bye\r\n")
                return
            else:
                send(b"-ERR unknown command\r\n")
