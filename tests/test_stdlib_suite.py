"""The interpreter's own test.test_poplib, run against cpoplib.

cpoplib is put in sys.modules as 'poplib' while test.test_poplib is
imported, so every `poplib.X` in that suite is cpoplib's X.  pytest then
collects its TestCase classes from this module's namespace.
"""
import sys
import unittest

import cpoplib

_stdlib_poplib = sys.modules.get("poplib")
sys.modules["poplib"] = cpoplib
sys.modules.pop("test.test_poplib", None)
try:
    from test import test_poplib as _suite
except ImportError as exc:
    # Fail, never skip: this suite is the specification.  Distribution
    # builds of Python ship it separately.  (An import error from inside
    # the suite passes through unchanged.)
    if exc.name not in ("test", "test.test_poplib"):
        raise
    raise ImportError(
        "this interpreter has no test.test_poplib (%s); use a CPython "
        "with its test package (pyenv builds have it; on Debian/Ubuntu "
        "install libpython3.%d-testsuite)" % (exc, sys.version_info[1])
    ) from exc
finally:
    if _stdlib_poplib is not None:
        sys.modules["poplib"] = _stdlib_poplib
    else:
        del sys.modules["poplib"]

TestPOP3Class = _suite.TestPOP3Class
TestPOP3_SSLClass = _suite.TestPOP3_SSLClass
TestPOP3_TLSClass = _suite.TestPOP3_TLSClass
TestTimeouts = _suite.TestTimeouts

# Number of tests the suite of each interpreter has (all must run).
EXPECTED_TESTS = 71


def test_suite_targets_cpoplib():
    assert _suite.poplib is cpoplib
    assert _suite.poplib.POP3 is cpoplib._cpoplib.POP3


def test_suite_size():
    loader = unittest.TestLoader()
    count = sum(loader.loadTestsFromTestCase(cls).countTestCases()
                for cls in (TestPOP3Class, TestPOP3_SSLClass,
                            TestPOP3_TLSClass, TestTimeouts))
    assert count == EXPECTED_TESTS
