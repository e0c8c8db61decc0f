"""python -m benchmarks: stdlib poplib against cpoplib, side by side.

The POP3 server (cpoplib._server, serving from memory) runs in a separate
process; this process runs only the clients and times only the client
calls (time.perf_counter around the workload, connection set-up and QUIT
excluded).  For every workload both modules are first run once and their
results compared; then they run alternately, poplib, cpoplib, poplib, ...
for --rounds rounds, and the medians are compared.  Peak memory is
measured afterwards in a fresh process per (workload, module): see
benchmarks/_memprobe.py.
"""

import argparse
import gc
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

from . import workloads as W

# Gross-regression thresholds of --quick (the CI guard): stdlib median
# time divided by cpoplib median time must not fall below these.
RETR_4MIB_MIN_RATIO = 2.0
NOOP_MIN_RATIO = 0.5

DEFAULT_ROUNDS = 5
QUICK_ROUNDS = 3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STD, CP = "poplib", "cpoplib"


class Mismatch(Exception):
    pass


# --------------------------------------------------------------------------
# Environment description
# --------------------------------------------------------------------------

def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    osname = platform.platform()
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = "%s, %s %s" % (line.split("=", 1)[1].strip()
                                            .strip('"'), platform.system(),
                                            platform.release())
    except OSError:
        pass
    commit = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
            capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": osname,
        "python": "%s %s" % (platform.python_implementation(),
                             platform.python_version()),
        "openssl": ssl.OPENSSL_VERSION,
        "commit": commit,
    }


# --------------------------------------------------------------------------
# Server process and TLS certificate
# --------------------------------------------------------------------------

def make_certificate(directory):
    """Self-signed certificate for 127.0.0.1 made with the openssl CLI;
    returns (cert, key) paths, or None when openssl is unavailable."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    cmd = ["openssl", "req", "-x509", "-newkey", "ec",
           "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", key, "-out", cert, "-days", "2",
           "-subj", "/CN=localhost",
           "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return cert, key


class ServerProcess:
    """The cpoplib._server servers, in a child process."""

    def __init__(self, spec):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._serverproc", json.dumps(spec)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError("benchmark server process failed to start "
                               "(exit status %s)" % self.proc.returncode)
        self.ports = json.loads(line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------

def same(a, b):
    """Equal values of identical types, recursively through lists/tuples."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    return a == b


def describe_difference(a, b, path="result"):
    if type(a) is not type(b):
        return "%s: %s vs %s" % (path, type(a).__name__, type(b).__name__)
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return "%s: length %d vs %d" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            if not same(x, y):
                return describe_difference(x, y, "%s[%d]" % (path, i))
    return "%s: %.80r vs %.80r" % (path, a, b)


class Bench:
    def __init__(self, modules, ports, client_ctx, log):
        self.modules = modules          # [(label, module)], stdlib first
        self.ports = ports
        self.client_ctx = client_ctx
        self.log = log

    def _connect(self, wl, mod):
        if wl.tls:
            port = self.ports[wl.mailbox + "+tls"]
            c = mod.POP3_SSL("127.0.0.1", port, context=self.client_ctx)
        else:
            c = mod.POP3("127.0.0.1", self.ports[wl.mailbox])
        c.user("bench")
        c.pass_("bench")
        return c

    def _timed(self, wl, mod):
        """One timed run: returns (seconds, client CPU seconds, result)."""
        client = self._connect(wl, mod) if wl.client else None
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        result = wl.run(client)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        if client is not None:
            client.quit()
        return elapsed, cpu, result

    def run(self, wl, rounds):
        out = {"description": wl.description, "params": wl.params()}
        if not wl.client:
            wl.prepare()
            elapsed, cpu, result = self._timed(wl, None)     # warm-up
            out["nbytes"] = wl.nbytes(result)
            del result
            times = []
            for _ in range(rounds):
                elapsed, cpu, result = self._timed(wl, None)
                del result
                times.append(elapsed)
            out["times"] = {"floor": times}
            out["median"] = {"floor": statistics.median(times)}
            return out
        # Check both modules agree (also the warm-up round).
        first = None
        for label, mod in self.modules:
            elapsed, cpu, result = self._timed(wl, mod)
            if first is None:
                first = result
                out["nbytes"] = wl.nbytes(result)
            elif not same(first, result):
                raise Mismatch("%s: %s and %s differ: %s" % (
                    wl.name, self.modules[0][0], label,
                    describe_difference(first, result)))
            del result
        del first
        times = {label: [] for label, _ in self.modules}
        cpu_times = {label: [] for label, _ in self.modules}
        for _ in range(rounds):
            for label, mod in self.modules:      # A B A B ...
                elapsed, cpu, result = self._timed(wl, mod)
                del result
                times[label].append(elapsed)
                cpu_times[label].append(cpu)
        out["times"] = times
        out["cpu_times"] = cpu_times
        out["median"] = {k: statistics.median(v) for k, v in times.items()}
        out["cpu_median"] = {k: statistics.median(v)
                             for k, v in cpu_times.items()}
        out["ratio"] = out["median"][STD] / out["median"][CP]
        # Client CPU: what the client process itself spent (the server is
        # another process), free of round-trip waiting.
        out["cpu_ratio"] = (out["cpu_median"][STD] / out["cpu_median"][CP]
                            if out["cpu_median"][CP] > 0 else None)
        return out


def memory_probe(wl, label, quick, ports, cafile):
    cmd = [sys.executable, "-m", "benchmarks._memprobe", wl.name, label]
    if quick:
        cmd.append("--quick")
    if wl.client:
        key = wl.mailbox + ("+tls" if wl.tls else "")
        cmd += ["--port", str(ports[key])]
    if wl.tls:
        cmd += ["--cafile", cafile]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def fmt_time(s):
    if s is None:
        return "—"
    if s >= 1:
        return "%.3g s" % s
    if s >= 1e-3:
        return "%.3g ms" % (s * 1e3)
    return "%.3g µs" % (s * 1e6)


def fmt_mbs(nbytes, s):
    if not nbytes or not s:
        return "—"
    return "%.0f" % (nbytes / s / 1e6) if nbytes / s >= 1e7 else \
        "%.1f" % (nbytes / s / 1e6)


def fmt_mem(kib):
    if kib is None:
        return "—"
    return "%.1f MiB" % (kib / 1024)


def fmt_kib(kib):
    return "—" if kib is None else "{:,}".format(kib)


def header_line(info):
    line = ("Machine: %s, %s cores · OS: %s · Python: %s · OpenSSL: %s"
            % (info["cpu"], info["cores"], info["os"], info["python"],
               info["openssl"]))
    if info.get("cpoplib"):
        line += " · cpoplib: %s" % info["cpoplib"]
    if info.get("commit"):
        line += " · checkout: %s" % info["commit"]
    return line


def markdown(report):
    res = report["results"]
    lines = [header_line(report["machine"]), "",
             "Rounds: %d (alternating poplib/cpoplib), medians; ratio = "
             "stdlib time / cpoplib time (wall clock); CPU ratio = the same "
             "for the client process's CPU time (time.process_time; the "
             "server runs in another process); MB/s in 10^6 bytes; peak = extra "
             "resident memory of a fresh client process running the "
             "workload once.%s" % (report["rounds"],
                                   " Quick mode (small sizes)."
                                   if report["quick"] else ""),
             "",
             "| workload | stdlib poplib | cpoplib | ratio | CPU ratio "
             "| stdlib MB/s | cpoplib MB/s | stdlib peak | cpoplib peak |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for name, r in res.items():
        mem = r.get("peak_kib", {})
        if "error" in r:
            lines.append("| %s | error: %s | | | | | | | |" % (name, r["error"]))
            continue
        if "floor" in r["median"]:
            m = r["median"]["floor"]
            lines.append("| %s | %s (floor) | — | — | — | %s | — | %s | — |" % (
                name, fmt_time(m), fmt_mbs(r["nbytes"], m),
                fmt_mem(mem.get("floor"))))
            continue
        ms, mc = r["median"][STD], r["median"][CP]
        cpu_ratio = r.get("cpu_ratio")
        lines.append("| %s | %s | %s | %.2f× | %s | %s | %s | %s | %s |" % (
            name, fmt_time(ms), fmt_time(mc), r["ratio"],
            "%.2f×" % cpu_ratio if cpu_ratio else "—",
            fmt_mbs(r["nbytes"], ms), fmt_mbs(r["nbytes"], mc),
            fmt_mem(mem.get(STD)), fmt_mem(mem.get(CP))))
    floor = res.get("split_floor", {}).get("median", {}).get("floor")
    retr = res.get("retr_4mib", {}).get("median")
    if floor and retr and STD in retr:
        lines += ["", "retr_4mib ÷ split_floor: stdlib poplib %.2f×, "
                  "cpoplib %.2f×" % (retr[STD] / floor, retr[CP] / floor)]
    traced = ["%s %s / %s" % (name, fmt_kib(r["traced_kib"].get(STD)),
                              fmt_kib(r["traced_kib"].get(CP)))
              for name, r in res.items()
              if r.get("traced_kib") and STD in r["traced_kib"]
              and CP in r["traced_kib"]]
    if traced:
        lines += ["", "tracemalloc peak, stdlib poplib / cpoplib (KiB): "
                  + "; ".join(traced)]
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Regression guard
# --------------------------------------------------------------------------

def check_guard(report, selected, args, modules):
    """Messages for ratios under their thresholds.  A workload that fails
    is measured once more, with more rounds, and fails only if it fails
    again: a loaded CI machine should not turn a blip into a red build."""
    failures = []
    checks = {"retr_4mib": RETR_4MIB_MIN_RATIO, "noop_5000": NOOP_MIN_RATIO}
    for wl in selected:
        limit = checks.get(wl.name)
        ratio = report["results"].get(wl.name, {}).get("ratio")
        if limit is None or ratio is None or ratio >= limit:
            continue
        sys.stderr.write("%s: ratio %.2f below %.2f, measuring again...\n"
                         % (wl.name, ratio, limit))
        spec = {"mailboxes": {wl.mailbox: wl.spec},
                "servers": [{"name": wl.mailbox, "mailbox": wl.mailbox,
                             "tls": False}]}
        server = ServerProcess(spec)
        try:
            again = Bench(modules, server.ports, None, sys.stderr).run(
                wl, 2 * args.rounds + 1)
        finally:
            server.stop()
        report["results"][wl.name]["remeasured"] = again
        if again["ratio"] < limit:
            failures.append("REGRESSION: %s ratio %.2f (remeasured: %.2f) "
                            "is below %.2f" % (wl.name, ratio,
                                               again["ratio"], limit))
    return failures


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark stdlib poplib against cpoplib on a loopback "
                    "in-memory POP3 server.  Workloads: " + ", ".join(W.NAMES))
    p.add_argument("--quick", action="store_true",
                   help="small sizes, %d rounds, no TLS or 64 MiB; exits 1 "
                        "on gross regressions (retr_4mib ratio < %.1f, "
                        "noop ratio < %.1f)" % (QUICK_ROUNDS,
                                                RETR_4MIB_MIN_RATIO,
                                                NOOP_MIN_RATIO))
    p.add_argument("--rounds", type=int,
                   help="alternating rounds per workload (default %d, %d "
                        "with --quick)" % (DEFAULT_ROUNDS, QUICK_ROUNDS))
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only this workload (repeatable, or "
                        "comma-separated)")
    p.add_argument("--json", metavar="PATH", help="write raw timings here")
    p.add_argument("--markdown", metavar="PATH",
                   help="write the Markdown table here too")
    p.add_argument("--no-guard", action="store_true",
                   help="with --quick: never fail on the ratio thresholds")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-memory subprocesses")
    p.add_argument("--dovecot", action="store_true",
                   help="instead: the Dovecot mode (see "
                        "python -m benchmarks --dovecot --help)")
    p.add_argument("--fetch", action="store_true",
                   help="instead: the in-memory fetch()/fetch_into()/"
                        "threads rows (see python -m benchmarks --fetch "
                        "--help)")
    p.add_argument("--aio", action="store_true",
                   help="instead: cpoplib.aio's concurrent sessions, idle "
                        "memory and one-connection fetch_many (see "
                        "python -m benchmarks --aio --help)")
    p.add_argument("--scale-memory", action="store_true",
                   help="instead: cpoplib fetch's peak RSS with 500,000 "
                        "UIDLs listed and known (see python -m benchmarks "
                        "--scale-memory --help)")
    p.add_argument("--tools", action="store_true",
                   help="instead: cpoplib fetch against mpop and getmail6 "
                        "on Dovecot (see python -m benchmarks --tools "
                        "--help)")
    a = p.parse_args(argv)
    if a.rounds is None:
        a.rounds = QUICK_ROUNDS if a.quick else DEFAULT_ROUNDS
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    if a.only:
        names = {n.strip() for o in a.only for n in o.split(",") if n.strip()}
        unknown = names - set(W.NAMES)
        if unknown:
            p.error("unknown workload(s): %s (choose from %s)"
                    % (", ".join(sorted(unknown)), ", ".join(W.NAMES)))
        a.only = names
    return a



def summarize(out):
    """For every {"times": [...], "cpu": [...]} of `out` (a dict of them;
    "cpu" optional): median, min and max of the times, median CPU."""
    for d in out.values():
        d["median"] = statistics.median(d["times"])
        d["min"], d["max"] = min(d["times"]), max(d["times"])
        if "cpu" in d:
            d["cpu_median"] = statistics.median(d["cpu"])
    return out


def emit_report(report, text, args, log):
    """Print a run's Markdown `text`; write it and the JSON `report` where
    --markdown/--json ask; log the run's total time."""
    sys.stdout.write(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, sort_keys=True)
            f.write("\n")
    log.write("total %.1f s\n" % report["elapsed_s"])

def finish_report(report, mode, argv, text_of, args, log, t_start):
    """The end of a mode's run: note the command line (`mode`: its
    option, e.g. "--dovecot"), the total time, then emit_report() the
    Markdown text_of(report) gives.  Returns 0."""
    report["notes"].append("Run: python -m benchmarks %s %s" % (
        mode, " ".join(argv if argv is not None else sys.argv[1:])))
    report["elapsed_s"] = time.perf_counter() - t_start
    emit_report(report, text_of(report), args, log)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # Modes with their own options (see benchmarks/README.md): not part of
    # the default run or of --quick.
    if "--dovecot" in argv:
        from . import dovecot
        return dovecot.main([a for a in argv if a != "--dovecot"])
    if "--fetch" in argv:
        from . import fetch
        return fetch.main([a for a in argv if a != "--fetch"])
    if "--tools" in argv:
        from . import tools
        return tools.main([a for a in argv if a != "--tools"])
    if "--aio" in argv:
        from . import aio
        return aio.main([a for a in argv if a != "--aio"])
    if "--scale-memory" in argv:
        from . import scale_memory
        return scale_memory.main([a for a in argv if a != "--scale-memory"])
    args = parse_args(argv)
    log = sys.stderr
    t_start = time.perf_counter()

    import poplib
    try:
        import cpoplib
    except ImportError as exc:
        sys.stderr.write("benchmarks: cannot import cpoplib (%s); build and "
                         "install it first: pip install .\n" % exc)
        return 2
    modules = [(STD, poplib), (CP, cpoplib)]

    info = machine_info()
    info["cpoplib"] = getattr(cpoplib, "__version__", None)
    if info["cpoplib"] is None:
        try:
            from importlib.metadata import version
            info["cpoplib"] = version("cpoplib")
        except Exception:
            pass
    info["cpoplib_path"] = os.path.dirname(cpoplib.__file__ or "")
    selected = W.make_workloads(args.quick, args.only)
    report = {"machine": info, "quick": args.quick, "rounds": args.rounds,
              "argv": sys.argv[1:], "results": {}, "notes": [],
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    with tempfile.TemporaryDirectory(prefix="cpoplib-bench-") as tmp:
        cert = None
        if any(wl.tls for wl in selected):
            cert = make_certificate(tmp)
            if cert is None:
                report["notes"].append("TLS workloads skipped: could not run "
                                       "the openssl command line tool.")
                selected = [wl for wl in selected if not wl.tls]
        spec = {"mailboxes": {}, "servers": [],
                "cert": cert and cert[0], "key": cert and cert[1]}
        for wl in selected:
            if not wl.client:
                continue
            spec["mailboxes"][wl.mailbox] = wl.spec
            key = wl.mailbox + ("+tls" if wl.tls else "")
            if key not in [s["name"] for s in spec["servers"]]:
                spec["servers"].append({"name": key, "mailbox": wl.mailbox,
                                        "tls": wl.tls})
        client_ctx = (ssl.create_default_context(cafile=cert[0])
                      if cert else None)

        log.write("starting server process (mailboxes: %s)...\n"
                  % (", ".join(spec["mailboxes"]) or "none"))
        server = ServerProcess(spec) if spec["servers"] else None
        failed = False
        try:
            bench = Bench(modules, server.ports if server else {},
                          client_ctx, log)
            for wl in selected:
                log.write("%-14s " % wl.name)
                log.flush()
                t0 = time.perf_counter()
                try:
                    r = bench.run(wl, args.rounds)
                except Mismatch as exc:
                    log.write("MISMATCH\n")
                    report["results"][wl.name] = {"error": "results differ"}
                    report["notes"].append("MISMATCH: %s" % exc)
                    failed = True
                    continue
                except Exception as exc:
                    log.write("ERROR %r\n" % (exc,))
                    report["results"][wl.name] = {"error": repr(exc)}
                    failed = True
                    continue
                report["results"][wl.name] = r
                if "ratio" in r:
                    log.write("%.2fx  (%.1f s)\n" % (
                        r["ratio"], time.perf_counter() - t0))
                else:
                    log.write("%s  (%.1f s)\n" % (
                        fmt_time(r["median"]["floor"]),
                        time.perf_counter() - t0))
            if not args.no_memory:
                log.write("peak memory (fresh process per workload and "
                          "module)...\n")
                for wl in selected:
                    r = report["results"][wl.name]
                    if "error" in r:
                        continue
                    labels = [STD, CP] if wl.client else ["floor"]
                    r["peak_kib"] = {}
                    r["traced_kib"] = {}
                    r["memory_probe"] = {}
                    for label in labels:
                        probe = memory_probe(
                            wl, label if wl.client else STD, args.quick,
                            server.ports if server else {},
                            cert and cert[0])
                        r["memory_probe"][label] = probe
                        r["peak_kib"][label] = probe and probe["delta_kib"]
                        r["traced_kib"][label] = (
                            probe and probe["traced_peak_kib"])
        finally:
            if server is not None:
                server.stop()

    # Guard (quick mode only).
    guard = []
    if args.quick and not args.no_guard:
        guard = check_guard(report, selected, args, modules)
    report["guard_failures"] = guard
    report["notes"].extend(guard)
    report["elapsed_s"] = time.perf_counter() - t_start

    emit_report(report, markdown(report), args, log)
    if failed or guard:
        return 1
    return 0
