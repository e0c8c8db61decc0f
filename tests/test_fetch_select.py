"""`cpoplib fetch`'s selection and delivery (issue 21, part B): sizes
(--skip-larger, --delete-larger, k/M/G), per-run limits (--max-messages,
--max-bytes), --keep-days with a faked clock (CPOPLIB_FETCH_NOW, read by
faults.now()), the header filter (--filter, a real shell script, TOP
pipelined), delivery through an MDA (--mda: procmail into a Maildir, and
shell scripts for the failures), --add-received, and the settings'
checks.

Against the private Dovecot of tests/test_dovecot.py (user carol, whose
mailbox starts empty and is emptied after each test) where the issue asks
for it; against the scripted Mailbox server of test_fetch_config.py for
what Dovecot cannot be made to do (a -ERR to one TOP, a connection
dropped inside one, no UIDL) and to see the commands sent.  The crash
tests of the deleting paths are in test_fetch_select_crash.py.
"""
import email.utils
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import dovecot_server
import dovecot_clients
from dovecot_clients import login
from fetch_helpers import (  # noqa: F401  (pw: a fixture)
    DAY, HAVE_TOML, MDA, PROCMAILRC, T0, Mailbox, Server, args, carol_numbers,
    delivered, dovecot_args, keyed, lf, mail, maildir_files, message,
    needs_toml, one_error_line, pw, run, toml_account, write_config)

import cpoplib
from cpoplib.fetch import cli, errors

pytestmark = pytest.mark.usefixtures("isolated_home")
PROCMAIL = shutil.which("procmail")
needs_procmail = pytest.mark.skipif(
    PROCMAIL is None and os.environ.get("CPOPLIB_REQUIRE_DOVECOT") != "1",
    reason="procmail is not installed (apt-get install procmail)")




def scripted_mail(i, subject, size=0, sender="s%d@example.org"):
    """A message for the scripted server (CRLF), of exactly `size` bytes
    if given."""
    _, data = mail("m%d" % i, subject, 0,
                   sender % i if sender and "%d" in sender else sender)
    data = dovecot_server.to_crlf(data)
    if size:
        pad = size - len(data) - 2
        assert pad >= 0, (size, len(data))
        data += b"x" * pad + b"\r\n"
        assert len(data) == size
    return data


def on_server(server):
    """The keys of carol's messages still on the server."""
    return set(carol_numbers(server))


# --------------------------------------------------------------------------
# sizes

def test_sizes_skip_and_delete_without_fetching(server, carol_pw, tmp_path,
                                                capsys):
    """--skip-larger leaves a message on the server, never fetched, on
    every run; --delete-larger (with --delete) deletes one unfetched; the
    summary counts both and the exit status is 0."""
    added = server.add_messages("carol", [
        mail("small-1", "one"), mail("small-2", "two"),
        mail("big", "big", size=30_000), mail("huge", "huge", size=300_000),
        mail("small-3", "three")])
    md = tmp_path / "Maildir"
    try:
        for attempt in (1, 2):
            code, err = run(dovecot_args(
                server, "--maildir", md, "--delete", "--skip-larger", "20k",
                "--delete-larger", "100k"), capsys)
            assert code == 0, err
            if attempt == 1:
                assert "3 messages" in err and \
                    "4 deleted (1 unfetched)" in err, err
            else:
                assert "0 messages" in err and "deleted" not in err, err
            assert "1 not fetched (1 larger than --skip-larger 20k)" in err
            assert "warning" not in err
            assert on_server(server) == {"big"}
            assert keyed(maildir_files(md)) == {
                k: v for k, v in added.items() if k.startswith("small")}
    finally:
        carol_cleanup(server)


def carol_cleanup(server):
    dovecot_clients.empty_mailbox(server, "carol")


def test_sizes_are_powers_of_1024_and_never_retrieved(tmp_path, capsys, pw):
    """1k is 1024 bytes: a message of 1020 bytes is not larger than
    --skip-larger 1k (it would be with 1000); what a size rule selects is
    never asked for with RETR (nor TOP)."""
    msgs = [scripted_mail(1, "a", 1020), scripted_mail(2, "b", 1030),
            scripted_mail(3, "c"), scripted_mail(4, "d", 5000)]
    box = Mailbox(msgs)
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--delete",
                             "--skip-larger", "1k", "--delete-larger",
                             "4K"), capsys)
    assert code == 0, err
    assert box.retrs == [1, 3] and box.tops == []
    assert sorted(box.deleted) == [1, 3, 4]
    assert "1 not fetched (1 larger than --skip-larger 1k)" in err
    assert "3 deleted (1 unfetched)" in err


@pytest.mark.parametrize("option, value, words", [
    ("--skip-larger", "10X", "--skip-larger needs a size, like 500k, 10M or "
     "2G (k, M, G: powers of 1024), not '10X'"),
    ("--skip-larger", "1.5M", "--skip-larger needs a size, like 500k, 10M or "
     "2G (k, M, G: powers of 1024), not '1.5M'"),
    ("--max-bytes", "-1", "--max-bytes needs a size, like 500k, 10M or 2G "
     "(k, M, G: powers of 1024), not '-1'"),
    ("--delete-larger", "2000G", "--delete-larger must be 0 to 1024G, not "
     "2000G"),
    ("--max-messages", "x", "--max-messages needs an integer, not 'x'"),
    ("--keep-days", "36501", "--keep-days must be 0 to 36500, not 36501"),
    ("--skip-larger", "129M", "--skip-larger 129M is above "
     "--max-message-size (128 MiB), which skips (exit 7) what is larger: "
     "raise --max-message-size to 129 or more"),
])
def test_size_and_limit_errors_on_the_command_line(capsys, pw, option,
                                                   value, words):
    box = Mailbox([message(1)])
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", "/nonexistent/M", "--delete",
                             option, value), capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == "cpoplib fetch: error: %s\n" % words
    assert srv.accepted == 0


@needs_toml
@pytest.mark.parametrize("value, words", [
    ('"ten"', 'skip_larger must be a size, like 500k, 10M or 2G (k, M, G: '
              'powers of 1024), not the string "ten"'),
    ("true", "skip_larger must be a size (bytes, or a string like 500k, 10M "
             "or 2G (k, M, G: powers of 1024)), not the boolean true"),
    ("2.5", "skip_larger must be a size (bytes, or a string like 500k, 10M "
            "or 2G (k, M, G: powers of 1024)), not the number 2.5"),
    ("-1", "skip_larger must be 0 to 1024G, not -1"),
    ('"1025G"', "skip_larger must be 0 to 1024G, not 1025G"),
])
def test_size_errors_in_the_file(tmp_path, capsys, pw, value, words):
    with Server(Mailbox([message(1)])) as srv:
        config = write_config(tmp_path, toml_account(
            srv, skip_larger=value, maildir='"%s"' % (tmp_path / "M")))
        code, err = run(["--config", config], capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == "cpoplib fetch: error: %s: [accounts.a]: " \
        "%s\n" % (config, words)
    assert srv.accepted == 0


@needs_toml
def test_size_values_in_the_file_and_on_the_command_line(tmp_path, pw):
    with Server(Mailbox([])) as srv:
        config = write_config(tmp_path, toml_account(
            srv, skip_larger='"10M"', max_bytes="5000",
            delete_larger='"3g"', delete="true",
            maildir='"%s"' % (tmp_path / "M")))
        accounts, _ = cli.plan(["--config", str(config)])
        acct = accounts[0]
        assert (acct.skip_larger, acct.max_bytes, acct.delete_larger) == (
            10 << 20, 5000, 3 << 30)
        accounts, _ = cli.plan(["--config", str(config), "--max-bytes",
                                "2k", "--skip-larger", "0"])
        assert (accounts[0].max_bytes, accounts[0].skip_larger) == (2048, 0)
    assert srv.accepted == 0


# --------------------------------------------------------------------------
# what needs --delete, and what --keep turns off

@pytest.mark.parametrize("option, value, words", [
    ("--delete-larger", "1M", "--delete-larger deletes messages: add "
     "--delete (delete = true), or leave --delete-larger out"),
    ("--keep-days", "7", "--keep-days says when --delete deletes: add "
     "--delete (delete = true), or leave --keep-days out"),
])
def test_deleting_settings_need_delete(capsys, pw, tmp_path, option, value,
                                       words):
    box = Mailbox([message(1)])
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", option,
                             value), capsys)
        assert code == errors.EXIT_USAGE
        assert one_error_line(err) == "cpoplib fetch: error: %s\n" % words
        # off ("0") is not a deletion: allowed
        code, err = run(args(srv, "--maildir", tmp_path / "M", option, "0"),
                        capsys)
        assert code == 0, err
    assert srv.accepted == 1 and box.dele_sent == []


@needs_toml
@pytest.mark.parametrize("defaults, account, cli_args, outcome", [
    # --keep above the deleting settings turns them off with --delete
    ("delete = true\ndelete_larger = 1000\n", "keep = true\n", [], "kept"),
    ("delete = true\ndelete_larger = 1000\n", "", ["--keep"], "kept"),
    ("delete = true\nkeep_days = 3\n", "", ["--keep"], "kept"),
    ("", "delete = true\ndelete_larger = 1000\n", ["--keep"], "kept"),
    # a dry run previews: nothing deleted, what would be counted
    ("delete = true\ndelete_larger = 1000\n", "", ["--dry-run"], "dry"),
    # --keep on the same level or below: an error, not a silent keep
    ("keep = true\n", "delete_larger = 1000\n", [], "error"),
    ("", "keep = true\ndelete_larger = 1000\n", [], "error"),
    ("delete_larger = 1000\n", "", [], "error"),
    # and with --delete in effect it deletes
    ("delete = true\ndelete_larger = 1000\n", "", [], "deleted"),
])
def test_keep_above_turns_deleting_settings_off(tmp_path, capsys, pw,
                                                defaults, account, cli_args,
                                                outcome):
    msgs = [message(1), scripted_mail(2, "big", 3000)]
    box = Mailbox(msgs)
    with Server(box) as srv:
        text = "[defaults]\n%s\n" % defaults + toml_account(
            srv, maildir='"%s"' % (tmp_path / "M"),
            state='"%s"' % (tmp_path / "s.json")) + account
        config = write_config(tmp_path, text)
        code, err = run(["--config", config, *cli_args], capsys)
    if outcome == "error":
        assert code == errors.EXIT_USAGE
        assert "--delete-larger deletes messages" in one_error_line(err)
        assert srv.accepted == 0
        return
    assert code == 0, err
    if outcome == "deleted":
        assert box.deleted == [1, 2] and box.retrs == [1]
        assert "2 deleted (1 unfetched)" in err
        return
    assert box.dele_sent == [], err
    if outcome == "dry":
        assert "1 larger than --delete-larger 1000, kept without --delete" \
            in err and "dry run" in err


# --------------------------------------------------------------------------
# per-run limits

def test_max_messages_over_runs(server, carol, carol_pw, tmp_path, capsys):
    """--max-messages 3 over 7 new messages: 3, 3, then 1, oldest (lowest
    number) first, each run saying how many are left."""
    added = carol("lim", 7)
    number = carol_numbers(server)
    order = sorted(added, key=number.get)
    md = tmp_path / "Maildir"
    got, before = [], set()
    for expect, left in ((3, 4), (3, 1), (1, 0)):
        code, err = run(dovecot_args(server, "--maildir", md,
                                     "--max-messages", 3), capsys)
        assert code == 0, err
        assert ": %d messages" % expect in err
        if left:
            assert "%d left for the next run (--max-messages 3)" % left \
                in err
        else:
            assert "next run" not in err
        now = set(keyed(maildir_files(md)))
        got.append(sorted(now - before))
        before = now
    assert got == [sorted(order[:3]), sorted(order[3:6]), order[6:]]
    assert keyed(maildir_files(md)) == added
    assert len(maildir_files(md)) == 7


def test_max_bytes_by_list_sizes_first_message_always(tmp_path, capsys, pw):
    """--max-bytes counts LIST sizes: a run stops before the message that
    would pass the limit (the rest next run), except that the first
    message of a run is always taken, so a message larger than the limit
    is not left forever."""
    msgs = [scripted_mail(1, "a", 300), scripted_mail(2, "b", 300),
            scripted_mail(3, "c", 300), scripted_mail(4, "d", 5000),
            scripted_mail(5, "e", 300)]
    sizes = [len(m) for m in msgs]
    limit = sizes[0] + sizes[1] + 10
    box = Mailbox(msgs)
    state = tmp_path / "s.json"
    runs = []
    with Server(box) as srv:
        for _ in range(4):
            before = len(box.retrs)
            code, err = run(args(srv, "--maildir", tmp_path / "M", "--state",
                                 state, "--max-bytes", limit), capsys)
            assert code == 0, err
            runs.append((box.retrs[before:], err))
    assert [r for r, _ in runs] == [[1, 2], [3], [4], [5]]
    assert "3 left for the next run (--max-bytes %d)" % limit in runs[0][1]
    assert "2 left for the next run" in runs[1][1]
    assert "1 left for the next run" in runs[2][1]
    assert "next run" not in runs[3][1]
    assert sorted(maildir_files(tmp_path / "M")) == sorted(map(lf, msgs))


# --------------------------------------------------------------------------
# --keep-days, with a faked clock

def at(monkeypatch, when):
    monkeypatch.setenv("CPOPLIB_FETCH_NOW", str(when))


def test_keep_days_with_a_faked_clock(server, carol_pw, tmp_path, capsys,
                                      monkeypatch):
    """--delete --keep-days 3: a message is deleted on the first run at
    least 3 days after the run that first fetched it, not a second
    before; the state dates each message by that first run."""
    first = server.add_messages("carol", [mail("old-%d" % i, "old")
                                          for i in range(3)])
    md = tmp_path / "Maildir"
    state = tmp_path / "state.json"
    argv = dovecot_args(server, "--maildir", md, "--state", state,
                        "--delete", "--keep-days", 3)
    try:
        at(monkeypatch, T0)
        code, err = run(argv, capsys)
        assert code == 0 and "3 messages" in err and "deleted" not in err
        assert set(delivered(state).values()) == {T0}
        second = server.add_messages("carol", [mail("new-%d" % i, "new")
                                               for i in range(2)])
        at(monkeypatch, T0 + 2 * DAY)
        code, err = run(argv, capsys)
        assert code == 0 and "2 messages" in err and "deleted" not in err
        at(monkeypatch, T0 + 3 * DAY - 1)
        code, err = run(argv, capsys)
        assert code == 0 and "deleted" not in err, err
        assert on_server(server) == set(first) | set(second)
        at(monkeypatch, T0 + 3 * DAY)
        code, err = run(argv, capsys)
        assert code == 0 and "3 deleted" in err, err
        assert on_server(server) == set(second)
        at(monkeypatch, T0 + 5 * DAY)
        code, err = run(argv, capsys)
        assert code == 0 and "2 deleted" in err, err
        assert on_server(server) == set()
        assert keyed(maildir_files(md)) == {**first, **second}
        assert len(maildir_files(md)) == 5
        # deleted for good: forgotten by the state
        assert delivered(state) == {}
    finally:
        carol_cleanup(server)


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "-5", "1e400"])
def test_a_bad_faked_clock_is_one_error_line(capsys, pw, monkeypatch,
                                             value):
    box = Mailbox([message(1)])
    at(monkeypatch, value)
    with Server(box) as srv:
        code, err = run(args(srv, "--dry-run"), capsys)
    assert code == errors.EXIT_USAGE
    assert one_error_line(err) == ("cpoplib fetch: error: CPOPLIB_FETCH_NOW "
                                   "must be seconds since the epoch, not %r\n"
                                   % value)
    assert srv.accepted == 0


def test_keep_days_zero_is_delete_at_once(tmp_path, capsys, pw, monkeypatch):
    box = Mailbox([message(1), message(2)])
    at(monkeypatch, T0)
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--delete",
                             "--keep-days", 0), capsys)
    assert code == 0 and box.deleted == [1, 2], err


def test_keep_days_without_uidl_deletes_nothing(tmp_path, capsys, pw):
    """No UIDL: nothing dates a message, so --keep-days deletes nothing
    fetched (and says so); plain --delete still deletes."""
    msgs = [message(1), message(2)]
    box = Mailbox(msgs, uidls=None)
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--delete",
                             "--keep-days", 1), capsys)
        assert code == 0, err
        assert "no UIDL, so --keep-days cannot tell" in err
        assert box.dele_sent == []
        code, err = run(args(srv, "--eml-dir", tmp_path / "E", "--delete"),
                        capsys)
    assert code == 0 and box.deleted == [1, 2], err


# --------------------------------------------------------------------------
# the filter

FILTER = r"""#!/bin/sh
# a header filter: the headers on stdin, %F and %S as $1 and $2
headers=$(cat)
printf '%s %s %s\n' "$1" "$2" "$(printf '%s\n' "$headers" |
    sed -n 's/^Subject: //p')" >> "$FILTER_LOG"
case "$headers" in
  *"Subject: spam"*) exit 2 ;;
  *"Subject: later"*) exit 1 ;;
  *"Subject: broken"*) echo "cannot classify this one" >&2; exit 3 ;;
  *"Subject: crash"*) kill -9 $$ ;;
esac
case "$headers" in
  *"body of"*) echo "the body reached the filter" >&2; exit 4 ;;
esac
exit 0
"""


@pytest.fixture
def filter_script(tmp_path, monkeypatch):
    path = tmp_path / "filter.sh"
    path.write_text(FILTER)
    path.chmod(0o755)
    log = tmp_path / "filter.log"
    monkeypatch.setenv("FILTER_LOG", str(log))

    def lines():
        return log.read_text().splitlines() if log.exists() else []
    # exec: the filter is the process the fetcher waits for (its kill -9
    # is a filter killed by a signal)
    return "exec %s %%F %%S" % path, lines


def test_filter_against_dovecot(server, carol_pw, tmp_path, capsys,
                                filter_script):
    """A real shell script as --filter, the headers from TOP n 0: exit 0
    fetched, 1 left on the server, 2 deleted unfetched (with --delete),
    3 an error for that message (warned with its stderr, left, exit 7);
    %F is the Return-Path's address and %S the LIST size."""
    command, log = filter_script
    msgs = [mail("ok-1", "fine"), mail("spam-1", "spam", sender="bulk@x.y"),
            mail("later-1", "later"), mail("broken-1", "broken"),
            mail("ok-2", "fine too", sender=None)]
    added = server.add_messages("carol", msgs)
    conn = login(cpoplib, server, "carol")
    try:
        sizes = {dovecot_server.message_key(conn.top(n, 0)[1]): s
                 for n, s in conn.list_map().items()}
    finally:
        conn.quit()
    md = tmp_path / "Maildir"
    try:
        code, err = run(dovecot_args(server, "--maildir", md, "--delete",
                                     "--filter", command), capsys)
        assert code == errors.EXIT_SKIPPED, err
        assert re.search(r"warning: carol@localhost: message \d+ \(UIDL "
                         r"[^)]+\) skipped: the filter exited with status 3: "
                         r"cannot classify this one; it stays on the server",
                         err), err
        assert "2 messages" in err and "3 deleted (1 unfetched)" in err
        assert "1 not fetched (1 left by the filter)" in err
        assert "1 skipped" in err
        assert keyed(maildir_files(md)) == {
            k: added[k] for k in ("ok-1", "ok-2")}
        assert on_server(server) == {"later-1", "broken-1"}
        seen = log()
        assert sorted(seen) == sorted(
            "%s %d %s" % (sender, sizes[key], subject)
            for key, sender, subject in (
                ("ok-1", "sender@example.org", "fine"),
                ("spam-1", "bulk@x.y", "spam"),
                ("later-1", "sender@example.org", "later"),
                ("broken-1", "sender@example.org", "broken"),
                ("ok-2", "MAILER-DAEMON", "fine too")))
        # the next run sees the two left again, and only them
        code, err = run(dovecot_args(server, "--maildir", md, "--delete",
                                     "--filter", command), capsys)
        assert code == errors.EXIT_SKIPPED and "0 messages" in err
        assert len(log()) == len(seen) + 2
    finally:
        carol_cleanup(server)


def test_filter_exit_2_without_delete_keeps(tmp_path, capsys, pw,
                                            filter_script):
    command, _ = filter_script
    msgs = [scripted_mail(1, "spam"), scripted_mail(2, "fine")]
    box = Mailbox(msgs)
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--filter",
                             command), capsys)
    assert code == 0, err
    assert box.dele_sent == [] and box.retrs == [2]
    assert "1 not fetched (1 marked by the filter (exit 2), kept without " \
        "--delete)" in err


def test_filter_tops_pipelined_only_wanted_retrieved(tmp_path, capsys, pw,
                                                     filter_script):
    """Every new message's TOP n 0 in one pipelined run of commands, RETR
    only for what the filter takes; a filter killed by a signal is that
    message's error."""
    command, log = filter_script
    subjects = ["fine", "later", "spam", "crash", "fine", "later"] * 5
    msgs = [scripted_mail(i, s) for i, s in enumerate(subjects, 1)]
    box = Mailbox(msgs)
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--delete",
                             "--filter", command), capsys)
    assert code == errors.EXIT_SKIPPED, err
    fine = [i for i, s in enumerate(subjects, 1) if s == "fine"]
    spam = [i for i, s in enumerate(subjects, 1) if s == "spam"]
    assert box.tops == list(range(1, 31))
    assert box.retrs == fine
    assert sorted(box.deleted) == sorted(fine + spam)
    assert err.count("skipped: the filter was killed by SIGKILL") == 5
    assert "10 not fetched (10 left by the filter)" in err
    # every TOP before the first RETR: the filter decided first
    sent = [c.split()[0] for c in srv.commands if c.split()[0] in (b"TOP",
                                                                  b"RETR")]
    assert sent == [b"TOP"] * 30 + [b"RETR"] * len(fine)
    assert len(log()) == 30


def test_filter_top_refused_or_lost(tmp_path, capsys, pw, filter_script):
    """A -ERR to one TOP: that message's failure (exit 7), the rest
    filtered and fetched; the connection lost inside a TOP: exit 2,
    nothing fetched or deleted."""
    command, _ = filter_script
    msgs = [scripted_mail(i, "fine") for i in range(1, 6)]
    box = Mailbox(msgs, top_error=3)
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--delete",
                             "--filter", command), capsys)
    assert code == errors.EXIT_SKIPPED, err
    assert "message 3 (UIDL uid-3) skipped: the server refused TOP 3: -ERR " \
        "cannot read that one" in err
    assert box.retrs == [1, 2, 4, 5] and box.deleted == [1, 2, 4, 5]
    box = Mailbox(msgs, top_drop_at=4)
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M2", "--delete",
                             "--filter", command), capsys)
    assert code == errors.EXIT_CONNECT, err
    assert one_error_line(err) == ("cpoplib fetch: error: connection lost "
                                   "during TOP 4 (the server closed it)\n")
    assert box.retrs == [] and box.dele_sent == []


def test_filter_and_limits(tmp_path, capsys, pw, filter_script):
    """--max-messages counts what the filter takes: a message it leaves
    does not use up the limit; the filter is not run past the limit."""
    command, log = filter_script
    msgs = [scripted_mail(1, "fine"), scripted_mail(2, "later"),
            scripted_mail(3, "fine"), scripted_mail(4, "fine"),
            scripted_mail(5, "fine")]
    box = Mailbox(msgs)
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--filter",
                             command, "--max-messages", 2), capsys)
    assert code == 0, err
    assert box.retrs == [1, 3]
    assert len(log()) == 3
    assert "2 left for the next run (--max-messages 2)" in err
    assert "1 not fetched (1 left by the filter)" in err


# --------------------------------------------------------------------------
# the MDA

@needs_procmail
def test_mda_procmail_into_a_maildir(server, carol_pw, tmp_path, capsys):
    """--mda "procmail -f %F RCFILE": every message delivered by procmail
    into its Maildir byte for byte as Dovecot has it, procmail told the
    envelope sender (its log's From lines), each recorded and then
    deleted."""
    rc = tmp_path / "procmailrc"
    rc.write_text(PROCMAILRC.format(dir=tmp_path))
    msgs = [mail("mda-%d" % i, "mda %d" % i, sender="s%d@example.org" % i)
            for i in range(1, 5)] + [mail("mda-5", "bounce", sender="")]
    added = server.add_messages("carol", msgs)
    state = tmp_path / "state.json"
    try:
        code, err = run(dovecot_args(
            server, "--mda", "%s -f %%F %s" % (PROCMAIL, rc), "--delete",
            "--state", state), capsys)
        assert code == 0, err
        assert "5 messages" in err and "5 deleted" in err
        got = maildir_files(tmp_path / "Maildir")
        assert len(got) == 5 and keyed(got) == added
        senders = re.findall(r"^From (\S+)", (tmp_path / "procmail.log")
                             .read_text(), re.M)
        assert sorted(senders) == ["MAILER-DAEMON"] + [
            "s%d@example.org" % i for i in range(1, 5)]
        assert on_server(server) == set()
    finally:
        carol_cleanup(server)





@pytest.fixture
def mda_script(tmp_path, monkeypatch):
    path = tmp_path / "mda.sh"
    path.write_text(MDA)
    out = tmp_path / "delivered"
    out.mkdir()
    monkeypatch.setenv("MDA_DIR", str(out))

    def files():
        return [(out / name).read_bytes()
                for name in sorted(os.listdir(out), key=lambda x: int(
                    x.split(".")[0]))]

    def argv():
        path = tmp_path / "delivered.args"
        return path.read_text().splitlines() if path.exists() else []
    return "sh %s %%F" % path, files, argv


def test_mda_failure_stops_the_account(tmp_path, capsys, pw, monkeypatch,
                                       mda_script):
    """An MDA that fails (exit 75) on message 3: exit 5 with one error
    line (the status and the MDA's stderr), messages 1 and 2 recorded,
    3 and later not, nothing deleted (no QUIT); the next run with the MDA
    fixed delivers the rest once and deletes everything."""
    command, files, _ = mda_script
    msgs = [scripted_mail(1, "one"), scripted_mail(2, "two"),
            scripted_mail(3, "fail"), scripted_mail(4, "four")]
    box = Mailbox(msgs)
    state = tmp_path / "s.json"
    with Server(box) as srv:
        code, err = run(args(srv, "--mda", command, "--delete", "--state",
                             state), capsys)
        assert code == errors.EXIT_DELIVERY, err
        assert ("cpoplib fetch: error: message 3 (UIDL uid-3): the MDA "
                "(--mda) exited with status 75: mda: disk full; it stays on "
                "the server\n") in err
        assert sorted(delivered(state)) == [b"uid-1", b"uid-2"]
        assert files() == [lf(msgs[0]), lf(msgs[1])]
        assert box.dele_sent == [] and box.retrs[:3] == [1, 2, 3]
        monkeypatch.setenv("MDA_FIXED", "1")
        code, err = run(args(srv, "--mda", command, "--delete", "--state",
                             state), capsys)
    assert code == 0, err
    assert files() == [lf(m) for m in msgs]
    assert box.deleted == [1, 2, 3, 4]


def test_mda_sender_is_sanitized_and_quoted(tmp_path, capsys, pw,
                                            mda_script):
    """%F: a hostile Return-Path reaches the MDA as one argument of safe
    characters, and no shell runs what it holds."""
    command, files, argv = mda_script
    witness = tmp_path / "pwned"
    hostile = "\"$(touch %s)\"'; touch %s; '@evil.example" % (witness,
                                                              witness)
    msgs = [scripted_mail(1, "x", sender=hostile),
            scripted_mail(2, "y", sender="a.b+tag=x/y-z@example.org"),
            scripted_mail(3, "z", sender="")]
    with Server(Mailbox(msgs)) as srv:
        code, err = run(args(srv, "--mda", command), capsys)
        assert code == 0, err
        # mpop's habit: '%F' in single quotes works the same
        code, err = run(args(srv, "--mda", command.replace("%F", "'%F'"),
                             "--all", "--state", tmp_path / "s2"), capsys)
        assert code == 0, err
    assert not witness.exists()
    assert len(files()) == 6
    safe = re.sub(r"[^A-Za-z0-9.@_+=/-]", "_", hostile)
    assert argv() == [safe, "a.b+tag=x/y-z@example.org", "MAILER-DAEMON"] * 2


def test_mda_excludes_the_other_destinations(capsys, pw):
    code = cli.main(["--host", "h", "--user", "u", "--password-env",
                     "CPOPLIB_TEST_PW", "--maildir", "/tmp/x", "--mda",
                     "cat"])
    assert code == errors.EXIT_USAGE
    assert capsys.readouterr().err == ("cpoplib fetch: error: --maildir and "
                                       "--mda exclude each other\n")


# --------------------------------------------------------------------------
# --add-received

RECEIVED = re.compile(
    r"Received: from (?P<from>\S+) \((?P<tcp>\[[^]]+\])\)\r?\n"
    r"\tby (?P<by>[A-Za-z0-9.-]+) with POP3 \((?P<comment>[^()]*)\)\r?\n"
    r"\tfor <(?P<for>[^>]+)>; (?P<date>[^\r\n]+)\r?\n")


@pytest.mark.parametrize("ssl", [False, True], ids=["plain", "pop3s"])
def test_add_received_against_dovecot(server, carol, carol_pw, tmp_path,
                                      capsys, monkeypatch, ssl):
    """--add-received: each message starts with one Received: field in RFC
    5321 syntax naming the server, the account and the (faked) time; the
    rest is Dovecot's file byte for byte.  Off by default."""
    added = carol("rcv", 3)
    at(monkeypatch, T0 + 0.5)
    md = tmp_path / "Maildir"
    code, err = run(dovecot_args(server, "--maildir", md, "--add-received",
                                 ssl=ssl), capsys)
    assert code == 0, err
    files = maildir_files(md)
    assert len(files) == 3
    for data in files:
        m = RECEIVED.match(data.decode("ascii", "replace"))
        assert m, data[:300]
        assert m.group("from") == dovecot_server.TLS_HOSTNAME
        assert m.group("tcp") == "[127.0.0.1]"
        assert m.group("for") == "carol@%s" % dovecot_server.TLS_HOSTNAME
        assert m.group("comment") == "cpoplib fetch %s%s" % (
            cpoplib.__version__, ", TLS" if ssl else "")
        assert email.utils.parsedate_to_datetime(
            m.group("date")).timestamp() == T0
        rest = data[m.end():]
        assert rest == added[dovecot_server.message_key(rest)]
        parsed = email.message_from_bytes(data)
        assert len(parsed.get_all("Received")) == 1
        assert parsed["Received"].startswith("from ")
    # without it, Dovecot's bytes only (what test_fetcher checks too)
    code, err = run(dovecot_args(server, "--eml-dir", tmp_path / "e",
                                 "--state", tmp_path / "s2"), capsys)
    assert code == 0, err
    assert all(not f.read_bytes().startswith(b"Received: from localhost")
               for f in (tmp_path / "e").iterdir())


@needs_toml
def test_add_received_names_the_config_account(tmp_path, capsys, pw):
    """From a config: the account's name in the comment; an address for
    --host is an address literal; a user name that is no Dot-string is a
    Quoted-string."""
    box = Mailbox([message(1)])
    with Server(box) as srv:
        config = write_config(tmp_path, toml_account(
            srv, "work", user='"me@example.com"', add_received="true",
            eml_dir='"%s"' % (tmp_path / "e")))
        code, err = run(["--config", config], capsys)
    assert code == 0, err
    (name,) = os.listdir(tmp_path / "e")
    data = (tmp_path / "e" / name).read_bytes()
    m = RECEIVED.match(data.decode())
    assert m, data[:300]
    assert m.group("from") == "[127.0.0.1]" and m.group("tcp") == "[127.0.0.1]"
    assert m.group("for") == '"me@example.com"@[127.0.0.1]'
    assert m.group("comment") == "cpoplib fetch %s, account work" % (
        cpoplib.__version__)
    assert data[m.end():] == message(1)


def test_the_help_names_percent_f(capsys):
    """The help text has a literal %F (argparse formats help with %)."""
    out = subprocess.run([sys.executable, "-m", "cpoplib", "fetch",
                          "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert re.search(r"%F\s+the\s+envelope", out.stdout), out.stdout
    assert "--filter CMD" in out.stdout


# --------------------------------------------------------------------------
# maildrop, the other Debian MDA: delivery, the envelope sender, a failure

MAILDROP = shutil.which("maildrop")
needs_maildrop = pytest.mark.skipif(
    MAILDROP is None and os.environ.get("CPOPLIB_REQUIRE_DOVECOT") != "1",
    reason="maildrop is not installed (apt-get install maildrop)")


@needs_maildrop
def test_mda_maildrop_fails_then_delivers(server, carol_pw, tmp_path,
                                          capsys):
    """--mda "maildrop -f %F RCFILE" against Dovecot.  A maildrop that
    cannot deliver (its target directory missing: exit 75) stops the
    account with exit 5 and one error line carrying maildrop's own
    message; nothing is recorded or deleted.  Fixed, it delivers every
    message into the Maildir byte for byte, is told each envelope sender,
    and the messages are deleted."""
    md = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):       # maildrop makes no Maildir
        (md / sub).mkdir(parents=True)
    rc = tmp_path / "mailfilter"
    rc.write_text('logfile "%s/maildrop.log"\nlog "sender=$FROM"\n'
                  'to "%s/missing/box"\n' % (tmp_path, tmp_path))
    rc.chmod(0o600)                 # maildrop refuses a readable one
    msgs = [mail("md-%d" % i, "md %d" % i, sender="s%d@example.org" % i)
            for i in range(1, 4)]
    added = server.add_messages("carol", msgs)
    state = tmp_path / "state.json"
    argv = dovecot_args(server, "--mda", "%s -f %%F %s" % (MAILDROP, rc),
                        "--delete", "--state", state)
    try:
        code, err = run(argv, capsys)
        assert code == errors.EXIT_DELIVERY, err
        line = one_error_line(err)
        assert re.match(r"cpoplib fetch: error: message 1 \(UIDL [^)]+\): "
                        r"the MDA \(--mda\) exited with status 75: "
                        r"(/usr/bin/)?maildrop: Unable to create a dot-lock "
                        r"at .*; it stays on the server\n\Z", line), \
            line
        assert delivered(state) == {} and maildir_files(md) == []
        assert on_server(server) == set(added)
        rc.write_text(rc.read_text().replace("%s/missing/box" % tmp_path,
                                             str(md)))
        code, err = run(argv, capsys)
        assert code == 0, err
        assert "3 messages" in err and "3 deleted" in err
        got = maildir_files(md)
        assert len(got) == 3 and keyed(got) == added
        log = (tmp_path / "maildrop.log").read_text()
        # the failed run got as far as message 1, the second one all three
        assert re.findall(r"^sender=(\S+)$", log, re.M) == [
            "s1@example.org", "s1@example.org", "s2@example.org",
            "s3@example.org"]
        assert on_server(server) == set()
    finally:
        carol_cleanup(server)


# --------------------------------------------------------------------------
# a blank command is refused (sh -c " " exits 0: an MDA that discards)

@pytest.mark.parametrize("option", ["--mda", "--filter"])
def test_blank_commands_refused(capsys, pw, tmp_path, option):
    box = Mailbox([message(1)])
    with Server(box) as srv:
        more = () if option == "--mda" else ("--maildir", tmp_path / "M")
        code, err = run(args(srv, *more, option, "  "), capsys)
        assert code == errors.EXIT_USAGE
        assert one_error_line(err) == ("cpoplib fetch: error: %s must be a "
                                       "shell command, not blank\n" % option)
        if HAVE_TOML:
            name = option[2:]
            extra = {name: '" \\t"'}
            if option == "--filter":
                extra["maildir"] = '"%s"' % (tmp_path / "M")
            config = write_config(tmp_path, toml_account(srv, **extra))
            code, err = run(["--config", config], capsys)
            assert code == errors.EXIT_USAGE
            assert one_error_line(err) == (
                "cpoplib fetch: error: %s: [accounts.a]: %s must be a shell "
                "command, not blank\n" % (config, name))
    assert srv.accepted == 0 and box.retrs == []


# --------------------------------------------------------------------------
# docs/fetcher/selection.rst: its examples are what the fetcher takes

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "docs", "fetcher", "selection.rst")


def doc_blocks(language):
    """The `.. code-block:: language` blocks of the selection page, as
    text."""
    lines = open(DOC, encoding="utf-8").read().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == ".. code-block:: %s" % language:
            i += 1
            block = []
            while i < len(lines) and (not lines[i].strip()
                                      or lines[i].startswith("    ")):
                block.append(lines[i][4:])
                i += 1
            blocks.append("\n".join(block).strip("\n") + "\n")
        else:
            i += 1
    return blocks


@needs_toml
def test_doc_toml_examples_are_valid_configs(tmp_path):
    """Every TOML example parses, and each account in it passes every
    check the fetcher makes before connecting."""
    blocks = doc_blocks("toml")
    assert len(blocks) >= 5
    names = set()
    for i, text in enumerate(blocks):
        path = write_config(tmp_path, text, "example%d.toml" % i)
        accounts, _ = cli.plan(["--config", str(path)])
        assert accounts
        for acct in accounts:
            acct.check()
            names.update(n for n in ("skip_larger", "delete_larger",
                                     "keep_days", "filter", "mda",
                                     "add_received") if getattr(acct, n))
    # the examples show each setting they are about
    assert names == {"skip_larger", "delete_larger", "keep_days", "filter",
                     "mda", "add_received"}


def test_doc_command_lines_are_valid():
    """Every `cpoplib fetch` command line of the page passes the checks
    made before connecting."""
    import shlex
    found = 0
    for text in doc_blocks("sh"):
        text = text.replace("\\\n", " ")
        for line in text.splitlines():
            if not line.startswith("cpoplib fetch "):
                continue
            found += 1
            (acct,), _ = cli.plan(shlex.split(line)[2:])
            acct.check()
    assert found >= 2


def test_doc_filter_script_does_what_the_page_says(tmp_path, capsys, pw):
    """The page's example filter, run as --filter with --delete: the
    X-Spam-Flag: YES message deleted unfetched, the [big-list] one left on
    the server, the rest fetched."""
    (script,) = [b for b in doc_blocks("sh") if b.startswith("#!/bin/sh")]
    path = tmp_path / "classify"
    path.write_text(script)
    path.chmod(0o755)
    head = b"From: a@example.org\r\nMessage-ID: <d%d@test>\r\n"
    msgs = [head % 1 + b"Subject: hello\r\n\r\nbody\r\n",
            head % 2 + b"X-Spam-Flag: YES\r\nSubject: buy\r\n\r\nbody\r\n",
            head % 3 + b"Subject: [big-list] news\r\n\r\nbody\r\n",
            head % 4 + b"Subject: again\r\n\r\nbody\r\n"]
    box = Mailbox(msgs)
    with Server(box) as srv:
        code, err = run(args(srv, "--maildir", tmp_path / "M", "--delete",
                             "--filter", "%s %%F %%S" % path), capsys)
    assert code == 0, err
    assert box.tops == [1, 2, 3, 4] and box.retrs == [1, 4]
    assert sorted(box.deleted) == [1, 2, 4]
    assert sorted(maildir_files(tmp_path / "M")) == sorted(
        [lf(msgs[0]), lf(msgs[3])])


# --------------------------------------------------------------------------
# SIGTERM while the MDA runs

SLOW_MDA = r"""#!/bin/sh
# delivers into $MDA_DIR/N.eml; on the message whose subject is "slow"
# says so ($MDA_DIR.started) and takes $MDA_DELAY seconds first
msg=$(cat; echo x)
msg=${msg%x}
case "$msg" in
  *"Subject: slow"*) : > "$MDA_DIR.started"; sleep "$MDA_DELAY" ;;
esac
n=$(ls "$MDA_DIR" | wc -l)
printf '%s' "$msg" > "$MDA_DIR/$n.eml"
"""


@pytest.mark.parametrize("delay, recorded", [
    # it finishes within the grace: delivered, so recorded
    (1, 3),
    # it does not (STOP_GRACE is 10 s): killed, not recorded; the run
    # ends as terminated, not as a delivery failure
    (60, 2)])
def test_sigterm_while_the_mda_runs(tmp_path, monkeypatch, delay, recorded):
    from cpoplib.fetch import external
    from cpoplib.fetch.state import State
    monkeypatch.setenv("CPOPLIB_TEST_PW", "pw")
    script = tmp_path / "mda.sh"
    script.write_text(SLOW_MDA)
    out = tmp_path / "delivered"
    out.mkdir()
    started = tmp_path / "delivered.started"
    monkeypatch.setenv("MDA_DIR", str(out))
    monkeypatch.setenv("MDA_DELAY", str(delay))
    msgs = [scripted_mail(1, "one"), scripted_mail(2, "two"),
            scripted_mail(3, "slow"), scripted_mail(4, "four")]
    box = Mailbox(msgs)
    state = tmp_path / "s.json"
    with Server(box) as srv:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cpoplib", "fetch",
             *map(str, args(srv, "--mda", "sh %s" % script, "--delete",
                            "--state", state))],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        for _ in range(300):
            if started.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert started.exists()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=external.STOP_GRACE + 30)
    err = err.decode()
    assert proc.returncode == errors.EXIT_TERMINATED, err
    assert "Traceback" not in err and "MDA" not in err, err
    assert re.search(r"u@127\.0\.0\.1: %d messages, .*, terminated"
                     % recorded, err), err
    assert len(State.load(str(state), "t").delivered) == recorded
    assert len(os.listdir(out)) == recorded
    assert box.dele_sent == [] and 4 not in box.retrs[:3]
