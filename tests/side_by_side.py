"""Running one scenario with poplib and with cpoplib and comparing what
happened.

Where the standard library's poplib defines the answer, a test runs the
scenario with both modules (the `mod` fixture of conftest.py gives each in
turn, or one test runs both) and compares the outcomes; these helpers put
the outcomes in a comparable form.
"""
import poplib

import cpoplib          # deliberately not importorskip: missing == failure

MODULES = {"poplib": poplib, "cpoplib": cpoplib}


def exc_key(module, exc):
    """A comparable form of an exception raised by a client of `module`.

    error_proto is compared by args; ValueError by type only (io's
    closed-file messages, "readline of closed file", differ from
    SocketReader's "I/O operation on closed file."); anything else by
    exact type and args."""
    if isinstance(exc, module.error_proto):
        return ("error_proto", exc.args)
    if type(exc) is ValueError:
        return ("ValueError",)
    return (type(exc).__name__, exc.args)


def outcome(module, fn, *args):
    """("ok", what fn(*args) returned), or exc_key() of what it raised."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return exc_key(module, exc)


def crlf_lines(data):
    """The lines of `data` as poplib's _getlongresp returns them."""
    lines = data.split(b"\r\n")[:-1]
    return [ln[1:] if ln.startswith(b"..") else ln for ln in lines]
