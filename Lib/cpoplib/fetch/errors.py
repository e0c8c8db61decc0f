"""Exit codes of ``cpoplib fetch`` and FetchError, the failure that carries
one: every error ends as one line on stderr and one of these codes (the
README's table)."""

EXIT_OK = 0
EXIT_USAGE = 1          # bad options or config, no password available
EXIT_CONNECT = 2        # cannot connect, TLS/certificate failure, lost
EXIT_AUTH = 3           # authentication failed
EXIT_BUSY = 4           # [IN-USE], [LOGIN-DELAY], state file locked
EXIT_DELIVERY = 5       # cannot write the destination or the state file
EXIT_PROTOCOL = 6       # any other POP3 error
EXIT_INTERRUPTED = 130  # Ctrl-C


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
