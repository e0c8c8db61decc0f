"""cpoplib fetch: download a POP3 mailbox to a Maildir, an mbox or .eml files.

Only new messages by default (a UIDL state per account), pipelined
retrieval (``fetch_many()``), and ``--delete`` that deletes on the server
only messages that are durably on disk.  See the manual's pages on the
fetcher (docs/fetcher/).

One module per part, each importing only what it needs, so that
``cpoplib fetch --help`` starts without ssl, mailbox or tomllib:

``errors``        exit codes (the one table of them) and FetchError, the
                  one-line failure
``settings``      the settings schema: every setting's kind, default,
                  allowed values and help, each value's check
``config``        the config file's tables checked, and the levels
                  (defaults, account, command line) merged
``reference``     --help's exit codes and the manual's reference, made
                  from the schema
``faults``        test-only: crash points and sync sites turned off
``durable``       fsync/syncfs of files and directories, atomic replace,
                  the sync sites
``state``         the UIDL state of an account and its lock
``destinations``  the Destination interface; Maildir, .eml, mbox, dry run
``accounts``      an account's effective settings and credentials
``output``        stderr: warnings, progress lines, summaries
``core``          the fetcher's own cpoplib instance (its line limit)
``tls``           an account's SSLContext: CA file, client certificate,
                  --tls-host; the pins (--fingerprint, --tofu) checked in
                  the TLS handshake, before anything is sent
``session``       one account's run: connect, log in, list, delete, quit
``serverinfo``    --serverinfo: what a server offers, nothing written
``selection``     which new messages a run fetches, leaves or deletes
                  unfetched (size limits, per-run limits, --keep-days,
                  --filter), and what --delete deletes
``external``      the user's commands that see mail: --filter and --mda
``headers``       the envelope sender, and the Received: field of
                  --add-received
``transfer``      fetch_many() into the destination, a batch committed at
                  a time; a bad message skipped, not the account
``cli``           the command line, the config file, several accounts,
                  SIGINT and SIGTERM
``oauth_setup``   provider profiles, --email autoconfiguration and
                  built-in OAuth 2.0: the hooks that cli and session call
                  (cpoplib.providers, cpoplib.autoconfig and cpoplib.oauth
                  underneath)
``oauth_command`` ``cpoplib oauth``: authorize accounts, store tokens

How a run delivers, for the files-based destinations (Maildir, .eml):

1. each message is written to a staging name (Maildir: ``tmp/``; .eml: a
   hidden ``.cpoplib-tmp-*`` file in the directory), not synced;
2. once per batch (``--batch`` messages or 32 MiB) the batch is made
   durable: with ``--sync fs`` one syncfs(2) on the destination's
   filesystem, which writes back every dirty file there and commits the
   journal once; with ``--sync file`` every staged file is fsync'd, then
   the staging directory; ``--sync auto`` (the default) is ``fs`` on
   Linux 5.17 and later on ext2/3/4, XFS and btrfs (see
   Modules/durability.c for why), ``file`` anywhere else;
3. the state is updated durably with the batch's UIDLs added to the
   delivered set and the batch's renames recorded as pending;
4. the staged files are renamed to their final names (Maildir: ``new/``)
   and the directories fsync'd;
5. with ``--delete``, after the last batch, DELE for every committed
   message, then QUIT (the server deletes only at QUIT).

A run killed anywhere leaves every message either uncommitted (its UIDL
not in the state: it is fetched again; its staged file is an orphan that
the next run removes) or committed (its UIDL in the state and its file
durable under the staging or the final name: the next run completes the
rename).  So every message ends up on disk exactly once, and none is
deleted on the server before that.  mbox: the state records the mbox's
size after each synced batch; a run that finds its predecessor died while
holding the mbox truncates the uncommitted tail (and removes the stale dot
lock it left).
"""


def main(argv=None):
    """The ``cpoplib fetch`` command: its exit status."""
    from .cli import main as cli_main
    return cli_main(argv)
