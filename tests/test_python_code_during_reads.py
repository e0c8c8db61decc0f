"""Python code run while a line is being read cannot change what a command
returns.

The client consults ``self._debugging`` while it reads a reply; a
``_debugging`` property runs Python code there, which may read from or
close ``self.file`` itself.  Whatever that code does, noop() and retr()
return what poplib returns, and the next line read is the one poplib
reads.  (The C client once held the line as a pointer into the reader's
buffer across that call: a use-after-free when the code made the buffer
move.)
"""
import poplib

import pytest

import cpoplib          # deliberately not importorskip: missing == failure

from scripted_server import ScriptedServer
from side_by_side import crlf_lines, outcome


def block(tag, size, first=None):
    """Exactly `size` bytes of CRLF lines tagged `tag` (each at most 80
    bytes, except a first line of `first` bytes if given)."""
    out = bytearray()
    if first:
        out += tag + b"-long " + b"L" * (first - len(tag) - 8) + b"\r\n"
    n = 0
    while len(out) < size:
        line = b"%s %06d " % (tag, n) + b"y" * (n % 40)
        room = size - len(out)
        if room < len(line) + 2 + 20:       # last line: pad to fit
            line = (b"%s end " % tag).ljust(room - 2, b"z")
        out += line + b"\r\n"
        n += 1
    assert len(out) == size
    return bytes(out)


PART1 = block(b"p1", 300000, first=100000)   # read(300000) swallows it whole
PART2 = block(b"p2", 6000)
STATUS = {"noop": b"+OK noop reply", "retr": b"+OK retr follows"}

DEBUG_ACTIONS = {
    "read": lambda conn: conn.file.read(300000),
    "readline": lambda conn: conn.file.readline(),
    "close": lambda conn: conn.file.close(),
}


def _debug_probe(module, action, trigger):
    """A POP3 subclass whose `_debugging` getter runs `action` on its
    `trigger`-th read (counted from arm())."""

    class Probe(module.POP3):
        def __init__(self, *args, **kwargs):
            self.__dict__.update(_probe_reads=0, _probe_armed=False,
                                 _probe_level=0)
            super().__init__(*args, **kwargs)

        def arm(self):
            self.__dict__["_probe_armed"] = True

        @property
        def _debugging(self):
            d = self.__dict__
            if d["_probe_armed"]:
                d["_probe_reads"] += 1
                if d["_probe_reads"] == trigger:
                    DEBUG_ACTIONS[action](self)
            return d["_probe_level"]

        @_debugging.setter
        def _debugging(self, value):
            self.__dict__["_probe_level"] = value

    return Probe


def _debug_scenario(module, command, action, trigger):
    # Everything is sent up front (then EOF), so that reads in the getter
    # never wait for the server, wherever they happen.
    stream = (b"+OK welcome\r\n" + STATUS[command] + b"\r\n" + PART1 + PART2
              + b".\r\n+OK next\r\n+OK after\r\n")
    with ScriptedServer([(None, stream)]) as srv:
        client = _debug_probe(module, action, trigger)(srv.host, srv.port,
                                                       timeout=10)
        client.arm()
        if command == "noop":
            got = [outcome(module, client.noop)]
        else:
            got = [outcome(module, client.retr, 1)]
        # where the stream is now: the next line as _getline() reads it
        got.append(outcome(module, client._getline))
        try:
            client.close()
        except OSError:
            pass
    return got


@pytest.mark.parametrize("trigger", [1, 2, 3, 4])
@pytest.mark.parametrize("action", sorted(DEBUG_ACTIONS))
@pytest.mark.parametrize("command", ["noop", "retr"])
def test_debugging_getter_touching_file_matches_stdlib(command, action,
                                                       trigger):
    """The k-th read of self._debugging during the command (k = 1..4:
    _putcmd, _putline, _getline after reading the status line, _getresp --
    the same order in both modules) reads 300000 bytes, reads a line, or
    closes the file.  noop()/retr() and the next _getline() give what
    poplib gives; trigger 3 is the read right after the status line was
    taken from the buffer (the use-after-free)."""
    ref = _debug_scenario(poplib, command, action, trigger)
    got = _debug_scenario(cpoplib, command, action, trigger)
    assert got == ref
    if trigger >= 3:
        # the status line was read before the getter ran: poplib returns it
        if command == "noop":
            assert ref[0] == ("ok", STATUS["noop"])
        elif action == "read":
            assert ref[0] == ("ok", (STATUS["retr"], crlf_lines(PART2),
                                     len(PART2)))
