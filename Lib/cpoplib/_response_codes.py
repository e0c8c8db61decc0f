"""Extended response codes (RFC 2449 section 8, RFC 3206, RFC 6856).

A failure reply that carries a response code, such as::

    -ERR [IN-USE] Mailbox is locked by another POP3 session.

is raised by cpoplib as a subclass of ``error_proto`` chosen by its code,
with the reply's bytes as the only argument (``args`` is exactly what
``poplib`` gives, so every ``except error_proto`` clause still catches it)
and two attributes:

``code``
    the code as sent, in ASCII upper case: ``"IN-USE"``, ``"SYS/TEMP"``;
``text``
    the human-readable text after the code, decoded as UTF-8 (invalid
    bytes replaced by U+FFFD); ``args[0]`` keeps the raw bytes.

Codes are hierarchical ("/" separates levels) and compared without regard
to case; a code with more levels than a class knows is raised as its
nearest known parent (``[SYS/TEMP/DISK]`` as ``SysTempError``, with
``code == "SYS/TEMP/DISK"``).  A well-formed code that no class knows is
raised as ``ResponseCodeError`` itself.  A reply without a well-formed code
right after ``-ERR `` is raised as plain ``error_proto``, as before.

The C core calls ``classify()`` (registered with
``_cpoplib._set_response_classifier``) for every failure reply that starts
with ``-ERR [``.  A Python subclass that overrides ``_getresp`` and raises
``error_proto`` itself raises whatever class it chooses.
"""

import re

from ._cpoplib import error_proto

__all__ = ["ResponseCodeError", "InUseError", "LoginDelayError",
           "SysTempError", "SysPermError", "AuthError", "UTF8Error",
           "classify", "split_response_code"]

# RFC 2449: resp-code = "[" resp-level *("/" resp-level) "]"
#           resp-level = 1*rchar
#           rchar = %x21-2E / %x30-5C / %x5E-7F  (printable, not "/" or "]")
# It follows "-ERR" and one space; the text follows the code and one space.
_RCHAR = rb"[\x21-\x2e\x30-\x5c\x5e-\x7f]"
_REPLY = re.compile(
    rb"-ERR \[(" + _RCHAR + rb"+(?:/" + _RCHAR + rb"+)*)\] ?(.*)\Z", re.S)


def split_response_code(reply):
    """(code, text) of a failure reply with a response code, else None.

    ``code`` is the code in upper case (str), ``text`` the rest of the
    reply after the code and one space, decoded as UTF-8 with invalid
    bytes replaced."""
    if not isinstance(reply, (bytes, bytearray)):
        return None
    m = _REPLY.match(reply)
    if m is None:
        return None
    return (m.group(1).decode("ascii").upper(),
            m.group(2).decode("utf-8", "replace"))


class ResponseCodeError(error_proto):
    """A failure reply with an RFC 2449 response code.

    ``args`` is ``(reply,)``, the reply's bytes, exactly as for
    ``error_proto``; ``code`` is the response code in upper case (str,
    e.g. ``"IN-USE"``) and ``text`` the text after it (str).  Raised as
    such for a code that no subclass knows."""

    #: the code this class stands for ("" for the generic class)
    response_code = ""

    def __init__(self, *args):
        super().__init__(*args)
        parsed = split_response_code(args[0]) if args else None
        if parsed is None:          # built by hand with some other reply
            self.code, self.text = self.response_code, ""
        else:
            self.code, self.text = parsed


class InUseError(ResponseCodeError):
    """``[IN-USE]`` (RFC 2449): the mailbox is locked, typically by another
    session of the same user; try again later."""
    response_code = "IN-USE"


class LoginDelayError(ResponseCodeError):
    """``[LOGIN-DELAY]`` (RFC 2449): logged in too soon after the last
    login; see the LOGIN-DELAY capability for the minimum interval."""
    response_code = "LOGIN-DELAY"


class SysTempError(ResponseCodeError):
    """``[SYS/TEMP]`` (RFC 3206): a temporary system failure on the server;
    the same command may succeed later."""
    response_code = "SYS/TEMP"


class SysPermError(ResponseCodeError):
    """``[SYS/PERM]`` (RFC 3206): a permanent system failure on the server;
    retrying will not help until someone fixes it."""
    response_code = "SYS/PERM"


class AuthError(ResponseCodeError):
    """``[AUTH]`` (RFC 3206): the credentials were rejected (as opposed to a
    system failure)."""
    response_code = "AUTH"


class UTF8Error(ResponseCodeError):
    """``[UTF8]`` (RFC 6856): the command needs UTF-8 mode (the UTF8
    command) first."""
    response_code = "UTF8"


_CLASSES = {cls.response_code: cls for cls in (
    InUseError, LoginDelayError, SysTempError, SysPermError, AuthError,
    UTF8Error)}


def classify(reply):
    """The class cpoplib raises for a failure reply with a response code
    (a subclass of ``ResponseCodeError``), or None for a reply without
    one (plain ``error_proto``)."""
    parsed = split_response_code(reply)
    if parsed is None:
        return None
    levels = parsed[0].split("/")
    for depth in range(len(levels), 0, -1):
        cls = _CLASSES.get("/".join(levels[:depth]))
        if cls is not None:
            return cls
    return ResponseCodeError
