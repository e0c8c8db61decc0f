"""The examples of the README and the manual run, and their command lines
and config files are what cpoplib fetch accepts.

Every ``.. code-block:: python`` block runs in a fresh interpreter against
a Dovecot whose certificate is for the host names the examples use
(tests/doc_examples.py says how the names reach it); alice (password
"secret") has three messages before each example.  Every ``cpoplib fetch``
and ``cpoplib oauth`` command of a ``sh`` block parses (options, values,
exclusive groups), and every ``toml`` block is a valid fetcher config.  A
block the manual marks ``.. example-not-run: REASON`` is reported as
skipped with that reason.
"""
import json
import os
import shlex
import subprocess
import sys

import pytest

import dovecot_server
import doc_examples

from cpoplib.fetch import cli, config, oauth_command
from cpoplib.fetch.errors import FetchError

EXAMPLES = doc_examples.examples()
NAMES = ["pop.example.org", "outlook.office365.com", "pop1.example.org",
         "pop2.example.org"]
TOKEN_USER = "me@example.com"


def _ids(kind):
    chosen = [e for e in EXAMPLES if e.language == kind]
    return pytest.mark.parametrize("example", chosen,
                                   ids=[e.name for e in chosen])


def test_the_examples_are_found():
    kinds = {e.language for e in EXAMPLES}
    assert {"python", "sh", "toml"} <= kinds
    assert sum(e.language == "python" for e in EXAMPLES) >= 10
    assert any(e.path == "README.rst" for e in EXAMPLES)


@pytest.fixture(scope="module")
def examples_server(dovecot):
    messages = dovecot_server.small_corpus("example", 3)
    with dovecot(large_size=4096, oauth2=True, tls_names=NAMES,
                 extra_users={"alice": ("secret", messages),
                              TOKEN_USER: ("unused", messages)}) as srv:
        yield srv


def _refill(server, user, count=3):
    import poplib
    conn = poplib.POP3(server.host, server.pop3_port, timeout=30)
    try:
        conn.user(user)
        conn.pass_(server.users[user])
        have = conn.stat()[0]
    finally:
        conn.quit()
    if have < count:
        server.add_messages(user, dovecot_server.small_corpus(
            "example-%d" % have, count - have))


@_ids("python")
def test_python_example_runs(example, examples_server, tmp_path):
    if example.not_run:
        pytest.skip(example.not_run)
    srv = examples_server
    _refill(srv, "alice")
    _refill(srv, TOKEN_USER)
    env = dict(os.environ)
    tests = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join(
        [tests] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                   if p])
    env["CPOPLIB_EXAMPLES"] = json.dumps({
        "names": NAMES, "cafile": srv.ca_file,
        "ports": {"110": srv.pop3_port, "995": srv.pop3s_port}})
    env["ACCESS_TOKEN"] = srv.add_oauth2_token(TOKEN_USER, length=1500)
    env["HOME"] = str(tmp_path)
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    proc = subprocess.run(
        [sys.executable, "-m", "doc_examples", example.path,
         str(example.line)], cwd=tmp_path, env=env, timeout=120,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, proc.stdout.decode(errors="replace")


def _argv(command):
    words = shlex.split(command)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)                    # VAR=value before the command
    return words


@_ids("sh")
def test_fetcher_command_lines_parse(example):
    checked = 0
    for command in doc_examples.shell_commands(example.code):
        words = _argv(command)
        if words[:2] == ["cpoplib", "fetch"]:
            args = words[2:]
        elif words[:2] == ["cpoplib", "oauth"]:
            _, args = oauth_command.build_parser().parse_known_args(words[2:])
        else:
            continue
        try:
            cli.parse_args(args)
        except FetchError as exc:
            pytest.fail("%s: %r: %s" % (example.name, command, exc.message))
        checked += 1
    if not checked:
        pytest.skip("no cpoplib fetch or oauth command in this block")


@_ids("toml")
def test_fetcher_config_is_valid(example):
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        tomllib = pytest.importorskip("tomli")
    data = tomllib.loads(example.code)
    try:
        config.config_accounts(data, example.name)
    except FetchError as exc:
        pytest.fail(exc.message)
