"""`cpoplib fetch` against the POP3 servers other than Dovecot
(tests/other_servers.py: Twisted, GNU Mailutils, popa3d, Courier) with
mail whose lines are longer than poplib's 2048 octets: every message is
fetched and, with --delete, the mailbox is drained (issue 20, item 15:
these servers made the fetcher stop at such a message on every run)."""
import other_servers

from other_servers_clients import (  # noqa: F401  (server: a fixture)
    carol_messages, login, maildir_messages, run_fetcher, server)
from dovecot_clients import close, joined

import poplib as std_poplib


def test_long_lines_drain_the_mailbox(server, tmp_path):
    html = b"<p>" + b"z" * 6000 + b"</p>\n"
    long_one = [("wide-1", other_servers.small_corpus("wide", 1)[0][1]
                 + html * 3)]
    saved = std_poplib._MAXLINE
    with carol_messages(server, "around", 2):
        # poplib reads with a limit that takes the line: Mailutils'
        # settle() and the expected messages
        std_poplib._MAXLINE = 1 << 20
        try:
            server.add_messages("carol", long_one)
            conn = login(std_poplib, server, "carol")
            try:
                count = conn.stat()[0]
                expected = sorted(
                    joined(conn.retr(n)[1]).replace(b"\r\n", b"\n")
                    for n in range(1, count + 1))
            finally:
                close(conn)
        finally:
            std_poplib._MAXLINE = saved
        assert count == 4 and any(len(m) > 6000 for m in expected)
        moved = run_fetcher(server, tmp_path, "--delete")
        assert moved.returncode == 0, moved.stderr
        assert maildir_messages(tmp_path / "Mail") == expected
        assert b"4 deleted" in moved.stderr
        conn = login(std_poplib, server, "carol")
        try:
            assert conn.stat() == (0, 0)
        finally:
            close(conn)
