"""cpoplib.aio against a real Dovecot: the mailbox through plain POP3,
STLS and POP3S gives exactly what the blocking cpoplib gives, and every
SASL mechanism Dovecot offers (SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5,
PLAIN, LOGIN, APOP, USER, OAUTHBEARER, XOAUTH2) logs in, or refuses a
wrong secret and stays usable, as login() does.

One private Dovecot (tests/dovecot_server.py, with OAuth 2.0 token
introspection) for the module; skipped when Dovecot is missing unless
CPOPLIB_REQUIRE_DOVECOT=1.
"""
import asyncio
import ssl

import pytest

import cpoplib
import cpoplib.aio as aio

USER = "alice"
MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN",
              "APOP", "USER"]


@pytest.fixture(scope="module")
def server(dovecot):
    with dovecot(large_size=3 * 1024 * 1024, oauth2=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def context(server):
    return ssl.create_default_context(cafile=server.ca_file)


def blocking_view(server):
    """What the blocking client gets of alice's mailbox."""
    conn = cpoplib.POP3(server.host, server.pop3_port, timeout=60)
    conn.user(USER)
    conn.pass_(server.users[USER])
    count = conn.stat()[0]
    view = {
        "stat": conn.stat(),
        "list": conn.list(),
        "uidl": conn.uidl(),
        "list1": conn.list(1),
        "maps": conn.listing_maps(),
        "stat_uidl": conn.stat_and_uidl_map(),
        "list_many": conn.list_many(range(count, 0, -1)),
        "list_many_err": _outcome(conn.list_many, [1, 999]),
        "top": [conn.top(n, 2) for n in range(1, count + 1)],
        "retr": [conn.retr(n) for n in range(1, count + 1)],
        "fetch": [conn.fetch(n) for n in range(1, count + 1)],
        "many": list(conn.fetch_many(range(1, count + 1))),
        "err": _outcome(conn.retr, 999),
    }
    conn.quit()
    return view


def _outcome(func, *args, **kwargs):
    try:
        return ("ok", func(*args, **kwargs))
    except cpoplib.error_proto as exc:
        return ("raise", type(exc), exc.args)


async def _aoutcome(coro):
    try:
        return ("ok", await coro)
    except cpoplib.error_proto as exc:
        return ("raise", type(exc), exc.args)


async def async_view(conn, server):
    await conn.user(USER)
    await conn.pass_(server.users[USER])
    count = (await conn.stat())[0]
    view = {
        "stat": await conn.stat(),
        "list": await conn.list(),
        "uidl": await conn.uidl(),
        "list1": await conn.list(1),
        "maps": await conn.listing_maps(),
        "stat_uidl": await conn.stat_and_uidl_map(),
        "list_many": await conn.list_many(range(count, 0, -1)),
        "list_many_err": await _aoutcome(conn.list_many([1, 999])),
        # concurrent, queued in order
        "top": list(await asyncio.gather(*[conn.top(n, 2)
                                           for n in range(1, count + 1)])),
        "retr": [await conn.retr(n) for n in range(1, count + 1)],
        "fetch": list(await asyncio.gather(*[conn.fetch(n)
                                             for n in range(1, count + 1)])),
        "many": [item async for item in conn.fetch_many(range(1, count + 1))],
        "err": await _aoutcome(conn.retr(999)),
    }
    await conn.quit()
    return view


@pytest.fixture(scope="module")
def expected(server):
    return blocking_view(server)


@pytest.mark.parametrize("transport", ["plain", "stls", "pop3s"])
def test_mailbox_as_blocking(server, context, expected, transport):
    async def go():
        if transport == "pop3s":
            conn = aio.POP3_SSL(server.tls_hostname, server.pop3s_port,
                                timeout=60, context=context)
            await conn.connect()
        else:
            host = server.tls_hostname if transport == "stls" else server.host
            conn = await aio.open_pop3(host, server.pop3_port, timeout=60)
            if transport == "stls":
                assert (await conn.stls(context)).startswith(b"+OK")
                with pytest.raises(cpoplib.error_proto,
                                   match="already established"):
                    await conn.stls(context)
        return await async_view(conn, server)
    got = asyncio.run(go())
    assert got == expected


def test_fetch_into_as_fetch(server, expected):
    class AsyncSink:
        def __init__(self):
            self.parts = []

        async def write(self, data):
            self.parts.append(bytes(data))
            await asyncio.sleep(0)
            return len(data)

    async def go():
        conn = await aio.open_pop3(server.host, server.pop3_port, timeout=60)
        await conn.login(USER, server.users[USER], mechanism="USER",
                         allow_plaintext=True)
        got = []
        for n in range(1, len(expected["fetch"]) + 1):
            sink = AsyncSink()
            size = await conn.fetch_into(n, sink)
            data = b"".join(sink.parts)
            assert size == len(data)
            got.append(data)
        await conn.quit()
        return got
    assert asyncio.run(go()) == expected["fetch"]


async def _login(server, mech, secret, tls=False, context=None, **kwargs):
    if tls:
        conn = aio.POP3_SSL(server.tls_hostname, server.pop3s_port,
                            timeout=30, context=context)
        await conn.connect()
    else:
        conn = await aio.open_pop3(server.host, server.pop3_port, timeout=30)
    try:
        resp = await conn.login(USER, secret, mechanism=mech,
                                allow_plaintext=True, **kwargs)
    except BaseException:
        await conn.close()
        raise
    return conn, resp


@pytest.mark.parametrize("mech", MECHANISMS)
def test_login_with_each_mechanism(server, mech):
    if mech == "APOP" and not server.apop_available:
        pytest.skip("this Dovecot sends no APOP timestamp")

    async def go():
        conn, resp = await _login(server, mech, server.users[USER])
        count = (await conn.stat())[0]
        await conn.quit()
        return resp, count
    resp, count = asyncio.run(go())
    assert resp.startswith(b"+OK")
    assert count == len(server.expected[USER])


@pytest.mark.parametrize("mech", MECHANISMS)
def test_wrong_password_as_blocking(server, mech):
    if mech == "APOP" and not server.apop_available:
        pytest.skip("this Dovecot sends no APOP timestamp")
    blocking = cpoplib.POP3(server.host, server.pop3_port, timeout=30)
    ref = _outcome(blocking.login, USER, "not-it", mechanism=mech,
                   allow_plaintext=True)
    blocking.close()

    async def go():
        conn = await aio.open_pop3(server.host, server.pop3_port, timeout=30)
        got = await _aoutcome(conn.login(USER, "not-it", mechanism=mech,
                                         allow_plaintext=True))
        # in step: the same connection logs in
        again = await conn.login(USER, server.users[USER], mechanism=mech,
                                 allow_plaintext=True)
        await conn.quit()
        return got, again
    got, again = asyncio.run(go())
    assert got == ref and got[0] == "raise"
    assert again.startswith(b"+OK")


def test_login_picks_scram_over_pop3s(server, context, putlines):
    async def go():
        conn = aio.POP3_SSL(server.tls_hostname, server.pop3s_port,
                            timeout=30, context=context)
        await conn.connect()
        resp = await conn.login(USER, server.users[USER])
        await conn.quit()
        return conn, resp
    conn, resp = asyncio.run(go())
    assert resp.startswith(b"+OK")
    lines = putlines(conn)
    assert lines[0] == b"CAPA"
    assert lines[1].startswith(b"AUTH SCRAM-SHA-256 ")


@pytest.mark.parametrize("mech", [None, "OAUTHBEARER", "XOAUTH2"])
def test_login_with_a_token(server, mech):
    token = server.add_oauth2_token(USER)

    async def go():
        conn = await aio.open_pop3(server.host, server.pop3_port, timeout=30)
        resp = await conn.login(USER, token=lambda: token, mechanism=mech,
                                allow_plaintext=True)
        count = (await conn.stat())[0]
        await conn.quit()
        return resp, count
    resp, count = asyncio.run(go())
    assert resp.startswith(b"+OK")
    assert count == len(server.expected[USER])


def test_rejected_token_as_blocking(server):
    token = "unknown-token-for-the-async-test"
    blocking = cpoplib.POP3(server.host, server.pop3_port, timeout=30)
    ref = _outcome(blocking.login, USER, token=token,
                   mechanism="OAUTHBEARER", allow_plaintext=True)
    blocking.close()

    async def go():
        conn = await aio.open_pop3(server.host, server.pop3_port, timeout=30)
        got = await _aoutcome(conn.login(USER, token=token,
                                         mechanism="OAUTHBEARER",
                                         allow_plaintext=True))
        caps = await conn.capa()                 # still in step
        await conn.quit()
        return got, caps
    got, caps = asyncio.run(go())
    assert got == ref and got[0] == "raise"
    assert "OAUTHBEARER" in caps["SASL"]
