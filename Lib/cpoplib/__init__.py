"""cpoplib: the standard library's poplib, with its core written in C.

``import cpoplib as poplib`` is meant to change nothing but speed: the
classes, methods, attributes, return values, exceptions and audit events
are those of the running interpreter's poplib.  See README.rst for the
few deliberate differences.

Additions (poplib has none of them; ``__all__`` stays poplib's, so
``from cpoplib import *`` binds what ``from poplib import *`` binds):
``with POP3(...) as conn:`` (QUIT on normal exit, close() without QUIT on
an exception); ``ResponseCodeError`` and its subclasses for RFC 2449/3206
response codes; ``install()``/``uninstall()`` to make ``import poplib``
give cpoplib (and ``python -m cpoplib run PROGRAM``); ``__version__``.
"""

__version__ = "0.1.0"

import errno
import io as _io
import re
import socket
import sys

try:
    import ssl
except ImportError:  # as poplib: no ssl, no POP3_SSL
    pass

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
    SCRAM_MAX_ITERATIONS,
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
# response: past it, error_proto('response too long') and the connection
# is closed.  SCRAM_MAX_ITERATIONS (cpoplib only) is the largest SCRAM
# iteration count login() accepts from a server (default 10,000,000,
# about 5 s of SHA-256); lower it to refuse costlier derivations.
_cpoplib._bind_namespace(globals())

# self.file is a SocketReader: let it pass isinstance(f, io.BufferedIOBase).
_io.BufferedIOBase.register(_cpoplib.SocketReader)

# RFC 2449/3206 response codes: the C core asks _response_codes.classify
# which subclass of error_proto to raise for a "-ERR [CODE] ..." reply.
from ._response_codes import (  # noqa: E402
    AuthError,
    InUseError,
    LoginDelayError,
    ResponseCodeError,
    SysPermError,
    SysTempError,
    UTF8Error,
    classify as _classify_response,
)

_cpoplib._set_response_classifier(_classify_response)


# The constructors' signatures, exactly as poplib's: a text signature
# cannot express the timeout default (a sentinel object), so each C
# initialiser is wrapped in a Python __init__ with poplib's parameters.
# inspect.signature(), help() and mock.create_autospec() read these.
class _ConstructorSignature:
    """``__signature__`` of a C class whose __init__ is the Python one
    below: some inspect versions (3.10) look at the class's own C __new__
    first and give up.  Only the class itself, or a subclass that does not
    define its own __init__ or __new__, sees it, so subclasses keep their
    own signature.  inspect is imported only when a signature is asked
    for."""

    def __init__(self, cls, init):
        self._cls = cls
        self._init = init

    def __get__(self, instance, owner):
        if instance is None:
            for klass in owner.__mro__:
                if klass is self._cls:
                    import inspect
                    sig = inspect.signature(self._init)
                    return sig.replace(
                        parameters=list(sig.parameters.values())[1:])
                if "__init__" in vars(klass) or "__new__" in vars(klass):
                    break
        raise AttributeError("__signature__")


def _wrap_init(cls, init):
    c_init = cls.__init__          # the C tp_init, as a slot wrapper
    init.__name__ = "__init__"
    init.__qualname__ = f"{cls.__name__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = None
    cls.__init__ = init
    cls.__signature__ = _ConstructorSignature(cls, init)
    return c_init


def _pop3_init(self, host, port=POP3_PORT,
               timeout=socket._GLOBAL_DEFAULT_TIMEOUT):
    _c_pop3_init(self, host, port, timeout)


_c_pop3_init = _wrap_init(POP3, _pop3_init)

if HAVE_SSL:
    if sys.version_info < (3, 12):
        def _pop3_ssl_init(self, host, port=POP3_SSL_PORT, keyfile=None,
                           certfile=None,
                           timeout=socket._GLOBAL_DEFAULT_TIMEOUT,
                           context=None):
            _c_pop3_ssl_init(self, host, port, keyfile, certfile, timeout,
                             context)
    else:
        def _pop3_ssl_init(self, host, port=POP3_SSL_PORT, *,
                           timeout=socket._GLOBAL_DEFAULT_TIMEOUT,
                           context=None):
            _c_pop3_ssl_init(self, host, port, timeout=timeout,
                             context=context)

    _c_pop3_ssl_init = _wrap_init(POP3_SSL, _pop3_ssl_init)


# ---- the context manager ----
# Set on the C class from Python: nothing here is speed-critical, and
# __exit__ calls self.quit()/self.close(), so subclass overrides apply.

def _enter(self):
    return self


def _exit(self, exc_type, exc_value, traceback):
    """Normal exit: quit() (QUIT commits DELE) and close.  Exit by an
    exception: close() without QUIT, so the server rolls back deletions;
    an error from close() is dropped, the original exception propagates.
    No QUIT is sent when the connection was already closed (quit() or
    close() inside the block)."""
    if exc_type is not None:
        try:
            self.close()
        except Exception:
            pass
        return None
    if getattr(self, "sock", None) is None:
        self.close()
        return None
    try:
        self.quit()
    except BaseException:
        try:
            self.close()
        except Exception:
            pass
        raise
    return None


for _name, _f in (("__enter__", _enter), ("__exit__", _exit)):
    _f.__name__ = _name
    _f.__qualname__ = "POP3." + _name
    _f.__module__ = POP3.__module__
    setattr(POP3, _name, _f)
del _name, _f, _enter, _exit


# ---- install() / uninstall(): `import poplib` gives cpoplib ----

_poplib_before_install = None   # sys.modules["poplib"] before install()


def install():
    """Make every later ``import poplib`` (and ``from poplib import ...``)
    in this process give cpoplib, by putting cpoplib in
    ``sys.modules["poplib"]``.  References to the standard module taken
    before the call (``import poplib`` already executed, classes
    subclassed at import time) keep pointing at it: call install() before
    the code you want switched imports poplib.  Idempotent."""
    global _poplib_before_install
    this = sys.modules[__name__]
    if sys.modules.get("poplib") is this:
        return
    _poplib_before_install = sys.modules.get("poplib")
    sys.modules["poplib"] = this


def uninstall():
    """Undo install(): ``sys.modules["poplib"]`` gets back what it held
    before (the standard module, or nothing, so that the next import
    loads it).  Modules that imported poplib meanwhile keep cpoplib.
    Does nothing if cpoplib is not installed."""
    global _poplib_before_install
    this = sys.modules[__name__]
    previous, _poplib_before_install = _poplib_before_install, None
    if sys.modules.get("poplib") is not this:
        return
    if previous is None:
        del sys.modules["poplib"]
    else:
        sys.modules["poplib"] = previous
