"""pytest configuration shared by the test modules.

The interpreter's own test_poplib (tests/test_stdlib_suite.py) is the
specification cpoplib is held to, so none of its tests may be skipped:
a skip there (no ssl module, no MD5 in OpenSSL, a test resource missing)
is reported as a failure naming the reason.

The putlines fixture records what a connection put on the wire; the mod
fixture gives poplib and cpoplib in turn (side_by_side.py compares what
they did).
"""
import os
import sys

import pytest

from side_by_side import MODULES

_STDLIB_SUITE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             "test_stdlib_suite.py")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.path.abspath(str(item.fspath)) == _STDLIB_SUITE \
            and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) \
            else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = ("the interpreter's test_poplib must run in full, "
                           "but %s was skipped: %s" % (item.nodeid, reason))


_PUTLINES = []          # (id(conn), line) while recording, see putlines()
_RECORDING = []
_HOOKED = []


def _audit(event, args):
    if _RECORDING and event == "poplib.putline":
        _PUTLINES.append((id(args[0]), args[1]))


@pytest.fixture
def putlines():
    """A function giving the lines (bytes, without CRLF) a connection put
    on the wire since set-up, from the poplib.putline audit events
    cpoplib raises as poplib does."""
    if not _HOOKED:
        sys.addaudithook(_audit)        # cannot be removed: one per process
        _HOOKED.append(True)
    start = len(_PUTLINES)
    _RECORDING.append(True)
    yield lambda conn: [line for ident, line in _PUTLINES[start:]
                        if ident == id(conn)]
    _RECORDING.pop()


@pytest.fixture(params=sorted(MODULES))
def mod(request):
    """The module under test: the standard library's poplib, then cpoplib."""
    return MODULES[request.param]
