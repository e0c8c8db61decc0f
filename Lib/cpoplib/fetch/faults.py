"""Test-only switches of the fetcher, read from the environment when a run
starts (load()); they have no other use.

``CPOPLIB_FETCH_FAULT=POINT:N`` (or several, comma separated) makes the
process ``os._exit(97)`` the N-th time it reaches POINT, one of
``chosen`` (the new messages sorted into fetch, leave and delete
unfetched -- the filter has run -- nothing fetched yet), ``delivered``
(a message written to its staging name, or its MDA exited 0), ``synced`` (a
batch's files made durable, state not yet updated), ``committed`` (state
updated, files not yet renamed), ``published`` (batch renamed),
``deleted`` (the DELEs sent and answered, in one pipelined batch) and
``before-quit``.  The kill-and-rerun tests
use it.

``CPOPLIB_FETCH_SKIP_SYNC=SITE[,SITE...]`` turns the named sync sites of
durable.SYNC_SITES into no-ops: the crash-state exploration's mutation
check shows that without any one of them some crash loses or duplicates
mail.

``CPOPLIB_FETCH_NOW=SECONDS`` (since the epoch, an integer or a decimal)
is the time the run takes for now (now()) wherever it dates something:
the time the state records a message as first fetched, the age
``--keep-days`` compares with it, the date of ``--add-received``'s
Received: header.  The keep-days tests fake a clock with it (a run "ten
days later" without waiting ten days); file names, timeouts and the
summary's durations keep the real clock.
"""
import math
import os
import time

from .errors import EXIT_USAGE, FetchError

_faults: "dict[str, int]" = {}
_fault_counts: "dict[str, int]" = {}
_skipped: "set[str]" = set()
_now: "list[float]" = []          # the faked time, if any


def load():
    _faults.clear()
    _fault_counts.clear()
    spec = os.environ.get("CPOPLIB_FETCH_FAULT", "")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        point, _, n = item.partition(":")
        _faults[point] = int(n or 1)
    _skipped.clear()
    _skipped.update(filter(None, (s.strip() for s in os.environ.get(
        "CPOPLIB_FETCH_SKIP_SYNC", "").split(","))))
    _now.clear()
    fake = os.environ.get("CPOPLIB_FETCH_NOW", "").strip()
    if fake:
        try:
            when = float(fake)
        except ValueError:
            when = math.nan
        if not math.isfinite(when) or when < 0:
            raise FetchError(EXIT_USAGE, "CPOPLIB_FETCH_NOW must be seconds "
                             "since the epoch, not %r" % fake)
        _now.append(when)


def fault(point):
    if point in _faults:
        _fault_counts[point] = _fault_counts.get(point, 0) + 1
        if _fault_counts[point] == _faults[point]:
            os._exit(97)


def sync_skipped(site):
    return site in _skipped


def now():
    """Seconds since the epoch: the faked time of CPOPLIB_FETCH_NOW if
    set, else the real one."""
    return _now[0] if _now else time.time()
