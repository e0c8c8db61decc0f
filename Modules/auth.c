/* auth.c -- SASL authentication of the POP3 type (RFC 5034): auth() and
 * login() once methods.c has parsed their arguments and claimed the
 * connection.
 *
 * auth(mechanism, authobject=None, initial_response=None) is CPython
 * main's POP3.auth(), written in C: the same lines go through the same
 * hooks (self._putcmd, self._getresp, self._shortcmd), so subclass
 * overrides, debug output and audit events are those of poplib.
 *
 * login() picks a mechanism from CAPA's SASL list and runs the built-in
 * client mechanisms of sasl.c, which compute every response in plain C;
 * this file frames them (base64, the AUTH line, "*" to cancel), runs each
 * step without the GIL (SCRAM's key derivation may take seconds), bounds
 * the exchange by the connection's timeout, and turns the outcome into
 * Python results and exceptions.  A failure that leaves the exchange
 * where neither side knows it closes the connection.  SASLprep of SCRAM
 * credentials that are not plain printable ASCII is done by
 * cpoplib._saslprep (the stdlib's stringprep tables).
 *
 * Credentials copied into C memory are wiped with OPENSSL_cleanse, as are
 * the bytes objects this file makes from them; the str command lines
 * handed to the Python-visible hooks are ordinary Python objects.
 *
 * May call: commands.c, errors.c, protocol.c, reader.c, sasl.c.  Runs
 * Python code throughout, except in sasl.c.
 */
#include "connection.h"
#include "sasl.h"

#include <openssl/crypto.h>

/* The POP3 command line limit (RFC 5034 4: 255 octets with CRLF) past
 * which the initial response is sent after an empty challenge. */
#define AUTH_LINE_MAX 255

/* Pseudo-mechanisms login() also knows besides sasl.c's. */
#define MECH_APOP (SASL_MECH_COUNT + 1)
#define MECH_USER (SASL_MECH_COUNT + 2)

/* ---- helpers ---- */

/* Wipe and release a bytes object this file created and still owns. */
static void
wipe_bytes(PyObject *obj)
{
    if (obj == NULL) {
        return;
    }
    if (PyBytes_CheckExact(obj) && Py_REFCNT(obj) == 1) {
        OPENSSL_cleanse(PyBytes_AS_STRING(obj), (size_t)PyBytes_GET_SIZE(obj));
    }
    Py_DECREF(obj);
}

/* A str line of ASCII text, e.g. "AUTH PLAIN " + base64. */
static PyObject *
b64_line(const char *prefix, const unsigned char *data, size_t len)
{
    size_t plen = strlen(prefix), n;
    PyObject *line;

    if (len > (size_t)(PY_SSIZE_T_MAX / 2)) {
        return PyErr_NoMemory();
    }
    n = SASL_B64_LEN(len);
    line = PyUnicode_New((Py_ssize_t)(plen + n), 127);
    if (line == NULL) {
        return NULL;
    }
    memcpy(PyUnicode_DATA(line), prefix, plen);
    sasl_b64_encode(data, len, (char *)PyUnicode_DATA(line) + plen);
    return line;
}

/* Wipe and release a str line this file created from a secret. */
static void
wipe_line(PyObject *line)
{
    if (line == NULL) {
        return;
    }
    if (Py_REFCNT(line) == 1 && PyUnicode_IS_COMPACT_ASCII(line)) {
        OPENSSL_cleanse(PyUnicode_DATA(line),
                        (size_t)PyUnicode_GET_LENGTH(line));
    }
    Py_DECREF(line);
}

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
    wipe_line(line);
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
    line = b64_line("", view.buf, (size_t)view.len);
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
        wipe_line(b64);
        if (line == NULL) {
            goto done;
        }
        /* f'AUTH {mechanism} {b64}'.rstrip() */
        stripped = PyObject_CallMethodNoArgs(line, st->str_rstrip);
        wipe_line(line);
        if (stripped == NULL) {
            goto done;
        }
        res = cpoplib_run_command(self, stripped, 0);
        wipe_line(stripped);
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
        wipe_bytes(ir);
    }
    else {
        Py_XDECREF(ir);
    }
    return res;
}

/* ---- the built-in mechanisms ---- */

/* error_proto("-ERR <MECH>: <detail>") */
static void
sasl_failure(cpoplib_state *st, sasl_mech mech, const char *detail)
{
    PyObject *msg = PyUnicode_FromFormat("-ERR %s: %s", sasl_mech_name(mech),
                                         detail);
    if (msg != NULL) {
        PyErr_SetObject(st->error_proto, msg);
        Py_DECREF(msg);
    }
}

/* A local failure of sasl.c (memory, libcrypto) as an exception. */
static void
sasl_local_error(cpoplib_state *st, sasl_status status, sasl_mech mech,
                 const char *detail)
{
    if (status == SASL_ERR_NOMEM) {
        PyErr_NoMemory();
        return;
    }
    /* SASL_ERR_CRYPTO (e.g. MD5 refused by a FIPS provider) and
       SASL_ERR_INPUT (credentials the mechanism cannot carry) */
    PyErr_Format(PyExc_ValueError, "%s: %s", sasl_mech_name(mech), detail);
}

/* `exc` (owned, may be NULL) is the error_proto the server's answer to
 * "*" raised: 1 if that answer is a -ERR line. */
static int
is_err_line(cpoplib_state *st, PyObject *exc)
{
    PyObject *line;

    if (!cpoplib_is_err_reply(st, exc)) {
        return 0;
    }
    line = PyTuple_GET_ITEM(((PyBaseExceptionObject *)exc)->args, 0);
    return PyBytes_GET_SIZE(line) >= 4
           && memcmp(PyBytes_AS_STRING(line), "-ERR", 4) == 0;
}

/* ---- running a step of sasl.c without the GIL ---- */

typedef struct {
    PyThreadState *tstate;
    double deadline;         /* 0: none */
    unsigned calls;
    int expired;
} step_progress;

/* sasl.c's progress callback, called without the GIL every few thousand
 * PBKDF2 iterations: stop at the deadline; every fifth call take the GIL
 * back for a moment so that signal handlers (Ctrl-C) run. */
static int
step_progress_cb(void *arg)
{
    step_progress *p = arg;
    int rc = 0;

    if (p->deadline > 0.0 && cpoplib_monotonic() > p->deadline) {
        p->expired = 1;
        return 1;
    }
    if (++p->calls % 5 == 0) {
        PyEval_RestoreThread(p->tstate);
        rc = PyErr_CheckSignals();
        p->tstate = PyEval_SaveThread();
    }
    return rc < 0;
}

/* sasl_client_step() with the GIL released: SCRAM's key derivation may
 * take seconds.  The claim keeps every other caller off the connection;
 * `c` and `challenge` are C memory owned by the exchange.  On
 * SASL_ERR_INTERRUPTED an exception is set (TimeoutError at the
 * deadline, or what a signal handler raised). */
static sasl_status
step_without_gil(sasl_client *c, const exchange_clock *clk,
                 const unsigned char *challenge, size_t len,
                 const unsigned char **out, size_t *out_len)
{
    step_progress p = {NULL, clk->sock != NULL ? clk->deadline : 0.0, 0, 0};
    sasl_status status;

    sasl_client_set_progress(c, step_progress_cb, &p);
    p.tstate = PyEval_SaveThread();
    status = sasl_client_step(c, challenge, len, out, out_len);
    PyEval_RestoreThread(p.tstate);
    sasl_client_set_progress(c, NULL, NULL);
    if (status == SASL_ERR_INTERRUPTED && p.expired) {
        PyErr_SetString(PyExc_TimeoutError,
                        "timed out: the SCRAM key derivation the server "
                        "asked for took longer than the connection's "
                        "timeout");
    }
    else if (status == SASL_ERR_INTERRUPTED && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_SystemError, "SASL step interrupted");
    }
    return status;
}

/* ---- the exchange of a built-in mechanism ---- */

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
            keep = is_err_line(st, answer);
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


/* What a failed exchange leaves for the caller to do. */
enum {
    EXCHANGE_IN_STEP,        /* the server ended it with -ERR */
    EXCHANGE_CANCEL,         /* send "*" and read the server's -ERR */
    EXCHANGE_CLOSE           /* the server's state is unknown: close */
};

/* Run the exchange of sasl client `c` for `mech`: the response, or NULL
 * with an exception set and the connection either in step (a -ERR from
 * the server, or a cancelled exchange) or closed. */
static PyObject *
auth_builtin(POP3Object *self, cpoplib_state *st, sasl_mech mech,
             sasl_client *c)
{
    const unsigned char *out;
    size_t out_len;
    char prefix[64];
    PyObject *line, *resp = NULL, *raw = NULL, *text = NULL;
    int has_initial, initial_pending = 0, failed = 0;
    int after = EXCHANGE_CLOSE;
    unsigned char *challenge = NULL;
    exchange_clock clk;

    has_initial = sasl_client_initial(c, &out, &out_len);
    if (has_initial < 0) {
        sasl_local_error(st, SASL_ERR_NOMEM, mech, sasl_client_error(c));
        return NULL;
    }
    if (has_initial) {
        /* the AUTH line with its initial response, if it fits */
        snprintf(prefix, sizeof(prefix), "AUTH %s ", sasl_mech_name(mech));
        if (strlen(prefix) + SASL_B64_LEN(out_len) + 2 <= AUTH_LINE_MAX) {
            line = out_len == 0
                   ? PyUnicode_FromFormat("%s=", prefix)
                   : b64_line(prefix, out, out_len);
        }
        else {
            initial_pending = 1;
            line = PyUnicode_FromFormat("AUTH %s", sasl_mech_name(mech));
        }
    }
    else {
        line = PyUnicode_FromFormat("AUTH %s", sasl_mech_name(mech));
    }
    if (line == NULL) {
        return NULL;
    }
    if (clock_start(self, st, &clk) < 0) {
        wipe_line(line);
        return NULL;
    }
    if (send_secret(self, st, line) < 0) {
        goto error;
    }
    for (;;) {
        size_t challenge_len = 0;
        sasl_status status;

        after = EXCHANGE_CLOSE;
        resp = clock_arm(st, &clk) < 0 ? NULL : cpoplib_getresp(self, st);
        if (resp == NULL) {
            PyObject *exc = cpoplib_fetch_exception();
            if (is_err_line(st, exc)) {
                after = EXCHANGE_IN_STEP;
            }
            cpoplib_restore_exception(exc);
            if (failed && after == EXCHANGE_IN_STEP) {
                /* the -ERR that follows a reported failure: raise the
                   server's reason instead, with the -ERR as context */
                PyObject *context = cpoplib_fetch_exception();
                sasl_failure(st, mech, sasl_client_error(c));
                cpoplib_chain_context(context);
            }
            goto error;
        }
        raw = response_bytes(resp);
        if (raw == NULL) {
            goto error;
        }
        if (is_ok(raw)) {
            if (!failed && sasl_client_complete(c)) {
                Py_DECREF(raw);
                if (clock_stop(st, &clk) < 0) {
                    Py_DECREF(resp);
                    return NULL;
                }
                return resp;
            }
            sasl_failure(st, mech, failed
                ? "the server accepted a login it had just refused; "
                  "connection closed"
                : "the server accepted the login without proving it "
                  "knows the password; connection closed");
            goto error;
        }
        Py_CLEAR(resp);
        if (failed) {
            sasl_failure(st, mech, sasl_client_error(c));
            after = EXCHANGE_CANCEL;
            goto error;
        }
        text = challenge_text(raw);
        Py_CLEAR(raw);
        if (text == NULL) {
            goto error;
        }
        challenge = PyMem_Malloc((size_t)PyBytes_GET_SIZE(text) / 4 * 3 + 3);
        if (challenge == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        if (sasl_b64_decode(PyBytes_AS_STRING(text),
                            (size_t)PyBytes_GET_SIZE(text), challenge,
                            &challenge_len, 1) < 0) {
            sasl_failure(st, mech, "the server's challenge is not base64");
            after = EXCHANGE_CANCEL;
            goto error;
        }
        Py_CLEAR(text);
        if (initial_pending) {
            initial_pending = 0;
            if (challenge_len != 0) {
                sasl_failure(st, mech, "expected an empty challenge before "
                             "the initial response");
                after = EXCHANGE_CANCEL;
                goto error;
            }
            PyMem_Free(challenge);
            challenge = NULL;
            /* the initial response again: `out` may have moved */
            if (sasl_client_initial(c, &out, &out_len) < 0) {
                sasl_local_error(st, SASL_ERR_NOMEM, mech,
                                 sasl_client_error(c));
                after = EXCHANGE_CANCEL;
                goto error;
            }
            if (send_secret(self, st, b64_line("", out, out_len)) < 0) {
                goto error;
            }
            continue;
        }
        status = step_without_gil(c, &clk, challenge, challenge_len, &out,
                                  &out_len);
        OPENSSL_cleanse(challenge, challenge_len);
        PyMem_Free(challenge);
        challenge = NULL;
        switch (status) {
        case SASL_FAILED_RESPOND:      /* send the response the RFC asks */
        case SASL_CONTINUE:
            failed = status == SASL_FAILED_RESPOND;
            if (send_secret(self, st, b64_line("", out, out_len)) < 0) {
                goto error;
            }
            break;
        case SASL_FAILED_CANCEL:
            sasl_failure(st, mech, sasl_client_error(c));
            after = EXCHANGE_CANCEL;
            goto error;
        case SASL_FAILED_UNTRUSTED:
            sasl_failure(st, mech, sasl_client_error(c));
            goto error;
        case SASL_ERR_INTERRUPTED:     /* deadline or signal: set */
            goto error;
        default:
            sasl_local_error(st, status, mech, sasl_client_error(c));
            after = EXCHANGE_CANCEL;
            goto error;
        }
    }

error:
    Py_XDECREF(resp);
    Py_XDECREF(raw);
    Py_XDECREF(text);
    PyMem_Free(challenge);
    if (after == EXCHANGE_CANCEL) {
        cancel_exchange(self, st, &clk);
    }
    (void)clock_stop(st, &clk);
    if (after == EXCHANGE_CLOSE) {
        cpoplib_close_keeping_error(self, st);
    }
    return NULL;
}

/* SASLprep (RFC 4013, as a query) of a str, as UTF-8 bytes: printable
 * ASCII is left as it is; anything else goes through cpoplib._saslprep.
 * `what` names the argument in errors, which never quote a password. */
static PyObject *
saslprep_utf8(cpoplib_state *st, PyObject *text, const char *what)
{
    PyObject *module, *prepared, *whatobj;
    Py_ssize_t n;
    int ascii = 1;

    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what,
                     Py_TYPE(text)->tp_name);
        return NULL;
    }
    n = PyUnicode_GET_LENGTH(text);
    for (Py_ssize_t i = 0; i < n && ascii; i++) {
        Py_UCS4 ch = PyUnicode_READ_CHAR(text, i);
        ascii = ch >= 0x20 && ch < 0x7f;
    }
    if (ascii) {
        return PyUnicode_AsUTF8String(text);
    }
    module = PyImport_Import(st->str_saslprep_module);
    if (module == NULL) {
        return NULL;
    }
    whatobj = PyUnicode_FromString(what);
    prepared = whatobj == NULL ? NULL
               : PyObject_CallMethodObjArgs(module, st->str_saslprep, text,
                                            whatobj, NULL);
    Py_XDECREF(whatobj);
    Py_DECREF(module);
    if (prepared == NULL) {
        return NULL;
    }
    if (!PyUnicode_Check(prepared)) {
        Py_DECREF(prepared);
        PyErr_SetString(PyExc_TypeError, "saslprep() must return str");
        return NULL;
    }
    Py_SETREF(prepared, PyUnicode_AsUTF8String(prepared));
    return prepared;
}

static PyObject *
utf8_of(PyObject *text, const char *what)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what,
                     Py_TYPE(text)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8String(text);
}

/* The package's SCRAM_MAX_ITERATIONS, validated: an int from 1 to
 * 999,999,999 (the counts sasl.c parses). */
static int
scram_iteration_cap(cpoplib_state *st, unsigned long *cap)
{
    PyObject *value = PyDict_GetItemWithError(st->namespace,
                                              st->str_scram_max);
    long n;

    if (value == NULL) {
        return PyErr_Occurred() ? -1 : 0;      /* unset: the default */
    }
    if (!PyLong_Check(value) || PyBool_Check(value)) {
        PyErr_Format(PyExc_TypeError,
                     "SCRAM_MAX_ITERATIONS must be an int, not %.200s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    n = PyLong_AsLong(value);
    if (n == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        n = -1;
    }
    if (n < 1 || n > 999999999L) {
        PyErr_SetString(PyExc_ValueError,
                        "SCRAM_MAX_ITERATIONS must be from 1 to 999999999");
        return -1;
    }
    *cap = (unsigned long)n;
    return 0;
}

/* Run built-in mechanism `mech` with user and secret (str). */
static PyObject *
login_sasl(POP3Object *self, cpoplib_state *st, sasl_mech mech,
           PyObject *user, PyObject *secret)
{
    int scram = mech == SASL_SCRAM_SHA_1 || mech == SASL_SCRAM_SHA_256;
    int oauth = mech == SASL_XOAUTH2 || mech == SASL_OAUTHBEARER;
    PyObject *user8 = NULL, *secret8 = NULL, *res = NULL;
    sasl_credentials cred;
    sasl_client *c;
    sasl_status status;
    unsigned long max_iterations = SASL_SCRAM_MAX_ITERATIONS;
    char error[512];

    user8 = scram ? saslprep_utf8(st, user, "user") : utf8_of(user, "user");
    if (user8 == NULL) {
        goto done;
    }
    secret8 = scram ? saslprep_utf8(st, secret, "password")
                    : utf8_of(secret, oauth ? "token" : "password");
    if (secret8 == NULL) {
        goto done;
    }
    if (scram && scram_iteration_cap(st, &max_iterations) < 0) {
        goto done;
    }
    cred.user = PyBytes_AS_STRING(user8);
    cred.user_len = (size_t)PyBytes_GET_SIZE(user8);
    cred.secret = PyBytes_AS_STRING(secret8);
    cred.secret_len = (size_t)PyBytes_GET_SIZE(secret8);
    c = sasl_client_new(mech, &cred, NULL, 0, &status, error, sizeof(error));
    wipe_bytes(secret8);
    secret8 = NULL;
    if (c == NULL) {
        sasl_local_error(st, status, mech, error);
        goto done;
    }
    if (scram) {
        sasl_client_set_max_iterations(c, max_iterations);
    }
    res = auth_builtin(self, st, mech, c);
    sasl_client_free(c);

done:
    Py_XDECREF(user8);
    wipe_bytes(secret8);
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
    PyObject *caps, *list, *item;
    Py_ssize_t n;
    long mask = 0;
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
    n = PySequence_Length(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *name;
        Py_ssize_t len;
        int m;

        item = PySequence_GetItem(list, i);
        if (item == NULL) {
            Py_DECREF(list);
            return -1;
        }
        if (PyUnicode_Check(item)) {
            name = PyUnicode_AsUTF8AndSize(item, &len);
            if (name == NULL) {
                Py_DECREF(item);
                Py_DECREF(list);
                return -1;
            }
            m = sasl_mech_from_name(name, (size_t)len);
            if (m >= 0) {
                mask |= 1L << m;
            }
        }
        Py_DECREF(item);
    }
    Py_DECREF(list);
    return n < 0 ? -1 : mask;
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

/* The mechanism named by login()'s mechanism= argument, or -1 with
 * ValueError. */
static int
named_mechanism(PyObject *name)
{
    const char *text;
    Py_ssize_t len;
    int m;

    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "mechanism must be str, not %.100s",
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    text = PyUnicode_AsUTF8AndSize(name, &len);
    if (text == NULL) {
        return -1;
    }
    m = sasl_mech_from_name(text, (size_t)len);
    if (m >= 0) {
        return m;
    }
    if (PyOS_stricmp(text, "APOP") == 0 && len == 4) {
        return MECH_APOP;
    }
    if (PyOS_stricmp(text, "USER") == 0 && len == 4) {
        return MECH_USER;
    }
    PyErr_Format(PyExc_ValueError,
                 "unsupported mechanism %R: login() knows SCRAM-SHA-256, "
                 "SCRAM-SHA-1, CRAM-MD5, APOP, PLAIN, LOGIN, USER, "
                 "OAUTHBEARER and XOAUTH2; use auth() for others", name);
    return -1;
}

static int
sends_cleartext(int mech)
{
    return mech == SASL_PLAIN || mech == SASL_LOGIN || mech == MECH_USER
           || mech == SASL_XOAUTH2 || mech == SASL_OAUTHBEARER;
}

PyObject *
cpoplib_login_impl(POP3Object *self, PyObject *user, PyObject *password,
                   PyObject *mechanism, PyObject *token,
                   PyObject *allow_plaintext)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *secret = NULL, *res = NULL;
    int allow, encrypted, mech = -1, is_token_mech;
    long offered;

    if (!PyUnicode_Check(user)) {
        PyErr_Format(PyExc_TypeError, "user must be str, not %.100s",
                     Py_TYPE(user)->tp_name);
        return NULL;
    }
    if ((password == Py_None) == (token == Py_None)) {
        PyErr_SetString(PyExc_ValueError,
                        "login() needs either a password or a token "
                        "(not both)");
        return NULL;
    }
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
        mech = named_mechanism(mechanism);
        if (mech < 0) {
            return NULL;
        }
        is_token_mech = mech == SASL_XOAUTH2 || mech == SASL_OAUTHBEARER;
        if (is_token_mech != (token != Py_None)) {
            PyErr_Format(PyExc_ValueError, "mechanism %R needs %s",
                         mechanism, is_token_mech ? "token=" : "a password");
            return NULL;
        }
    }
    encrypted = is_encrypted(self, st);
    if (encrypted < 0) {
        return NULL;
    }
    if (mech < 0) {
        offered = offered_mechanisms(self, st);
        if (offered < 0) {
            return NULL;
        }
#define OFFERS(m) (offered & (1L << (m)))
        if (token != Py_None) {
            mech = OFFERS(SASL_OAUTHBEARER) ? SASL_OAUTHBEARER : SASL_XOAUTH2;
        }
        else if (OFFERS(SASL_SCRAM_SHA_256)) {
            mech = SASL_SCRAM_SHA_256;
        }
        else if (OFFERS(SASL_SCRAM_SHA_1)) {
            mech = SASL_SCRAM_SHA_1;
        }
        else if (OFFERS(SASL_CRAM_MD5)) {
            mech = SASL_CRAM_MD5;
        }
        else {
            int apop = apop_offered(self, st);
            if (apop < 0) {
                return NULL;
            }
            mech = apop ? MECH_APOP
                   : OFFERS(SASL_PLAIN) ? SASL_PLAIN
                   : OFFERS(SASL_LOGIN) ? SASL_LOGIN
                   : MECH_USER;
        }
#undef OFFERS
    }
    if (sends_cleartext(mech) && !encrypted && !allow) {
        PyObject *msg = PyUnicode_FromFormat(
            "-ERR login() refuses to send a %s in the clear with %s: the "
            "connection is not encrypted (use POP3_SSL or stls() first, "
            "or pass allow_plaintext=True)",
            token != Py_None ? "token" : "password",
            mech == MECH_USER ? "USER/PASS" : sasl_mech_name(mech));
        if (msg != NULL) {
            PyErr_SetObject(st->error_proto, msg);
            Py_DECREF(msg);
        }
        return NULL;
    }
    if (token != Py_None) {
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
    if (mech == MECH_APOP) {
        res = cpoplib_apop_impl(self, user, secret);
    }
    else if (mech == MECH_USER) {
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
