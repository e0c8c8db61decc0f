"""cpoplib: the standard library's poplib, with its core written in C.

``import cpoplib as poplib`` is meant to change nothing but speed: the
classes, methods, attributes, return values, exceptions and audit events
are those of the running interpreter's poplib.  See README.rst for the
few deliberate differences.
"""

import io as _io
import inspect as _inspect
import socket as _socket

try:
    from . import _cpoplib
except ImportError as exc:  # no silent pure-Python fallback
    raise ImportError(
        "cpoplib's C extension (cpoplib._cpoplib) could not be imported: "
        f"{exc}. Reinstall cpoplib with a C compiler and OpenSSL headers "
        "available (pip install --force-reinstall cpoplib)."
    ) from exc

from ._cpoplib import (  # noqa: E402
    CR,
    CRLF,
    HAVE_SSL,
    LF,
    MAX_RESPONSE_SIZE,
    POP3,
    POP3_PORT,
    POP3_SSL_PORT,
    _MAXLINE,
    error_proto,
)

__all__ = ["POP3", "error_proto"]

if HAVE_SSL:
    from ._cpoplib import POP3_SSL  # noqa: E402

    __all__.append("POP3_SSL")

# The C core reads _MAXLINE and MAX_RESPONSE_SIZE from this module's
# globals at run time, so that `cpoplib._MAXLINE = N` works as
# `poplib._MAXLINE = N` does.  MAX_RESPONSE_SIZE (cpoplib only; None, no
# limit, by default as in poplib) caps the bytes of one multi-line
# response: past it, error_proto('response too long').
_cpoplib._bind_namespace(globals())

# self.file is a SocketReader: let it pass isinstance(f, io.BufferedIOBase).
_io.BufferedIOBase.register(_cpoplib.SocketReader)


class _ConstructorSignature:
    """``__signature__`` of a C class, for inspect.signature().

    Only the class itself (or a subclass that does not define its own
    __init__ or __new__) sees it, so subclasses keep their own signature.
    """

    def __init__(self, cls, signature):
        self._cls = cls
        self._signature = signature

    def __get__(self, instance, owner):
        if instance is None:
            for klass in owner.__mro__:
                if klass is self._cls:
                    return self._signature
                if "__init__" in vars(klass) or "__new__" in vars(klass):
                    break
        raise AttributeError("__signature__")


def _set_signature(cls, *params):
    P = _inspect.Parameter
    sig = _inspect.Signature([P(name, kind, default=default)
                              for name, kind, default in params])
    cls.__signature__ = _ConstructorSignature(cls, sig)


_P = _inspect.Parameter
_set_signature(
    POP3,
    ("host", _P.POSITIONAL_OR_KEYWORD, _P.empty),
    ("port", _P.POSITIONAL_OR_KEYWORD, POP3_PORT),
    ("timeout", _P.POSITIONAL_OR_KEYWORD, _socket._GLOBAL_DEFAULT_TIMEOUT),
)
if HAVE_SSL:
    import sys as _sys

    if _sys.version_info < (3, 12):
        _set_signature(
            POP3_SSL,
            ("host", _P.POSITIONAL_OR_KEYWORD, _P.empty),
            ("port", _P.POSITIONAL_OR_KEYWORD, POP3_SSL_PORT),
            ("keyfile", _P.POSITIONAL_OR_KEYWORD, None),
            ("certfile", _P.POSITIONAL_OR_KEYWORD, None),
            ("timeout", _P.POSITIONAL_OR_KEYWORD,
             _socket._GLOBAL_DEFAULT_TIMEOUT),
            ("context", _P.POSITIONAL_OR_KEYWORD, None),
        )
    else:
        _set_signature(
            POP3_SSL,
            ("host", _P.POSITIONAL_OR_KEYWORD, _P.empty),
            ("port", _P.POSITIONAL_OR_KEYWORD, POP3_SSL_PORT),
            ("timeout", _P.KEYWORD_ONLY, _socket._GLOBAL_DEFAULT_TIMEOUT),
            ("context", _P.KEYWORD_ONLY, None),
        )
    del _sys
del _P
