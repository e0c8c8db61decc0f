/* auth.c -- SASL authentication of the POP3 type (RFC 5034): auth() and
 * login() once methods.c has parsed their arguments and claimed the
 * connection.
 *
 * auth(mechanism, authobject=None, initial_response=None) is CPython
 * main's POP3.auth(), written in C: the same lines go through the same
 * hooks (self._putcmd, self._getresp, self._shortcmd), so subclass
 * overrides, debug output and audit events are those of poplib.
 *
 * login() picks a mechanism from CAPA's SASL list (without a password or
 * a token: EXTERNAL, RFC 4422 appendix A, when the server offers it over
 * TLS, the TLS client certificate being the credential) and runs the
 * built-in client mechanisms of sasl.c through saslobj.c's exchange (the
 * one the asyncio client drives too), which frames them (base64, the AUTH
 * line), decodes the challenges, runs each step without the GIL (SCRAM's
 * key derivation may take seconds) and says what a failure leaves to do;
 * this file does the I/O through the hooks, sends "*" to cancel, bounds
 * the exchange by the connection's timeout and closes the connection
 * after a failure that leaves the exchange where neither side knows it.
 *
 * Credentials copied into C memory are wiped with OPENSSL_cleanse, as are
 * the bytes objects made from them; the str command lines handed to the
 * Python-visible hooks are ordinary Python objects.
 *
 * May call: commands.c, errors.c, protocol.c, reader.c, saslobj.c,
 * wire.c.  Runs Python code throughout, except in sasl.c.
 */
#include "connection.h"
#include "sasl.h"

/* ---- helpers ---- */

/* self._putcmd(line): 0 or -1. */
static int
send_line(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    PyObject *res = cpoplib_putcmd(self, st, line);

    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* Send a line this file made from a secret (a str it owns), then wipe
 * and release it: 0 or -1.  `line` may be NULL (its making failed). */
static int
send_secret(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    int rc;

    if (line == NULL) {
        return -1;
    }
    rc = send_line(self, st, line);
    cpoplib_wipe_line(line);
    return rc;
}

/* The bytes of a response, copied out: a new bytes object, or NULL with
 * TypeError if `resp` (from a _getresp override) is not bytes-like. */
static PyObject *
response_bytes(PyObject *resp)
{
    if (PyBytes_Check(resp)) {
        return Py_NewRef(resp);
    }
    return PyBytes_FromObject(resp);
}

/* resp[1:].lstrip(b' ') of a response (a bytes object) */
static PyObject *
challenge_text(PyObject *resp)
{
    const char *data = PyBytes_AS_STRING(resp);
    Py_ssize_t n = PyBytes_GET_SIZE(resp), i = n > 0 ? 1 : 0;

    while (i < n && data[i] == ' ') {
        i++;
    }
    return PyBytes_FromStringAndSize(data + i, n - i);
}

static int
is_ok(PyObject *resp)
{
    return PyBytes_GET_SIZE(resp) >= 3
           && memcmp(PyBytes_AS_STRING(resp), "+OK", 3) == 0;
}

/* self.encoding */
static PyObject *
get_encoding(POP3Object *self, cpoplib_state *st)
{
    return PyObject_GetAttr((PyObject *)self, st->str_encoding);
}

/* ---- the connection's timeout as a deadline for an exchange ---- */

/* A server that answers each line just before the socket's timeout, or
 * asks for millions of PBKDF2 iterations, must not stretch auth() or
 * login() past the connection's timeout: the whole exchange gets that
 * timeout as a deadline.  Before each read the socket's timeout is set
 * to what is left (and the reader checks the deadline before each of its
 * recv_into() calls); the socket's own timeout is restored at the end.
 * Time spent in an authobject (the caller's code) is not counted. */
typedef struct {
    PyObject *sock;          /* strong; NULL: no deadline */
    PyObject *timeout;       /* strong: sock.gettimeout() at the start */
    ReaderObject *reader;    /* strong, or NULL if self.file is not ours */
    double deadline;         /* cpoplib_monotonic() seconds */
} exchange_clock;

/* Start the clock: 0 (no deadline when the socket has none, or is not a
 * socket with gettimeout()), or -1 with an exception set. */
static int
clock_start(POP3Object *self, cpoplib_state *st, exchange_clock *clk)
{
    PyObject *sock, *timeout, *file;
    double seconds;

    memset(clk, 0, sizeof(*clk));
    sock = PyObject_GetAttr((PyObject *)self, st->str_sock);
    if (sock == NULL) {
        return -1;
    }
    timeout = PyObject_CallMethodNoArgs(sock, st->str_gettimeout);
    if (timeout == NULL || timeout == Py_None || !PyFloat_Check(timeout)) {
        Py_DECREF(sock);
        if (timeout == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                return -1;
            }
            PyErr_Clear();          /* not a socket: its reads, its rules */
        }
        Py_XDECREF(timeout);
        return 0;
    }
    seconds = PyFloat_AS_DOUBLE(timeout);
    file = PyObject_GetAttr((PyObject *)self, st->str_file);
    if (file == NULL) {
        Py_DECREF(sock);
        Py_DECREF(timeout);
        return -1;
    }
    if (cpoplib_is_reader(st, file)) {
        clk->reader = (ReaderObject *)file;
    }
    else {
        Py_DECREF(file);
    }
    clk->sock = sock;
    clk->timeout = timeout;
    clk->deadline = cpoplib_monotonic() + seconds;
    return 0;
}

/* Before reading the server's next line: TimeoutError if the deadline
 * has passed, else the socket's timeout set to what is left. */
static int
clock_arm(cpoplib_state *st, exchange_clock *clk)
{
    PyObject *left, *res;
    double seconds;

    if (clk->sock == NULL) {
        return 0;
    }
    seconds = clk->deadline - cpoplib_monotonic();
    if (seconds <= 0.0) {
        PyErr_SetString(PyExc_TimeoutError,
                        "timed out: the authentication exchange took "
                        "longer than the connection's timeout");
        return -1;
    }
    left = PyFloat_FromDouble(seconds);
    if (left == NULL) {
        return -1;
    }
    res = PyObject_CallMethodOneArg(clk->sock, st->str_settimeout, left);
    Py_DECREF(left);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    if (clk->reader != NULL) {
        clk->reader->deadline = clk->deadline;
    }
    return 0;
}

/* The caller's authobject runs: its time does not count. */
static double
clock_pause(exchange_clock *clk)
{
    return clk->sock != NULL ? cpoplib_monotonic() : 0.0;
}

static void
clock_resume(exchange_clock *clk, double paused_at)
{
    if (clk->sock != NULL) {
        clk->deadline += cpoplib_monotonic() - paused_at;
    }
}

/* Stop the clock and restore the socket's timeout, keeping a pending
 * exception (a failing settimeout() is then its __context__). */
static int
clock_stop(cpoplib_state *st, exchange_clock *clk)
{
    PyObject *pending, *res;
    int rc = 0;

    if (clk->sock == NULL) {
        return 0;
    }
    pending = cpoplib_fetch_exception();
    if (clk->reader != NULL) {
        clk->reader->deadline = 0.0;
    }
    res = PyObject_CallMethodOneArg(clk->sock, st->str_settimeout,
                                    clk->timeout);
    if (res == NULL) {
        rc = -1;
        if (pending != NULL) {
            PyObject *late = cpoplib_fetch_exception();
            PyException_SetContext(pending, late);
        }
    }
    Py_XDECREF(res);
    if (pending != NULL) {
        cpoplib_restore_exception(pending);
        rc = -1;
    }
    Py_CLEAR(clk->sock);
    Py_CLEAR(clk->timeout);
    Py_CLEAR(clk->reader);
    return rc;
}

/* ---- auth(): CPython main's POP3.auth() ---- */

/* base64.b64decode(text), and on any Exception the same padded to a
 * multiple of 4 with validate=False, as poplib does. */
static PyObject *
lenient_b64decode(cpoplib_state *st, PyObject *text)
{
    PyObject *decode, *res = NULL, *padded = NULL, *kwargs = NULL;
    Py_ssize_t n = PyBytes_GET_SIZE(text), pad = (4 - n % 4) % 4;

    /* base64.b64decode looked up at each call, so that a patch applies */
    decode = PyObject_GetAttr(st->base64_module, st->str_b64decode);
    if (decode == NULL) {
        return NULL;
    }
    res = PyObject_CallOneArg(decode, text);
    if (res != NULL || !PyErr_ExceptionMatches(PyExc_Exception)) {
        goto done;
    }
    PyErr_Clear();
    padded = PyBytes_FromStringAndSize(NULL, n + pad);
    if (padded == NULL) {
        goto done;
    }
    memcpy(PyBytes_AS_STRING(padded), PyBytes_AS_STRING(text), (size_t)n);
    memset(PyBytes_AS_STRING(padded) + n, '=', (size_t)pad);
    kwargs = Py_BuildValue("{O:O}", st->str_validate, Py_False);
    if (kwargs == NULL) {
        goto done;
    }
    {
        PyObject *args = PyTuple_Pack(1, padded);
        if (args == NULL) {
            goto done;
        }
        res = PyObject_Call(decode, args, kwargs);
        Py_DECREF(args);
    }

done:
    Py_DECREF(decode);
    Py_XDECREF(padded);
    Py_XDECREF(kwargs);
    return res;
}

/* base64.b64encode(response).decode('ascii') */
static PyObject *
b64encode_object(PyObject *response)
{
    Py_buffer view;
    PyObject *line;

    if (PyObject_GetBuffer(response, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    line = cpoplib_b64_line("", view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return line;
}

/* The challenge/response loop with a Python authobject. */
static PyObject *
auth_with_object(POP3Object *self, cpoplib_state *st, PyObject *mechanism,
                 PyObject *authobject)
{
    PyObject *resp = NULL, *raw = NULL, *text = NULL, *challenge = NULL;
    PyObject *response = NULL, *encoding, *line;
    exchange_clock clk;
    double paused;
    int eq, rc;

    if (clock_start(self, st, &clk) < 0) {
        return NULL;
    }
    line = PyUnicode_FromFormat("AUTH %U", mechanism);
    if (line == NULL) {
        goto error;
    }
    rc = send_line(self, st, line);
    Py_CLEAR(line);
    if (rc < 0) {
        goto error;
    }
    for (;;) {
        resp = clock_arm(st, &clk) < 0 ? NULL : cpoplib_getresp(self, st);
        if (resp == NULL) {
            goto error;
        }
        raw = response_bytes(resp);
        if (raw == NULL) {
            goto error;
        }
        if (is_ok(raw)) {
            Py_DECREF(raw);
            goto done;
        }
        Py_CLEAR(resp);
        text = challenge_text(raw);
        Py_CLEAR(raw);
        if (text == NULL) {
            goto error;
        }
        if (PyBytes_GET_SIZE(text) > 0) {
            challenge = lenient_b64decode(st, text);
        }
        else {
            challenge = PyBytes_FromStringAndSize(NULL, 0);
        }
        Py_CLEAR(text);
        if (challenge == NULL) {
            goto error;
        }
        paused = clock_pause(&clk);
        response = PyObject_CallOneArg(authobject, challenge);
        clock_resume(&clk, paused);
        Py_CLEAR(challenge);
        if (response == NULL) {
            goto error;
        }
        if (response == Py_None) {
            Py_SETREF(response, PyBytes_FromStringAndSize(NULL, 0));
        }
        else if (PyUnicode_Check(response)) {
            encoding = get_encoding(self, st);
            if (encoding == NULL) {
                goto error;
            }
            Py_SETREF(response, cpoplib_encode_text(response, encoding));
            Py_DECREF(encoding);
        }
        if (response == NULL) {
            goto error;
        }
        eq = PyObject_RichCompareBool(response, st->bytes_star, Py_EQ);
        if (eq < 0) {
            goto error;
        }
        if (eq) {
            Py_CLEAR(response);
            if (send_line(self, st, st->cmd_cancel) < 0
                || clock_arm(st, &clk) < 0) {
                goto error;
            }
            resp = cpoplib_getresp(self, st);
            goto done;
        }
        if (send_secret(self, st, b64encode_object(response)) < 0) {
            goto error;
        }
        Py_CLEAR(response);
    }

error:
    Py_XDECREF(resp);
    resp = NULL;
    Py_XDECREF(raw);
    Py_XDECREF(text);
    Py_XDECREF(challenge);
    Py_XDECREF(response);

done:
    if (clock_stop(st, &clk) < 0) {
        Py_CLEAR(resp);
    }
    return resp;
}

/* CPython main's auth(mechanism, authobject=None, initial_response=None) */
PyObject *
cpoplib_auth_impl(POP3Object *self, PyObject *mechanism,
                  PyObject *authobject, PyObject *initial)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *mech = NULL, *encoding, *line, *b64, *stripped, *res = NULL;
    PyObject *ir = NULL;

    if (authobject != Py_None && initial != Py_None) {
        PyErr_SetString(PyExc_ValueError,
                        "authobject and initial_response are mutually "
                        "exclusive");
        return NULL;
    }
    mech = PyObject_Format(mechanism, NULL);    /* f'{mechanism}' */
    if (mech == NULL) {
        return NULL;
    }
    if (initial != Py_None) {
        if (PyUnicode_Check(initial)) {
            encoding = get_encoding(self, st);
            if (encoding == NULL) {
                goto done;
            }
            ir = cpoplib_encode_text(initial, encoding);
            Py_DECREF(encoding);
        }
        else {
            ir = Py_NewRef(initial);
        }
        if (ir == NULL) {
            goto done;
        }
        b64 = b64encode_object(ir);
        if (b64 == NULL) {
            goto done;
        }
        line = PyUnicode_FromFormat("AUTH %U %U", mech, b64);
        cpoplib_wipe_line(b64);
        if (line == NULL) {
            goto done;
        }
        /* f'AUTH {mechanism} {b64}'.rstrip() */
        stripped = PyObject_CallMethodNoArgs(line, st->str_rstrip);
        cpoplib_wipe_line(line);
        if (stripped == NULL) {
            goto done;
        }
        res = cpoplib_run_command(self, stripped, 0);
        cpoplib_wipe_line(stripped);
        goto done;
    }
    if (authobject == Py_None) {
        line = PyUnicode_FromFormat("AUTH %U", mech);
        if (line == NULL) {
            goto done;
        }
        res = cpoplib_run_command(self, line, 0);
        Py_DECREF(line);
        goto done;
    }
    res = auth_with_object(self, st, mech, authobject);

done:
    Py_XDECREF(mech);
    if (ir != NULL && ir != initial) {
        cpoplib_wipe_bytes(ir);
    }
    else {
        Py_XDECREF(ir);
    }
    return res;
}

/* ---- the built-in mechanisms ---- */

/* Cancel a built-in exchange with "*", keeping the error the caller set.
 * RFC 5034 4: the server answers "*" with -ERR, and the session goes on.
 * Any other outcome -- +OK (let in after all), another challenge, a line
 * that is no POP3 answer, a failure to send or to read -- leaves the
 * session in a state the client does not know: the connection is
 * closed.  What went wrong with the answer becomes the error's
 * __context__. */
static void
cancel_exchange(POP3Object *self, cpoplib_state *st, exchange_clock *clk)
{
    PyObject *failure = cpoplib_fetch_exception(), *answer = NULL, *resp;
    int keep = 0;

    if (send_line(self, st, st->cmd_cancel) == 0
        && clock_arm(st, clk) == 0) {
        resp = cpoplib_getresp(self, st);
        if (resp != NULL) {
            Py_DECREF(resp);                    /* "+OK" or "+ ..." */
        }
        else {
            answer = cpoplib_fetch_exception();
            keep = cpoplib_is_err_line(st, answer);
        }
    }
    else {
        answer = cpoplib_fetch_exception();
    }
    cpoplib_restore_exception(failure);
    if (keep) {
        Py_DECREF(answer);                      /* the expected -ERR */
        return;
    }
    cpoplib_chain_context(answer);
    cpoplib_close_keeping_error(self, st);
}


/* Run the exchange `ex` (saslobj.c's machine, which the asyncio client
 * drives too): the response, or NULL with an exception set and the
 * connection either in step (a -ERR from the server, or a cancelled
 * exchange) or closed. */
static PyObject *
auth_builtin(POP3Object *self, cpoplib_state *st, cpoplib_sasl_run *ex)
{
    PyObject *line, *resp = NULL, *raw;
    int after = CPOPLIB_AFTER_CLOSE, rc;
    exchange_clock clk;

    line = cpoplib_sasl_begin(st, ex);
    if (line == NULL) {
        return NULL;
    }
    if (clock_start(self, st, &clk) < 0) {
        cpoplib_wipe_line(line);
        return NULL;
    }
    if (send_secret(self, st, line) < 0) {
        goto error;
    }
    for (;;) {
        after = CPOPLIB_AFTER_CLOSE;
        resp = clock_arm(st, &clk) < 0 ? NULL : cpoplib_getresp(self, st);
        if (resp == NULL) {
            cpoplib_sasl_refused(st, ex, &after);
            goto error;
        }
        raw = response_bytes(resp);
        if (raw == NULL) {
            goto error;
        }
        rc = cpoplib_sasl_feed(st, ex, raw, &line, &after);
        Py_DECREF(raw);
        if (rc == CPOPLIB_SASL_STEP) {
            rc = cpoplib_sasl_step(st, ex, clk.sock != NULL ? clk.deadline
                                                            : 0.0,
                                   NULL, &line, &after);
        }
        if (rc < 0) {
            goto error;
        }
        if (rc == CPOPLIB_SASL_DONE) {
            if (clock_stop(st, &clk) < 0) {
                Py_DECREF(resp);
                return NULL;
            }
            return resp;
        }
        Py_CLEAR(resp);
        after = CPOPLIB_AFTER_CLOSE;
        if (send_secret(self, st, line) < 0) {
            goto error;
        }
    }

error:
    Py_XDECREF(resp);
    if (after == CPOPLIB_AFTER_CANCEL) {
        cancel_exchange(self, st, &clk);
    }
    (void)clock_stop(st, &clk);
    if (after == CPOPLIB_AFTER_CLOSE) {
        cpoplib_close_keeping_error(self, st);
    }
    return NULL;
}

/* Run built-in mechanism `mech` with user and secret (str). */
static PyObject *
login_sasl(POP3Object *self, cpoplib_state *st, sasl_mech mech,
           PyObject *user, PyObject *secret)
{
    cpoplib_sasl_run ex;
    sasl_client *c = cpoplib_sasl_prepare(st, mech, user, secret);
    PyObject *res;

    if (c == NULL) {
        return NULL;
    }
    cpoplib_sasl_exchange_init(&ex, c, mech);
    res = auth_builtin(self, st, &ex);
    cpoplib_sasl_exchange_clear(&ex);
    return res;
}

/* ---- login() ---- */

/* 1 if self.sock is an ssl.SSLSocket, 0 if not, -1 on error. */
static int
is_encrypted(POP3Object *self, cpoplib_state *st)
{
    PyObject *sock;
    int rc;

    if (st->ssl_socket_type == NULL) {
        return 0;
    }
    sock = PyObject_GetAttr((PyObject *)self, st->str_sock);
    if (sock == NULL) {
        return -1;
    }
    rc = PyObject_IsInstance(sock, st->ssl_socket_type);
    Py_DECREF(sock);
    return rc;
}

/* The mechanisms of CAPA's SASL line as a bit set (bit m for sasl_mech
 * m); 0 when the server has no CAPA or no SASL line.  -1 on error. */
static long
offered_mechanisms(POP3Object *self, cpoplib_state *st)
{
    PyObject *caps, *list;
    long mask;
    int has;

    caps = cpoplib_capa(self, st);
    if (caps == NULL) {
        if (!PyErr_ExceptionMatches(st->error_proto)) {
            return -1;
        }
        PyErr_Clear();             /* no CAPA: no SASL either */
        return 0;
    }
    /* what CAPA says of PIPELINING stands for the session: fetch_many()
       then needs no CAPA of its own */
    has = PySequence_Contains(caps, st->str_pipelining_cap);
    if (has < 0) {
        Py_DECREF(caps);
        return -1;
    }
    self->pipelining = has;
    list = PyObject_GetItem(caps, st->str_sasl_cap);
    Py_DECREF(caps);
    if (list == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
            return -1;
        }
        PyErr_Clear();
        return 0;
    }
    mask = cpoplib_mechanism_mask(list);
    Py_DECREF(list);
    return mask;
}

/* 1 if self.timestamp matches self.welcome (APOP possible), 0, -1. */
static int
apop_offered(POP3Object *self, cpoplib_state *st)
{
    PyObject *welcome, *pattern, *match;
    int rc = -1;

    welcome = PyObject_GetAttr((PyObject *)self, st->str_welcome);
    if (welcome == NULL) {
        return -1;
    }
    pattern = PyObject_GetAttr((PyObject *)self, st->str_timestamp);
    if (pattern != NULL) {
        match = PyObject_CallMethodOneArg(pattern, st->str_match, welcome);
        if (match != NULL) {
            rc = PyObject_IsTrue(match);
            Py_DECREF(match);
        }
        Py_DECREF(pattern);
    }
    Py_DECREF(welcome);
    return rc;
}

/* login() without a password or a token: EXTERNAL if the server offers
 * it over TLS (the mechanism, or -1 with ValueError; CAPA is asked only
 * over TLS, so that nothing is sent otherwise). */
static int
mechanism_without_secret(POP3Object *self, cpoplib_state *st, int encrypted)
{
    long offered = 0;
    int mech;

    if (encrypted) {
        offered = offered_mechanisms(self, st);
        if (offered < 0) {
            return -1;
        }
    }
    mech = cpoplib_pick_without_secret(offered, encrypted);
    if (mech < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "login() needs either a password or a token (not "
                        "both); without them only EXTERNAL (a TLS client "
                        "certificate) can log in, and the server does not "
                        "offer it on this connection");
    }
    return mech;
}

PyObject *
cpoplib_login_impl(POP3Object *self, PyObject *user, PyObject *password,
                   PyObject *mechanism, PyObject *token,
                   PyObject *allow_plaintext)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *secret = NULL, *res = NULL;
    int allow, encrypted, mech = -1, is_token_mech, no_secret;
    long offered;

    if (!PyUnicode_Check(user)) {
        PyErr_Format(PyExc_TypeError, "user must be str, not %.100s",
                     Py_TYPE(user)->tp_name);
        return NULL;
    }
    if (password != Py_None && token != Py_None) {
        PyErr_SetString(PyExc_ValueError,
                        "login() needs either a password or a token "
                        "(not both)");
        return NULL;
    }
    no_secret = password == Py_None && token == Py_None;
    if (password != Py_None && !PyUnicode_Check(password)) {
        PyErr_Format(PyExc_TypeError, "password must be str, not %.100s",
                     Py_TYPE(password)->tp_name);
        return NULL;
    }
    allow = PyObject_IsTrue(allow_plaintext);
    if (allow < 0) {
        return NULL;
    }
    if (mechanism != Py_None) {
        mech = cpoplib_named_mechanism(mechanism);
        if (mech < 0) {
            return NULL;
        }
        if ((mech == SASL_EXTERNAL) != no_secret) {
            PyErr_Format(PyExc_ValueError, mech == SASL_EXTERNAL
                         ? "mechanism %R takes no password or token (the "
                           "TLS client certificate is the credential)"
                         : "login() needs either a password or a token "
                           "(not both) with mechanism %R", mechanism);
            return NULL;
        }
        is_token_mech = mech == SASL_XOAUTH2 || mech == SASL_OAUTHBEARER;
        if (!no_secret && is_token_mech != (token != Py_None)) {
            PyErr_Format(PyExc_ValueError, "mechanism %R needs %s",
                         mechanism, is_token_mech ? "token=" : "a password");
            return NULL;
        }
    }
    encrypted = is_encrypted(self, st);
    if (encrypted < 0) {
        return NULL;
    }
    if (mech < 0 && no_secret) {
        mech = mechanism_without_secret(self, st, encrypted);
        if (mech < 0) {
            return NULL;
        }
    }
    if (mech < 0) {
        offered = offered_mechanisms(self, st);
        if (offered < 0) {
            return NULL;
        }
        mech = cpoplib_pick_mechanism(offered, token != Py_None);
        if (mech < 0) {
            int apop = apop_offered(self, st);
            if (apop < 0) {
                return NULL;
            }
            mech = apop ? CPOPLIB_MECH_APOP
                        : cpoplib_pick_without_apop(offered);
        }
    }
    if (cpoplib_refuse_cleartext(st, mech, token != Py_None, encrypted,
                                 allow) < 0) {
        return NULL;
    }
    if (no_secret) {
        secret = Py_NewRef(st->str_empty);      /* EXTERNAL sends none */
    }
    else if (token != Py_None) {
        secret = PyCallable_Check(token) ? PyObject_CallNoArgs(token)
                                         : Py_NewRef(token);
        if (secret == NULL) {
            return NULL;
        }
        if (!PyUnicode_Check(secret)) {
            PyErr_Format(PyExc_TypeError, "the token must be a str (or a "
                         "callable returning one), not %.100s",
                         Py_TYPE(secret)->tp_name);
            Py_DECREF(secret);
            return NULL;
        }
    }
    else {
        secret = Py_NewRef(password);
    }
    if (mech == CPOPLIB_MECH_APOP) {
        res = cpoplib_apop_impl(self, user, secret);
    }
    else if (mech == CPOPLIB_MECH_USER) {
        res = cpoplib_command1(self, st->fmt_user, user, 0);
        if (res != NULL) {
            Py_SETREF(res, cpoplib_command1(self, st->fmt_pass, secret, 0));
        }
    }
    else {
        res = login_sasl(self, st, (sasl_mech)mech, user, secret);
    }
    Py_DECREF(secret);
    return res;
}
