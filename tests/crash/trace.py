"""Recording a fetcher run's file-system operations with strace(1).

strace rather than an LD_PRELOAD shim: it sees the system calls the
kernel gets, whoever makes them -- Python's os and io modules, the
mailbox module, the C extension's syncfs(2) (a raw syscall(), which no
libc wrapper would catch), glibc's internal calls -- without a compiler
and without depending on which libc symbol (open, open64, __open_2, ...)
an interpreter build happens to call.  With ``-xx`` every string argument
is printed as \\xHH escapes, so the bytes of each write() and every path
come back exactly, and the output can be split on commas safely; with
``--seccomp-bpf`` the calls not traced (reads, the interpreter's stat
storm) cost nothing.

``record(argv, out)`` runs a command under strace and returns the path of
the trace; ``parse(path)`` gives its system calls in order as
``Syscall(pid, name, args, ret, err)``; the arguments are ``bytes`` (a
string), ``int`` or ``str`` (flags, constants, structures as printed).
"""
import os
import re
import subprocess

# Everything that can change a file, a name or durability, the calls that
# move or copy descriptors, and those that send on a socket (QUIT).
# Calls the harness cannot model (writev, fallocate, ...) are traced too,
# so that the model refuses a trace using them on a file it tracks
# instead of silently missing a change.
TRACED = (
    "open", "openat", "openat2", "creat", "close", "dup", "dup2", "dup3",
    "fcntl", "lseek", "write", "pwrite64", "writev", "pwritev",
    "pwritev2", "truncate", "ftruncate", "fallocate", "copy_file_range",
    "sendfile", "splice", "fsync", "fdatasync", "syncfs", "sync",
    "sync_file_range", "rename", "renameat", "renameat2", "unlink",
    "unlinkat", "rmdir", "mkdir", "mkdirat", "link", "linkat", "symlink",
    "symlinkat", "chdir", "fchdir", "sendto", "sendmsg", "mmap",
)


class Syscall:
    __slots__ = ("pid", "name", "args", "ret", "err", "line")

    def __init__(self, pid, name, args, ret, err, line):
        self.pid, self.name, self.args = pid, name, args
        self.ret, self.err, self.line = ret, err, line

    def __repr__(self):
        return "Syscall(%s)" % self.line


def record(argv, out, env=None, cwd=None, timeout=120):
    """Run `argv` under strace, the trace written to `out`; returns the
    command's exit status (strace passes it on) and its stderr."""
    cmd = ["strace", "-f", "-qq", "-xx", "-s", str(1 << 24),
           "--seccomp-bpf", "-e", "trace=" + ",".join(TRACED),
           "-e", "signal=none", "-o", str(out), "--", *argv]
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=timeout)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


_LINE = re.compile(r"^(\d+) +(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)\) += (.*)$", re.S)
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$", re.S)
_RET = re.compile(r"^(0x[0-9a-f]+|-?\d+|\?)(?: (E\w+))?")
_HEX = re.compile(r"\\x([0-9a-f]{2})")


def _split_args(text):
    """Top-level comma-separated arguments (strings under -xx hold no
    quote, comma or bracket of their own)."""
    args, depth, start, quoted = [], 0, 0, False
    for i, c in enumerate(text):
        if c == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
        elif c == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    if text.strip():
        args.append(text[start:].strip())
    return args


def _value(token):
    if token.startswith('"'):
        if not token.endswith('"'):
            raise ValueError("string cut short in the trace: %r"
                             % token[:80])
        body = token[1:-1]
        return bytes.fromhex(_HEX.sub(r"\1", body)) if body else b""
    if re.fullmatch(r"0[0-7]+", token):
        return int(token, 8)            # a mode
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    if token == "AT_FDCWD":
        return -100
    return token


def parse(path):
    """The system calls of a trace, in the order strace printed them
    (calls that another thread interrupted are joined with their end)."""
    calls = []
    pending = {}
    with open(path, "r", encoding="ascii", errors="strict") as f:
        for raw in f:
            raw = raw.rstrip("\n")
            m = _LINE.match(raw)
            if not m:
                raise ValueError("unexpected trace line %r" % raw[:200])
            pid, rest = int(m.group(1)), m.group(2)
            if rest.startswith("+++") or rest.startswith("---"):
                continue
            if rest.endswith("<unfinished ...>"):
                pending[pid] = rest[:-len("<unfinished ...>")].rstrip()
                continue
            r = _RESUMED.match(rest)
            if r:
                rest = pending.pop(pid) + r.group(2)
            c = _CALL.match(rest)
            if not c:
                raise ValueError("cannot parse trace line %r" % raw[:200])
            name, argtext, rettext = c.groups()
            rm = _RET.match(rettext)
            if not rm:
                raise ValueError("cannot parse result of %r" % raw[:200])
            ret = rm.group(1)
            ret = None if ret == "?" else int(ret, 0)
            calls.append(Syscall(pid, name,
                                 [_value(a) for a in _split_args(argtext)],
                                 ret, rm.group(2), raw[:300]))
    return calls


def strace_works():
    """strace can trace here (it needs ptrace, which a container may
    forbid); the reason if not."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)     # a sanitizer runtime: not for strace
    try:
        proc = subprocess.run(
            ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=fsync",
             "-o", os.devnull, "--", "true"], env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode != 0:
        return proc.stderr.decode("utf-8", "replace").strip() or \
            "strace exited with %d" % proc.returncode
    return None
