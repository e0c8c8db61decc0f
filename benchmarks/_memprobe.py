"""Peak memory of one workload run once with one module, in a fresh process.

    python -m benchmarks._memprobe WORKLOAD MODULE [--quick] [--port P]
                                   [--cafile PEM]

Connects to the benchmark's server process (which runs elsewhere, so its
memory is not counted), logs in, then records the resident set size,
runs the workload once and records the peak resident set size reached
while it ran; then runs it once more under tracemalloc and records the
peak of what was allocated through Python's allocators.  Prints one JSON
line with all three (KiB).

On Linux the peak is read as VmHWM from /proc/self/status after resetting
it to the current RSS through /proc/self/clear_refs, so what the process
did before the workload (imports, connecting) cannot mask it; where that
reset is not available the delta of getrusage(RUSAGE_SELF).ru_maxrss is
used instead.  Both see every allocation, including a C extension's
plain malloc (tracemalloc would not) and the C heap's own slack; the
tracemalloc figure shows what the two modules' objects and buffers take,
free of where the C allocator places them.
"""

import argparse
import gc
import importlib
import json
import resource
import ssl
import sys
import tracemalloc

from .workloads import get_workload


def _status_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks._memprobe")
    p.add_argument("workload")
    p.add_argument("module")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--port", type=int)
    p.add_argument("--cafile")
    a = p.parse_args(argv)

    wl = get_workload(a.workload, a.quick)
    mod = importlib.import_module(a.module)
    client = None
    if wl.client:
        if wl.tls:
            ctx = ssl.create_default_context(cafile=a.cafile)
            client = mod.POP3_SSL("127.0.0.1", a.port, context=ctx)
        else:
            client = mod.POP3("127.0.0.1", a.port)
        client.user("bench")
        client.pass_("bench")
    else:
        wl.prepare()
    gc.collect()

    method = "VmHWM" if _reset_peak() else "ru_maxrss"
    if method == "VmHWM":
        base = _status_kib("VmRSS")
    else:
        base = _maxrss_kib()
    result = wl.run(client)
    peak = _status_kib("VmHWM") if method == "VmHWM" else _maxrss_kib()
    del result
    gc.collect()

    tracemalloc.start()
    result = wl.run(client)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del result
    if client is not None:
        client.quit()
    json.dump({"workload": a.workload, "module": a.module, "method": method,
               "base_kib": base, "peak_kib": peak,
               "delta_kib": max(0, peak - base),
               "traced_peak_kib": traced_peak // 1024}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
