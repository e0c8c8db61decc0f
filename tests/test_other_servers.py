"""cpoplib against real POP3 servers other than Dovecot, side by side with
the standard library's poplib.

The servers (tests/other_servers.py) are Twisted's twisted.mail.pop3, GNU
Mailutils pop3d, popa3d and Courier pop3d, each started once for this
module on 127.0.0.1 with the users and mailboxes described there.  Every
test runs once per server (test ids ``[twisted]``, ``[mailutils]``,
``[popa3d]``, ``[courier]``); where poplib and cpoplib are compared, each
goes through the same commands in a session of its own and the results
must be equal: return values, and exceptions of the same type with equal
``args`` (the RFC 2449 response-code subclasses of error_proto that
cpoplib raises count as error_proto, their args are poplib's).  The
server's own answer, as poplib gets it, is the reference throughout.

Twisted needs the ``twisted`` package (the test extra); the other three
are unpacked from Debian's packages by ``.ci/other-servers`` (as root).
A server that is not prepared skips its tests, saying how to prepare it,
unless CPOPLIB_REQUIRE_SERVERS=1 is set (CI sets it): then they fail.

The servers' quirks are facts here, each asserted by a test of its own
(``test_quirk_*``) so that a server that changes shows up:

* twisted: CAPA lists ``PIPELINE``, not ``PIPELINING``; ``UIDL n``
  answers ``+OK uid`` without the message number; LIST passes on the
  mailbox's sizes (here, as in twisted.mail.maildir, the files' sizes
  with LF line ends, not the CRLF octets RETR sends); STAT and LIST still
  count a deleted message, with size 0; APOP never succeeds (Twisted
  compares a str digest with bytes); AUTH with an initial response, and
  DELE of a message that does not exist, make it drop the connection.
* mailutils: the mbox is rewritten at QUIT with X-UID and Status headers
  for the messages read (and X-IMAPbase), and X-UIDL once UIDL was
  asked, so sizes and bytes change between the first sessions; a second session of a user while one is open gets
  ``-ERR [IN-USE]``; a message with no empty line after its header,
  followed by another, takes that one as its body, and after a rewrite
  sends its header alone.
* popa3d: no CAPA at all (``-ERR``); no APOP timestamp in the greeting;
  PASS takes a second when the mbox was changed in the current second
  (popa3d waits for its mtime to be in the past).
* courier: a failed login is answered after 5 s; a message with 8-bit
  header bytes is sent, to a client that did
  not send UTF8, inside a MIME wrapper whose boundary changes every
  session; CAPA advertises ``LOGIN-DELAY 10`` and ``UTF8 USER``.
"""

import concurrent.futures
import contextlib
import hmac
import os
import re

import pytest

import other_servers

from dovecot_clients import close, joined, outcome
from other_servers_clients import (  # noqa: F401  (server: a fixture)
    carol_messages, connect, login, maildir_messages, run_fetcher, server)

import poplib as std_poplib

import cpoplib

MODULES = [std_poplib, cpoplib]


# --------------------------------------------------------------------------
# fixtures and helpers

def only(server, *names):
    if server.name not in names:
        pytest.skip("a fact about %s" % " and ".join(names))


def side_by_side(scenario, server):
    """scenario(module, server) for poplib and for cpoplib: equal, and
    returned (poplib's)."""
    ref = scenario(std_poplib, server)
    got = scenario(cpoplib, server)
    assert got == ref
    return ref


def no_timestamp(welcome):
    """The greeting without its APOP timestamp (new every session)."""
    return re.sub(rb"<[^<>]*>", b"<>", welcome)


@pytest.fixture(scope="module")
def retrieved(server):
    """{number: message} of alice's mailbox, from poplib's retr(), joined."""
    conn = login(std_poplib, server)
    try:
        return {n: joined(conn.retr(n)[1])
                for n in range(1, conn.stat()[0] + 1)}
    finally:
        close(conn)


def stat_of(module, server, user):
    """STAT in a session of its own."""
    conn = login(module, server, user)
    try:
        return conn.stat()
    finally:
        close(conn)


def keys_in(conn):
    return {other_servers.message_key(conn.top(n, 0)[1]): n
            for n in range(1, conn.stat()[0] + 1)}


# --------------------------------------------------------------------------
# the poplib API, side by side

def test_greeting_and_capa(server):
    def scenario(module, server):
        conn = connect(module, server)
        try:
            welcome = no_timestamp(conn.getwelcome())
            before = outcome(conn.capa)
            conn.user(server.login_name("alice"))
            conn.pass_(server.users["alice"])
            after = outcome(conn.capa)
            return welcome, before, after, conn.noop()
        finally:
            close(conn)
    welcome, before, after, noop = side_by_side(scenario, server)
    assert welcome.startswith(b"+OK") and noop.startswith(b"+OK")
    if server.name == "popa3d":
        assert before == after == (
            "raise", "error_proto", ("-ERR CAPA not supported by server",))
    else:
        assert before[0] == "ok" and "UIDL" in before[1], before


def test_user_pass(server):
    def scenario(module, server):
        conn = connect(module, server)
        try:
            return (conn.user(server.login_name("alice")),
                    conn.pass_(server.users["alice"]), conn.stat()[0])
        finally:
            close(conn)
    user, password, count = side_by_side(scenario, server)
    assert user.startswith(b"+OK") and password.startswith(b"+OK")
    assert count > 5


def attempt_pass(module, server, user, password):
    conn = connect(module, server)
    try:
        return outcome(conn.user, server.login_name(user)), \
            outcome(conn.pass_, password)
    finally:
        close(conn)


def attempt_login(server, password):
    conn = connect(cpoplib, server)
    try:
        return outcome(lambda: conn.login(server.login_name("alice"),
                                          password, allow_plaintext=True))
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def test_wrong_passwords(server):
    """A wrong password and an unknown user with USER/PASS (poplib and
    cpoplib), and login() with a wrong password.  All at once, in
    threads: Courier answers a failed login after 5 s."""
    cases = [(attempt_pass, (module, server, user, password))
             for module in MODULES
             for user, password in (("alice", "wrong password"),
                                    ("nosuchuser", "whatever"))]
    cases.append((attempt_login, (server, "wrong password")))
    with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
        results = [f.result() for f in
                   [pool.submit(func, *args) for func, args in cases]]
    assert results[:2] == results[2:4]                  # poplib == cpoplib
    for user_result, pass_result in results[:2]:
        assert pass_result[:2] == ("raise", "error_proto"), pass_result
    assert results[4][:2] == ("raise", "error_proto"), results[4]


def test_apop(server):
    def scenario(module, server):
        results = []
        for secret in (server.users["alice"], "wrong secret"):
            conn = connect(module, server)
            try:
                results.append(outcome(conn.apop, server.login_name("alice"),
                                       secret))
            finally:
                close(conn)
        return results
    good, bad = side_by_side(scenario, server)
    assert bad[0] == "raise"
    if server.name == "mailutils":
        assert good[0] == "ok" and good[1].startswith(b"+OK")
    elif server.name == "twisted":     # see test_quirk_twisted_apop
        assert good == ("raise", "error_proto",
                        (b"-ERR Authentication failed",))
    else:                              # no timestamp in the greeting
        assert good == bad == ("raise", "error_proto",
                               ("-ERR APOP not supported by server",))


def transaction(module, server):
    """Every read-only command of the transaction state on alice's box,
    valid and invalid message numbers."""
    conn = login(module, server)
    try:
        t = [conn.stat(), conn.list(), conn.uidl()]
        count = t[0][0]
        # most of these servers send a multi-line answer in pieces, ~40 ms
        # each (Nagle and delayed ACKs): TOP on a few messages only
        for n in list(range(1, count + 1)) + [0, count + 1]:
            t.append(outcome(conn.list, n))
            t.append(outcome(conn.uidl, n))
            t.append(outcome(conn.retr, n))
            if n <= 3 or n > count:
                t.append(outcome(conn.top, n, 0))
                t.append(outcome(conn.top, n, 3))
        t.append(conn.noop())
        t.append(conn.quit())
        t.append(outcome(conn.stat))       # a command after QUIT
        return t
    except BaseException:
        conn.close()
        raise


def test_transaction_commands(server, retrieved):
    t = side_by_side(transaction, server)
    assert t[0][0] == len(retrieved) > 5
    assert len(t[1][1]) == len(t[2][1]) == len(retrieved)
    for result in t[-1:]:
        assert result[0] == "raise", result


def test_dele_rset(server):
    """DELE + RSET on bob's box, then QUIT: nothing is deleted."""
    def scenario(module, server):
        conn = login(module, server, "bob")
        try:
            t = [conn.stat(), conn.dele(1), conn.stat(), conn.list()]
            for func, args in ((conn.list, (1,)), (conn.retr, (1,)),
                               (conn.top, (1, 0)), (conn.dele, (1,)),
                               (conn.uidl, (1,))):
                t.append(outcome(func, *args))
            t += [conn.rset(), conn.stat(), conn.list()]
        except BaseException:
            conn.close()
            raise
        return t + [conn.quit(), stat_of(module, server, "bob")]
    t = side_by_side(scenario, server)
    assert t[0][0] == 3 and t[-1] == t[0]
    if server.name == "twisted":
        # Twisted's STAT and LIST still count a deleted message, with the
        # size 0 its IMailbox reports for it; LIST 1 answers "+OK 1 0"
        assert t[2][0] == 3 and t[3][1][0] == b"1 0"
        assert t[4] == ("ok", b"+OK 1 0")
    else:
        assert t[2][0] == 2 and len(t[3][1]) == 2
        assert t[4][0] == "raise"


def test_dele_quit(server):
    """DELE + QUIT deletes (carol's box, the same messages each time)."""
    def scenario(module, server):
        with carol_messages(server, "dq") as keys:
            conn = login(module, server, "carol")
            try:
                numbers = keys_in(conn)
                t = [conn.dele(numbers[keys[1]])]
            finally:
                t.append(conn.quit())
            conn = login(module, server, "carol")
            try:
                t.append(sorted(keys_in(conn)))
            finally:
                conn.quit()
            return t, keys
    t, keys = side_by_side(scenario, server)
    assert t[-1] == sorted(set(keys) - {keys[1]})


def test_stls(server):
    def scenario(module, server):
        conn = connect(module, server, host=server.tls_hostname)
        try:
            ctx = None
            if server.ca_file:
                import ssl
                ctx = ssl.create_default_context(cafile=server.ca_file)
            t = [outcome(conn.stls, ctx)]
            if t[0][0] == "ok":
                t.append(conn.capa())
                t.append(outcome(conn.stls, ctx))
                conn.user(server.login_name("alice"))
                t.append(conn.pass_(server.users["alice"]))
                t.append(conn.stat())
            return t
        finally:
            close(conn)
    t = side_by_side(scenario, server)
    if server.offers_stls:
        assert t[0][0] == "ok" and "STLS" not in t[1], t
        assert t[2] == ("raise", "error_proto",
                        ("-ERR TLS session already established",))
    else:
        assert t[0][0] == "raise", t


def test_utf8(server):
    def scenario(module, server):
        conn = connect(module, server)
        try:
            return outcome(conn.utf8)
        finally:
            close(conn)
    result = side_by_side(scenario, server)
    assert (result[0] == "ok") == (server.name == "courier"), result


# --------------------------------------------------------------------------
# fetch, fetch_into, fetch_many

def test_fetch_and_fetch_into(server, retrieved):
    conn = login(cpoplib, server)
    try:
        for n, data in retrieved.items():
            assert conn.fetch(n) == data, n
        largest = max(retrieved, key=lambda n: len(retrieved[n]))
        for n in (1, 2, largest):
            sink = SinkFile()
            assert conn.fetch_into(n, sink) == len(retrieved[n]), n
            assert sink.data() == retrieved[n], n
        assert outcome(conn.fetch, 999)[0] == "raise"
        assert conn.noop().startswith(b"+OK")
    finally:
        close(conn)


class SinkFile:
    def __init__(self):
        self.chunks = []

    def write(self, chunk):
        self.chunks.append(bytes(chunk))
        return len(chunk)

    def data(self):
        return b"".join(self.chunks)


@pytest.mark.parametrize("pipeline", [None, True, False])
def test_fetch_many(server, retrieved, pipeline, putlines):
    conn = login(cpoplib, server)
    try:
        numbers = sorted(retrieved)
        it = conn.fetch_many(numbers, pipeline=pipeline)
        first = next(it)
        sent = [line for line in putlines(conn) if line.startswith(b"RETR")]
        advertised = server.name in ("mailutils", "courier")   # PIPELINING
        if pipeline or (pipeline is None and advertised):
            assert len(sent) > 1, sent
        else:
            assert sent == [b"RETR 1"]
        got = [first] + list(it)
        assert [n for n, _ in got] == numbers
        assert dict(got) == retrieved
        assert conn.stat()[0] == len(numbers)
    finally:
        close(conn)


# --------------------------------------------------------------------------
# login()

# the mechanism login() picks from what each server offers
LOGIN_CHOICE = {
    "twisted": b"AUTH CRAM-MD5",     # SASL CRAM-MD5 (and an APOP timestamp)
    "mailutils": b"APOP",            # no SASL; the greeting has a timestamp
    "popa3d": b"USER",               # no CAPA, no timestamp
    "courier": b"AUTH PLAIN",        # SASL PLAIN LOGIN
}


def test_login_choice(server, putlines):
    conn = connect(cpoplib, server)
    try:
        plaintext = LOGIN_CHOICE[server.name] in (b"USER", b"AUTH PLAIN")
        if plaintext:     # refused before anything is sent
            result = outcome(conn.login, server.login_name("alice"),
                             server.users["alice"])
            assert result[:2] == ("raise", "error_proto"), result
            assert not [line for line in putlines(conn)
                        if not line.startswith(b"CAPA")]
        resp = conn.login(server.login_name("alice"), server.users["alice"],
                          allow_plaintext=plaintext)
        assert resp.startswith(b"+OK")
        sent = [line for line in putlines(conn) if line != b"CAPA"]
        assert sent[0].startswith(LOGIN_CHOICE[server.name]), sent
        assert conn.stat()[0] > 5
    finally:
        close(conn)


def test_login_user_mechanism(server):
    conn = connect(cpoplib, server)
    try:
        assert conn.login(server.login_name("alice"), server.users["alice"],
                          mechanism="USER",
                          allow_plaintext=True).startswith(b"+OK")
        assert conn.stat()[0] > 5
    finally:
        close(conn)


def test_login_over_stls(server, putlines):
    if not server.offers_stls:
        pytest.skip("%s offers no STLS" % server.name)
    import ssl
    conn = connect(cpoplib, server, host=server.tls_hostname)
    try:
        conn.stls(ssl.create_default_context(cafile=server.ca_file))
        assert conn.login(server.login_name("alice"),
                          server.users["alice"]).startswith(b"+OK")
        sent = [line for line in putlines(conn)
                if line not in (b"CAPA", b"STLS")]
        assert sent[0].startswith(LOGIN_CHOICE[server.name]), sent
    finally:
        close(conn)


# --------------------------------------------------------------------------
# the fetcher, end to end

def test_fetcher(server, tmp_path):
    with carol_messages(server, "fetcher", 4) as keys:
        conn = login(std_poplib, server, "carol")
        try:
            expected = sorted(joined(conn.retr(n)[1]).replace(b"\r\n", b"\n")
                              for n in range(1, conn.stat()[0] + 1))
        finally:
            close(conn)
        assert len(expected) == len(keys)

        first = run_fetcher(server, tmp_path)
        assert first.returncode == 0, first.stderr
        assert maildir_messages(tmp_path / "Mail") == expected

        again = run_fetcher(server, tmp_path)          # nothing new
        assert again.returncode == 0, again.stderr
        assert maildir_messages(tmp_path / "Mail") == expected

        moved = run_fetcher(server, tmp_path, "--delete")
        assert moved.returncode == 0, moved.stderr
        assert maildir_messages(tmp_path / "Mail") == expected
        conn = login(std_poplib, server, "carol")
        try:
            assert conn.stat() == (0, 0)
        finally:
            close(conn)


# --------------------------------------------------------------------------
# the servers' quirks

def test_quirk_twisted_capa_and_uidl(server):
    only(server, "twisted")

    def scenario(module, server):
        conn = login(module, server)
        try:
            return conn.capa(), conn.uidl(), conn.uidl(1), conn.list()
        finally:
            close(conn)
    caps, uidl, uidl_one, listing = side_by_side(scenario, server)
    assert "PIPELINE" in caps and "PIPELINING" not in caps
    assert caps["SASL"] == ["CRAM-MD5"]
    uid = uidl[1][0].split()[1]
    assert uidl_one == b"+OK " + uid            # no message number
    # LIST: the Maildir file's size, LF line ends, not RETR's CRLF octets
    files = sorted(os.listdir(os.path.join(server.mailbox_path("alice"),
                                           "new")))
    sizes = [os.path.getsize(os.path.join(server.mailbox_path("alice"),
                                          "new", name)) for name in files]
    assert [int(line.split()[1]) for line in listing[1]] == sizes


def test_quirk_twisted_apop(server):
    """Twisted's APOPCredentials compares md5().hexdigest() (str) with
    the client's digest (bytes): APOP never succeeds, even with the right
    digest, which the client computed as RFC 1939 says."""
    only(server, "twisted")
    conn = connect(std_poplib, server)
    try:
        welcome = conn.getwelcome()
        stamp = re.search(rb"<[^<>]+>", welcome).group()
        assert conn.apop("alice", server.users["alice"]) is None
    except std_poplib.error_proto as exc:
        assert exc.args == (b"-ERR Authentication failed",)
        import hashlib
        digest = hashlib.md5(stamp + server.users["alice"].encode())
        assert len(digest.hexdigest()) == 32
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def test_quirk_twisted_drops_connection(server):
    """AUTH with an initial response (do_AUTH takes one argument) and DELE
    of a message number that does not exist (an IndexError) raise inside
    Twisted's line handler, which drops the connection: poplib and
    cpoplib read EOF."""
    only(server, "twisted")

    def scenario(module, server):
        conn = login(module, server)
        try:
            t = [outcome(conn.dele, 999), outcome(conn.noop)]
        finally:
            conn.close()
        return t
    assert side_by_side(scenario, server) == [
        ("raise", "error_proto", ("-ERR EOF",))] * 2
    conn = connect(cpoplib, server)
    try:
        assert outcome(conn.auth, "CRAM-MD5", None, b"alice x") == (
            "raise", "error_proto", ("-ERR EOF",))
    finally:
        conn.close()
    conn = connect(cpoplib, server)             # AUTH without one works
    try:
        def cram(challenge):
            return b"alice " + hmac.new(server.users["alice"].encode(),
                                        challenge, "md5").hexdigest().encode()
        assert conn.auth("CRAM-MD5", cram).startswith(b"+OK")
    finally:
        close(conn)


def test_quirk_mailutils_rewrites_the_mbox(server):
    """dave's mbox is as delivered: the first session that reads its
    messages changes them at QUIT; from then on they stay."""
    only(server, "mailutils")
    rounds = []
    for module in (std_poplib, cpoplib, std_poplib):
        conn = login(module, server, "dave")
        try:
            count = conn.stat()[0]
            rounds.append((conn.list(), conn.uidl(),
                           [conn.retr(n) for n in range(1, count + 1)]))
        finally:
            conn.quit()
    first, second, third = rounds
    assert first != second and second == third
    first_sizes = [int(line.split()[1]) for line in first[0][1]]
    later_sizes = [int(line.split()[1]) for line in second[0][1]]
    assert all(a < b for a, b in zip(first_sizes, later_sizes))
    for resp, lines, octets in second[2]:
        assert any(line.startswith(b"X-UIDL: ") for line in lines)
        assert b"Status: OR" in lines
    with open(server.mailbox_path("dave"), "rb") as f:
        assert b"\nX-UIDL: " in f.read()


def test_quirk_mailutils_in_use(server):
    """A second session of a user while one is open: -ERR [IN-USE]."""
    only(server, "mailutils")
    results = []
    for module in MODULES:
        first = login(module, server, "bob")
        try:
            second = connect(module, server)
            try:
                second.user(server.login_name("bob"))
                results.append(outcome(second.pass_, server.users["bob"]))
            finally:
                close(second)
        finally:
            close(first)
    assert results[0] == results[1]
    assert results[1][:2] == ("raise", "error_proto")
    assert results[1][2][0].startswith(b"-ERR [IN-USE]")
    assert type(results[1].exc) is cpoplib.InUseError


def test_quirk_mailutils_header_only_message(server):
    """The corpus message with no empty line after its header, followed in
    the mbox by the next one: Mailutils takes that one for its body (one
    message fewer).  Once the settling session's QUIT rewrote the mbox,
    the follower is in the file after that message's header, its From_
    line quoted, but RETR sends the header alone."""
    only(server, "mailutils")
    keys = list(other_servers.CORPUS_KEYS)
    follower = keys[keys.index("headersonly") + 1]
    conn = login(std_poplib, server)
    try:
        seen = list(keys_in(conn))
        assert seen == [key for key in keys if key != follower]
        lines = conn.retr(seen.index("headersonly") + 1)[1]
        assert lines[-1] == b"" and lines.count(b"") == 1
    finally:
        close(conn)
    with open(server.mailbox_path("alice"), "rb") as f:
        mbox = f.read()
    head = mbox.index(b"X-Cpoplib-Test: headersonly\n")
    tail = mbox.index(b"X-Cpoplib-Test: " + follower.encode() + b"\n")
    assert head < tail and b"\n\n>From " in mbox[head:tail]


def test_quirk_popa3d(server):
    only(server, "popa3d")

    def scenario(module, server):
        conn = connect(module, server)
        try:
            return conn.getwelcome(), outcome(conn.capa), outcome(conn.stls)
        finally:
            close(conn)
    welcome, capa, stls = side_by_side(scenario, server)
    assert welcome == b"+OK"                    # no APOP timestamp
    assert capa == stls == ("raise", "error_proto",
                            ("-ERR CAPA not supported by server",))


def test_quirk_courier_mime_wrapper(server):
    """Messages with 8-bit header bytes come wrapped, the boundary new in
    every session; equal in poplib and cpoplib but for the boundary."""
    only(server, "courier")
    boundary = re.compile(rb"=_\d+-\d+")

    def scenario(module, server):
        conn = login(module, server, "dave")
        try:
            count = conn.stat()[0]
            return [conn.retr(n) for n in range(1, count + 1)]
        finally:
            close(conn)
    ref = scenario(std_poplib, server)
    got = scenario(cpoplib, server)
    wrapped = [n for n, (resp, lines, octets) in enumerate(ref)
               if b"Subject: Cannot display Unicode content" in lines]
    assert len(wrapped) == 2, ref
    for n in wrapped:
        ref_marks = set(boundary.findall(b"\n".join(ref[n][1])))
        got_marks = set(boundary.findall(b"\n".join(got[n][1])))
        assert len(ref_marks) == len(got_marks) == 1
        assert ref_marks != got_marks           # another session, another
    def canonical(results):
        return [(boundary.sub(b"=_B", resp),
                 [boundary.sub(b"=_B", line) for line in lines])
                for resp, lines, octets in results]
    assert canonical(got) == canonical(ref)


def test_quirk_courier_capa(server):
    only(server, "courier")
    conn = connect(std_poplib, server)
    try:
        caps = conn.capa()
    finally:
        close(conn)
    assert caps["LOGIN-DELAY"] == ["10"] and caps["UTF8"] == ["USER"]
    assert caps["SASL"] == ["PLAIN", "LOGIN"] and "PIPELINING" in caps
