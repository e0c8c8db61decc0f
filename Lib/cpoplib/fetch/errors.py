"""Exit codes of ``cpoplib fetch`` and FetchError, the failure that carries
one: every error ends as one line on stderr and one of these codes.
EXIT_CODES is the one table of them: ``--help``'s epilog and the manual's
table are made from it (reference.exit_code_lines(),
reference.reference_rst())."""

EXIT_OK = 0
EXIT_USAGE = 1          # bad options or config, no password available
EXIT_CONNECT = 2        # cannot connect, TLS/certificate failure, lost
EXIT_AUTH = 3           # authentication failed
EXIT_BUSY = 4           # [IN-USE], [LOGIN-DELAY], state file locked
EXIT_DELIVERY = 5       # cannot write the destination or the state file,
                        # the MDA failed
EXIT_PROTOCOL = 6       # any other POP3 error, UIDLs reset
EXIT_SKIPPED = 7        # the rest fetched, some messages skipped
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143   # SIGTERM

EXIT_CODES = (
    (EXIT_OK, "success"),
    (EXIT_USAGE, "usage or configuration error (a bad option or setting, "
                 "no password available)"),
    (EXIT_CONNECT, "cannot connect, TLS or certificate failure, connection "
                   "lost"),
    (EXIT_AUTH, "authentication failed"),
    (EXIT_BUSY, "mailbox busy: [IN-USE], [LOGIN-DELAY], another fetcher "
                "running for the account, mbox locked"),
    (EXIT_DELIVERY, "cannot write the destination or the state file (or "
                    "it is damaged, or is not a Maildir or an mbox); the "
                    "MDA (--mda) failed"),
    (EXIT_PROTOCOL, "any other POP3 error (a -ERR to LIST, DELE or QUIT); "
                    "the server's UIDLs were reset"),
    (EXIT_SKIPPED, "the account was fetched but some messages were skipped "
                   "(too large for max_message_size, malformed, a -ERR to "
                   "their RETR or TOP, the filter failed on them); they "
                   "stay on the server.  Messages left by --skip-larger, "
                   "the filter's exit 1 or a per-run limit are no failure"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C); what was written is kept, "
                       "nothing is deleted"),
    (EXIT_TERMINATED, "terminated (SIGTERM); as for Ctrl-C"),
)

EXIT_RULE = ("Several accounts: the code of the worst outcome -- "
             "interrupted or terminated, else the highest of 1 to 6, else "
             "7 if messages were skipped, else 0.")


def combined(codes):
    """The exit status of a run whose accounts ended with `codes`."""
    codes = set(codes)
    for signal_code in (EXIT_TERMINATED, EXIT_INTERRUPTED):
        if signal_code in codes:
            return signal_code
    failures = [c for c in codes if EXIT_USAGE <= c <= EXIT_PROTOCOL]
    if failures:
        return max(failures)
    return EXIT_SKIPPED if EXIT_SKIPPED in codes else EXIT_OK


class FetchError(Exception):
    """A failure with its exit code and a one-line message."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def oserror_text(exc):
    """An OSError as a person reads it: its strerror and file name."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename:
            text += ": %s" % exc.filename
        return text
    return str(exc) or type(exc).__name__


def delivery_error(what, exc):
    return FetchError(EXIT_DELIVERY, "%s: %s" % (what, oserror_text(exc)))
