/* saslobj.c -- sasl.c's client mechanisms for Python code: what the
 * blocking login() (auth.c) and the asyncio client both need around
 * sasl.c -- credentials prepared (SASLprep for SCRAM, SCRAM_MAX_ITERATIONS
 * applied), the AUTH line with or without its initial response, server
 * challenges decoded, a step run without the GIL (SCRAM's key derivation
 * may take seconds) against a deadline and a stop flag, the errors of a
 * failed step, the mechanism login() picks from CAPA's SASL list -- and
 * the SASLClient type, which gives an asyncio client those steps one at
 * a time while it does the I/O (and runs the costly step in a thread
 * pool, so the event loop never waits for the derivation).
 *
 * Credentials copied into C memory are wiped by sasl.c; the bytes and str
 * objects made here from secrets are wiped with OPENSSL_cleanse when this
 * file owns the last reference.
 *
 * May call: args.c, errors.c, reader.c, sasl.c, settings.c.  Python code
 * it runs: cpoplib._saslprep for SCRAM credentials that are not plain
 * printable ASCII; signal handlers during a long step.
 */
#include "cpoplib.h"
#include "sasl.h"

#include <openssl/crypto.h>

/* The POP3 command line limit (RFC 5034 4: 255 octets with CRLF) past
 * which the initial response is sent after an empty challenge. */
#define AUTH_LINE_MAX 255

/* ---- wiping secrets ---- */

void
cpoplib_wipe_bytes(PyObject *obj)
{
    if (obj == NULL) {
        return;
    }
    if (PyBytes_CheckExact(obj) && Py_REFCNT(obj) == 1) {
        OPENSSL_cleanse(PyBytes_AS_STRING(obj), (size_t)PyBytes_GET_SIZE(obj));
    }
    Py_DECREF(obj);
}

PyObject *
cpoplib_b64_line(const char *prefix, const unsigned char *data, size_t len)
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

void
cpoplib_wipe_line(PyObject *line)
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

/* ---- errors ---- */

void
cpoplib_sasl_failure(cpoplib_state *st, int mech, const char *detail)
{
    PyObject *msg = PyUnicode_FromFormat("-ERR %s: %s",
                                         sasl_mech_name((sasl_mech)mech),
                                         detail);
    if (msg != NULL) {
        PyErr_SetObject(st->error_proto, msg);
        Py_DECREF(msg);
    }
}

void
cpoplib_sasl_local_error(cpoplib_state *st, int status, int mech,
                         const char *detail)
{
    if (status == SASL_ERR_NOMEM) {
        PyErr_NoMemory();
        return;
    }
    /* SASL_ERR_CRYPTO (e.g. MD5 refused by a FIPS provider) and
       SASL_ERR_INPUT (credentials the mechanism cannot carry) */
    PyErr_Format(PyExc_ValueError, "%s: %s", sasl_mech_name((sasl_mech)mech),
                 detail);
}

/* ---- credentials ---- */

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

sasl_client *
cpoplib_sasl_prepare(cpoplib_state *st, int mech, PyObject *user,
                     PyObject *secret)
{
    int scram = mech == SASL_SCRAM_SHA_1 || mech == SASL_SCRAM_SHA_256;
    int oauth = mech == SASL_XOAUTH2 || mech == SASL_OAUTHBEARER;
    PyObject *user8 = NULL, *secret8 = NULL;
    sasl_credentials cred;
    sasl_client *c = NULL;
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
    if (scram && cpoplib_scram_iteration_cap(st, &max_iterations) < 0) {
        goto done;
    }
    cred.user = PyBytes_AS_STRING(user8);
    cred.user_len = (size_t)PyBytes_GET_SIZE(user8);
    cred.secret = PyBytes_AS_STRING(secret8);
    cred.secret_len = (size_t)PyBytes_GET_SIZE(secret8);
    c = sasl_client_new((sasl_mech)mech, &cred, NULL, 0, &status, error,
                        sizeof(error));
    if (c == NULL) {
        cpoplib_sasl_local_error(st, status, mech, error);
        goto done;
    }
    if (scram) {
        sasl_client_set_max_iterations(c, max_iterations);
    }

done:
    Py_XDECREF(user8);
    cpoplib_wipe_bytes(secret8);
    return c;
}

/* ---- the AUTH line and the challenges ---- */

PyObject *
cpoplib_sasl_auth_line(cpoplib_state *st, int mech, sasl_client *c,
                       int *initial_pending)
{
    const unsigned char *out;
    size_t out_len;
    char prefix[64];
    const char *name = sasl_mech_name((sasl_mech)mech);
    int has_initial = sasl_client_initial(c, &out, &out_len);

    *initial_pending = 0;
    if (has_initial < 0) {
        cpoplib_sasl_local_error(st, SASL_ERR_NOMEM, mech,
                                 sasl_client_error(c));
        return NULL;
    }
    if (has_initial) {
        /* the AUTH line with its initial response, if it fits */
        snprintf(prefix, sizeof(prefix), "AUTH %s ", name);
        if (strlen(prefix) + SASL_B64_LEN(out_len) + 2 <= AUTH_LINE_MAX) {
            return out_len == 0 ? PyUnicode_FromFormat("%s=", prefix)
                                : cpoplib_b64_line(prefix, out, out_len);
        }
        *initial_pending = 1;
    }
    return PyUnicode_FromFormat("AUTH %s", name);
}

PyObject *
cpoplib_sasl_initial_line(cpoplib_state *st, int mech, sasl_client *c)
{
    const unsigned char *out;
    size_t out_len;

    if (sasl_client_initial(c, &out, &out_len) < 0) {
        cpoplib_sasl_local_error(st, SASL_ERR_NOMEM, mech,
                                 sasl_client_error(c));
        return NULL;
    }
    return cpoplib_b64_line("", out, out_len);
}

unsigned char *
cpoplib_sasl_challenge(cpoplib_state *st, int mech, PyObject *resp,
                       size_t *len)
{
    const char *data = PyBytes_AS_STRING(resp);
    Py_ssize_t n = PyBytes_GET_SIZE(resp), i = n > 0 ? 1 : 0;
    unsigned char *challenge;

    /* resp[1:].lstrip(b' ') */
    while (i < n && data[i] == ' ') {
        i++;
    }
    challenge = PyMem_Malloc((size_t)(n - i) / 4 * 3 + 3);
    if (challenge == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (sasl_b64_decode(data + i, (size_t)(n - i), challenge, len, 1) < 0) {
        PyMem_Free(challenge);
        cpoplib_sasl_failure(st, mech, "the server's challenge is not "
                             "base64");
        return NULL;
    }
    return challenge;
}

/* ---- running a step of sasl.c without the GIL ---- */

typedef struct {
    PyThreadState *tstate;
    double deadline;         /* 0: none */
    volatile int *stop;      /* may be NULL */
    unsigned calls;
    int expired;
} step_progress;

/* sasl.c's progress callback, called without the GIL every few thousand
 * PBKDF2 iterations: stop at the deadline or when asked to; every fifth
 * call take the GIL back for a moment so that signal handlers (Ctrl-C)
 * run. */
static int
step_progress_cb(void *arg)
{
    step_progress *p = arg;
    int rc = 0;

    if (p->stop != NULL && *p->stop) {
        return 1;
    }
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

int
cpoplib_sasl_step_nogil(sasl_client *c, double deadline, volatile int *stop,
                        const unsigned char *challenge, size_t len,
                        const unsigned char **out, size_t *out_len)
{
    step_progress p = {NULL, deadline, stop, 0, 0};
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
        PyErr_SetString(PyExc_RuntimeError, stop != NULL && *stop
                        ? "SASL step stopped" : "SASL step interrupted");
    }
    return (int)status;
}

/* ---- which mechanism login() uses ---- */

int
cpoplib_named_mechanism(PyObject *name)
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
        return CPOPLIB_MECH_APOP;
    }
    if (PyOS_stricmp(text, "USER") == 0 && len == 4) {
        return CPOPLIB_MECH_USER;
    }
    PyErr_Format(PyExc_ValueError,
                 "unsupported mechanism %R: login() knows SCRAM-SHA-256, "
                 "SCRAM-SHA-1, CRAM-MD5, APOP, PLAIN, LOGIN, USER, "
                 "OAUTHBEARER, XOAUTH2 and EXTERNAL; use auth() for others",
                 name);
    return -1;
}

const char *
cpoplib_mechanism_name(int mech)
{
    return mech == CPOPLIB_MECH_USER ? "USER"
           : mech == CPOPLIB_MECH_APOP ? "APOP"
           : sasl_mech_name((sasl_mech)mech);
}

long
cpoplib_mechanism_mask(PyObject *list)
{
    Py_ssize_t n = PySequence_Length(list);
    long mask = 0;

    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_GetItem(list, i);
        const char *name;
        Py_ssize_t len;
        int m;

        if (item == NULL) {
            return -1;
        }
        if (PyUnicode_Check(item)) {
            name = PyUnicode_AsUTF8AndSize(item, &len);
            if (name == NULL) {
                Py_DECREF(item);
                return -1;
            }
            m = sasl_mech_from_name(name, (size_t)len);
            if (m >= 0) {
                mask |= 1L << m;
            }
        }
        Py_DECREF(item);
    }
    return n < 0 ? -1 : mask;
}

#define OFFERS(m) (offered & (1L << (m)))

int
cpoplib_pick_mechanism(long offered, int token)
{
    if (token) {
        return OFFERS(SASL_OAUTHBEARER) ? SASL_OAUTHBEARER : SASL_XOAUTH2;
    }
    if (OFFERS(SASL_SCRAM_SHA_256)) {
        return SASL_SCRAM_SHA_256;
    }
    if (OFFERS(SASL_SCRAM_SHA_1)) {
        return SASL_SCRAM_SHA_1;
    }
    if (OFFERS(SASL_CRAM_MD5)) {
        return SASL_CRAM_MD5;
    }
    return -1;                   /* APOP if the greeting allows it */
}

int
cpoplib_pick_without_apop(long offered)
{
    return OFFERS(SASL_PLAIN) ? SASL_PLAIN
           : OFFERS(SASL_LOGIN) ? SASL_LOGIN
           : CPOPLIB_MECH_USER;
}

int
cpoplib_pick_without_secret(long offered, int encrypted)
{
    /* a client certificate can only have been presented over TLS; the
       ssl module does not say whether one was, so the server's offer
       decides (it refuses EXTERNAL without a valid certificate) */
    return encrypted && OFFERS(SASL_EXTERNAL) ? SASL_EXTERNAL : -1;
}

#undef OFFERS

int
cpoplib_refuse_cleartext(cpoplib_state *st, int mech, int token,
                         int encrypted, int allow)
{
    int cleartext = mech == SASL_PLAIN || mech == SASL_LOGIN
                    || mech == CPOPLIB_MECH_USER || mech == SASL_XOAUTH2
                    || mech == SASL_OAUTHBEARER;
    PyObject *msg;

    if (!cleartext || encrypted || allow) {
        return 0;
    }
    msg = PyUnicode_FromFormat(
        "-ERR login() refuses to send a %s in the clear with %s: the "
        "connection is not encrypted (use POP3_SSL or stls() first, or "
        "pass allow_plaintext=True)", token ? "token" : "password",
        mech == CPOPLIB_MECH_USER ? "USER/PASS" : cpoplib_mechanism_name(mech));
    if (msg != NULL) {
        PyErr_SetObject(st->error_proto, msg);
        Py_DECREF(msg);
    }
    return -1;
}

/* ---- the exchange, one server reply at a time ---- */

/* `exc` (may be NULL) is error_proto for a reply whose line starts with
 * "-ERR": the server ended the exchange and the session goes on. */
int
cpoplib_is_err_line(cpoplib_state *st, PyObject *exc)
{
    PyObject *line;

    if (!cpoplib_is_err_reply(st, exc)) {
        return 0;
    }
    line = PyTuple_GET_ITEM(((PyBaseExceptionObject *)exc)->args, 0);
    return PyBytes_GET_SIZE(line) >= 4
           && memcmp(PyBytes_AS_STRING(line), "-ERR", 4) == 0;
}

void
cpoplib_sasl_exchange_init(cpoplib_sasl_run *ex, sasl_client *c,
                           int mech)
{
    memset(ex, 0, sizeof(*ex));
    ex->c = c;
    ex->mech = mech;
}

void
cpoplib_sasl_exchange_clear(cpoplib_sasl_run *ex)
{
    if (ex->challenge != NULL) {
        OPENSSL_cleanse(ex->challenge, ex->challenge_len);
        PyMem_Free(ex->challenge);
        ex->challenge = NULL;
    }
    sasl_client_free(ex->c);
    ex->c = NULL;
}

PyObject *
cpoplib_sasl_begin(cpoplib_state *st, cpoplib_sasl_run *ex)
{
    return cpoplib_sasl_auth_line(st, ex->mech, ex->c, &ex->initial_pending);
}

void
cpoplib_sasl_refused(cpoplib_state *st, cpoplib_sasl_run *ex,
                     int *after)
{
    PyObject *exc = cpoplib_fetch_exception();

    *after = cpoplib_is_err_line(st, exc) ? CPOPLIB_AFTER_IN_STEP
                                          : CPOPLIB_AFTER_CLOSE;
    cpoplib_restore_exception(exc);
    if (ex->failed && *after == CPOPLIB_AFTER_IN_STEP) {
        /* the -ERR that follows a reported failure: raise the server's
           reason instead, with the -ERR as context */
        PyObject *context = cpoplib_fetch_exception();
        cpoplib_sasl_failure(st, ex->mech, sasl_client_error(ex->c));
        cpoplib_chain_context(context);
    }
}

int
cpoplib_sasl_feed(cpoplib_state *st, cpoplib_sasl_run *ex,
                  PyObject *raw, PyObject **line, int *after)
{
    *line = NULL;
    *after = CPOPLIB_AFTER_CLOSE;
    if (PyBytes_GET_SIZE(raw) >= 3
        && memcmp(PyBytes_AS_STRING(raw), "+OK", 3) == 0) {
        if (!ex->failed && sasl_client_complete(ex->c)) {
            return CPOPLIB_SASL_DONE;
        }
        cpoplib_sasl_failure(st, ex->mech, ex->failed
            ? "the server accepted a login it had just refused; "
              "connection closed"
            : "the server accepted the login without proving it "
              "knows the password; connection closed");
        return -1;
    }
    *after = CPOPLIB_AFTER_CANCEL;
    if (ex->failed) {
        cpoplib_sasl_failure(st, ex->mech, sasl_client_error(ex->c));
        return -1;
    }
    if (ex->challenge != NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a SASL challenge is waiting for its step");
        return -1;
    }
    ex->challenge = cpoplib_sasl_challenge(st, ex->mech, raw,
                                           &ex->challenge_len);
    if (ex->challenge == NULL) {
        return -1;
    }
    if (ex->initial_pending) {
        ex->initial_pending = 0;
        PyMem_Free(ex->challenge);
        ex->challenge = NULL;
        if (ex->challenge_len != 0) {
            cpoplib_sasl_failure(st, ex->mech, "expected an empty challenge "
                                 "before the initial response");
            return -1;
        }
        /* the initial response again: what sasl.c gave may have moved */
        *line = cpoplib_sasl_initial_line(st, ex->mech, ex->c);
        return *line == NULL ? -1 : CPOPLIB_SASL_SEND;
    }
    *after = CPOPLIB_AFTER_CLOSE;
    return CPOPLIB_SASL_STEP;
}

int
cpoplib_sasl_step(cpoplib_state *st, cpoplib_sasl_run *ex,
                  double deadline, volatile int *stop, PyObject **line,
                  int *after)
{
    const unsigned char *out;
    size_t out_len;
    int status;

    *line = NULL;
    *after = CPOPLIB_AFTER_CANCEL;
    if (ex->challenge == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no SASL challenge to answer");
        return -1;
    }
    status = cpoplib_sasl_step_nogil(ex->c, deadline, stop, ex->challenge,
                                     ex->challenge_len, &out, &out_len);
    OPENSSL_cleanse(ex->challenge, ex->challenge_len);
    PyMem_Free(ex->challenge);
    ex->challenge = NULL;
    switch (status) {
    case SASL_FAILED_RESPOND:      /* send the response the RFC asks */
    case SASL_CONTINUE:
        ex->failed = status == SASL_FAILED_RESPOND;
        *after = CPOPLIB_AFTER_CLOSE;
        *line = cpoplib_b64_line("", out, out_len);
        return *line == NULL ? -1 : CPOPLIB_SASL_SEND;
    case SASL_FAILED_CANCEL:
        cpoplib_sasl_failure(st, ex->mech, sasl_client_error(ex->c));
        return -1;
    case SASL_FAILED_UNTRUSTED:
        *after = CPOPLIB_AFTER_CLOSE;
        cpoplib_sasl_failure(st, ex->mech, sasl_client_error(ex->c));
        return -1;
    case SASL_ERR_INTERRUPTED:     /* deadline, stop or signal: set */
        *after = CPOPLIB_AFTER_CLOSE;
        return -1;
    default:
        cpoplib_sasl_local_error(st, status, ex->mech,
                                 sasl_client_error(ex->c));
        return -1;
    }
}

/* ---- SASLClient: the exchange for a caller that does its own I/O ---- */

typedef struct {
    PyObject_HEAD
    PyObject *module;
    cpoplib_sasl_run ex;
    volatile int stop;
    int busy;                    /* a step runs (in another thread) */
} SASLObject;

static const char *const after_names[] = {"in-step", "cancel", "close"};

/* The pending exception gets the attribute after = what the connection
 * must do next ("in-step", "cancel": send "*" and read the -ERR,
 * "close"). */
static PyObject *
sasl_fail(int after)
{
    PyObject *exc = cpoplib_fetch_exception(), *name;

    name = PyUnicode_InternFromString(after_names[after]);
    if (name == NULL || PyObject_SetAttrString(exc, "after", name) < 0) {
        Py_XDECREF(name);
        cpoplib_chain_context(exc);
        return NULL;
    }
    Py_DECREF(name);
    cpoplib_restore_exception(exc);
    return NULL;
}

static int
sasl_check_idle(SASLObject *self)
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a step of this SASL exchange is running");
        return -1;
    }
    if (self->ex.c == NULL) {
        PyErr_SetString(PyExc_ValueError, "the SASL exchange is closed");
        return -1;
    }
    return 0;
}

static PyObject *
sasl_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static const char *const names[] = {"mechanism", "user", "secret", NULL};
    static const cpoplib_argspec spec = {"SASLClient", names, 0, 3, 3};
    PyObject *argv[3];
    SASLObject *self;
    cpoplib_state *st = PyType_GetModuleState(type);
    sasl_client *c;
    int mech;

    if (cpoplib_parse_tuple(&spec, args, kwargs, argv) < 0) {
        return NULL;
    }
    mech = cpoplib_named_mechanism(argv[0]);
    if (mech < 0) {
        return NULL;
    }
    if (mech >= SASL_MECH_COUNT) {
        PyErr_Format(PyExc_ValueError, "%R is no SASL mechanism", argv[0]);
        return NULL;
    }
    c = cpoplib_sasl_prepare(st, mech, argv[1], argv[2]);
    if (c == NULL) {
        return NULL;
    }
    self = (SASLObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        sasl_client_free(c);
        return NULL;
    }
    self->module = Py_NewRef(PyType_GetModule(type));
    cpoplib_sasl_exchange_init(&self->ex, c, mech);
    return (PyObject *)self;
}

PyDoc_STRVAR(sasl_begin_doc,
"begin($self, /)\n--\n\n"
"The AUTH line (str): with the initial response when it fits in 255\n"
"octets, else without it (it follows the server's empty challenge).");

static PyObject *
sasl_begin(SASLObject *self, PyObject *Py_UNUSED(ignored))
{
    if (sasl_check_idle(self) < 0) {
        return NULL;
    }
    return cpoplib_sasl_begin(PyModule_GetState(self->module), &self->ex);
}

PyDoc_STRVAR(sasl_feed_doc,
"feed($self, reply, /)\n--\n\n"
"Take the server's reply (bytes, starting with '+'): ('send', line) for\n"
"the line to send next, ('step', None) when step() must compute it, or\n"
"('done', None) for the +OK that ends the exchange.  A failure raises\n"
"error_proto with `after` set to 'cancel' (send '*', read the -ERR) or\n"
"'close'.");

static PyObject *
sasl_feed(SASLObject *self, PyObject *raw)
{
    static const char *const kinds[] = {"send", "step", "done"};
    cpoplib_state *st = PyModule_GetState(self->module);
    PyObject *line, *res;
    int after, rc;

    if (sasl_check_idle(self) < 0) {
        return NULL;
    }
    if (!PyBytes_Check(raw)) {
        PyErr_Format(PyExc_TypeError, "reply must be bytes, not %.100s",
                     Py_TYPE(raw)->tp_name);
        return NULL;
    }
    rc = cpoplib_sasl_feed(st, &self->ex, raw, &line, &after);
    if (rc < 0) {
        return sasl_fail(after);
    }
    res = Py_BuildValue("(sO)", kinds[rc], line != NULL ? line : Py_None);
    cpoplib_wipe_line(line);
    return res;
}

PyDoc_STRVAR(sasl_step_doc,
"step($self, /, timeout=None)\n--\n\n"
"Answer the challenge feed() took, with the GIL released (run it in a\n"
"thread pool: SCRAM's key derivation may take seconds): the line to\n"
"send (str).  TimeoutError after timeout seconds; stop() from another\n"
"thread ends it early.  Failures raise with `after` set as feed() does.");

static PyObject *
sasl_step(SASLObject *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"timeout", NULL};
    static const cpoplib_argspec spec = {"step", names, 0, 0, 1};
    cpoplib_state *st = PyModule_GetState(self->module);
    PyObject *timeout, *line;
    double deadline = 0.0;
    int after, rc;

    if (cpoplib_parse_args(&spec, args, nargs, kwnames, &timeout) < 0
        || sasl_check_idle(self) < 0) {
        return NULL;
    }
    if (timeout != NULL && timeout != Py_None) {
        double seconds = PyFloat_AsDouble(timeout);
        if (seconds == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        deadline = cpoplib_monotonic() + (seconds > 1e-9 ? seconds : 1e-9);
    }
    Py_INCREF(self);
    self->busy = 1;
    rc = cpoplib_sasl_step(st, &self->ex, deadline, &self->stop, &line,
                           &after);
    self->busy = 0;
    Py_DECREF(self);
    if (rc < 0) {
        return sasl_fail(after);
    }
    return line;
}

PyDoc_STRVAR(sasl_refused_doc,
"refused($self, error, /)\n--\n\n"
"The exception reading the server's reply raised: (exception to raise,\n"
"after), after being 'in-step' for a -ERR line, else 'close'.");

static PyObject *
sasl_refused(SASLObject *self, PyObject *exc)
{
    cpoplib_state *st = PyModule_GetState(self->module);
    PyObject *raised;
    int after;

    if (!PyExceptionInstance_Check(exc)) {
        PyErr_SetString(PyExc_TypeError, "refused() takes an exception");
        return NULL;
    }
    if (sasl_check_idle(self) < 0) {
        return NULL;
    }
    cpoplib_restore_exception(Py_NewRef(exc));
    cpoplib_sasl_refused(st, &self->ex, &after);
    raised = cpoplib_fetch_exception();
    return Py_BuildValue("(Ns)", raised, after_names[after]);
}

PyDoc_STRVAR(sasl_stop_doc,
"stop($self, /)\n--\n\n"
"Ask a running step() to end (it raises RuntimeError); any thread.");

static PyObject *
sasl_stop(SASLObject *self, PyObject *Py_UNUSED(ignored))
{
    self->stop = 1;
    Py_RETURN_NONE;
}

static PyObject *
sasl_get_complete(SASLObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->ex.c != NULL
                           && sasl_client_complete(self->ex.c));
}

static PyObject *
sasl_get_mechanism(SASLObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(cpoplib_mechanism_name(self->ex.mech));
}

PyDoc_STRVAR(sasl_pick_doc,
"pick(mechanisms, token, apop, /)\n--\n\n"
"The mechanism login() uses (str) when the server's CAPA lists these\n"
"SASL mechanisms (a list of str, or None), with a token or a password,\n"
"and whether the greeting allows APOP.");

static PyObject *
sasl_pick(PyObject *Py_UNUSED(cls), PyObject *const *args, Py_ssize_t nargs)
{
    long offered = 0;
    int token, apop, mech;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "pick() takes 3 arguments");
        return NULL;
    }
    if (args[0] != Py_None) {
        offered = cpoplib_mechanism_mask(args[0]);
        if (offered < 0) {
            return NULL;
        }
    }
    token = PyObject_IsTrue(args[1]);
    apop = token < 0 ? -1 : PyObject_IsTrue(args[2]);
    if (apop < 0) {
        return NULL;
    }
    mech = cpoplib_pick_mechanism(offered, token);
    if (mech < 0) {
        mech = apop ? CPOPLIB_MECH_APOP : cpoplib_pick_without_apop(offered);
    }
    return PyUnicode_FromString(cpoplib_mechanism_name(mech));
}

PyDoc_STRVAR(sasl_check_doc,
"check(mechanism, token, encrypted, allow_plaintext, /)\n--\n\n"
"The mechanism (str) login() would use with these arguments, as the\n"
"name sasl.c knows it; error_proto if it would send a password or\n"
"token in the clear on an unencrypted connection without\n"
"allow_plaintext, ValueError for a mechanism login() does not know or\n"
"one that does not go with a token (or a password).");

static PyObject *
sasl_check(PyObject *cls, PyObject *const *args, Py_ssize_t nargs)
{
    cpoplib_state *st = PyType_GetModuleState((PyTypeObject *)cls);
    int mech, token, encrypted, allow, token_mech;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "check() takes 4 arguments");
        return NULL;
    }
    mech = cpoplib_named_mechanism(args[0]);
    token = mech < 0 ? -1 : PyObject_IsTrue(args[1]);
    encrypted = token < 0 ? -1 : PyObject_IsTrue(args[2]);
    allow = encrypted < 0 ? -1 : PyObject_IsTrue(args[3]);
    if (allow < 0) {
        return NULL;
    }
    token_mech = mech == SASL_XOAUTH2 || mech == SASL_OAUTHBEARER;
    if (token_mech != token) {
        PyErr_Format(PyExc_ValueError, "mechanism %R needs %s", args[0],
                     token_mech ? "token=" : "a password");
        return NULL;
    }
    if (cpoplib_refuse_cleartext(st, mech, token, encrypted, allow) < 0) {
        return NULL;
    }
    return PyUnicode_FromString(cpoplib_mechanism_name(mech));
}

static int
sasl_traverse(SASLObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->module);
    return 0;
}

static void
sasl_dealloc(SASLObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    cpoplib_sasl_exchange_clear(&self->ex);
    Py_CLEAR(self->module);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef sasl_methods[] = {
    {"begin", (PyCFunction)sasl_begin, METH_NOARGS, sasl_begin_doc},
    {"feed", (PyCFunction)sasl_feed, METH_O, sasl_feed_doc},
    {"step", (PyCFunction)(void (*)(void))sasl_step,
     METH_FASTCALL | METH_KEYWORDS, sasl_step_doc},
    {"refused", (PyCFunction)sasl_refused, METH_O, sasl_refused_doc},
    {"stop", (PyCFunction)sasl_stop, METH_NOARGS, sasl_stop_doc},
    {"pick", (PyCFunction)(void (*)(void))sasl_pick,
     METH_FASTCALL | METH_STATIC, sasl_pick_doc},
    {"check", (PyCFunction)(void (*)(void))sasl_check,
     METH_FASTCALL | METH_CLASS, sasl_check_doc},
    {NULL, NULL}
};

static PyGetSetDef sasl_getset[] = {
    {"complete", (getter)sasl_get_complete, NULL,
     "True once a success reply can be trusted (SCRAM: the server\n"
     "proved it knows the password).", NULL},
    {"mechanism", (getter)sasl_get_mechanism, NULL,
     "The mechanism's IANA name.", NULL},
    {NULL}
};

PyDoc_STRVAR(sasl_doc,
"SASLClient(mechanism, user, secret)\n--\n\n"
"One exchange of a built-in SASL mechanism (login()'s), for a caller\n"
"that does the I/O: begin() gives the AUTH line, feed() takes each\n"
"server reply, step() computes an answer without the GIL.  SCRAM\n"
"credentials are SASLprep'ed and SCRAM_MAX_ITERATIONS applies.");

static PyType_Slot sasl_slots[] = {
    {Py_tp_doc, (void *)sasl_doc},
    {Py_tp_new, sasl_new},
    {Py_tp_dealloc, sasl_dealloc},
    {Py_tp_traverse, sasl_traverse},
    {Py_tp_methods, sasl_methods},
    {Py_tp_getset, sasl_getset},
    {0, NULL}
};

PyType_Spec cpoplib_sasl_client_spec = {
    .name = "cpoplib._cpoplib.SASLClient",
    .basicsize = sizeof(SASLObject),
    .flags = (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
              | Py_TPFLAGS_IMMUTABLETYPE),
    .slots = sasl_slots,
};
