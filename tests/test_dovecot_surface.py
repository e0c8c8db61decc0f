"""cpoplib's additions against a real Dovecot: the context manager's QUIT
and rollback, and the real getmail6 run through ``python -m cpoplib run``.

A Dovecot of this module's own (tests/dovecot_server.py, a small corpus)
serves both.

Context manager: DELE inside ``with`` is committed on a normal exit (QUIT)
and rolled back by the server when the block raises (no QUIT is sent).

getmail: the real getmail6, unmodified.  getmail imports poplib itself; ``python -m cpoplib run getmail ...``
installs cpoplib as poplib first.  getmail fetches alice's mailbox from a
private Dovecot (tests/dovecot_server.py) over POP3 and POP3S into
Maildirs, once run directly (stdlib poplib) and once through
``python -m cpoplib run``; the delivered messages must be the same bytes.
An audit hook (a sitecustomize.py on PYTHONPATH, see AUDIT_HOOK) records
the class of every connection getmail opens, which proves which module
each run used.

getmail refuses to deliver mail as root.  When the tests run as root (CI
does), getmail itself still runs as root: the interpreter lives under
/root (mode 0700, pyenv), which no other account can reach.  Delivery
goes through getmail's own ``user`` setting of the Maildir destination:
getmail forks, the child switches to that account and writes the file.
The account is ``nobody`` (it exists on every Debian system, and nothing
is added to or left in /etc/passwd); the Maildirs are created for it.
Run as an ordinary user, getmail delivers as that user.

Skipped, saying why, when Dovecot is not installed (failed instead with
CPOPLIB_REQUIRE_DOVECOT=1) or getmail6 is not installed (it is in the
test extras; failed instead with CPOPLIB_REQUIRE_GETMAIL=1).
"""
import ast
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import pytest

import dovecot_server

USER = "alice"
DELIVERY_USER = "nobody"        # used only when the tests run as root

AUDIT_HOOK = '''\
import os, sys

def _record(event, args):
    if event == "poplib.connect":
        with open(os.environ["CPOPLIB_TEST_AUDIT_LOG"], "a") as f:
            f.write(repr([c.__module__ + "." + c.__qualname__
                          for c in type(args[0]).__mro__]) + "\\n")

if os.environ.get("CPOPLIB_TEST_AUDIT_LOG"):
    sys.addaudithook(_record)
'''


class Boom(Exception):
    pass


def _required(name):
    return os.environ.get(name, "") not in ("", "0")


def getmail_script():
    """Path of the getmail command of this interpreter's environment."""
    scripts = sysconfig.get_path("scripts")
    path = os.path.join(scripts, "getmail") if scripts else None
    if path and os.path.isfile(path):
        return path
    return shutil.which("getmail")


@pytest.fixture(scope="module")
def getmail():
    try:
        import getmailcore  # noqa: F401
    except ImportError:
        hint = "getmail6 is not installed (pip install '.[test]')"
        if _required("CPOPLIB_REQUIRE_GETMAIL"):
            pytest.fail(hint + " (CPOPLIB_REQUIRE_GETMAIL=1)")
        pytest.skip(hint)
    script = getmail_script()
    assert script, "getmail6 is importable but its getmail command is missing"
    return script


@pytest.fixture(scope="module")
def server(dovecot):
    """A Dovecot of this module's own, with a small corpus."""
    with dovecot(large_size=1024 * 1024) as srv:
        yield srv


def _count(server, user):
    import poplib
    conn = poplib.POP3(server.host, server.pop3_port, timeout=60)
    try:
        conn.user(user)
        conn.pass_(server.users[user])
        return conn.stat()[0]
    finally:
        conn.quit()


def test_with_block_rolls_back_on_exception_and_commits_on_exit(server):
    import cpoplib
    user = "bob"
    before = _count(server, user)
    assert before == 3

    with pytest.raises(Boom):
        with cpoplib.POP3(server.host, server.pop3_port, timeout=60) as c:
            c.user(user)
            c.pass_(server.users[user])
            assert c.dele(1).startswith(b"+OK")
            assert c.stat()[0] == before - 1      # marked in this session
            raise Boom
    assert c.sock is None and c.file is None       # closed
    assert _count(server, user) == before          # not committed

    with cpoplib.POP3(server.host, server.pop3_port, timeout=60) as c:
        c.user(user)
        c.pass_(server.users[user])
        c.dele(1)
    assert c.sock is None
    assert _count(server, user) == before - 1      # QUIT committed it


def test_with_block_over_pop3_ssl(server):
    import ssl

    import cpoplib
    ctx = ssl.create_default_context(cafile=server.ca_file)
    with cpoplib.POP3_SSL(server.tls_hostname, server.pop3s_port,
                          context=ctx, timeout=60) as c:
        c.user(USER)
        c.pass_(server.users[USER])
        count = c.stat()[0]
    assert count == len(server.expected[USER])
    assert c.sock is None


@pytest.fixture
def workdir():
    """A directory the delivery account can traverse (pytest's tmp_path
    is private to root when running as root)."""
    path = tempfile.mkdtemp(prefix="cpoplib-getmail-",
                            dir=dovecot_server._pick_tmp_parent())
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write_rc(path, server, port, maildir, ssl):
    retriever = "SimplePOP3SSLRetriever" if ssl else "SimplePOP3Retriever"
    host = server.tls_hostname if ssl else server.host
    user_line = ("user = %s\n" % DELIVERY_USER) if os.geteuid() == 0 else ""
    with open(path, "w") as f:
        f.write("[retriever]\n"
                "type = %s\n"
                "server = %s\n"
                "port = %d\n"
                "username = %s\n"
                "password = %s\n"
                "\n"
                "[destination]\n"
                "type = Maildir\n"
                "path = %s/\n"
                "%s"
                "\n"
                "[options]\n"
                "verbose = 0\n"
                "read_all = true\n"
                "delete = false\n"
                "delivered_to = false\n"
                "received = false\n"
                "message_log_syslog = false\n"
                % (retriever, host, port, USER, server.users[USER],
                   maildir, user_line))


def _make_maildir(path):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), mode=0o700)
    if os.geteuid() == 0:
        account = pwd.getpwnam(DELIVERY_USER)
        for root, dirs, _ in os.walk(path):
            os.chown(root, account.pw_uid, account.pw_gid)


def run_getmail(server, workdir, name, command):
    """Run getmail (argv prefix `command`) on alice's mailbox, over POP3
    and POP3S.  Returns ({"pop3"|"pop3s": sorted message bytes},
    [MRO of each connection opened], getmail's output)."""
    base = os.path.join(workdir, name)
    os.mkdir(base)
    os.chmod(base, 0o755)
    hook_dir = os.path.join(base, "hook")
    os.mkdir(hook_dir)
    with open(os.path.join(hook_dir, "sitecustomize.py"), "w") as f:
        f.write(AUDIT_HOOK)
    audit_log = os.path.join(base, "audit.log")
    rcfiles = []
    for kind, port, ssl in (("pop3", server.pop3_port, False),
                            ("pop3s", server.pop3s_port, True)):
        _make_maildir(os.path.join(base, kind))
        rc = os.path.join(base, kind + ".rc")
        _write_rc(rc, server, port, os.path.join(base, kind), ssl)
        rcfiles += ["--rcfile", rc]
    getmaildir = os.path.join(base, "state")
    os.mkdir(getmaildir)
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join(
            [hook_dir] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                          else [])),
        "CPOPLIB_TEST_AUDIT_LOG": audit_log,
        "SSL_CERT_FILE": server.ca_file,   # POP3_SSL's default context
        "HOME": base,
    })
    proc = subprocess.run(
        command + ["--getmaildir", getmaildir, "--quiet"] + rcfiles,
        stdin=subprocess.DEVNULL, capture_output=True, env=env, cwd=base,
        timeout=300)
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, "getmail failed (%d):\n%s" % (
        proc.returncode, output)
    delivered = {}
    for kind in ("pop3", "pop3s"):
        messages = []
        for sub in ("new", "cur"):
            d = os.path.join(base, kind, sub)
            for entry in sorted(os.listdir(d)):
                with open(os.path.join(d, entry), "rb") as f:
                    messages.append(f.read())
        delivered[kind] = sorted(messages)
    with open(audit_log) as f:
        connections = [ast.literal_eval(line) for line in f]
    return delivered, connections, output


def test_getmail_on_cpoplib_delivers_what_it_delivers_on_poplib(
        server, getmail, workdir):
    keys = sorted(server.expected[USER])

    direct, direct_conns, _ = run_getmail(
        server, workdir, "poplib", [sys.executable, getmail])
    via_run, run_conns, _ = run_getmail(
        server, workdir, "cpoplib",
        [sys.executable, "-m", "cpoplib", "run", "getmail"])

    # which module each run really used: the class of every connection
    assert len(direct_conns) == len(run_conns) == 2, (direct_conns,
                                                      run_conns)
    for mro in direct_conns:
        assert "poplib.POP3" in mro and not any(
            name.startswith("cpoplib") for name in mro), mro
    for mro in run_conns:
        assert "cpoplib._cpoplib.POP3" in mro, mro
    assert [mro[0] for mro in run_conns] == ["cpoplib._cpoplib.POP3",
                                            "cpoplib._cpoplib.POP3_SSL"]

    # the whole mailbox arrived, over both transports, in both runs
    for kind in ("pop3", "pop3s"):
        got = sorted(dovecot_server.message_key(m) for m in direct[kind])
        assert got == keys, (kind, got)
    # and cpoplib's delivery is byte for byte the same as poplib's
    assert via_run == direct


def test_getmail_failure_status_passes_through(server, getmail, workdir):
    """A wrong password: getmail reports the server's -ERR [AUTH] reply
    and exits non-zero through `run` exactly as when run directly."""
    def attempt(name, command):
        base = os.path.join(workdir, name)
        os.mkdir(base)
        maildir = os.path.join(base, "Maildir")
        _make_maildir(maildir)
        rc = os.path.join(base, "rc")
        _write_rc(rc, server, server.pop3_port, maildir, ssl=False)
        with open(rc) as f:
            text = f.read().replace(
                "password = %s\n" % server.users[USER],
                "password = wrong\n")
        with open(rc, "w") as f:
            f.write(text)
        state = os.path.join(base, "state")
        os.mkdir(state)
        proc = subprocess.run(
            command + ["--getmaildir", state, "--rcfile", rc],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
            cwd=base)
        return proc.returncode, proc.stderr.decode(errors="replace")

    direct = attempt("poplib", [sys.executable, getmail])
    via_run = attempt("cpoplib",
                      [sys.executable, "-m", "cpoplib", "run", "getmail"])
    assert direct[0] != 0
    assert "[AUTH]" in direct[1], direct[1]
    assert via_run == direct
