"""The fetcher's own instance of cpoplib, with the line and response
limits of real mail.

cpoplib reads ``_MAXLINE`` (2048, as poplib: a longer line is an error)
and ``MAX_RESPONSE_SIZE`` from its package's globals at every response,
for every connection of the process.  Mail has longer lines (unencoded
HTML), so the fetcher reads with a line limit of its per-message cap
(``max_message_size``) -- but setting ``cpoplib._MAXLINE`` would change
it for every other user of cpoplib in the process.  Instead the fetcher
loads a second instance of the package (the same files, its C extension
initialised again: a module of its own, with its own globals, types and
error_proto, all subclasses of poplib's), named
``cpoplib.fetch._core_<MiB>``, and sets the limits there:

``_MAXLINE``           the cap: a line may be as long as a message may be
``MAX_RESPONSE_SIZE``  the cap plus an eighth (dot-stuffing, CRLF, a LIST
                       size that was not exact): past it the read stops
                       (error_proto('response too long'), the connection
                       is closed) instead of growing without bound.

``cpoplib`` itself is left as it is.  One instance per cap (accounts may
differ), made on first use.
"""
import importlib.util
import sys
import threading

import cpoplib

from .settings import MiB

_lock = threading.Lock()
_cores: dict = {}           # MiB -> module


def wire_cap(max_bytes):
    return max_bytes + max_bytes // 8


def pop3_module(max_mib):
    """The cpoplib instance reading messages of up to `max_mib` MiB."""
    with _lock:
        module = _cores.get(max_mib)
        if module is None:
            name = "%s._core_%d" % (__package__, max_mib)
            spec = importlib.util.spec_from_file_location(
                name, cpoplib.__file__,
                submodule_search_locations=list(cpoplib.__path__))
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            module._MAXLINE = max_mib * MiB
            module.MAX_RESPONSE_SIZE = wire_cap(max_mib * MiB)
            _cores[max_mib] = module
    return module
