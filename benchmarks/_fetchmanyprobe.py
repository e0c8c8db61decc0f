"""Peak memory of one fetch_many() over a whole mailbox, in a fresh process.

    python -m benchmarks._fetchmanyprobe --port P --user U \\
        --password-env NAME --count N [--window W] [--host H]

Connects (through a link emulator, typically: benchmarks/dovecot.py
--memory), logs in, resets the peak RSS to the current RSS as
benchmarks/_memprobe.py does (VmHWM after /proc/self/clear_refs;
ru_maxrss where that is unavailable), then iterates
``fetch_many(range(1, N + 1), window=W)`` (the default window without
--window), dropping each message as it comes as a fetcher that writes it
out would.  Prints one JSON line: peak minus the RSS before (KiB), the
largest message (bytes), messages, bytes, elapsed seconds.
"""

import gc
import json
import os
import sys
import time

from ._ceiling import account_parser
from ._memprobe import _maxrss_kib, _reset_peak, _status_kib


def main(argv=None):
    p = account_parser("python -m benchmarks._fetchmanyprobe")
    p.add_argument("--window", type=int)
    a = p.parse_args(argv)

    import cpoplib
    conn = cpoplib.POP3(a.host, a.port, timeout=600)
    conn.user(a.user)
    conn.pass_(os.environ[a.password_env])
    numbers = list(range(1, a.count + 1))
    kw = {} if a.window is None else {"window": a.window}
    gc.collect()
    method = "VmHWM" if _reset_peak() else "ru_maxrss"
    base = _status_kib("VmRSS") if method == "VmHWM" else _maxrss_kib()
    t0 = time.perf_counter()
    largest = total = count = 0
    for n, data in conn.fetch_many(numbers, **kw):
        size = len(data)
        total += size
        count += 1
        if size > largest:
            largest = size
        del data
    elapsed = time.perf_counter() - t0
    peak = _status_kib("VmHWM") if method == "VmHWM" else _maxrss_kib()
    conn.quit()
    json.dump({"window": a.window, "method": method, "base_kib": base,
               "peak_kib": peak, "delta_kib": max(0, peak - base),
               "largest": largest, "messages": count, "bytes": total,
               "elapsed": elapsed}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
