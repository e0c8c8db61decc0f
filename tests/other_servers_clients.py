"""The fixture and client helpers that the test modules of the POP3
servers other than Dovecot share (tests/test_other_servers.py,
tests/test_fetch_other_servers.py): `server`, one running server of each
kind for a whole module (tests/other_servers.py), a logged-in connection,
carol's mailbox filled and emptied, the fetcher run against a server."""
import contextlib
import mailbox
import os
import poplib as std_poplib
import subprocess
import sys

import pytest

import other_servers

SERVER_NAMES = list(other_servers.SERVER_CLASSES)


@pytest.fixture(scope="module", params=SERVER_NAMES)
def server(request):
    """One running server of each kind, for the whole module."""
    required = os.environ.get("CPOPLIB_REQUIRE_SERVERS", "") == "1"
    cls = other_servers.SERVER_CLASSES[request.param]
    try:
        srv = cls()
    except other_servers.Unavailable as exc:
        reason = str(exc)
    else:
        with srv:                       # start(), and stop() at the end
            yield srv
        return
    if required:
        pytest.fail(reason + " (CPOPLIB_REQUIRE_SERVERS=1)")
    pytest.skip(reason)


def connect(module, server, host=None):
    return module.POP3(host or server.host, server.port, timeout=60)


def login(module, server, user="alice"):
    conn = connect(module, server)
    try:
        conn.user(server.login_name(user))
        conn.pass_(server.users[user])
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def carol_messages(server, prefix, count=3):
    """Adds `count` messages to carol's (empty) mailbox, yields their keys;
    afterwards deletes whatever is left."""
    messages = other_servers.small_corpus(prefix, count)
    messages.append((prefix + "-dots", other_servers.build_corpus(0)[1][1]
                     .replace(b"dots@", prefix.encode() + b"-dots@")
                     .replace(b": dots\n", b": " + prefix.encode()
                              + b"-dots\n")))
    server.add_messages("carol", messages)
    try:
        yield [key for key, _ in messages]
    finally:
        conn = login(std_poplib, server, "carol")
        try:
            for n in range(1, conn.stat()[0] + 1):
                conn.dele(n)
        finally:
            conn.quit()


def run_fetcher(server, tmp_path, *extra):
    env = dict(os.environ, CPOPLIB_TEST_PASSWORD=server.users["carol"],
               HOME=str(tmp_path), XDG_STATE_HOME=str(tmp_path / "xdg"))
    env.pop("CPOPLIB_FETCH_FAULT", None)
    return subprocess.run(
        [sys.executable, "-m", "cpoplib", "fetch", "--host", server.host,
         "--port", str(server.port), "--user", server.login_name("carol"),
         "--password-env", "CPOPLIB_TEST_PASSWORD", "--allow-plaintext",
         "--no-netrc", "--maildir", str(tmp_path / "Mail"),
         "--state", str(tmp_path / "state.json"), *extra],
        env=env, capture_output=True, timeout=120)


def maildir_messages(path):
    box = mailbox.Maildir(str(path), create=False)
    try:
        return sorted(box.get_bytes(key) for key in box.keys())
    finally:
        box.close()
