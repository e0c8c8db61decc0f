"""The ceiling of a link: a raw POP3 client with every RETR in flight.

    python -m benchmarks._ceiling --host H --port P --user U \\
        --password-env NAME --count N

Logs in (USER/PASS), sends ``RETR 1`` .. ``RETR N`` (and, as a process,
QUIT after them) all at once from a writer thread while the main thread
reads the replies into one reused buffer and counts ``\\r\\n.\\r\\n``
terminators: no parsing, no unstuffing, no per-message objects, nothing
stored.  With all commands in flight no client can finish sooner over
the same link, so its time (about RTT + reply bytes / rate) is the
ceiling the benchmarks' through-the-link tables compare every client
with.  The writer thread is what keeps it from deadlocking: a server
that stops reading while its replies are not read would block a single
thread in sendall() forever.

As a process (the --tools mode times it whole, start-up to exit, like
the tools) it prints one line, ``N messages, B bytes``; it imports
nothing beyond the standard library's socket and threading so that its
start-up is a bare interpreter's.  benchmarks/dovecot.py calls
retr_all() in its own process instead.
"""

import argparse
import os
import socket
import sys
import threading

TERMINATOR = b"\r\n.\r\n"


def command(sock, line):
    """Send line (None: read the greeting); the +OK reply line."""
    if line is not None:
        sock.sendall(line + b"\r\n")
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("server closed the connection")
        data += chunk
    if not data.startswith(b"+OK"):
        raise RuntimeError("server said %r" % data)
    return data


def login(sock, user, password):
    command(sock, None)
    command(sock, b"USER " + user.encode())
    command(sock, b"PASS " + password.encode())


def retr_all(sock, numbers, buf=None, keep=None, quit=False):
    """Every RETR of `numbers` sent at once (a writer thread), every reply
    read; returns the bytes read.  keep: a bytearray the stream is
    appended to (for checking, outside any timing).  quit: QUIT goes
    out right after the last RETR, its reply is read and counted too."""
    cmds = b"".join(b"RETR %d\r\n" % n for n in numbers)
    if quit:
        cmds += b"QUIT\r\n"
    failure = []

    def write():
        try:
            sock.sendall(cmds)
        except OSError as exc:
            failure.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    if buf is None:
        buf = bytearray(1 << 20)
    mv = memoryview(buf)
    recv_into, count = sock.recv_into, buf.count
    n = len(numbers)
    done = carry = total = 0
    end = 0
    while done < n:
        got = recv_into(mv[carry:])
        if not got:
            raise EOFError("server closed the connection (%r)" % failure)
        end = carry + got
        total += got
        if keep is not None:
            keep += mv[carry:end]
        # a terminator straddling two reads is seen through the carry
        done += count(TERMINATOR, 0, end)
        if done < n:
            if end >= 4:
                buf[0:4] = buf[end - 4:end]
                carry = 4
            else:
                carry = end
    if quit:
        # what follows the last terminator is the start of QUIT's reply
        rest = bytes(buf[buf.rfind(TERMINATOR, 0, end) + len(TERMINATOR):end])
        while not rest.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                raise EOFError("no reply to QUIT")
            rest += chunk
            total += len(chunk)
    writer.join()
    if failure:
        raise failure[0]
    return total


def account_parser(prog):
    """Options of a process that fetches --count messages as --user from
    --host:--port, the password in environment variable --password-env."""
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password-env", required=True, metavar="NAME")
    p.add_argument("--count", type=int, required=True)
    return p


def main(argv=None):
    a = account_parser("python -m benchmarks._ceiling").parse_args(argv)
    sock = socket.create_connection((a.host, a.port), timeout=600)
    login(sock, a.user, os.environ[a.password_env])
    total = retr_all(sock, list(range(1, a.count + 1)), quit=True)
    sock.close()
    sys.stdout.write("%d messages, %d bytes\n" % (a.count, total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
