"""fetch(), fetch_into(), fetch_many(), uidl_map() and list_map() against
a real Dovecot POP3 server.

The server, the corpus (alice's mailbox) and the helpers are those of
tests/test_dovecot.py, imported from it.  pytest registers imported
fixtures as this module's own, so a session-scoped fixture imported here
is a second instance: running this file together with test_dovecot.py
starts a second private Dovecot (a few seconds).  Like test_dovecot.py,
these tests are skipped when dovecot is not installed, unless
CPOPLIB_REQUIRE_DOVECOT=1 is set, in which case they fail (the imported
``server`` fixture does both).

What a message must be: exactly what the standard library's poplib gives,
joined, ``b"".join(line + b"\\r\\n" for line in retr(n)[1])``, for every
message of the corpus over plain POP3, STLS and POP3S.  Dovecot advertises
PIPELINING, so fetch_many() must pipeline: the poplib.putline audit events
show how many RETR commands went out before the first message came back.
Deleting is tested on carol's mailbox (starts empty; each test adds its
own messages and leaves the box empty), as test_dele_quit does.
"""

import contextlib
import io

import pytest

import dovecot_server

from dovecot_clients import USER, close, empty_mailbox, joined, login

import poplib as std_poplib

import cpoplib

TRANSPORTS = ["plain", "stls", "pop3s"]


# --------------------------------------------------------------------------
# helpers

def connect(server, tls_context, transport, module=cpoplib, user=USER):
    """A logged-in connection of `module` over `transport`."""
    if transport == "plain":
        return login(module, server, user)
    host = dovecot_server.TLS_HOSTNAME
    if transport == "stls":
        conn = module.POP3(host, server.pop3_port, timeout=60)
        try:
            conn.stls(tls_context)
        except BaseException:
            conn.close()
            raise
    else:
        conn = module.POP3_SSL(host, server.pop3s_port, context=tls_context,
                               timeout=60)
    try:
        conn.user(user)
        conn.pass_(server.users[user])
    except BaseException:
        conn.close()
        raise
    return conn


@pytest.fixture(scope="module")
def expected(server, corpus):
    """{number: message} as stdlib poplib's retr() gives it, joined."""
    conn = login(std_poplib, server)
    try:
        result = {n: joined(conn.retr(n)[1]) for n in sorted(corpus.keys)}
    finally:
        close(conn)
    for n, data in result.items():        # and as the Maildir files say
        assert data == corpus.wire[corpus.keys[n]], corpus.keys[n]
    return result


@contextlib.contextmanager
def carol_messages(server, prefix, count):
    """Adds `count` messages to carol's (empty) mailbox; yields their keys.
    Afterwards deletes whatever is left, so the box is empty again."""
    messages = dovecot_server.small_corpus(prefix, count)
    server.add_messages("carol", messages)
    try:
        yield [key for key, _ in messages]
    finally:
        empty_mailbox(server, "carol")


def numbers_by_key(conn):
    return {dovecot_server.message_key(conn.top(n, 0)[1]): n
            for n in range(1, conn.stat()[0] + 1)}


def carol_keys(server):
    """The keys in carol's mailbox, seen by a new session."""
    conn = login(std_poplib, server, "carol")
    try:
        return set(numbers_by_key(conn))
    finally:
        conn.quit()


# --------------------------------------------------------------------------
# identical bytes, every message, every transport

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fetch_and_fetch_into(server, tls_context, corpus, expected,
                              transport):
    conn = connect(server, tls_context, transport)
    try:
        for n in sorted(corpus.keys):
            data = conn.fetch(n)
            assert type(data) is bytes
            assert data == expected[n], corpus.keys[n]
            sink = io.BytesIO()
            assert conn.fetch_into(n, sink) == len(expected[n])
            assert sink.getvalue() == expected[n], corpus.keys[n]
        assert conn.stat() == (len(corpus.files), sum(corpus.size.values()))
    finally:
        close(conn)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fetch_many_all(server, tls_context, corpus, expected, transport,
                        putlines):
    conn = connect(server, tls_context, transport)
    try:
        assert "PIPELINING" in conn.capa()
        numbers = sorted(corpus.keys)
        it = conn.fetch_many(numbers)
        first = next(it)
        # pipelined: more than one RETR went out before the first reply
        # was handed over (the default window is above 1)
        sent = [line for line in putlines(conn) if line.startswith(b"RETR")]
        assert len(sent) > 1, sent
        got = [first] + list(it)
        assert [n for n, _ in got] == numbers
        for n, data in got:
            assert data == expected[n], corpus.keys[n]
        assert [line for line in putlines(conn)
                if line.startswith(b"RETR")] == [b"RETR %d" % n
                                                 for n in numbers]
        assert conn.noop().startswith(b"+OK")
        assert conn.stat()[0] == len(numbers)
    finally:
        close(conn)


@pytest.mark.parametrize("window", [1, 3, 64])
def test_fetch_many_window(server, corpus, expected, window, putlines):
    conn = login(cpoplib, server)
    try:
        numbers = sorted(corpus.keys)
        it = conn.fetch_many(numbers, window=window)
        first = next(it)
        sent = [line for line in putlines(conn) if line.startswith(b"RETR")]
        assert len(sent) == min(window, len(numbers))
        got = dict([first] + list(it))
        assert got == expected
    finally:
        close(conn)


def test_fetch_many_without_pipelining(server, corpus, expected, putlines):
    conn = login(cpoplib, server)
    try:
        numbers = sorted(corpus.keys)
        it = conn.fetch_many(numbers, pipeline=False)
        first = next(it)
        assert [line for line in putlines(conn)
                if line.startswith(b"RETR")] == [b"RETR %d" % numbers[0]]
        assert dict([first] + list(it)) == expected
    finally:
        close(conn)


# --------------------------------------------------------------------------
# -ERR inside a batch

@pytest.mark.parametrize("transport", ["plain", "pop3s"])
def test_fetch_many_error_mid_batch(server, tls_context, corpus, expected,
                                    transport):
    conn = connect(server, tls_context, transport)
    try:
        ref = login(std_poplib, server)
        try:
            ref_error = pytest.raises(std_poplib.error_proto, ref.retr, 999)
        finally:
            close(ref)
        handed = []
        with pytest.raises(cpoplib.error_proto) as info:
            for which, data in conn.fetch_many([1, 2, 999, 3]):
                assert data == expected[which]
                handed.append(which)
        assert handed == [1, 2]
        assert info.value.which == 999
        assert info.value.args == ref_error.value.args
        assert info.value.args[0].startswith(b"-ERR")
        # the connection is in step
        assert conn.noop().startswith(b"+OK")
        assert conn.stat() == (len(corpus.files), sum(corpus.size.values()))
        assert conn.fetch(3) == expected[3]
        assert list(conn.fetch_many([4, 1])) == [(4, expected[4]),
                                                  (1, expected[1])]
    finally:
        close(conn)


# --------------------------------------------------------------------------
# delete=True (carol's mailbox)

def test_fetch_many_delete_all(server):
    with carol_messages(server, "carol-fm-all", 6) as keys:
        conn = login(cpoplib, server, "carol")
        try:
            numbers = numbers_by_key(conn)
            order = [numbers[k] for k in keys]
            got = list(conn.fetch_many(order, delete=True))
            assert [n for n, _ in got] == order
            for (n, data), key in zip(got, keys):
                assert dovecot_server.message_key(data) == key
            assert conn.stat()[0] == 0          # all marked deleted
        finally:
            resp = conn.quit()
        assert resp == b"+OK Logging out, messages deleted."
        assert not carol_keys(server) & set(keys)


def test_fetch_many_delete_error_mid_batch(server):
    """-ERR after two messages: exactly those two are deleted."""
    with carol_messages(server, "carol-fm-err", 4) as keys:
        conn = login(cpoplib, server, "carol")
        try:
            numbers = numbers_by_key(conn)
            batch = [numbers[keys[0]], numbers[keys[1]], 999,
                     numbers[keys[2]]]
            handed = []
            with pytest.raises(cpoplib.error_proto) as info:
                for which, data in conn.fetch_many(batch, delete=True):
                    assert dovecot_server.message_key(data) == \
                        keys[batch.index(which)]
                    handed.append(which)
            assert handed == batch[:2]
            assert info.value.which == 999
            assert conn.noop().startswith(b"+OK")
            assert conn.stat()[0] == 2
        finally:
            conn.quit()
        assert carol_keys(server) & set(keys) == set(keys[2:])


def test_fetch_many_delete_early_break(server):
    """Break after the third message: the caller never came back for a
    fourth, so the first two are deleted, the third and the rest stay."""
    with carol_messages(server, "carol-fm-break", 5) as keys:
        conn = login(cpoplib, server, "carol")
        try:
            numbers = numbers_by_key(conn)
            order = [numbers[k] for k in keys]
            it = conn.fetch_many(order, delete=True)
            handed = []
            for which, data in it:
                handed.append(which)
                if len(handed) == 3:
                    break
            it.close()
            assert handed == order[:3]
            assert conn.noop().startswith(b"+OK")
            assert conn.stat()[0] == 3
        finally:
            conn.quit()
        assert carol_keys(server) & set(keys) == set(keys[2:])


# --------------------------------------------------------------------------
# uidl_map(), list_map()

def parsed(listing):
    return {int(line.split()[0]): line.split()[1] for line in listing[1]}


@pytest.mark.parametrize("transport", ["plain", "pop3s"])
def test_maps(server, tls_context, corpus, transport):
    conn = connect(server, tls_context, transport)
    ref = connect(server, tls_context, transport, module=std_poplib)
    try:
        uids = conn.uidl_map()
        assert uids == parsed(ref.uidl())
        assert all(type(k) is int and type(v) is bytes
                   for k, v in uids.items())
        sizes = conn.list_map()
        assert sizes == {n: int(s) for n, s in parsed(ref.list()).items()}
        assert sizes == {n: corpus.size[k] for n, k in corpus.keys.items()}
    finally:
        close(ref)
        close(conn)


def test_maps_after_dele(server):
    """Messages marked deleted are left out, as in poplib's listings
    (bob's box: DELE then RSET, never QUIT after a DELE)."""
    conn = login(cpoplib, server, "bob")
    ref = login(std_poplib, server, "bob")
    try:
        conn.dele(2)
        ref.dele(2)
        assert conn.uidl_map() == parsed(ref.uidl())
        assert conn.list_map() == {n: int(s)
                                   for n, s in parsed(ref.list()).items()}
        assert sorted(conn.list_map()) == [1, 3]
        conn.rset()
        ref.rset()
        assert sorted(conn.uidl_map()) == [1, 2, 3]
    except BaseException:
        conn.close()                    # no QUIT after a DELE
        ref.close()
        raise
    conn.quit()
    ref.quit()
