"""Peak memory of one 1 GiB retrieval, in a fresh process.

    python -m benchmarks._fetchprobe {fetch_into,floor} --port P

Connects to the fetch benchmark's server process (benchmarks/fetch.py;
its memory is not counted), logs in, resets the peak RSS to the current
RSS exactly as benchmarks/_memprobe.py does (VmHWM after
/proc/self/clear_refs; ru_maxrss where that is unavailable), then
retrieves message 1 once: ``fetch_into(1, null sink)`` with cpoplib, or
the streaming recv_into floor (a reused 1 MiB buffer).  Prints one JSON
line: peak minus the RSS before (KiB), elapsed seconds, bytes.
"""

import argparse
import gc
import json
import sys
import time

from ._memprobe import _maxrss_kib, _reset_peak, _status_kib


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks._fetchprobe")
    p.add_argument("what", choices=["fetch_into", "floor"])
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args(argv)

    from .fetch import MiB, Conn, NullSink, floor_stream
    import cpoplib
    conn = Conn(a.port)
    if a.what == "fetch_into":
        client = conn.pop3(cpoplib)
        sink = NullSink()

        def run():
            return client.fetch_into(1, sink)
    else:
        client = conn.raw()
        buf = bytearray(MiB)

        def run():
            return floor_stream(client, 1, buf)
    gc.collect()
    method = "VmHWM" if _reset_peak() else "ru_maxrss"
    base = _status_kib("VmRSS") if method == "VmHWM" else _maxrss_kib()
    t0 = time.perf_counter()
    nbytes = run()
    elapsed = time.perf_counter() - t0
    peak = _status_kib("VmHWM") if method == "VmHWM" else _maxrss_kib()
    client.quit()
    json.dump({"what": a.what, "method": method, "base_kib": base,
               "peak_kib": peak, "delta_kib": max(0, peak - base),
               "elapsed": elapsed, "nbytes": nbytes}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
