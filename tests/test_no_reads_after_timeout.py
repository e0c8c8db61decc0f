"""After a socket timeout a connection reads nothing more.

poplib's file (socket.SocketIO) refuses every read after a timeout:
OSError('cannot read from timed out object').  cpoplib does the same,
plain and over TLS, wherever in a reply the timeout struck, so that a
late reply is never taken for the reply to the next command.
"""
import socket
import threading
import time

import pytest

from scripted_server import ScriptedServer, client_tls_context


TIMEOUT_CASES = {
    # first command, what the server sends before stalling, the rest
    "no-reply": ("dele", b"", b"+OK deleted\r\n"),
    "mid-status-line": ("dele", b"+OK del", b"eted\r\n"),
    "after-status-line": ("retr", b"+OK\r\n", b"line 2\r\n.\r\n"),
    "mid-multiline": ("retr", b"+OK\r\nline 1\r\nli", b"ne 2\r\n.\r\n"),
}


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("case", sorted(TIMEOUT_CASES))
def test_no_reads_after_timeout(mod, case, tls):
    first, before, late = TIMEOUT_CASES[case]
    late_sent = threading.Event()

    def handler(conn):
        if tls:
            conn.start_tls()
        conn.send(b"+OK hi\r\n")
        conn.recv_line(timeout=5)
        conn.send(before)
        conn.stall(1.0)                  # client timeout is 0.4 s
        conn.send(late)
        late_sent.set()
        for _ in range(2):
            try:
                conn.recv_line(timeout=3)
            except socket.timeout:
                return
            conn.send(b"+OK retr 2\r\nbody 2\r\n.\r\n")

    with ScriptedServer(handler) as srv:
        if tls:
            client = mod.POP3_SSL(srv.host, srv.port, timeout=0.4,
                                  context=client_tls_context(verify=False))
        else:
            client = mod.POP3(srv.host, srv.port, timeout=0.4)
        with pytest.raises(socket.timeout) as info:
            getattr(client, first)(1)
        assert type(info.value) is TimeoutError or tls
        assert late_sent.wait(5)
        time.sleep(0.2)                  # the late bytes have arrived
        for _ in range(2):
            with pytest.raises(OSError) as info:
                client.retr(2)
            assert type(info.value) is OSError
            assert info.value.args == ("cannot read from timed out object",)
        client.close()
        assert client.sock is None and client.file is None
