"""The interpreter's own test.test_poplib, run against cpoplib.

cpoplib is put in sys.modules as 'poplib' while test.test_poplib is
imported, so every `poplib.X` in that suite is cpoplib's X.  pytest then
collects its TestCase classes, every one the suite defines, from this
module's namespace.  The suite follows the interpreter: 71 tests on
3.10-3.14, 74 on 3.15 (test_control_characters, three times over); a
newer interpreter's new tests run without a change here.  No test of it
may be skipped (tests/conftest.py makes a skip a failure).

An interpreter without the suite (Debian's and Ubuntu's python3 ship it in
libpython3.X-testsuite) skips this module with the install hint, and the
rest of the tests run -- unless CPOPLIB_REQUIRE_STDLIB_SUITE=1 or CI (set
to anything but "", "0" or "false") makes its absence an error.
"""
import os
import sys
import unittest

import pytest

import cpoplib

_stdlib_poplib = sys.modules.get("poplib")
sys.modules["poplib"] = cpoplib
sys.modules.pop("test.test_poplib", None)
try:
    from test import test_poplib as _suite
except ImportError as exc:
    # Distribution builds of Python ship the suite separately.  (An
    # import error from inside the suite passes through unchanged.)
    if exc.name not in ("test", "test.test_poplib"):
        raise
    _hint = ("this interpreter has no test.test_poplib (%s); use a CPython "
             "with its test package (pyenv builds have it; on Debian/Ubuntu: "
             "apt-get install libpython3.%d-testsuite)"
             % (exc, sys.version_info[1]))
    _ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false")
    if _ci or os.environ.get("CPOPLIB_REQUIRE_STDLIB_SUITE", "") == "1":
        raise ImportError(_hint + " (required: CI or "
                          "CPOPLIB_REQUIRE_STDLIB_SUITE=1)") from exc
    pytest.skip(_hint, allow_module_level=True)
finally:
    if _stdlib_poplib is not None:
        sys.modules["poplib"] = _stdlib_poplib
    else:
        del sys.modules["poplib"]


def _suite_test_cases(module):
    """The TestCase classes test.test_poplib defines (not the ones it
    imports), in definition order."""
    return [obj for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, unittest.TestCase)
            and obj.__module__ == module.__name__]


SUITE_CLASSES = _suite_test_cases(_suite)
for _cls in SUITE_CLASSES:
    globals()[_cls.__name__] = _cls
del _cls

# The suite's module fixture (it checks for threads left running), as
# unittest would run it: pytest calls setUpModule/tearDownModule of the
# module it collects the classes from, that is this one.
if hasattr(_suite, "setUpModule"):
    def setUpModule():
        _suite.setUpModule()

    def tearDownModule():
        unittest.case.doModuleCleanups()

# Tests the suite has at least, per version: a suite that lost tests (a
# partial import, a class not collected) fails test_suite_size.  The
# upper end is open: a patch release may add tests (3.14.x may gain
# 3.15's test_control_characters).
MINIMUM_TESTS = {(3, 10): 71, (3, 11): 71, (3, 12): 71, (3, 13): 71,
                 (3, 14): 71, (3, 15): 74}


def minimum_tests(version=None):
    version = tuple((version or sys.version_info)[:2])
    known = [v for v in MINIMUM_TESTS if v <= version]
    return MINIMUM_TESTS[max(known)] if known else 0


def interpreter_test_count():
    """What the interpreter's own unittest runs of test.test_poplib
    (python -m test test_poplib): the loader honours load_tests."""
    return unittest.TestLoader().loadTestsFromModule(_suite).countTestCases()


def test_suite_targets_cpoplib():
    assert _suite.poplib is cpoplib
    assert _suite.poplib.POP3 is cpoplib._cpoplib.POP3


def test_suite_size():
    """This module exposes exactly the tests the interpreter's unittest
    would run, and no fewer than the version is known to have."""
    expected = interpreter_test_count()
    loader = unittest.TestLoader()
    exposed = sum(loader.loadTestsFromTestCase(cls).countTestCases()
                  for cls in SUITE_CLASSES)
    assert exposed == expected, (exposed, expected)
    assert expected >= minimum_tests(), (
        "Python %d.%d's test_poplib has %d tests, fewer than the %d it is "
        "known to have" % (sys.version_info[:2] + (expected, minimum_tests())))


def test_minimum_tests_follow_the_version():
    assert minimum_tests((3, 9)) == 0
    assert minimum_tests((3, 14)) == 71
    assert minimum_tests((3, 15)) == 74
    assert minimum_tests((3, 16)) == 74


# ---------------------------------------------------------------------------
# Where the running interpreter's poplib has a security fix that cpoplib
# applies on every version (README, "Compatibility notes"), the two must
# agree exactly.  Keyed on the version that shipped each fix in poplib:
# STAT validation in 3.14, control characters rejected in commands in
# 3.15 (a later patch release of an older version may add one too; that
# is allowed, not required).  Before that version cpoplib keeps the fix
# and poplib is only compared where it already agrees.

STDLIB_FIX_SINCE = {"stat": (3, 14), "control_characters": (3, 15)}

STAT_REPLIES = [b"+OK", b"+OK abc def", b"+OK 1", b"+OK 1 x", b"+OK 1 2 3 4 5",
                b"+OK 2 320", b"+OK  7   9 "]
CONTROL_CHARACTERS = [chr(c) for c in range(0x20)] + ["\x7f"]


def _outcome(module, call):
    try:
        return ("ok", call())
    except Exception as exc:
        cls = type(exc)
        name = "error_proto" if cls is module.error_proto else cls.__name__
        return (name, exc.args)


def _canned_session(module, reply, call):
    """A client of `module` whose server sent a greeting and `reply`;
    returns (outcome of call(client), bytes the client sent)."""
    import socket
    ours, theirs = socket.socketpair()
    theirs.settimeout(5)
    theirs.sendall(b"+OK ready\r\n" + reply)

    class Canned(module.POP3):
        def _create_socket(self, timeout):
            return ours

    client = Canned("127.0.0.1", 0, timeout=5)
    try:
        result = _outcome(module, lambda: call(client))
    finally:
        client.close()
    sent = b""
    theirs.setblocking(False)
    try:
        while True:
            chunk = theirs.recv(4096)
            if not chunk:
                break
            sent += chunk
    except BlockingIOError:
        pass
    theirs.close()
    return result, sent


def _has_fix(name):
    return sys.version_info[:2] >= STDLIB_FIX_SINCE[name]


@pytest.mark.parametrize("reply", STAT_REPLIES)
def test_stat_follows_interpreter(reply):
    import poplib
    got = _canned_session(cpoplib, reply + b"\r\n", lambda c: c.stat())
    ref = _canned_session(poplib, reply + b"\r\n", lambda c: c.stat())
    fields = reply.split()
    if len(fields) < 3:
        assert got[0] == ("error_proto", ("Invalid STAT response format",))
    elif not (fields[1].isdigit() and fields[2].isdigit()):
        assert got[0] == ("error_proto",
                          ("Invalid STAT response data: non-numeric values",))
    if _has_fix("stat") or got[0][0] == "ok":
        assert got == ref
    else:
        # before 3.14 poplib raises IndexError/ValueError here
        assert ref[0][0] in ("IndexError", "ValueError", "error_proto"), ref


@pytest.mark.parametrize("char", CONTROL_CHARACTERS,
                         ids=["%02x" % ord(c) for c in CONTROL_CHARACTERS])
def test_control_characters_follow_interpreter(char):
    import poplib
    expected = ("ValueError", ("Control characters not allowed in commands",))
    for call in (lambda c: c.user("user" + char), lambda c: c.pass_(char + "pw")):
        got = _canned_session(cpoplib, b"+OK\r\n", call)
        ref = _canned_session(poplib, b"+OK\r\n", call)
        assert got == (expected, b""), got
        if _has_fix("control_characters"):
            assert ref == got
