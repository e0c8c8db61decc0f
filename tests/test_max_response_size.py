"""cpoplib.MAX_RESPONSE_SIZE, the cap on the size of one multi-line response.

Huge octet counts reported by a _getline override end in
error_proto('response too long'), never in an overflow; an invalid cap
is refused before the command is sent; a response over the cap closes
the connection, which then behaves as after close().
"""
import io
import poplib

import pytest

import cpoplib          # deliberately not importorskip: missing == failure

from scripted_server import ANY, ScriptedServer
from side_by_side import outcome


class _FakeSock:
    def __init__(self):
        self.sent = b""

    def sendall(self, data):
        self.sent += data

    def makefile(self, mode):
        return io.BytesIO(b"")

    def shutdown(self, how):
        pass

    def close(self):
        pass


HUGE_OCTETS = {
    "2**62 twice": [2 ** 62, 2 ** 62],
    "10 then 2**63-1": [10, 2 ** 63 - 1],
    "2**63-1 twice": [2 ** 63 - 1, 2 ** 63 - 1],
    "2**63": [2 ** 63],
    "2**64": [2 ** 64],
    "2**200": [2 ** 200],
}


@pytest.mark.parametrize("octets", sorted(HUGE_OCTETS))
def test_max_response_size_huge_octet_counts(monkeypatch, octets):
    """A _getline override reporting huge octet counts: error_proto('response
    too long') once the cap is passed, never an overflow (or a silently
    wrapped total) and never OverflowError."""
    feed = iter([(b"+OK hi", 8), (b"+OK", 5)]
                + [(b"x", n) for n in HUGE_OCTETS[octets]]
                + [(b".", 3), (b"+OK late", 10)])

    class Huge(cpoplib.POP3):
        def _create_socket(self, timeout):
            return _FakeSock()

        def _getline(self):
            return next(feed)

    client = Huge("example.invalid")
    monkeypatch.setattr(cpoplib, "MAX_RESPONSE_SIZE", 1000)
    with pytest.raises(cpoplib.error_proto) as info:
        client.retr(1)
    assert info.value.args == ("response too long",)


BAD_CAPS = [-1, "x", 1.5, -(2 ** 70)]


class _Hooked(cpoplib.POP3):
    def _getline(self):
        return super()._getline()


@pytest.mark.parametrize("hooked", [False, True], ids=["fast", "hooked"])
@pytest.mark.parametrize("command", ["retr", "top", "list", "uidl"])
@pytest.mark.parametrize("cap", BAD_CAPS, ids=repr)
def test_max_response_size_invalid_refused_before_sending(monkeypatch, cap,
                                                          command, hooked):
    """An invalid MAX_RESPONSE_SIZE raises before the command is sent:
    the server sees only the NOOP sent afterwards, which gets the first
    reply (the connection stayed in step)."""
    script = [(None, b"+OK hi\r\n"), (ANY, b"+OK first reply\r\n"),
              (ANY, b"+OK second reply\r\n")]
    with ScriptedServer(script, idle_eof=2) as srv:
        cls = _Hooked if hooked else cpoplib.POP3
        client = cls(srv.host, srv.port, timeout=5)
        monkeypatch.setattr(cpoplib, "MAX_RESPONSE_SIZE", cap)
        args = {"retr": (1,), "top": (1, 0), "list": (), "uidl": ()}[command]
        with pytest.raises((ValueError, TypeError)):
            getattr(client, command)(*args)
        monkeypatch.setattr(cpoplib, "MAX_RESPONSE_SIZE", None)
        after = outcome(cpoplib, client.noop)
        client.close()
        srv.join()
    assert srv.commands == [b"NOOP\r\n"]
    assert after == ("ok", b"+OK first reply")


def _after_explicit_close(module):
    with ScriptedServer([(None, b"+OK hi\r\n")]) as srv:
        client = module.POP3(srv.host, srv.port, timeout=5)
        client.close()
        try:
            client.noop()
        except Exception as exc:
            return type(exc), str(exc)
    return None


@pytest.mark.parametrize("hooked", [False, True], ids=["fast", "hooked"])
def test_response_too_long_closes_connection(monkeypatch, hooked):
    reply = b"+OK\r\n" + (b"z" * 98 + b"\r\n") * 30 + b".\r\n"   # 3000 bytes
    script = [(None, b"+OK hi\r\n"), (ANY, reply), (ANY, b"+OK noop\r\n")]
    with ScriptedServer(script, idle_eof=2) as srv:
        cls = _Hooked if hooked else cpoplib.POP3
        client = cls(srv.host, srv.port, timeout=5)
        monkeypatch.setattr(cpoplib, "MAX_RESPONSE_SIZE", 1000)
        with pytest.raises(cpoplib.error_proto) as info:
            client.retr(1)
        assert info.value.args == ("response too long",)
        assert client.sock is None
        assert client.file is None
        try:
            client.noop()
            later = None
        except Exception as exc:
            later = (type(exc), str(exc))
    assert later is not None
    assert later == _after_explicit_close(cpoplib)
    assert later == _after_explicit_close(poplib)
