"""What the tests against real servers share: logging in and out, the
outcome of a call as a comparable value, and alice's corpus as Dovecot
serves it (number <-> key, the expected lines and sizes).

Used by the Dovecot modules (the corpus fixture of conftest.py builds a
Corpus) and by the other servers' modules.
"""
import contextlib

import poplib as std_poplib

import dovecot_server

import cpoplib

USER = "alice"


def joined(lines):
    """retr()'s lines as the message's bytes, each line ended by CRLF."""
    return b"".join(line + b"\r\n" for line in lines)


def wire(data):
    """What a RETR of a file with these bytes transfers (without the '.')."""
    data = dovecot_server.to_crlf(data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"             # Dovecot completes a missing final line
    return data


class Corpus:
    """alice's messages: number <-> key, expected lines and sizes."""

    def __init__(self, server):
        files = server.expected[USER]
        self.keys = {}                          # number -> key
        conn = std_poplib.POP3(server.host, server.pop3_port, timeout=60)
        try:
            conn.user(USER)
            conn.pass_(server.users[USER])
            count = conn.stat()[0]
            for n in range(1, count + 1):
                self.keys[n] = dovecot_server.message_key(conn.top(n, 0)[1])
        finally:
            conn.quit()
        assert sorted(self.keys.values()) == sorted(files), \
            "Dovecot's mailbox differs from the Maildir files"
        self.numbers = {k: n for n, k in self.keys.items()}
        self.files = files
        self._check_edge_cases()
        self.wire = {k: wire(v) for k, v in files.items()}
        # LIST size: the file with CRLF line ends, without a completed line
        self.size = {k: len(dovecot_server.to_crlf(v))
                     for k, v in files.items()}

    def _check_edge_cases(self):
        """The generated mailbox really holds the cases it is meant to."""
        files = self.files
        assert len(files["large"]) >= 20 * 1024 * 1024
        assert b"\n.\n" in files["dots"] and b"\n..\n" in files["dots"]
        longest = max(map(len, files["longlines"].split(b"\n")))
        assert 2000 <= longest and longest + 3 < 2048   # + CRLF, + stuffing
        assert not files["nofinalnewline"].endswith(b"\n")
        assert files["emptybody"].endswith(b"\n\n")
        assert b"\n\n" not in files["headersonly"]
        assert b"\xe9" in files["eightbit"].split(b"\n\n")[0]
        assert "Grüße".encode() in files["utf8"].split(b"\n\n")[0]

    def lines(self, key):
        return self.wire[key][:-2].split(b"\r\n")

    def top_lines(self, key, count):
        lines = self.lines(key)
        try:
            end = lines.index(b"") + 1          # header block + empty line
        except ValueError:
            return lines                        # header only, no separator
        return lines[:end + count]


def login(mod, server, user=USER, port=None):
    conn = mod.POP3(server.host, port or server.pop3_port, timeout=60)
    conn.user(user)
    conn.pass_(server.users[user])
    return conn


def empty_mailbox(server, user):
    """Deletes every message of user's mailbox (a test's tear-down)."""
    conn = login(cpoplib, server, user)
    try:
        for n in range(1, conn.stat()[0] + 1):
            conn.dele(n)
    finally:
        conn.quit()


def close(conn):
    """Tear-down: QUIT if possible, else just drop the connection."""
    try:
        conn.quit()
    except Exception:
        with contextlib.suppress(Exception):
            conn.close()


class Outcome(tuple):
    """('ok', result) or ('raise', exception class name, args).

    Compares as a plain tuple; .exc holds the exception, if any.  The
    subclasses of error_proto that cpoplib raises for RFC 2449 response
    codes count as "error_proto" (their args are poplib's); tests that
    care check .exc's class."""
    exc = None


def outcome(func, *args):
    try:
        return Outcome(("ok", func(*args)))
    except Exception as exc:
        name = type(exc).__name__
        if isinstance(exc, std_poplib.error_proto):
            name = "error_proto"
        result = Outcome(("raise", name, exc.args))
        result.exc = exc
        return result


def assert_error_proto(mod, result, prefix):
    """result is error_proto of mod, its message starts with prefix."""
    assert result[0] == "raise" and isinstance(result.exc, mod.error_proto), \
        result
    assert result[2][0].startswith(prefix), result
