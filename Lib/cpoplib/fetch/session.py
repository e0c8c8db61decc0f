"""One account's run: connect (TLS or STARTTLS), log in, list the
mailbox, fetch what is new with fetch_many() into the destination,
committing every batch through the state, delete what the user asked for,
QUIT.  fetch_account() never raises FetchError: it returns a Result with
the exit code and the one-line message."""
import socket
import ssl
import time

import cpoplib

from . import faults, oauth_setup
from .accounts import BATCH_BYTES
from .errors import (EXIT_AUTH, EXIT_BUSY, EXIT_CONNECT, EXIT_INTERRUPTED,
                     EXIT_OK, EXIT_PROTOCOL, EXIT_USAGE, FetchError,
                     oserror_text)
from .state import State, StateLock


class Result:
    def __init__(self, name):
        self.name = name
        self.code = EXIT_OK
        self.error = None
        self.messages = 0
        self.bytes = 0
        self.deleted = 0
        self.seconds = 0.0


def _tls_context(acct, out):
    if acct.insecure:
        out.warn("--insecure: the server's certificate is not verified")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        return ssl.create_default_context(cafile=acct.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise FetchError(EXIT_USAGE, "--cafile %s: %s"
                         % (acct.cafile, oserror_text(exc)))


def _connection_error(acct, exc):
    where = "%s:%d" % (acct.host, acct.port)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FetchError(EXIT_CONNECT, "TLS certificate verification "
                          "failed for %s: %s" % (where, exc.verify_message
                                                  or exc))
    if isinstance(exc, ssl.SSLError):
        return FetchError(EXIT_CONNECT, "TLS error with %s: %s"
                          % (where, exc.reason or exc))
    if isinstance(exc, socket.gaierror):
        return FetchError(EXIT_CONNECT, "cannot resolve %s: %s"
                          % (acct.host, exc.strerror or exc))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return FetchError(EXIT_CONNECT, "%s: timed out" % where)
    return FetchError(EXIT_CONNECT, "%s: %s" % (where, oserror_text(exc)))


def _server_text(exc):
    text = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text)


def connect(acct, out):
    ctx = _tls_context(acct, out) if (acct.ssl or acct.starttls) else None
    try:
        if acct.ssl:
            conn = cpoplib.POP3_SSL(acct.host, acct.port, context=ctx,
                                    timeout=acct.timeout)
        else:
            conn = cpoplib.POP3(acct.host, acct.port, timeout=acct.timeout)
    except cpoplib.error_proto as exc:
        raise _busy_or(exc, EXIT_PROTOCOL, "%s:%d refused the connection"
                       % (acct.host, acct.port))
    except OSError as exc:
        raise _connection_error(acct, exc)
    try:
        if acct.starttls:
            try:
                conn.stls(ctx)
            except cpoplib.error_proto as exc:
                raise FetchError(EXIT_CONNECT, "STARTTLS failed: %s"
                                 % _server_text(exc))
            except OSError as exc:
                raise _connection_error(acct, exc)
        out.verbose("%s: connected to %s:%d%s" % (
            acct.name, acct.host, acct.port,
            " (TLS)" if ctx is not None else ""))
    except BaseException:
        conn.close()
        raise
    return conn


def _busy_or(exc, code, what):
    if isinstance(exc, (cpoplib.InUseError, cpoplib.LoginDelayError)):
        return FetchError(EXIT_BUSY, "%s: mailbox busy: %s"
                          % (what, _server_text(exc)))
    return FetchError(code, "%s: %s" % (what, _server_text(exc)))


def authenticate(conn, acct, out):
    try:
        conn.login(acct.user, acct.password, mechanism=acct.auth,
                   token=acct.token, allow_plaintext=acct.allow_plaintext)
    except cpoplib.error_proto as exc:
        raise _busy_or(exc, EXIT_AUTH, "login as %s failed" % acct.user)
    except ValueError as exc:
        raise FetchError(EXIT_USAGE if "mechanism" in str(exc)
                         else EXIT_AUTH, "login as %s: %s" % (acct.user, exc))
    except OSError as exc:
        raise _connection_error(acct, exc)
    out.verbose("%s: logged in as %s" % (acct.name, acct.user))


def fetch_account(acct, out):
    """Runs one account; returns a Result (never raises FetchError)."""
    result = Result(acct.name)
    started = time.monotonic()
    try:
        oauth_setup.run_sessions(      # Gmail: a session loop
            acct, out, result, lambda: _fetch(acct, out, result, started))
    except FetchError as exc:
        result.code, result.error = exc.code, exc.message
    except cpoplib.error_proto as exc:
        result.code = EXIT_PROTOCOL
        result.error = "POP3 error: %s" % _server_text(exc)
    except OSError as exc:
        result.code = EXIT_CONNECT
        result.error = "%s:%s: %s" % (acct.host, acct.port,
                                      oserror_text(exc))
    except KeyboardInterrupt:
        result.code, result.error = EXIT_INTERRUPTED, "interrupted"
    result.seconds = time.monotonic() - started
    return result


def _fetch(acct, out, result, started):
    dest = acct.destination()
    lock = None
    state = None
    state_path = acct.state_path()
    conn = None
    try:
        if acct.dry_run:
            state = State.load(state_path, acct.name)
        else:
            lock = StateLock(state_path)
            lock.acquire()
            state = State.load(state_path, acct.name)
            state.open()
            dest.open(state)
        conn = oauth_setup.connect_and_login(acct, out, connect,
                                             authenticate)
        try:
            # LIST and UIDL in one round trip when the server pipelines
            sizes, uidls = conn.listing_maps()
        except cpoplib.error_proto as exc:
            raise FetchError(EXIT_PROTOCOL, "LIST failed: %s"
                             % _server_text(exc))
        except OSError as exc:
            raise _connection_error(acct, exc)
        if uidls is None:
            out.warn("%s: the server has no UIDL: fetching every message"
                     % acct.name)
        uid = uidls or {}
        numbers = _new_messages(sizes, uid, state.delivered,
                                uidls is None or acct.all)
        out.verbose("%s: %d messages on the server, %d to fetch"
                    % (acct.name, len(sizes), len(numbers)))
        if uidls is not None and not acct.dry_run:
            # forget UIDLs no longer on the server (they never come back)
            listed = set(uid.values())
            state.forget([u for u in state.delivered if u not in listed])
        committed, failure = _transfer(conn, acct, out, dest, state,
                                       numbers, sizes, uid, result, started)
        if not acct.dry_run:
            state.set_pending([])       # the last batch's renames are done
            # a run that added many records replaces them with a snapshot
            # now, not the next run (a rerun with nothing new stays quick)
            state.compact()
        if failure is not None and failure.code == EXIT_CONNECT:
            raise failure      # no DELE, no QUIT: nothing is deleted
        if acct.delete and uidls is not None:
            # also what earlier runs put on disk (recorded in the state)
            # but did not delete: a run killed before QUIT, or run
            # without --delete
            done = set(committed)
            committed = sorted(done | {n for n in sizes if n not in done
                                       and uid.get(n) in state.delivered})
        if acct.delete and committed:
            try:
                conn.dele_many(committed)       # pipelined
                faults.fault("deleted")
                result.deleted += len(committed)
            except cpoplib.error_proto as exc:
                which = getattr(exc, "which", None)
                raise FetchError(EXIT_PROTOCOL, "DELE%s failed: %s"
                                 % ("" if which is None else " %s" % which,
                                    _server_text(exc)))
            except OSError as exc:
                raise _connection_error(acct, exc)
        faults.fault("before-quit")
        try:
            conn.quit()
        except cpoplib.error_proto as exc:
            raise FetchError(EXIT_PROTOCOL, "QUIT failed: %s"
                             % _server_text(exc))
        except OSError as exc:
            raise _connection_error(acct, exc)
        conn = None
        if failure is not None:
            raise failure
    finally:
        if conn is not None:
            conn.close()            # no QUIT: the server deletes nothing
        dest.close()
        if state is not None:
            state.close()
        if lock is not None:
            lock.release()


def _new_messages(sizes, uid, delivered, everything):
    """The numbers to fetch, in order: one pass over the listing (at
    100,000 messages every pass costs)."""
    if everything:
        return sorted(sizes)
    numbers = [n for n, u in uid.items() if u not in delivered and n in sizes]
    if len(uid) != len(sizes):
        # listed without a unique id: nothing says it was fetched
        numbers += [n for n in sizes if n not in uid]
    numbers.sort()
    return numbers


def _transfer(conn, acct, out, dest, state, numbers, sizes, uid, result,
              started):
    """fetch_many() into dest, committing every batch; returns the
    committed message numbers and the FetchError that stopped the
    transfer early (a -ERR for one message, the connection lost) or
    None.  A delivery error is raised after committing what was fully
    written."""
    total_bytes = sum(sizes.get(n, 0) for n in numbers)
    committed = []
    batch = []
    batch_bytes = 0
    failure = None

    def commit():
        nonlocal batch, batch_bytes
        if not batch:
            return
        dest.sync()
        faults.fault("synced")
        if not acct.dry_run:
            state.record_batch([uid[n] for n in batch if n in uid],
                               dest.pending(), dest.state_record())
            faults.fault("committed")
            dest.publish()
            faults.fault("published")
        committed.extend(batch)
        out.verbose("%s: %d messages on disk" % (acct.name,
                                                 len(committed)))
        batch, batch_bytes = [], 0

    if not numbers:
        return committed, None
    it = conn.fetch_many(numbers, window=acct.window, sizes=sizes)
    try:
        while True:
            try:
                item = next(it)
            except StopIteration:
                break
            except cpoplib.error_proto as exc:
                which = getattr(exc, "which", None)
                failure = FetchError(EXIT_PROTOCOL, "RETR %s failed: %s"
                                     % (which, _server_text(exc)))
                break
            except OSError as exc:
                failure = _connection_error(acct, exc)
                break
            n, data = item
            dest.deliver(data)
            faults.fault("delivered")
            batch.append(n)
            batch_bytes += len(data)
            result.messages += 1
            result.bytes += len(data)
            out.progress(acct.name, result.messages, len(numbers),
                         result.bytes, total_bytes, started)
            if len(batch) >= acct.batch or batch_bytes >= BATCH_BYTES:
                commit()
    except BaseException:
        out.end_progress(acct.name)
        try:
            it.close()
        except (cpoplib.error_proto, OSError):
            pass
        try:
            commit()        # what was fully written is kept
        except FetchError:
            pass
        raise
    it.close()
    commit()
    out.end_progress(acct.name)
    out.verbose("%s: RETR window %s (%s)" % (
        acct.name, it.window,
        "fixed" if acct.window else "adaptive, where it got to"))
    return committed, failure
