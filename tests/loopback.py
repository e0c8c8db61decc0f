"""A small loopback POP3 server for the drop-in tests.

Each connection gets the greeting, then every command line received is
recorded (raw bytes, CRLF included) and answered by `respond(line)`, which
returns the bytes to send (None closes the connection).  With `tls_after`
set to a server-side SSLContext, the connection is wrapped in TLS right
after the reply to STLS has been sent.
"""
import os
import socket
import ssl
import threading

import test

_CERTDIRS = [os.path.join(os.path.dirname(test.__file__), "certdata"),
             os.path.dirname(test.__file__)]


def stdlib_cert(name):
    """Path of one of the interpreter's own test certificates."""
    for d in _CERTDIRS:
        path = os.path.join(d, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(name)


def server_tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(stdlib_cert("keycert3.pem"))
    return ctx


def client_tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(stdlib_cert("pycacert.pem"))
    return ctx


MESSAGE = (b"From: a@example.org\r\nSubject: test\r\n\r\n"
           b"line one\r\n..dot-stuffed\r\n\r\n.\r\n")


def default_respond(line):
    cmd = line.split(b" ", 1)[0].strip().upper()
    if cmd == b"QUIT":
        return b"+OK bye\r\n"
    if cmd in (b"USER", b"PASS", b"APOP", b"NOOP", b"RSET", b"DELE",
               b"RPOP", b"UTF8"):
        return b"+OK " + cmd + b"\r\n"
    if cmd == b"STAT":
        return b"+OK 2 320\r\n"
    if cmd in (b"LIST", b"UIDL"):
        if b" " in line.strip():
            return b"+OK 1 120\r\n"
        return b"+OK\r\n1 120\r\n2 200\r\n.\r\n"
    if cmd in (b"RETR", b"TOP"):
        return b"+OK message follows\r\n" + MESSAGE
    if cmd == b"CAPA":
        return b"+OK\r\nUSER\r\nTOP\r\nSTLS\r\nIMPLEMENTATION test server\r\n.\r\n"
    if cmd == b"STLS":
        return b"+OK Begin TLS\r\n"
    return b"-ERR unknown command\r\n"


class Server:
    def __init__(self, respond=default_respond,
                 greeting=b"+OK ready <1896.697170952@dbc.mtview.ca.us>\r\n",
                 tls_after=None):
        self.respond = respond
        self.greeting = greeting
        self.tls_after = tls_after
        self.received = []
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self._acceptor.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._acceptor.join()
        for t in self._threads:
            t.join(5)
        self._listener.close()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _handle(self, conn):
        conn.settimeout(10)
        try:
            conn.sendall(self.greeting)
            reader = conn.makefile("rb")
            while not self._stop.is_set():
                line = reader.readline()
                if not line:
                    return
                self.received.append(line)
                reply = self.respond(line)
                if reply is None:
                    return
                conn.sendall(reply)
                if self.tls_after is not None and line.upper().startswith(b"STLS"):
                    conn = self.tls_after.wrap_socket(conn, server_side=True)
                    reader = conn.makefile("rb")
        except (OSError, ValueError):
            pass
        finally:
            conn.close()
