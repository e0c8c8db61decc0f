"""Helpers that the fetcher's test modules share (tests/test_fetcher.py,
test_fetch_config.py, test_fetch_select.py, test_fetch_select_crash.py,
test_fetch_tls.py): the fetcher run in-process (`run`, the `pw` fixture),
test messages, a mailbox-serving handler and the `Mailbox`/`Server` pair
for tests/scripted_server.py, TOML config helpers, what a Maildir and a
state file hold, Dovecot's user carol (command line, message numbers,
messages with a chosen sender and size), the selection tests' faked
clock, and the procmail recipe and shell MDA of the --mda tests."""
import os
import sys

import pytest

import dovecot_server
from scripted_server import Connection, ScriptedServer, _Gone

from dovecot_clients import login

import cpoplib
from cpoplib.fetch import cli, state as fetch_state

HAVE_TOML = sys.version_info >= (3, 11)
if not HAVE_TOML:
    try:
        import tomli  # noqa: F401
        HAVE_TOML = True
    except ImportError:
        pass
needs_toml = pytest.mark.skipif(not HAVE_TOML, reason="needs tomllib or "
                                "tomli (pip install tomli)")

# the faked clock (CPOPLIB_FETCH_NOW) of the selection tests
DAY = 86400
T0 = 1_700_000_000          # the faked clock's first run


def message(i, size=300):
    body = b"".join(b"line %d of message %d\r\n" % (j, i)
                    for j in range(size // 24 + 1))
    return (b"From: a@example.org\r\nSubject: m%d\r\n"
            b"Message-ID: <m%d@test>\r\n\r\n.dot line\r\n" % (i, i) + body)


def pop3_handler(messages, uidl=True, pass_reply=b"+OK logged in",
                 retr_error=None, capa=(b"USER", b"UIDL", b"PIPELINING")):
    """handler(conn) for ScriptedServer: serves `messages` (list of bytes,
    CRLF); records DELE in the returned list `deleted`."""
    deleted = []

    def handler(conn):
        conn.send(b"+OK scripted POP3 ready\r\n")
        while True:
            line = conn.recv_line().rstrip(b"\r\n")
            cmd, _, arg = line.partition(b" ")
            cmd = cmd.upper()
            if cmd == b"CAPA":
                conn.send(b"+OK\r\n" + b"".join(c + b"\r\n" for c in capa)
                          + b".\r\n")
            elif cmd == b"USER":
                conn.send(b"+OK\r\n")
            elif cmd == b"PASS":
                conn.send(pass_reply + b"\r\n")
                if pass_reply.startswith(b"-"):
                    return
            elif cmd == b"LIST":
                conn.send(b"+OK\r\n" + b"".join(
                    b"%d %d\r\n" % (n, len(m))
                    for n, m in enumerate(messages, 1)) + b".\r\n")
            elif cmd == b"UIDL" and uidl:
                conn.send(b"+OK\r\n" + b"".join(
                    b"%d uid-%d\r\n" % (n, n)
                    for n in range(1, len(messages) + 1)) + b".\r\n")
            elif cmd == b"RETR":
                n = int(arg)
                if n == retr_error:
                    conn.send(b"-ERR no such message\r\n")
                    continue
                m = messages[n - 1]
                stuffed = b"\r\n".join(
                    b"." + x if x.startswith(b".") else x
                    for x in m[:-2].split(b"\r\n"))
                conn.send(b"+OK\r\n" + stuffed + b"\r\n.\r\n")
            elif cmd == b"DELE":
                deleted.append(int(arg))
                conn.send(b"+OK\r\n")
            elif cmd == b"QUIT":
                conn.send(b"+OK bye\r\n")
                return
            else:
                conn.send(b"-ERR unknown command\r\n")

    handler.deleted = deleted
    return handler


def maildir_files(path):
    """{file bytes} of new/ and cur/, as a list (duplicates visible)."""
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                with open(os.path.join(d, name), "rb") as f:
                    out.append(f.read())
    return out


def lf(data):
    return data.replace(b"\r\n", b"\n")


def delivered(path):
    """{uidl: time} that the state file at `path` records as delivered."""
    return fetch_state.State.load(str(path), "test").delivered


def carol_numbers(server):
    conn = login(cpoplib, server, "carol")
    try:
        return {dovecot_server.message_key(conn.top(n, 0)[1]): n
                for n in range(1, conn.stat()[0] + 1)}
    finally:
        conn.quit()


def dovecot_args(server, *more, user="carol", ssl=False):
    args = ["--host", dovecot_server.TLS_HOSTNAME, "--user", user,
            "--password-env", "CPOPLIB_TEST_PW", "--timeout", 30]
    if ssl:
        args += ["--ssl", "--port", server.pop3s_port, "--cafile",
                 server.ca_file]
    else:
        args += ["--port", server.pop3_port]
    return args + list(more)


def keyed(files):
    return {dovecot_server.message_key(data): data for data in files}


# ---- scripted servers: a mailbox served one connection after another

class Mailbox:
    """handler(conn) serving `messages` (CRLF bytes) over POP3: UIDL as
    uid-N (or `uidls`; None: no UIDL), LIST sizes (or `sizes`), a -ERR to
    RETR `retr_error` (to TOP `top_error`), the connection dropped in the
    middle of RETR `drop_at` (of TOP `top_drop_at`), `before_retr(n)`
    called first.  Counts what it was sent: dele (numbers, of sessions
    that reached QUIT), passwords, retrs and tops (by original number),
    listings (the LIST and STAT command lines)."""

    def __init__(self, messages, uidls="default", sizes=None,
                 retr_error=None, drop_at=None, before_retr=None,
                 top_error=None, top_drop_at=None):
        self.messages = list(messages)
        self.uidls = (["uid-%d" % n for n in range(1, len(messages) + 1)]
                      if uidls == "default" else uidls)
        self.sizes = sizes
        self.retr_error = retr_error
        self.drop_at = drop_at
        self.before_retr = before_retr
        self.original = list(range(1, len(messages) + 1))
        self.deleted = []
        self.dele_sent = []
        self.passwords = []
        self.retrs = []
        self.tops = []
        self.top_error = top_error
        self.top_drop_at = top_drop_at
        self.listings = []      # the LIST and STAT commands, as sent

    def expunge(self, numbers):
        """QUIT: the marked messages are gone; the others renumbered.
        `deleted` records them by their first session's numbers (the
        original positions)."""
        gone = set(numbers)
        self.deleted += [self.original[n - 1] for n in numbers]
        keep = [i for i in range(len(self.messages)) if i + 1 not in gone]
        self.original = [self.original[i] for i in keep]
        self.messages = [self.messages[i] for i in keep]
        if self.uidls is not None:
            self.uidls = [self.uidls[i] for i in keep]
        if self.sizes is not None:
            self.sizes = [self.sizes[i] for i in keep]

    def __call__(self, conn):
        conn.send(b"+OK ready\r\n")
        marked = []
        while True:
            line = conn.recv_line().rstrip(b"\r\n")
            cmd, _, arg = line.partition(b" ")
            cmd = cmd.upper()
            if cmd == b"CAPA":
                conn.send(b"+OK\r\nUSER\r\nTOP\r\nPIPELINING\r\n" + (
                    b"UIDL\r\n" if self.uidls is not None else b"")
                    + b".\r\n")
            elif cmd in (b"USER", b"NOOP"):
                conn.send(b"+OK\r\n")
            elif cmd == b"PASS":
                self.passwords.append(arg.decode())
                conn.send(b"+OK logged in\r\n")
            elif cmd in (b"LIST", b"STAT"):
                self.listings.append(line.decode())
                sizes = self.sizes if self.sizes is not None else [
                    len(m) for m in self.messages]
                if cmd == b"STAT":
                    conn.send(b"+OK %d %d\r\n" % (len(sizes), sum(sizes)))
                elif arg and not 1 <= int(arg) <= len(sizes):
                    conn.send(b"-ERR no such message\r\n")
                elif arg:
                    conn.send(b"+OK %d %d\r\n" % (int(arg),
                                                   sizes[int(arg) - 1]))
                else:
                    conn.send(b"+OK\r\n" + b"".join(
                        b"%d %d\r\n" % (n, s)
                        for n, s in enumerate(sizes, 1)) + b".\r\n")
            elif cmd == b"UIDL" and self.uidls is not None:
                conn.send(b"+OK\r\n" + b"".join(
                    b"%d %s\r\n" % (n, u.encode())
                    for n, u in enumerate(self.uidls, 1)) + b".\r\n")
            elif cmd == b"RETR":
                n = int(arg)
                self.retrs.append(self.original[n - 1])
                if self.before_retr:
                    self.before_retr(n)
                if n == self.retr_error:
                    conn.send(b"-ERR cannot read that one\r\n")
                    continue
                m = self.messages[n - 1]
                stuffed = b"\r\n".join(
                    b"." + x if x.startswith(b".") else x
                    for x in m[:-2].split(b"\r\n"))
                if n == self.drop_at:
                    conn.send(b"+OK\r\n" + stuffed[:len(stuffed) // 2])
                    conn.eof()
                    return
                conn.send(b"+OK\r\n" + stuffed + b"\r\n.\r\n")
            elif cmd == b"TOP":
                n, _, lines = arg.partition(b" ")
                n = int(n)
                self.tops.append(self.original[n - 1])
                if n == self.top_error:
                    conn.send(b"-ERR cannot read that one\r\n")
                    continue
                head, _, body = self.messages[n - 1].partition(b"\r\n\r\n")
                text = head + b"\r\n\r\n" + b"".join(
                    x + b"\r\n" for x in body.split(b"\r\n")[:-1][
                        :int(lines)])
                stuffed = b"".join(
                    (b"." + x if x.startswith(b".") else x) + b"\r\n"
                    for x in text.split(b"\r\n")[:-1])
                if n == self.top_drop_at:
                    conn.send(b"+OK\r\n" + stuffed[:len(stuffed) // 2])
                    conn.eof()
                    return
                conn.send(b"+OK\r\n" + stuffed + b".\r\n")
            elif cmd == b"DELE":
                marked.append(int(arg))
                self.dele_sent.append(int(arg))
                conn.send(b"+OK\r\n")
            elif cmd == b"QUIT":
                self.expunge(marked)
                conn.send(b"+OK bye\r\n")
                return
            else:
                conn.send(b"-ERR unknown command\r\n")


class Server(ScriptedServer):
    """ScriptedServer taking one connection after another (a fetcher that
    reconnects, several runs, several accounts) until closed; `accepted`
    counts them."""

    def _run(self):
        try:
            while not self._stopping.is_set():
                sock = self._accept()
                if sock is None:
                    return
                self.accepted += 1
                self.conn = conn = Connection(self, sock)
                try:
                    self.script(conn)
                    if not conn.write_closed:
                        conn.eof()
                    conn.drain(self.timeout)
                except (_Gone, OSError):
                    pass
                finally:
                    conn.close()
        except BaseException as exc:
            self.error = exc
        finally:
            self._finished.set()


@pytest.fixture
def pw(monkeypatch):
    monkeypatch.setenv("CPOPLIB_TEST_PW", "pw")


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def args(srv, *more):
    return ["--host", srv.host, "--port", srv.port, "--user", "u",
            "--password-env", "CPOPLIB_TEST_PW", "--allow-plaintext",
            "--timeout", 10, *more]


def toml_account(srv, name="a", **extra):
    """An [accounts.NAME] table for `srv`; `extra` keys (TOML values as
    text) added or replacing the usual ones."""
    keys = {"host": '"%s"' % srv.host, "port": str(srv.port),
            "user": '"u"', "allow_plaintext": "true", "timeout": "10"}
    if "password_env" not in extra and "password_command" not in extra:
        keys["password_env"] = '"CPOPLIB_TEST_PW"'
    keys.update(extra)
    return "[accounts.%s]\n" % name + "".join(
        "%s = %s\n" % kv for kv in keys.items())


def write_config(tmp_path, text, name="fetch.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def one_error_line(err):
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("cpoplib fetch: error: "), \
        err
    return err


# ---- Dovecot messages, and MDAs for --mda

def mail(key, subject, size=0, sender="sender@example.org"):
    """(key, bytes) for Dovecot: a message with Return-Path `sender` (None:
    no Return-Path), `subject`, padded to about `size` bytes."""
    head = b"Return-Path: <%s>\n" % sender.encode() if sender is not None \
        else b""
    head += (b"From: Sender <sender@example.org>\nTo: carol@example.org\n"
             b"Subject: " + subject.encode() + b"\nMessage-ID: <"
             + key.encode() + b"@cpoplib.test>\n" + dovecot_server.KEY_HEADER
             + b": " + key.encode() + b"\n\nbody of " + key.encode() + b"\n")
    while len(head) < size:
        head += b"padding line " + b"p" * 57 + b"\n"
    return key, head


PROCMAILRC = """\
MAILDIR={dir}
DEFAULT={dir}/Maildir/
LOGFILE={dir}/procmail.log
"""


MDA = r"""#!/bin/sh
# an MDA: the message on stdin into $MDA_DIR/N.eml; fails (75) on a
# message whose subject is "fail" unless $MDA_FIXED is set
msg=$(cat; echo x)
msg=${msg%x}
n=$(ls "$MDA_DIR" | wc -l)
printf '%s' "$msg" > "$MDA_DIR/$n.eml"
printf '%s\n' "$1" >> "$MDA_DIR.args"
case "$msg" in
  *"Subject: fail"*)
    if [ -z "$MDA_FIXED" ]; then
      rm "$MDA_DIR/$n.eml"
      echo "mda: disk full" >&2
      exit 75
    fi ;;
esac
exit 0
"""
