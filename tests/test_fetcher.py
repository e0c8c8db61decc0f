"""`cpoplib fetch` (Lib/cpoplib/fetch/).

Two kinds of server:

* a small in-process POP3 server (tests/scripted_server.py, a handler
  serving a mailbox): error paths and their exit codes, servers without
  UIDL, -ERR in the middle of a transfer, the progress line under a
  pseudo-terminal;
* the private Dovecot of tests/test_dovecot.py (its ``server`` fixture,
  imported: a second instance, see test_dovecot_retrieval.py), user carol,
  whose mailbox starts empty; every test adds its own messages and leaves
  it empty again: first run, second run, new message; --delete; mbox and
  .eml; --dry-run; wrong password, [IN-USE]; and the crash-safety test,
  which kills the fetcher (the test-only fault hook CPOPLIB_FETCH_FAULT,
  and SIGKILL after k files) during --delete runs and reruns it.

The fetcher runs in-process (cpoplib.fetch.cli.main) where exit code and stderr
suffice, and as a subprocess (python -m cpoplib fetch) where it must die.
"""

import contextlib
import errno
import mailbox
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest

import dovecot_server

from scripted_server import ScriptedServer
from dovecot_clients import login
from fetch_helpers import (  # noqa: F401  (pw: a fixture)
    carol_numbers, delivered, dovecot_args, keyed, lf, maildir_files,
    message, pop3_handler, pw, run)

import cpoplib
from cpoplib.fetch import cli, durable, errors, state as fetch_state

pytestmark = pytest.mark.usefixtures("isolated_home")


# --------------------------------------------------------------------------
# a mailbox-serving scripted POP3 server

def scripted_args(srv, *more):
    return ["--host", srv.host, "--port", srv.port, "--user", "u",
            "--password-env", "CPOPLIB_TEST_PW", "--allow-plaintext",
            "--timeout", 10, *more]


def test_scripted_maildir_then_nothing_new(tmp_path, capsys, pw):
    msgs = [message(i) for i in range(1, 8)]
    md = tmp_path / "Mail"
    state = tmp_path / "state.json"    # the port changes from run to run
    with ScriptedServer(pop3_handler(msgs)) as srv:
        code, err = run(scripted_args(srv, "--maildir", md, "--state",
                                      state), capsys)
    assert code == 0, err
    assert sorted(maildir_files(md)) == sorted(lf(m) for m in msgs)
    assert os.listdir(md / "tmp") == []
    assert "7 messages, %d bytes" % sum(len(m) for m in msgs) in err
    with ScriptedServer(pop3_handler(msgs)) as srv:
        code, err = run(scripted_args(srv, "--maildir", md, "--state",
                                      state), capsys)
    assert code == 0 and "0 messages" in err
    assert len(maildir_files(md)) == 7
    assert sorted(delivered(state)) == sorted(b"uid-%d" % n
                                              for n in range(1, 8))


def test_same_count_with_one_uidl_replaced_is_not_nothing_new(
        tmp_path, capsys, pw):
    """A rerun whose listing has as many messages as the state has, but
    one of them new (one delivered UIDL gone, another listed): the quick
    "nothing changed" check must not take it for a rerun with nothing
    new; the new message is fetched and the gone UIDL forgotten."""
    msgs = [message(i) for i in range(1, 6)]
    md = tmp_path / "Mail"
    state = tmp_path / "state.json"
    with ScriptedServer(pop3_handler(msgs)) as srv:
        code, err = run(scripted_args(srv, "--maildir", md, "--state",
                                      state), capsys)
    assert code == 0, err
    # the server loses uid-2 and gains a message, uid-6 (RFC 1939 numbers
    # them 1-5 again)
    later = [msgs[0]] + msgs[2:] + [message(6)]
    handler = pop3_handler(later)
    uidls = [1, 3, 4, 5, 6]

    def renumbered(conn):
        return handler(_RenumberedUidl(conn, uidls))
    with ScriptedServer(renumbered) as srv:
        code, err = run(scripted_args(srv, "--maildir", md, "--state",
                                      state), capsys)
    assert code == 0, err
    assert ": 1 messages," in err, err
    assert sorted(maildir_files(md)) == sorted(lf(m) for m in msgs + [message(6)])
    assert sorted(delivered(state)) == sorted(b"uid-%d" % n for n in uidls)


class _RenumberedUidl:
    """A connection whose server's UIDL listing says uid-<uidls[n-1]> for
    message n (pop3_handler lists uid-<n>)."""

    def __init__(self, conn, uidls):
        self._conn, self._uidls = conn, uidls

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def send(self, data):
        if data.startswith(b"+OK\r\n1 uid-"):
            data = b"+OK\r\n" + b"".join(
                b"%d uid-%d\r\n" % (n, u)
                for n, u in enumerate(self._uidls, 1)) + b".\r\n"
        return self._conn.send(data)


def test_a_damaged_state_is_refused_even_when_the_server_is_down(
        tmp_path, capsys, pw):
    """The state is read while the connection is made; the errors still
    come as when it was read first: a damaged state (exit 5, "damaged")
    wins over a refused connection."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                       # nobody listens there now
    state = tmp_path / "state.json"
    state.write_bytes(b"not a state\tdeadbeef\n{}\t00000000\n")
    code, err = run(["--host", "127.0.0.1", "--port", port, "--user", "u",
                     "--password-env", "CPOPLIB_TEST_PW", "--allow-plaintext",
                     "--state", state, "--maildir", tmp_path / "M"], capsys)
    assert code == errors.EXIT_DELIVERY, err
    assert "damaged" in err and "Connection refused" not in err, err


def test_scripted_no_uidl_fetches_all_with_warning(tmp_path, capsys, pw):
    msgs = [message(i) for i in range(1, 4)]
    for _ in range(2):
        with ScriptedServer(pop3_handler(msgs, uidl=False)) as srv:
            code, err = run(scripted_args(srv, "--eml-dir", tmp_path / "e"),
                            capsys)
        assert code == 0, err
        assert "warning" in err and "no UIDL" in err
    files = sorted(os.listdir(tmp_path / "e"))
    assert len(files) == 6 and all(f.endswith(".eml") for f in files)


def test_scripted_delete(tmp_path, capsys, pw):
    msgs = [message(i) for i in range(1, 6)]
    handler = pop3_handler(msgs)
    with ScriptedServer(handler) as srv:
        code, err = run(scripted_args(srv, "--maildir", tmp_path / "M",
                                      "--delete", "--batch", 2), capsys)
    assert code == 0, err
    assert handler.deleted == [1, 2, 3, 4, 5]
    assert "5 deleted" in err
    # the default state file, under $XDG_STATE_HOME/cpoplib/
    states = [p for p in (tmp_path / "state" / "cpoplib").iterdir()
              if p.suffix == ".json"]
    assert [p.name.split("-")[0] for p in states] == [
        "u@127.0.0.1_%d" % srv.port]
    # deleted for good once QUIT was answered: the state forgets them (a
    # later run must not take their absence for a reset of the UIDLs)
    assert delivered(states[0]) == {}


def test_scripted_retr_error_skips_that_message(tmp_path, capsys, pw):
    """A -ERR to one RETR is that message's failure: reported by number
    and UIDL, left on the server, not recorded; the rest is fetched and
    deleted; exit 7."""
    msgs = [message(i) for i in range(1, 6)]
    handler = pop3_handler(msgs, retr_error=4)
    state = tmp_path / "state.json"
    with ScriptedServer(handler) as srv:
        code, err = run(scripted_args(srv, "--maildir", tmp_path / "M",
                                      "--delete", "--state", state), capsys)
    assert code == errors.EXIT_SKIPPED, err
    assert ("warning: u@127.0.0.1: message 4 (UIDL uid-4) skipped: the "
            "server refused RETR 4: -ERR no such message; it stays on the "
            "server") in err
    assert sorted(maildir_files(tmp_path / "M")) == sorted(
        lf(m) for i, m in enumerate(msgs, 1) if i != 4)
    assert handler.deleted == [1, 2, 3, 5]      # only what is on disk
    assert "4 messages" in err and "1 skipped" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("reply, code, text", [
    (b"-ERR [AUTH] invalid credentials", errors.EXIT_AUTH,
     "login as u failed: -ERR [AUTH] invalid credentials"),
    (b"-ERR [IN-USE] locked", errors.EXIT_BUSY,
     "mailbox busy: -ERR [IN-USE] locked"),
    (b"-ERR [LOGIN-DELAY] wait", errors.EXIT_BUSY,
     "mailbox busy: -ERR [LOGIN-DELAY] wait"),
])
def test_scripted_login_errors(tmp_path, capsys, pw, reply, code, text):
    with ScriptedServer(pop3_handler([], pass_reply=reply)) as srv:
        got, err = run(scripted_args(srv, "--maildir", tmp_path / "M"),
                       capsys)
    assert got == code
    assert text in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_plaintext_refused_without_tls(tmp_path, capsys, pw):
    with ScriptedServer(pop3_handler([])) as srv:
        argv = scripted_args(srv, "--maildir", tmp_path / "M")
        argv.remove("--allow-plaintext")
        code, err = run(argv, capsys)
    assert code == errors.EXIT_USAGE
    assert err == ("cpoplib fetch: error: not sending the password in the "
                   "clear (USER/PASS, no TLS): use --ssl or --starttls, or "
                   "--allow-plaintext on a trusted network\n")
    assert srv.commands == [b"CAPA\r\n"] or b"PASS" not in srv.received


def test_unreachable(tmp_path, capsys, pw):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                       # nobody listens there now
    code, err = run(["--host", "127.0.0.1", "--port", port, "--user", "u",
                     "--password-env", "CPOPLIB_TEST_PW", "--maildir",
                     tmp_path / "M"], capsys)
    assert code == errors.EXIT_CONNECT
    assert err == ("cpoplib fetch: error: 127.0.0.1:%d: Connection refused\n"
                   % port)


@pytest.mark.parametrize("argv, text", [
    (["--host", "h", "--user", "u", "--password-env", "CPOPLIB_TEST_PW"],
     "no destination"),
    (["--host", "h", "--user", "u", "--password", "x", "--dry-run"],
     "a password is never taken on the command line"),
    (["--host", "h", "--user", "u", "--password-env", "NOPE_NOT_SET",
      "--dry-run"], "NOPE_NOT_SET is not set"),
    (["--host", "h", "--user", "u", "--password-env", "CPOPLIB_TEST_PW",
      "--dry-run", "--delete", "--keep"],
     "--delete and --keep contradict each other"),
    (["--host", "h", "--user", "u", "--auth", "XOAUTH2", "--dry-run"],
     "needs --token-command"),
])
def test_usage_errors(capsys, pw, argv, text):
    with pytest.raises(SystemExit) as info:
        code = cli.main(argv)
        raise SystemExit(code)
    assert info.value.code == errors.EXIT_USAGE
    assert text in capsys.readouterr().err


def test_password_from_netrc_and_command(tmp_path, capsys, isolated_home):
    msgs = [message(1)]
    netrc = isolated_home / ".netrc"
    netrc.write_text("machine 127.0.0.1 login nu password netrc-pw\n")
    netrc.chmod(0o600)
    with ScriptedServer(pop3_handler(msgs)) as srv:
        code, err = run(["--host", srv.host, "--port", srv.port,
                         "--allow-plaintext", "--dry-run"], capsys)
    assert code == 0, err
    assert b"USER nu\r\n" in srv.received and b"PASS netrc-pw\r\n" in \
        srv.received
    with ScriptedServer(pop3_handler(msgs)) as srv:
        code, err = run(["--host", srv.host, "--port", srv.port, "--user",
                         "cu", "--no-netrc", "--password-command",
                         "echo cmd-pw", "--allow-plaintext", "--dry-run"],
                        capsys)
    assert code == 0, err
    assert b"PASS cmd-pw\r\n" in srv.received


def run_on_a_terminal(argv):
    """Run `python -m cpoplib fetch ARGV` with stderr on a pseudo-terminal;
    (exit code, everything it wrote there)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cpoplib", "fetch", *map(str, argv)],
        stderr=slave, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    else:
        proc.kill()
    proc.wait(30)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode()


def test_progress_on_a_terminal(tmp_path, monkeypatch):
    """Under a pseudo-terminal the progress line is redrawn in place
    (cursor up one line, erase), and gone before the summary."""
    monkeypatch.setenv("CPOPLIB_TEST_PW", "pw")
    msgs = [message(i, 200_000) for i in range(1, 30)]
    with ScriptedServer(pop3_handler(msgs)) as srv:
        code, out = run_on_a_terminal(scripted_args(srv, "--dry-run"))
    assert code == 0, out
    assert "\x1b[1A\x1b[J" in out and "/29 messages" in out
    summary = "29 messages, %d bytes" % sum(map(len, msgs))
    tail = out[out.rindex("\x1b[J") + len("\x1b[J"):]
    assert "/29 messages" not in tail and summary in tail


def test_progress_is_cut_to_the_terminal_width():
    """The progress block is cut to the terminal's width (a wrapped line
    would break the redraw), as the terminal reports it."""
    import fcntl
    import struct
    import termios

    from cpoplib.fetch.output import Output

    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", 24, 43, 0, 0))
        with os.fdopen(os.dup(slave), "w") as stream:
            out = Output(stream=stream)
            assert out.tty and out.width == 43
    finally:
        os.close(slave)
        os.close(master)


def slow_handler(messages, delay):
    """pop3_handler whose connection stalls `delay` s before each RETR."""
    inner = pop3_handler(messages)

    def handler(conn):
        recv_line = conn.recv_line

        def slow_recv_line():
            line = recv_line()
            if line.upper().startswith(b"RETR"):
                time.sleep(delay)
            return line
        conn.recv_line = slow_recv_line
        return inner(conn)
    return handler


def test_progress_one_line_per_account(tmp_path, monkeypatch):
    """Two accounts at once on a terminal: a block of two progress lines,
    one per account, redrawn in place."""
    monkeypatch.setenv("CPOPLIB_TEST_PW", "pw")
    msgs = [message(i, 2000) for i in range(1, 21)]
    with ScriptedServer(slow_handler(msgs, 0.03)) as a, \
            ScriptedServer(slow_handler(msgs, 0.03)) as b:
        config = tmp_path / "accounts.toml"
        config.write_text("".join(
            '[accounts.%s]\nhost = "%s"\nport = %d\nuser = "u"\n'
            'password_env = "CPOPLIB_TEST_PW"\nallow_plaintext = true\n'
            'dry_run = true\nwindow = 1\n\n' % (name, srv.host, srv.port)
            for name, srv in (("first", a), ("second", b))))
        if sys.version_info < (3, 11):
            pytest.importorskip("tomli")
        code, out = run_on_a_terminal(["--config", config, "--jobs", 2])
    assert code == 0, out
    assert "\x1b[2A\x1b[J" in out          # a block of two lines erased
    # somewhere the block shows both accounts, one line each
    frames = out.split("\x1b[J")
    assert any("first: " in f and "second: " in f and "/20 messages" in f
               for f in frames)
    # each account's summary as it ends, its progress line gone from then
    for name in ("first", "second"):
        summary = out.index("%s: 20 messages, " % name)
        assert ("%s: " % name) + "20/20 messages" not in out[summary:]
        assert re.search(r"%s: \d+/20 messages" % name, out[:summary])


# --------------------------------------------------------------------------
# Dovecot, user carol

@pytest.mark.parametrize("ssl", [False, True], ids=["plain", "pop3s"])
def test_dovecot_first_second_third(server, carol, carol_pw, tmp_path,
                                    capsys, ssl):
    added = carol("fs", 5)
    md = tmp_path / "Maildir"
    code, err = run(dovecot_args(server, "--maildir", md, ssl=ssl), capsys)
    assert code == 0, err
    files = maildir_files(md)
    assert len(files) == 5
    assert keyed(files) == added       # Dovecot's own files, byte for byte
    code, err = run(dovecot_args(server, "--maildir", md, ssl=ssl), capsys)
    assert code == 0 and "0 messages" in err
    assert len(maildir_files(md)) == 5
    more = carol("fs-new", 1)
    code, err = run(dovecot_args(server, "--maildir", md, ssl=ssl), capsys)
    assert code == 0 and "1 messages" in err
    assert keyed(maildir_files(md)) == {**added, **more}
    assert len(carol_numbers(server)) == 6       # nothing deleted


def test_dovecot_delete(server, carol, carol_pw, tmp_path, capsys):
    added = carol("del", 7)
    md = tmp_path / "Maildir"
    code, err = run(dovecot_args(server, "--maildir", md, "--delete",
                                 "--batch", 3), capsys)
    assert code == 0, err
    assert keyed(maildir_files(md)) == added
    assert carol_numbers(server) == {}
    assert "7 deleted" in err


def test_dovecot_delete_what_is_on_disk(server, carol, carol_pw, tmp_path,
                                        capsys):
    """--delete deletes what this run delivered and what earlier runs
    delivered (in the state file), nothing else."""
    first = carol("keep", 3)
    md = tmp_path / "Maildir"
    assert run(dovecot_args(server, "--maildir", md), capsys)[0] == 0
    second = carol("then-del", 2)
    code, err = run(dovecot_args(server, "--maildir", md, "--delete"),
                    capsys)
    assert code == 0, err
    assert "2 messages" in err and "5 deleted" in err
    assert carol_numbers(server) == {}
    assert keyed(maildir_files(md)) == {**first, **second}
    assert len(maildir_files(md)) == 5


def test_dovecot_mbox_and_eml(server, carol, carol_pw, tmp_path, capsys):
    added = carol("mb", 4)
    box = tmp_path / "mail.mbox"
    code, err = run(dovecot_args(server, "--mbox", box), capsys)
    assert code == 0, err
    mb = mailbox.mbox(str(box))
    got = {dovecot_server.message_key(m.as_bytes()): m for m in mb}
    assert set(got) == set(added)
    for key, m in got.items():
        assert m.get_payload(decode=False).encode() in added[key]
    mb.close()
    assert not os.path.exists(str(box) + ".lock")
    code, err = run(dovecot_args(server, "--mbox", box), capsys)
    assert code == 0 and "0 messages" in err
    # .eml: the bytes as received (CRLF), one file each, own state file
    eml = tmp_path / "eml"
    code, err = run(dovecot_args(server, "--eml-dir", eml, "--state",
                                 tmp_path / "eml.json"), capsys)
    assert code == 0, err
    files = sorted(os.listdir(eml))
    assert len(files) == 4 and all(f.endswith(".eml") for f in files)
    for name in files:
        data = (eml / name).read_bytes()
        assert lf(data) == added[dovecot_server.message_key(data)]
        assert b"\r\n" in data


def test_dovecot_dry_run_writes_nothing(server, carol, carol_pw, tmp_path,
                                        capsys):
    added = carol("dry", 3)
    md = tmp_path / "Maildir"
    code, err = run(dovecot_args(server, "--maildir", md, "--dry-run"),
                    capsys)
    assert code == 0, err
    total = sum(len(dovecot_server.to_crlf(m)) for m in added.values())
    assert "3 messages, %d bytes" % total in err
    assert not md.exists()
    assert not (tmp_path / "state").exists()
    assert len(carol_numbers(server)) == 3


def test_dovecot_errors(server, carol_pw, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CPOPLIB_TEST_PW", "wrong")
    code, err = run(dovecot_args(server, "--maildir", tmp_path / "M"),
                    capsys)
    assert code == errors.EXIT_AUTH
    assert err.startswith("cpoplib fetch: error: login as carol failed: "
                          "-ERR [AUTH]"), err
    # certificate for "localhost" only
    monkeypatch.setenv("CPOPLIB_TEST_PW", server.users["carol"])
    argv = dovecot_args(server, "--maildir", tmp_path / "M", ssl=True)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    code, err = run(argv, capsys)
    assert code == errors.EXIT_CONNECT
    assert "TLS certificate verification failed for 127.0.0.1" in err


def test_dovecot_in_use(server, tmp_path, capsys, monkeypatch):
    user = dovecot_server.LOCKED_USER
    monkeypatch.setenv("CPOPLIB_TEST_PW", server.users[user])
    first = login(cpoplib, server, user)
    try:
        code, err = run(dovecot_args(server, "--maildir", tmp_path / "M",
                                     user=user), capsys)
    finally:
        first.quit()
    assert code == errors.EXIT_BUSY
    assert "mailbox busy: -ERR [IN-USE]" in err


# --------------------------------------------------------------------------
# crash safety: kill during --delete, rerun

def fetch_process(server, md, *more, fault=None, dest="--maildir"):
    env = dict(os.environ)
    env.pop("CPOPLIB_FETCH_FAULT", None)
    if fault:
        env["CPOPLIB_FETCH_FAULT"] = fault
    argv = [sys.executable, "-m", "cpoplib", "fetch",
            *map(str, dovecot_args(server, dest, md, "--delete",
                                   "--batch", 4, *more))]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def check_invariants(server, md, added):
    """Every message on disk at most once and with the right bytes;
    every message gone from the server is on disk."""
    files = maildir_files(md)
    on_disk = keyed(files)
    assert len(on_disk) == len(files), "a message is on disk twice"
    for key, data in on_disk.items():
        assert data == added[key], key
    on_server = set(carol_numbers(server))
    assert set(added) - on_server <= set(on_disk), "deleted, not on disk"
    return on_disk, on_server


# "deleted" is reached once a run's DELEs (one pipelined batch) were
# answered, before QUIT
FAULTS = ["delivered:1", "delivered:6", "synced:1", "synced:2",
          "committed:1", "committed:3", "published:2", "deleted:1",
          "before-quit:1", "synced:1,committed:2", "delivered:3,deleted:1"]


# the same with fsync of each file instead of syncfs (where that is the
# default), for the points around the sync
FAULTS_SYNC_FILE = ["delivered:6", "synced:1", "committed:1", "published:2"]


@pytest.mark.parametrize("faults, sync", [(f, None) for f in FAULTS]
                         + [(f, "file") for f in FAULTS_SYNC_FILE])
def test_crash_and_rerun(server, carol, carol_pw, tmp_path, faults, sync):
    added = carol("crash", 11)
    md = tmp_path / "Maildir"
    more = ["--sync", sync] if sync else []
    for fault in faults.split(","):        # one crashed run per point
        proc = fetch_process(server, md, *more, fault=fault)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 97, err
        check_invariants(server, md, added)
    proc = fetch_process(server, md)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    on_disk, on_server = check_invariants(server, md, added)
    assert set(on_disk) == set(added)
    assert on_server == set()
    assert [n for n in os.listdir(md / "tmp")] == []


@pytest.mark.parametrize("after_files", [1, 9, 30, 57])
def test_sigkill_and_rerun(server, carol, carol_pw, tmp_path, after_files):
    """SIGKILL once `after_files` messages are in new/, wherever the
    fetcher is then; twice in a row, then a clean run."""
    added = carol("kill", 60, size=20_000)
    md = tmp_path / "Maildir"
    for limit in (after_files, after_files + 2):
        proc = fetch_process(server, md)
        new = md / "new"
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if len(os.listdir(new)) >= limit:
                    break
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        check_invariants(server, md, added)
    proc = fetch_process(server, md)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    on_disk, on_server = check_invariants(server, md, added)
    assert set(on_disk) == set(added) and on_server == set()


def mbox_contents(box):
    """{key: payload bytes} of an mbox, and how many messages it has."""
    if not os.path.exists(box):
        return {}, 0
    mb = mailbox.mbox(str(box))
    try:
        msgs = [(dovecot_server.message_key(m.as_bytes()),
                 m.get_payload(decode=False).encode()) for m in mb]
    finally:
        mb.close()
    return dict(msgs), len(msgs)


def check_mbox_after_crash(server, box, added):
    """A killed run may leave an uncommitted (possibly cut) tail; what the
    server no longer has must be in the mbox, whole."""
    in_box, _ = mbox_contents(box)
    for key in set(added) - set(carol_numbers(server)):
        assert key in in_box and in_box[key] in added[key], key


def check_mbox_clean_rerun(server, box, added):
    """A clean run after the crashes: every message in the mbox exactly
    once and complete, none left on the server."""
    proc = fetch_process(server, box, dest="--mbox")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    in_box, count = mbox_contents(box)
    assert count == len(added) and set(in_box) == set(added)
    for key, payload in in_box.items():
        assert payload in added[key], key
    assert carol_numbers(server) == {}


@pytest.mark.parametrize("after_bytes", [1, 150_000, 600_000])
def test_sigkill_and_rerun_mbox(server, carol, carol_pw, tmp_path,
                                after_bytes):
    """The mbox destination: SIGKILL once the mbox has grown past
    `after_bytes`, twice, then a clean run: every message in the mbox
    exactly once, complete, and none deleted on the server before it was
    in the mbox."""
    msgs = [(k, m + (b"y" * 69 + b"\n") * 280)
            for k, m in dovecot_server.small_corpus("kbox", 40)]
    added = server.add_messages("carol", msgs)        # 20 KB each
    box = tmp_path / "mail.mbox"
    for limit in (after_bytes, after_bytes + 60_000):
        proc = fetch_process(server, box, dest="--mbox")
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if os.path.getsize(box) >= limit:
                    break
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, err)
        check_mbox_after_crash(server, box, added)
    check_mbox_clean_rerun(server, box, added)
    assert not os.path.exists(str(box) + ".lock")


@pytest.mark.parametrize("faults", ["delivered:1", "delivered:6",
                                    "synced:2", "committed:1",
                                    "committed:2,deleted:1",
                                    "before-quit:1"])
def test_crash_and_rerun_mbox(server, carol, carol_pw, tmp_path, faults):
    """The fault points of test_crash_and_rerun with an mbox: the
    uncommitted tail is cut, nothing is in the mbox twice or deleted
    before it is in the mbox."""
    added = carol("cbox", 11)
    box = tmp_path / "mail.mbox"
    for fault in faults.split(","):
        proc = fetch_process(server, box, fault=fault, dest="--mbox")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 97, err
        check_mbox_after_crash(server, box, added)
    check_mbox_clean_rerun(server, box, added)


@pytest.mark.skipif(not hasattr(cpoplib._cpoplib, "_syncfs"),
                    reason="no syncfs(2) on this system")
def test_syncfs_function(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert cpoplib._cpoplib._syncfs(fd) is None
        with open(tmp_path / "f", "wb") as f:
            assert cpoplib._cpoplib._syncfs(f) is None     # fileno()
    finally:
        os.close(fd)
    bad = 1 << 20                       # above any descriptor in use
    for function in (cpoplib._cpoplib._syncfs, cpoplib._cpoplib._fs_type):
        with pytest.raises(OSError) as info:
            function(bad)
        assert info.value.errno == errno.EBADF
        with pytest.raises(TypeError):
            function("0")


@pytest.mark.skipif(not hasattr(cpoplib._cpoplib, "_syncfs"),
                    reason="no syncfs(2) on this system")
def test_auto_sync_only_where_syncfs_stands_for_fsync(tmp_path,
                                                       monkeypatch):
    """--sync auto takes syncfs only on Linux 5.17+ and on a filesystem
    known to commit on syncfs; tmpfs (in /dev/shm) is not one."""
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        kind = cpoplib._cpoplib._fs_type(fd)
        monkeypatch.setattr(durable.os, "uname", lambda: os.uname_result(
            ("Linux", "h", "6.1.0-13-amd64", "#1", "x86_64")))
        assert durable.syncfs_usable(fd) == (
            kind in durable.SYNCFS_FILESYSTEMS)
        monkeypatch.setattr(durable.os, "uname", lambda: os.uname_result(
            ("Linux", "h", "5.16.20", "#1", "x86_64")))
        assert durable.syncfs_usable(fd) is False
    finally:
        os.close(fd)
    monkeypatch.setattr(durable.os, "uname", lambda: os.uname_result(
        ("Linux", "h", "6.1.0", "#1", "x86_64")))
    for path in ("/dev/shm", "/run", "/proc"):     # tmpfs, proc: never
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            kind = cpoplib._cpoplib._fs_type(fd)
            if kind in (0x01021994, 0x9FA0):        # tmpfs, proc
                assert kind not in durable.SYNCFS_FILESYSTEMS
                assert durable.syncfs_usable(fd) is False
        finally:
            os.close(fd)


def test_syncfs_failure_publishes_and_records_nothing(tmp_path, capsys, pw,
                                                      monkeypatch):
    """A failing sync of the first batch: exit 5, nothing moved into new/,
    no UIDL recorded, nothing deleted."""
    def syncfs(fd):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(durable._cpoplib, "_syncfs", syncfs, raising=False)
    monkeypatch.setattr(durable, "linux_at_least", lambda *v: True)
    msgs = [message(i) for i in range(1, 6)]
    md = tmp_path / "Mail"
    state = tmp_path / "state.json"
    handler = pop3_handler(msgs)
    with ScriptedServer(handler) as srv:
        code, err = run(scripted_args(srv, "--maildir", md, "--state",
                                      state, "--sync", "fs", "--delete"),
                        capsys)
    assert code == errors.EXIT_DELIVERY, err
    assert "Input/output error" in err
    assert os.listdir(md / "new") == []
    assert handler.deleted == []
    if state.exists():
        assert delivered(state) == {}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"),
                    reason="names descriptors through /proc/self/fd")
@pytest.mark.parametrize("mode", ["fs", "file"])
def test_sync_modes(tmp_path, capsys, pw, monkeypatch, mode):
    """--sync fs: one syncfs per batch and no fsync of a message file;
    --sync file: an fsync of every message file, no syncfs."""
    if mode == "fs" and not hasattr(cpoplib._cpoplib, "_syncfs"):
        pytest.skip("no syncfs(2) on this system")
    calls = {"syncfs": 0, "fsync": []}
    real_fsync = os.fsync
    real_syncfs = getattr(cpoplib._cpoplib, "_syncfs", None)

    def fsync(fd):
        calls["fsync"].append(os.readlink("/proc/self/fd/%d" % fd))
        return real_fsync(fd)

    def syncfs(fd):
        calls["syncfs"] += 1
        return real_syncfs(fd)

    monkeypatch.setattr(durable.os, "fsync", fsync)
    if real_syncfs is not None:
        monkeypatch.setattr(durable._cpoplib, "_syncfs", syncfs,
                            raising=False)
    msgs = [message(i) for i in range(1, 8)]
    md = tmp_path / "Mail"
    with ScriptedServer(pop3_handler(msgs)) as srv:
        code, err = run(scripted_args(srv, "--maildir", md, "--batch", 3,
                                      "--sync", mode), capsys)
    assert code == 0, err
    assert sorted(maildir_files(md)) == sorted(lf(m) for m in msgs)
    message_fsyncs = [p for p in calls["fsync"]
                      if os.path.dirname(p) == str(md / "tmp")]
    if mode == "fs":
        assert calls["syncfs"] == 3                    # batches 3 + 3 + 1
        assert message_fsyncs == []
    else:
        assert calls["syncfs"] == 0
        assert len(message_fsyncs) == 7


def test_sync_mode_checked(capsys, pw, tmp_path):
    code = cli.main(["--host", "h", "--user", "u", "--password-env",
                     "CPOPLIB_TEST_PW", "--dry-run", "--sync", "bogus"])
    assert code == errors.EXIT_USAGE
    assert capsys.readouterr().err == (
        "cpoplib fetch: error: --sync must be one of auto, fs, file, not "
        "'bogus'\n")
    config = tmp_path / "c.toml"
    config.write_text('[accounts.a]\nhost = "h"\nuser = "u"\n'
                      'password_env = "CPOPLIB_TEST_PW"\ndry_run = true\n'
                      'sync = "never"\n')
    if sys.version_info < (3, 11):
        pytest.importorskip("tomli")
    code, err = run(["--config", config], capsys)
    assert code == errors.EXIT_USAGE
    assert err == ("cpoplib fetch: error: %s: [accounts.a]: sync must be one "
                   "of auto, fs, file, not 'never'\n" % config)


def test_second_fetcher_on_same_account_is_refused(server, carol, carol_pw,
                                                   tmp_path, capsys):
    carol("lock", 1)
    state = tmp_path / "s.json"
    lock = fetch_state.StateLock(str(state))
    lock.acquire()
    try:
        code, err = run(dovecot_args(server, "--maildir", tmp_path / "M",
                                     "--state", state), capsys)
    finally:
        lock.release()
    assert code == errors.EXIT_BUSY and "is locked" in err


# --------------------------------------------------------------------------
# several accounts from a TOML config

def test_config_several_accounts(server, carol, tmp_path, capsys,
                                 monkeypatch):
    pytest.importorskip("tomllib" if sys.version_info >= (3, 11)
                        else "tomli")
    added = carol("cfg", 3)
    monkeypatch.setenv("PW_CAROL", server.users["carol"])
    monkeypatch.setenv("PW_BOB", server.users["bob"])
    config = tmp_path / "fetch.toml"
    config.write_text("""
[defaults]
host = "localhost"
port = %d
timeout = 30

[accounts.carol]
user = "carol"
password_env = "PW_CAROL"
maildir = "%s"

[accounts.bob]
user = "bob"
password_env = "PW_BOB"
mbox = "%s"
""" % (server.pop3_port, tmp_path / "carol", tmp_path / "bob.mbox"))
    code, err = run(["--config", config], capsys)
    assert code == 0, err
    assert keyed(maildir_files(tmp_path / "carol")) == added
    mb = mailbox.mbox(str(tmp_path / "bob.mbox"))
    assert len(mb) == 3
    mb.close()
    assert "carol: 3 messages" in err and "bob: 3 messages" in err
