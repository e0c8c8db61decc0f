"""pytest configuration shared by the test modules.

The interpreter's own test_poplib (tests/test_stdlib_suite.py) is the
specification cpoplib is held to, so none of its tests may be skipped:
a skip there (no ssl module, no MD5 in OpenSSL, a test resource missing)
is reported as a failure naming the reason.
"""
import os

import pytest

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
