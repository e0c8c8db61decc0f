"""Differential tests: cpoplib against the standard library's poplib.

Hypothesis generates POP3 server transcripts (greetings with and without
APOP timestamps, single- and multi-line replies with CRLF / LF / LF-CR
endings, dot-stuffed and unstuffed lines, empty lines, NUL and 8-bit
bytes, lines around _MAXLINE, -ERR replies with response codes, EOF at
any byte, terminators without their newline) and a sequence of client
calls.  The scripted server (tests/scripted_server.py) plays the same
transcript, each reply cut at random byte positions (sometimes one byte
at a time), to a client of each module.  Return values, exceptions
(class family + args) and the exact bytes the server received must be
identical, up to and including the first exception.

The reference is the stdlib POP3 class with the two deliberate security
fixes of cpoplib applied (see scripted_server.reference_pop3_class).

CPOPLIB_DEEP=1 raises the number of examples from 300 to 4000.
"""

import pytest
from hypothesis import HealthCheck, event, given, settings

import cpoplib  # noqa: F401  deliberately not importorskip: missing == failure

from differential import (DEEP, MAX_EXAMPLES, NASTY, assert_same,
                          transcript)


@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=not DEEP,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(transcript())
def test_differential(case):
    steps, ops = case
    outcomes, _, diag = assert_same(steps, ops)
    if diag[0]:
        event("server gave up waiting for a command (idle EOF)")
    last = outcomes[-1]
    event("calls completed: %d" % (len(outcomes) - 1))
    if last[0] == "raise":
        event("ended by %s %s" % (last[1], str(last[2:])[:40]))


# ---------------------------------------------------------------------------
# the hand-picked nasty transcripts (differential.NASTY)

@pytest.mark.parametrize("name", sorted(NASTY))
def test_nasty_transcript(name):
    script, ops = NASTY[name]
    assert_same(script, ops)
