"""`cpoplib fetch`'s settings, precedence and errors: the
settings schema (Lib/cpoplib/fetch/settings.py), exact type checks,
unknown names, ranges, precedence, every error one line and a documented
exit code (each setting with a wrong type, out of range, without its
value; and a Hypothesis property over generated configs and command
lines), the files it writes, the manual's reference.

Servers: scripted ones (a mailbox served by `Mailbox`, one connection
after another) and the private Dovecot of tests/test_dovecot.py.  The
fetcher runs in-process (cli.main) unless it must get a signal.
"""
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import dovecot_server
from fetch_helpers import (  # noqa: F401  (pw: a fixture)
    Mailbox, Server, args, dovecot_args, keyed, lf, maildir_files,
    message, needs_toml, one_error_line, pw, run, toml_account, write_config)

import cpoplib
from cpoplib.fetch import cli, errors

pytestmark = pytest.mark.usefixtures("isolated_home")

DOCUMENTED = {0, 1, 2, 3, 4, 5, 6, 7, 130, 143}
DOCS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "docs", "fetcher")
REFERENCE = os.path.join(DOCS, "reference.rst")
DURABILITY = os.path.join(DOCS, "durability.rst")


MSGS = [message(i) for i in range(1, 6)]


# --------------------------------------------------------------------------
# 1. exact types: a string is never a boolean

@needs_toml
@pytest.mark.parametrize("key, value, words", [
    ("delete", '"false"', 'delete must be a boolean (true or false), not '
                          'the string "false"'),
    ("ssl", '"no"', 'ssl must be a boolean (true or false), not the '
                    'string "no"'),
    ("port", '"12110"', 'port must be an integer (like 10), not the string '
                        '"12110"'),
    ("batch", "true", "batch must be an integer (like 10), not the "
                      "boolean true"),
    ("timeout", "true", "timeout must be a number (like 30 or 2.5), not "
                        "the boolean true"),
])
def test_wrong_type_in_file_is_refused_before_connecting(
        tmp_path, capsys, pw, key, value, words):
    box = Mailbox(MSGS)
    with Server(box) as srv:
        config = write_config(tmp_path, toml_account(
            srv, maildir='"%s"' % (tmp_path / "M"), **{key: value}))
        code, err = run(["--config", config], capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == (
        "cpoplib fetch: error: %s: [accounts.a]: %s\n" % (config, words))
    assert srv.accepted == 0 and box.deleted == []


# --------------------------------------------------------------------------
# 2. precedence: command line > account > [defaults] > built-in

@needs_toml
def test_keep_on_the_command_line_beats_delete_in_the_file(tmp_path, capsys,
                                                           pw):
    box = Mailbox(MSGS)
    with Server(box) as srv:
        config = write_config(tmp_path, "[defaults]\ndelete = true\n\n"
                              + toml_account(srv, delete="true", maildir='"%s"'
                                             % (tmp_path / "M")))
        code, err = run(["--config", config, "--keep"], capsys)
        assert code == 0, err
        assert len(maildir_files(tmp_path / "M")) == 5
        assert box.dele_sent == [] and "deleted" not in err
        # keep = true in a file is the counterpart of delete
        config = write_config(tmp_path, "[defaults]\ndelete = true\n\n"
                              + toml_account(srv, keep="true", maildir='"%s"'
                                             % (tmp_path / "M")))
        code, err = run(["--config", config], capsys)
        assert code == 0, err
        assert box.dele_sent == []
        code, err = run(["--config", config, "--delete"], capsys)
        assert code == 0 and box.deleted == [1, 2, 3, 4, 5], err


def test_merge_precedence_and_groups():
    from cpoplib.fetch.config import merge
    defaults = {"timeout": 5.0, "ssl": True, "password_env": "D",
                "maildir": "/d"}
    account = {"timeout": 7.0, "starttls": True, "password_command": "c"}
    line = {"mbox": "/x"}
    got = merge([defaults, account, line])
    assert got["timeout"] == 7.0 and got["batch"] == 100
    assert (got["ssl"], got["starttls"]) == (False, True)
    assert (got["password_env"], got["password_command"]) == (None, "c")
    assert (got["maildir"], got["mbox"]) == (None, "/x")
    assert merge([defaults, account, {"timeout": 9}])["timeout"] == 9


# --------------------------------------------------------------------------
# 3. the account's password source beats [defaults]'; two on one level

@needs_toml
def test_account_password_command_beats_defaults_password_env(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEFAULT_PW", "from-defaults")
    box = Mailbox(MSGS[:1])
    with Server(box) as srv:
        config = write_config(tmp_path, '[defaults]\npassword_env = '
                              '"DEFAULT_PW"\n\n' + toml_account(
                                  srv, password_command='"echo own-pw"',
                                  dry_run="true"))
        code, err = run(["--config", config], capsys)
    assert code == 0, err
    assert box.passwords == ["own-pw"]


def test_two_password_sources_on_the_command_line(capsys, pw):
    code, err = run(["--host", "h", "--user", "u", "--password-env", "X",
                     "--password-command", "echo p", "--dry-run"], capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == ("cpoplib fetch: error: --password-env and "
                                   "--password-command exclude each other\n")


@needs_toml
def test_two_password_sources_in_one_table(tmp_path, capsys):
    config = write_config(tmp_path, '[accounts.a]\nhost = "h"\npassword_env'
                          ' = "X"\npassword_command = "echo p"\n')
    code, err = run(["--config", config], capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err).endswith(
        "[accounts.a]: password_env and password_command exclude each "
        "other\n")


# --------------------------------------------------------------------------
# 4. unknown tables and keys name the file, the table, the closest name

@needs_toml
@pytest.mark.parametrize("text, words", [
    ('[defualts]\nssl = true\n[accounts.a]\nhost = "h"\n',
     "unknown table [defualts]; did you mean [defaults]?"),
    ('[acounts.x]\nhost = "h"\n',
     "unknown table [acounts]; did you mean [accounts]?"),
    ('[accounts.x]\nhost = "h"\nmaildri = "M"\n',
     "[accounts.x]: unknown setting maildri; did you mean maildir?"),
    ('[defaults]\ntimout = 3\n[accounts.x]\nhost = "h"\n',
     "[defaults]: unknown setting timout; did you mean timeout?"),
    ('[accounts.x]\nhost = "h"\njobs = 2\n',
     "[accounts.x]: jobs applies to the whole run: set it in [defaults] or "
     "on the command line"),
    ('[accounts.x]\nhost = "h"\npassword = "secret"\n',
     "[accounts.x]: no plain passwords in a file; use password_env, "
     "password_command, password_keyring or ~/.netrc"),
])
def test_unknown_names(tmp_path, capsys, text, words):
    config = write_config(tmp_path, text)
    code, err = run(["--config", config], capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == "cpoplib fetch: error: %s: %s\n" % (
        config, words)


# --------------------------------------------------------------------------
# 5, 13: ranges, checked before anything connects

@pytest.mark.parametrize("option, value, words", [
    ("--timeout", "0", "--timeout must be > 0, at most 86400, not 0.0"),
    ("--timeout", "-1", "--timeout must be > 0, at most 86400, not -1.0"),
    ("--timeout", "nan", "--timeout must be a finite number, not nan"),
    ("--window", "0", "--window must be 1 to 1024, not 0"),
    ("--window", "-5", "--window must be 1 to 1024, not -5"),
    ("--jobs", "0", "--jobs must be 1 to 256, not 0"),
    ("--jobs", "-1", "--jobs must be 1 to 256, not -1"),
    ("--port", "99999", "--port must be 1 to 65535, not 99999"),
    ("--port", "0", "--port must be 1 to 65535, not 0"),
    ("--port", "x", "--port needs an integer, not 'x'"),
    ("--batch", "0", "--batch must be 1 to 1048576, not 0"),
])
def test_ranges_on_the_command_line(capsys, pw, option, value, words):
    box = Mailbox(MSGS)
    with Server(box) as srv:
        argv = args(srv, "--dry-run")
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
        code, err = run(argv, capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == "cpoplib fetch: error: %s\n" % words
    assert srv.accepted == 0


# --------------------------------------------------------------------------
# every setting: a wrong type, out of range, no value -- one line, exit 1

def _wrong_type(setting):
    return {"bool": '"true"', "int": '"1"', "number": '"1"',
            "size": "true"}.get(setting.kind, "1")


def _out_of_range(setting):
    if setting.choices:
        return '"no-such-%s"' % setting.name
    if setting.kind in ("fingerprint", "fingerprints"):
        return '"SHA256:00"'                    # not 32 bytes
    if setting.high is not None:
        return str(setting.high + 1)
    if setting.kind in ("text", "path"):
        return '""'
    return None


def _settings():
    from cpoplib.fetch.settings import SETTINGS
    return SETTINGS


def _setting_ids():
    try:
        return [s.name for s in _settings()]
    except ImportError:             # the code before the schema
        return ["host", "port", "ssl", "delete", "timeout", "window",
                "jobs", "batch", "sync"]


@needs_toml
@pytest.mark.parametrize("name", _setting_ids())
def test_every_setting_checked(tmp_path, capsys, pw, name):
    from cpoplib.fetch.settings import BY_NAME
    setting = BY_NAME[name]
    box = Mailbox(MSGS)
    with Server(box) as srv:
        table = "[defaults]" if setting.scope == "run" else "[accounts.a]"
        cases = [("wrong type", _wrong_type(setting))]
        if _out_of_range(setting) is not None:
            cases.append(("out of range", _out_of_range(setting)))
        for what, value in cases:
            head = "[defaults]\n%s = %s\n\n" % (name, value) \
                if setting.scope == "run" else ""
            extra = {"delete": "true", "maildir": '"%s"' % (tmp_path / "M")}
            if setting.scope != "run":
                extra[name] = value
            body = toml_account(srv, **extra)
            config = write_config(tmp_path, head + body)
            code, err = run(["--config", config], capsys)
            assert code == errors.EXIT_USAGE, (what, err)
            one_error_line(err)
            assert "%s: %s: %s" % (config, table, name) in err, (what, err)
        # on the command line: without its value, and wrong
        flag = setting.flags[0]
        if setting.kind != "bool":
            code, err = run(args(srv, "--dry-run", flag), capsys)
            assert code == errors.EXIT_USAGE
            assert one_error_line(err) == (
                "cpoplib fetch: error: argument %s: expected one argument\n"
                % flag)
            bad = _out_of_range(setting)
            if bad is not None:
                code, err = run(args(srv, "--dry-run", flag,
                                     bad.strip('"')), capsys)
                assert code == errors.EXIT_USAGE, err
                assert one_error_line(err).startswith(
                    "cpoplib fetch: error: %s " % flag), err
        else:
            code, err = run(args(srv, "--dry-run", flag + "=yes"), capsys)
            assert code == errors.EXIT_USAGE
            one_error_line(err)
    assert srv.accepted == 0 and box.deleted == []


# --------------------------------------------------------------------------
# 6. a certificate failure on STARTTLS is named as on --ssl

@pytest.mark.parametrize("tls", ["--starttls", "--ssl"])
def test_certificate_failure_named(server, carol_pw, tmp_path, capsys, tls):
    port = server.pop3s_port if tls == "--ssl" else server.pop3_port
    argv = ["--host", "127.0.0.1", "--port", port, "--user", "carol",
            "--password-env", "CPOPLIB_TEST_PW", tls, "--cafile",
            server.ca_file, "--maildir", tmp_path / "M"]
    code, err = run(argv, capsys)
    assert code == errors.EXIT_CONNECT
    assert one_error_line(err).startswith(
        "cpoplib fetch: error: TLS certificate verification failed for "
        "127.0.0.1:%d: " % port), err
    assert "Bad file descriptor" not in err


# --------------------------------------------------------------------------
# 7. the connection lost in the middle: exit 2, saying during what

def test_connection_lost_during_retr(tmp_path, capsys, pw):
    box = Mailbox(MSGS, drop_at=3)
    state = tmp_path / "s.json"
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--delete",
                             "--state", state, "--window", 1), capsys)
    assert code == errors.EXIT_CONNECT
    assert err.startswith("cpoplib fetch: error: connection lost during RETR "
                          "3 (the server closed it)\n"), err
    assert box.dele_sent == [] and box.deleted == []
    assert sorted(maildir_files(tmp_path / "M")) == sorted(
        lf(m) for m in MSGS[:2])
    assert "2 messages" in err and "failed" in err


# --------------------------------------------------------------------------
# 8. a new mbox is 0600 whatever the umask

def test_new_mbox_is_0600(tmp_path, capsys, pw):
    old = os.umask(0)
    try:
        with Server(Mailbox(MSGS[:2])) as srv:
            code, err = run(args(srv, "--mbox", tmp_path / "new.mbox"),
                            capsys)
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE(os.stat(tmp_path / "new.mbox").st_mode) == 0o600


# --------------------------------------------------------------------------
# 9. one account's failure (a password variable unset) stops no other

@needs_toml
def test_one_account_without_password_stops_no_other(tmp_path, capsys, pw,
                                                     monkeypatch):
    monkeypatch.delenv("NOPE_UNSET", raising=False)
    box = Mailbox(MSGS[:3])
    with Server(box) as srv:
        config = write_config(tmp_path, toml_account(
            srv, "broken", password_env='"NOPE_UNSET"', maildir='"%s"'
            % (tmp_path / "B")) + "\n" + toml_account(
            srv, "fine", maildir='"%s"' % (tmp_path / "F")))
        code, err = run(["--config", config], capsys)
    assert code == errors.EXIT_USAGE
    assert ("cpoplib fetch: error: broken: environment variable NOPE_UNSET "
            "is not set (--password-env)\n") in err
    assert "fine: 3 messages" in err
    assert len(maildir_files(tmp_path / "F")) == 3


# --------------------------------------------------------------------------
# 10. the cleartext refusal names the options; --auth is checked

def test_auth_mechanism_checked(capsys, pw):
    code, err = run(["--host", "h", "--user", "u", "--password-env",
                     "CPOPLIB_TEST_PW", "--dry-run", "--auth", "FOO"], capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == (
        "cpoplib fetch: error: --auth must be one of SCRAM-SHA-256, "
        "SCRAM-SHA-1, CRAM-MD5, APOP, PLAIN, LOGIN, USER, OAUTHBEARER, "
        "XOAUTH2, EXTERNAL, not 'FOO'\n")


def test_cleartext_refused_names_the_options(tmp_path, capsys, pw):
    box = Mailbox(MSGS)
    with Server(box) as srv:
        argv = args(srv, "--dry-run")
        argv.remove("--allow-plaintext")
        code, err = run(argv, capsys)
    assert code == errors.EXIT_USAGE
    assert "--ssl or --starttls, or --allow-plaintext" in one_error_line(err)
    assert box.passwords == []


# --------------------------------------------------------------------------
# 11. --dry-run previews any config, says so, counts the server

@needs_toml
def test_dry_run_previews_a_deleting_config(tmp_path, capsys, pw):
    box = Mailbox(MSGS)
    md = tmp_path / "M"
    with Server(box) as srv:
        config = write_config(tmp_path, toml_account(
            srv, delete="true", maildir='"%s"' % md))
        code, err = run(["--config", config, "--dry-run"], capsys)
        assert code == 0, err
        total = sum(map(len, MSGS))
        assert err == ("a: 5 messages, %d bytes in " % total) + \
            err.split(" bytes in ", 1)[1]
        assert ("-- dry run, nothing written or deleted; the server has 5 "
                "messages, %d bytes\n" % total) in err
        assert box.dele_sent == [] and not md.exists()
        # after a fetch: nothing new, and how much is there
        assert run(["--config", config, "--keep"], capsys)[0] == 0
        code, err = run(["--config", config, "--dry-run"], capsys)
    assert code == 0, err
    assert "a: 0 messages, 0 bytes" in err
    assert "the server has 5 messages, %d bytes" % total in err


# --------------------------------------------------------------------------
# 12. --cafile / --insecure without TLS

@pytest.mark.parametrize("more", [["--cafile", "ca.pem"], ["--insecure"]])
def test_tls_options_without_tls(capsys, pw, more):
    box = Mailbox(MSGS)
    with Server(box) as srv:
        code, err = run(args(srv, "--dry-run", *more), capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == (
        "cpoplib fetch: error: %s is for TLS: add --ssl or --starttls "
        "(without them nothing is encrypted)\n" % more[0])
    assert srv.accepted == 0


# --------------------------------------------------------------------------
# 13. files: symlinks followed, lock files documented, .netrc errors,
# empty password, SIGTERM, destinations that are something else

def test_symlinked_state_and_destination_are_followed(tmp_path, capsys, pw):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    link = tmp_path / "state.json"
    link.symlink_to(real_dir / "state.json")
    (tmp_path / "Mail").symlink_to(real_dir / "Mail")
    with Server(Mailbox(MSGS[:2])) as srv:
        for _ in range(2):
            code, err = run(args(srv, "--state", link, "--maildir",
                                 tmp_path / "Mail"), capsys)
            assert code == 0, err
    assert os.path.islink(link) and os.path.islink(tmp_path / "Mail")
    assert "0 messages" in err              # the second run read the state
    assert len(maildir_files(real_dir / "Mail")) == 2
    assert os.path.exists(str(real_dir / "state.json") + ".lock")


def test_lock_files_are_documented():
    with open(DURABILITY, encoding="utf-8") as f:
        text = f.read()
    assert "``STATE.lock``" in text and "stays" in text.split(
        "``STATE.lock``", 1)[1][:400]


def test_bad_netrc_names_its_line(capsys, isolated_home):
    netrc = isolated_home / ".netrc"
    netrc.write_text("machine h login u password p\nbogus\n")
    netrc.chmod(0o600)
    code, err = run(["--host", "h", "--dry-run"], capsys)
    assert code == errors.EXIT_USAGE
    assert "None" not in one_error_line(err)
    assert re.match(r"cpoplib fetch: error: ~/\.netrc, line \d+: ", err), err


def test_empty_password_command_output(capsys):
    box = Mailbox(MSGS)
    with Server(box) as srv:
        argv = args(srv, "--dry-run")
        argv[argv.index("--password-env"):argv.index("--password-env") + 2] \
            = ["--password-command", "true"]
        code, err = run(argv, capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == (
        "cpoplib fetch: error: --password-command printed nothing (an empty "
        "password is never sent)\n")
    assert srv.accepted == 0


def test_sigterm_like_sigint(tmp_path, monkeypatch):
    """SIGTERM in the middle: the written batches kept and recorded,
    nothing deleted, a summary line, exit 143."""
    monkeypatch.setenv("CPOPLIB_TEST_PW", "pw")
    got = threading.Event()
    msgs = [message(i) for i in range(1, 41)]
    box = Mailbox(msgs, before_retr=lambda n: (time.sleep(0.05),
                                               n == 10 and got.set()))
    md, state = tmp_path / "M", tmp_path / "s.json"
    with Server(box) as srv:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cpoplib", "fetch",
             *map(str, args(srv, "--maildir", md, "--state", state,
                            "--delete", "--batch", 3, "--window", 1))],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert got.wait(30)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    err = err.decode()
    assert proc.returncode == errors.EXIT_TERMINATED, err
    assert "Traceback" not in err and "terminated" in err
    m = re.search(r"u@127\.0\.0\.1: (\d+) messages, \d+ bytes in .*, "
                  r"terminated", err)
    assert m, err
    files = maildir_files(md)
    from cpoplib.fetch.state import State
    recorded = State.load(str(state), "t").delivered
    assert len(files) == len(recorded) >= 9
    assert box.dele_sent == []


@pytest.mark.parametrize("dest, kind", [("--maildir", "dir"),
                                        ("--mbox", "file"),
                                        ("--maildir", "file"),
                                        ("--mbox", "dir")])
def test_destination_of_another_kind_is_refused(tmp_path, capsys, pw, dest,
                                                kind):
    path = tmp_path / "dest"
    if kind == "dir":
        path.mkdir()
        (path / "notes.txt").write_text("mine\n")
    else:
        path.write_text("not mail\n")
    before = sorted(os.listdir(tmp_path))
    box = Mailbox(MSGS)
    with Server(box) as srv:
        code, err = run(args(srv, dest, path), capsys)
    assert code == errors.EXIT_DELIVERY
    one_error_line(err)
    assert str(path) in err
    assert ("Maildir" if dest == "--maildir" else "mbox") in err
    # the destination untouched (the state's directory may be made)
    assert sorted(set(os.listdir(tmp_path)) - {"state"}) == before
    if kind == "dir":
        assert os.listdir(path) == ["notes.txt"]
    else:
        assert path.read_text() == "not mail\n"
    assert box.retrs == []


def test_empty_destinations_are_taken(tmp_path, capsys, pw):
    (tmp_path / "md").mkdir()
    (tmp_path / "box").write_bytes(b"")
    with Server(Mailbox(MSGS[:2])) as srv:
        for dest, path in (("--maildir", "md"), ("--mbox", "box")):
            code, err = run(args(srv, dest, tmp_path / path, "--state",
                                 tmp_path / (path + ".json")), capsys)
            assert code == 0, err
    assert len(maildir_files(tmp_path / "md")) == 2
    assert (tmp_path / "box").read_bytes().startswith(b"From ")


# --------------------------------------------------------------------------
# 14. the server's UIDLs reset

def test_uidl_reset_stops_the_account(tmp_path, capsys, pw):
    state = tmp_path / "s.json"
    md = tmp_path / "M"
    with Server(Mailbox(MSGS)) as srv:
        assert run(args(srv, "--maildir", md, "--state", state),
                   capsys)[0] == 0
    reset = Mailbox(MSGS, uidls=["new-%d" % n for n in range(1, 6)])
    with Server(reset) as srv:
        code, err = run(args(srv, "--maildir", md, "--state", state,
                             "--delete"), capsys)
        assert code == errors.EXIT_PROTOCOL
        assert one_error_line(err) == (
            "cpoplib fetch: error: none of the 5 UIDLs in the state is among "
            "the server's 5 messages: the server's UIDLs were reset "
            "(fetching would duplicate mail) or the mail was deleted "
            "elsewhere; to fetch all 5, run once with --all (or set "
            "on_uidl_reset = \"fetch\")\n")
        assert reset.retrs == [] and reset.dele_sent == []
        assert len(maildir_files(md)) == 5
        code, err = run(args(srv, "--maildir", md, "--state", state,
                             "--on-uidl-reset", "fetch"), capsys)
        assert code == 0 and "5 messages" in err, err
        assert len(maildir_files(md)) == 10


def test_no_false_uidl_reset_after_delete(tmp_path, capsys, pw):
    """Messages this fetcher deleted are not a reset: new mail after a
    --delete run is fetched."""
    state = tmp_path / "s.json"
    with Server(Mailbox(MSGS[:3])) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--state",
                             state, "--delete"), capsys)
        assert code == 0 and "3 deleted" in err, err
    later = Mailbox(MSGS[3:], uidls=["uid-4", "uid-5"])
    with Server(later) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--state",
                             state), capsys)
    assert code == 0 and "2 messages" in err, err


# --------------------------------------------------------------------------
# 15. one bad message is that message's failure

def long_line_message(i, length):
    return (b"From: a@example.org\r\nSubject: long %d\r\n"
            b"Message-ID: <long%d@test>\r\n\r\n<html>" % (i, i)
            + b"x" * length + b"</html>\r\nend\r\n")


def test_long_lines_are_fetched(tmp_path, capsys, pw):
    msgs = [message(1), long_line_message(2, 5000), message(3),
            long_line_message(4, 300_000), message(5)]
    with Server(Mailbox(msgs)) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--delete"),
                        capsys)
    assert code == 0, err
    assert sorted(maildir_files(tmp_path / "M")) == sorted(map(lf, msgs))
    assert "5 deleted" in err
    assert cpoplib._MAXLINE == 2048         # others' limit is unchanged


def test_message_over_the_cap_is_skipped(tmp_path, capsys, pw):
    big = long_line_message(3, 3 << 20)
    msgs = [message(1), message(2), big, message(4)]
    box = Mailbox(msgs)
    state = tmp_path / "s.json"
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--delete",
                             "--state", state, "--max-message-size", 1),
                        capsys)
    assert code == errors.EXIT_SKIPPED, err
    assert ("warning: u@127.0.0.1: message 3 (UIDL uid-3) skipped: %d bytes, "
            "larger than max_message_size (1 MiB); it stays on the server"
            % len(big)) in err
    assert 3 not in box.retrs and box.deleted == [1, 2, 4]
    assert "3 messages" in err and "1 skipped" in err


def test_lying_size_reconnects_for_the_rest(tmp_path, capsys, pw):
    """LIST says 100 octets, the message has a 2 MiB line: past the cap
    (1 MiB) the connection is out of step, so the fetcher reconnects and
    fetches the rest; the message is not recorded: tried again next
    run."""
    msgs = [message(1), long_line_message(2, 2 << 20), message(3),
            message(4)]
    box = Mailbox(msgs, sizes=[len(msgs[0]), 100, len(msgs[2]),
                               len(msgs[3])])
    state = tmp_path / "s.json"
    with Server(box) as srv:
        for number in (2, 1):       # renumbered once 1 is deleted
            code, err = run(args(srv, "--maildir", tmp_path / "M", "--state",
                                 state, "--delete", "--max-message-size", 1,
                                 "--window", 1), capsys)
            assert code == errors.EXIT_SKIPPED, err
            assert ("message %d (UIDL uid-2) skipped: a line longer than "
                    "max_message_size (1 MiB) allows; it stays on the server"
                    % number) in err
    assert sorted(maildir_files(tmp_path / "M")) == sorted(
        lf(m) for m in (msgs[0], msgs[2], msgs[3]))
    assert srv.accepted == 4 and box.retrs.count(2) == 2
    assert sorted(box.deleted) == [1, 3, 4]


def test_long_lines_from_dovecot(server, carol, carol_pw, tmp_path, capsys):
    html = b"<p>" + b"y" * 9000 + b"</p>\n"
    msgs = [(k, m + html) for k, m in dovecot_server.small_corpus("ll", 3)]
    added = server.add_messages("carol", msgs)
    md = tmp_path / "Maildir"
    code, err = run(dovecot_args(server, "--maildir", md), capsys)
    assert code == 0, err
    assert keyed(maildir_files(md)) == added


# --------------------------------------------------------------------------
# 16. the CLI people expect

def test_every_option_has_help():
    parser = cli.build_parser()
    bare = [a.option_strings for a in parser._actions
            if a.option_strings and not a.help
            and a.dest != "refused_password"]
    assert bare == []
    text = parser.format_help()
    for option in ("--host", "--port", "--user", "--maildir", "--mbox",
                   "--eml-dir", "-q", "-v", "--version", "--keep"):
        assert re.search(r"^  (\S+, )*%s\b.*\S" % re.escape(option), text,
                         re.M), option
    assert "examples:" in text and "exit codes:" in text and "143" in text


@pytest.mark.parametrize("command", [[], ["fetch"]])
def test_version(command):
    out = subprocess.run([sys.executable, "-m", "cpoplib", *command,
                          "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout == "cpoplib%s %s\n" % (" fetch" if command else "",
                                              cpoplib.__version__)


@needs_toml
def test_named_accounts_and_the_default_config(tmp_path, capsys, pw,
                                               monkeypatch):
    box = Mailbox(MSGS[:2])
    with Server(box) as srv:
        text = "".join(toml_account(srv, name, dry_run="true",
                                    user='"%s"' % name) + "\n"
                       for name in ("work", "home"))
        conf = tmp_path / "xdg" / "cpoplib"
        conf.mkdir(parents=True)
        (conf / "fetch.toml").write_text(text)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
        code, err = run(["home"], capsys)
        assert code == 0, err
        assert err.startswith("home: 2 messages") and "work" not in err
        code, err = run([], capsys)
        assert code == 0 and "work: 2 messages" in err \
            and "home: 2 messages" in err, err
        code, err = run(["hom"], capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == (
        "cpoplib fetch: error: %s has no account 'hom'; did you mean home?\n"
        % (conf / "fetch.toml"))


@needs_toml
def test_summary_as_each_account_ends(tmp_path, monkeypatch):
    """The quick account's summary comes while the slow one still runs."""
    monkeypatch.setenv("CPOPLIB_TEST_PW", "pw")
    release = threading.Event()
    slow = Mailbox(MSGS[:2], before_retr=lambda n: release.wait(20))
    with Server(Mailbox(MSGS[:2])) as a, Server(slow) as b:
        config = write_config(tmp_path, toml_account(a, "quick",
                              dry_run="true") + "\n"
                              + toml_account(b, "slow", dry_run="true"))
        proc = subprocess.Popen([sys.executable, "-m", "cpoplib", "fetch",
                                 "--config", str(config)],
                                stderr=subprocess.PIPE, text=True)
        first = proc.stderr.readline()
        released_after = release.is_set()
        release.set()
        rest = proc.stderr.read()
        proc.wait(30)
    assert proc.returncode == 0, first + rest
    assert first.startswith("quick: 2 messages") and not released_after
    assert rest.startswith("slow: 2 messages")


# --------------------------------------------------------------------------
# the manual's reference is the schema's

def test_reference_is_the_schemas():
    from cpoplib.fetch import reference, settings
    with open(REFERENCE, encoding="utf-8") as f:
        text = f.read()
    assert reference.with_reference(text) == text, (
        "docs/fetcher/reference.rst is out of date: run python -m "
        "cpoplib.fetch.reference --write docs/fetcher/reference.rst")
    for s in settings.SETTINGS:
        assert "``%s" % s.flags[0] in text
    for code, _ in errors.EXIT_CODES:
        assert "\n%-4d  " % code in text or "\n%d  " % code in text


# --------------------------------------------------------------------------
# the property: whatever the config and the command line, exit 0 or a
# documented code, one error line, no traceback, nothing deleted unless
# the effective setting is a real true

from hypothesis import HealthCheck, given, settings as hsettings, \
    strategies as st  # noqa: E402

BOOL_KEYS = ["delete", "keep", "dry_run", "all", "ssl", "starttls",
             "insecure", "netrc", "allow_plaintext"]
OTHER_KEYS = ["port", "timeout", "window", "batch", "sync", "auth",
              "max_message_size", "on_uidl_reset", "delet", "jobs"]
WORDS = ["true", "false", "no", "0", "1", "-1", "99999", "auto", "fs",
         "file", "stop", "fetch", "PLAIN", "USER", "FOO", "2.5", "nan", ""]
junk = st.one_of(st.booleans(), st.integers(-3, 70000),
                 st.floats(allow_nan=True, allow_infinity=True),
                 st.sampled_from(WORDS), st.text(max_size=6))
VALID = {"timeout": st.sampled_from([5, 10.0, 2.5]),
         "window": st.integers(1, 8), "batch": st.integers(1, 5),
         "sync": st.sampled_from(["auto", "file"]),
         "auth": st.sampled_from(["USER", "PLAIN", "user"]),
         "max_message_size": st.integers(1, 4),
         "on_uidl_reset": st.sampled_from(["stop", "fetch"]),
         "jobs": st.integers(1, 3), "port": st.integers(1, 65535),
         "delet": st.booleans()}


def _value(key):
    valid = st.booleans() if key in BOOL_KEYS else VALID[key]
    return st.integers(0, 9).flatmap(lambda n: junk if n == 9 else valid)


tables = st.lists(st.sampled_from(BOOL_KEYS + OTHER_KEYS), max_size=3,
                  unique=True).flatmap(lambda keys: st.fixed_dictionaries(
                      {k: _value(k) for k in keys}))
FLAGS = ["--delete", "--keep", "--dry-run", "--no-dry-run", "--all",
         "--ssl", "--starttls", "--insecure", "--no-netrc", "--no-delete"]
VALUED = {"--timeout": "timeout", "--window": "window", "--batch": "batch",
          "--jobs": "jobs", "--sync": "sync", "--auth": "auth",
          "--max-message-size": "max_message_size",
          "--on-uidl-reset": "on_uidl_reset", "--port": "port"}
options = st.lists(st.one_of(
    st.sampled_from(FLAGS).map(lambda f: [f]),
    st.sampled_from(sorted(VALUED)).flatmap(lambda o: st.one_of(
        VALID[VALUED[o]].map(str), VALID[VALUED[o]].map(str),
        st.sampled_from(WORDS)).map(lambda v: [o, v]))),
    max_size=2)


def _toml(value):
    import json
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is float:
        return {"inf": "inf", "-inf": "-inf"}.get(repr(value), "nan") \
            if value != value or value in (float("inf"), float("-inf")) \
            else repr(value)
    if type(value) is int:
        return str(value)
    return json.dumps(value)


def _effective(levels, name, negative=None):
    """The model of the precedence: the last level that says."""
    result = False
    for level in levels:
        if name in level:
            result = level[name]
        if negative and negative in level:
            result = not level[negative]
    return result


@pytest.fixture(scope="module")
def shared_server():
    """One server for every example (its mailbox set by each)."""
    with Server(None, idle_eof=2, timeout=120) as srv:
        yield srv


@needs_toml
@hsettings(max_examples=60, deadline=None, derandomize=True,
           suppress_health_check=[HealthCheck.function_scoped_fixture,
                                  HealthCheck.too_slow])
@given(defaults=tables, account=tables, argv=options)
def test_property_any_config_any_command_line(defaults, account, argv,
                                              isolated_home, shared_server):
    import contextlib
    import io
    os.environ["CPOPLIB_TEST_PW"] = "pw"
    flat = [w for option in argv for w in option]
    box = Mailbox(MSGS[:3])
    srv = shared_server
    srv.script = box
    before = srv.accepted
    with tempfile.TemporaryDirectory() as tmp:
        body = toml_account(srv, maildir=_toml(os.path.join(tmp, "M")),
                            state=_toml(os.path.join(tmp, "s.json")),
                            **{k: _toml(v) for k, v in account.items()})
        head = "[defaults]\n" + "".join("%s = %s\n" % (k, _toml(v))
                                        for k, v in defaults.items())
        config = os.path.join(tmp, "c.toml")
        with open(config, "w") as f:
            f.write(head + "\n" + body)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(["--config", config, *flat])
    err = err.getvalue()
    assert code in DOCUMENTED, (code, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    errors_ = [x for x in lines if x.startswith("cpoplib fetch: error: ")]
    assert len(errors_) == (0 if code == 0 else 1) or code == 7, err
    assert all(x.startswith(("cpoplib fetch: warning: ", "a: "))
               for x in lines if x not in errors_), err
    wrong_type = any(k in BOOL_KEYS and type(v) is not bool
                     for table in (defaults, account) for k, v in
                     table.items())
    if wrong_type:
        assert code == errors.EXIT_USAGE and srv.accepted == before, err
    cli_level = {}
    for option in argv:
        if option[0] in ("--delete", "--keep", "--no-delete"):
            cli_level["delete"] = option[0] == "--delete"
        if option[0] in ("--dry-run", "--no-dry-run"):
            cli_level["dry_run"] = option[0] == "--dry-run"
    levels = [defaults, account, cli_level]
    if box.dele_sent:
        assert _effective(levels, "delete", "keep") is True, err
        assert _effective(levels, "dry_run") is not True, err


def test_config_on_310_without_tomli(tmp_path, capsys, monkeypatch):
    """Python 3.10 without tomli: a config file is a one-line usage error
    saying what to install (the command line alone still works)."""
    config = write_config(tmp_path, '[accounts.a]\nhost = "h"\n')
    monkeypatch.setattr(sys, "version_info", (3, 10, 13, "final", 0))
    monkeypatch.setitem(sys.modules, "tomli", None)     # import fails
    code, err = run(["--config", config], capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == (
        "cpoplib fetch: error: a config file needs Python 3.11+ or the tomli "
        "package (pip install tomli)\n")
