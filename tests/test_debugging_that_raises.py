"""A ``_debugging`` whose truth value or comparison raises.

The client tests ``self._debugging`` (its truth value, ``> 1``) around
every line it sends and reads.  When that raises, noop() and retr() raise
the exception poplib raises (never SystemError), after the same traffic.
"""
import poplib

import pytest

import cpoplib          # deliberately not importorskip: missing == failure

from scripted_server import ANY, ScriptedServer


class BoolRaises:
    def __bool__(self):
        raise ZeroDivisionError("no truth value")

    def __gt__(self, other):
        return True


class GtRaises:
    def __bool__(self):
        return True

    def __gt__(self, other):
        raise ZeroDivisionError("no comparison")


class BoolRaisesNoGt:
    def __bool__(self):
        raise ZeroDivisionError("no truth value")


DEBUG_LEVELS = {"bool": BoolRaises, "gt": GtRaises,
                "bool-no-gt": BoolRaisesNoGt}


def _bad_debug_outcome(module, level, command):
    script = [(None, b"+OK hi\r\n"), (ANY, b"+OK\r\n.\r\n")]
    with ScriptedServer(script, idle_eof=1) as srv:
        client = module.POP3(srv.host, srv.port, timeout=5)
        client._debugging = DEBUG_LEVELS[level]()
        try:
            if command == "noop":
                client.noop()
            else:
                client.retr(1)
            got = ("ok",)
        except Exception as exc:
            got = (type(exc).__name__, exc.args)
        client._debugging = 0
        client.close()
    return got, srv.commands


@pytest.mark.parametrize("level", sorted(DEBUG_LEVELS))
@pytest.mark.parametrize("command", ["noop", "retr"])
def test_debugging_that_raises(level, command, capsys):
    ref = _bad_debug_outcome(poplib, level, command)
    got = _bad_debug_outcome(cpoplib, level, command)
    assert ref[0][0] == "ZeroDivisionError"
    assert got == ref
