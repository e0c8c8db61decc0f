/* commands.c -- the POP3 commands of the POP3 type.
 *
 * What the methods a user calls do (user, pass_, stat, list, retr, top,
 * uidl, apop, capa, stls, quit, ...) once methods.c has parsed their
 * arguments and claimed the connection: each builds its command line as
 * poplib does and goes through the hooks (_shortcmd, _longcmd, capa,
 * close; protocol.c), so overrides in subclasses take effect.
 *
 * May call: protocol.c (hooks, cpoplib_run_command), connection.c (TLS
 * set-up, the file of a socket), the reader's discard, the APOP digest.
 * Runs Python code throughout.
 */
#include "connection.h"

/* ---- CAPA, STAT, APOP, STLS ---- */

/* One capability line into caps: caps[name] = [args...], as poplib's
 * `capa()` splits it.  Runs Python code (decode, split). */
static int
add_capability(cpoplib_state *st, PyObject *caps, PyObject *capline)
{
    PyObject *text = NULL, *words = NULL, *name = NULL, *args = NULL;
    int rc = -1;

    text = PyObject_CallMethodOneArg(capline, st->str_decode, st->str_ascii);
    if (text == NULL) {
        goto done;
    }
    words = PyObject_CallMethodNoArgs(text, st->str_split);
    if (words == NULL) {
        goto done;
    }
    name = PySequence_GetItem(words, 0);
    if (name == NULL) {
        goto done;
    }
    args = PySequence_GetSlice(words, 1, PY_SSIZE_T_MAX);
    if (args == NULL) {
        goto done;
    }
    rc = PyObject_SetItem(caps, name, args);

done:
    Py_XDECREF(text);
    Py_XDECREF(words);
    Py_XDECREF(name);
    Py_XDECREF(args);
    return rc;
}

PyObject *
cpoplib_capa_impl(POP3Object *self, cpoplib_state *st)
{
    PyObject *caps = NULL, *resp = NULL, *rawcaps = NULL;
    PyObject *it = NULL, *capline = NULL;

    caps = PyDict_New();
    if (caps == NULL) {
        return NULL;
    }
    resp = cpoplib_run_command(self, PyUnicode_FromString("CAPA"), 1);
    if (resp == NULL) {
        goto error;
    }
    rawcaps = PySequence_GetItem(resp, 1);
    if (rawcaps == NULL) {
        goto error;
    }
    it = PyObject_GetIter(rawcaps);
    if (it == NULL) {
        goto error;
    }
    while ((capline = PyIter_Next(it)) != NULL) {
        int rc = add_capability(st, caps, capline);
        Py_DECREF(capline);
        if (rc < 0) {
            goto error;
        }
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(it);
    Py_DECREF(rawcaps);
    Py_DECREF(resp);
    return caps;

error:
    if (PyErr_ExceptionMatches(st->error_proto)) {
        cpoplib_replace_error(st, "-ERR CAPA not supported by server");
    }
    Py_XDECREF(it);
    Py_XDECREF(rawcaps);
    Py_XDECREF(resp);
    Py_DECREF(caps);
    return NULL;
}

PyObject *
cpoplib_stat(POP3Object *self)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *resp, *fields = NULL, *count = NULL, *size = NULL;
    PyObject *result = NULL;
    Py_ssize_t n;
    int on;

    resp = cpoplib_run_command(self, PyUnicode_FromString("STAT"), 0);
    if (resp == NULL) {
        return NULL;
    }
    fields = PyObject_CallMethodNoArgs(resp, st->str_split);
    if (fields == NULL) {
        goto done;
    }
    on = cpoplib_debugging(self, st, 0);
    if (on < 0) {
        goto done;
    }
    if (on && cpoplib_debug_print("*stat*", fields) < 0) {
        goto done;
    }
    /* As CPython main validates it: error_proto, never IndexError or
       ValueError, for a malformed +OK reply. */
    n = PyObject_Length(fields);
    if (n < 0) {
        goto done;
    }
    if (n < 3) {
        cpoplib_error(st, "Invalid STAT response format");
        goto done;
    }
    for (Py_ssize_t i = 1; i <= 2; i++) {
        PyObject *field = PySequence_GetItem(fields, i);
        PyObject *value = field ? PyNumber_Long(field) : NULL;
        Py_XDECREF(field);
        if (value == NULL) {
            if (field != NULL && PyErr_ExceptionMatches(PyExc_ValueError)) {
                cpoplib_replace_error(st, "Invalid STAT response data: "
                                  "non-numeric values");
            }
            goto done;
        }
        if (i == 1) {
            count = value;
        }
        else {
            size = value;
        }
    }
    result = PyTuple_Pack(2, count, size);

done:
    Py_DECREF(resp);
    Py_XDECREF(fields);
    Py_XDECREF(count);
    Py_XDECREF(size);
    return result;
}

/* MD5 of timestamp + secret, as 32 hex digits (a str) */
static PyObject *
apop_digest(POP3Object *self, cpoplib_state *st, PyObject *secret)
{
    PyObject *welcome = NULL, *pattern = NULL, *joined = NULL;
    PyObject *result = NULL;
    char hex[33];

    welcome = PyObject_GetAttr((PyObject *)self, st->str_welcome);
    if (welcome == NULL) {
        goto done;
    }
    pattern = PyObject_GetAttr((PyObject *)self, st->str_timestamp);
    if (pattern == NULL) {
        goto done;
    }
    if (pattern == st->timestamp_re && PyBytes_Check(welcome)
        && PyBytes_Check(secret)) {
        /* the default pattern, matched in C in linear time */
        size_t start, len;
        if (!pop3_apop_timestamp(PyBytes_AS_STRING(welcome),
                                 (size_t)PyBytes_GET_SIZE(welcome),
                                 &start, &len)) {
            cpoplib_error(st, "-ERR APOP not supported by server");
            goto done;
        }
        Py_ssize_t slen = PyBytes_GET_SIZE(secret);
        joined = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len + slen);
        if (joined == NULL) {
            goto done;
        }
        memcpy(PyBytes_AS_STRING(joined),
               PyBytes_AS_STRING(welcome) + start, len);
        memcpy(PyBytes_AS_STRING(joined) + len, PyBytes_AS_STRING(secret),
               (size_t)slen);
    }
    else {
        /* a subclass's own pattern: use it as poplib would */
        PyObject *match = PyObject_CallMethodOneArg(pattern, st->str_match,
                                                    welcome);
        if (match == NULL) {
            goto done;
        }
        int found = PyObject_IsTrue(match);
        if (found <= 0) {
            Py_DECREF(match);
            if (found == 0) {
                cpoplib_error(st, "-ERR APOP not supported by server");
            }
            goto done;
        }
        PyObject *one = PyLong_FromLong(1);
        if (one == NULL) {
            Py_DECREF(match);
            goto done;
        }
        PyObject *group = PyObject_CallMethodOneArg(match, st->str_group, one);
        Py_DECREF(one);
        Py_DECREF(match);
        if (group == NULL) {
            goto done;
        }
        joined = PyNumber_Add(group, secret);
        Py_DECREF(group);
        if (joined == NULL) {
            goto done;
        }
    }
    Py_buffer view;
    if (PyObject_GetBuffer(joined, &view, PyBUF_SIMPLE) < 0) {
        goto done;
    }
    int rc = cpoplib_md5_hex(view.buf, (size_t)view.len, hex);
    PyBuffer_Release(&view);
    if (rc == 0) {
        result = PyUnicode_FromStringAndSize(hex, 32);
    }

done:
    Py_XDECREF(welcome);
    Py_XDECREF(pattern);
    Py_XDECREF(joined);
    return result;
}

/* poplib's apop(user, password) */
PyObject *
cpoplib_apop(POP3Object *self, PyObject *user, PyObject *password)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *encoding, *secret, *digest, *args, *line;

    encoding = PyObject_GetAttr((PyObject *)self, st->str_encoding);
    if (encoding == NULL) {
        return NULL;
    }
    secret = cpoplib_encode_text(password, encoding);
    Py_DECREF(encoding);
    if (secret == NULL) {
        return NULL;
    }
    digest = apop_digest(self, st, secret);
    Py_DECREF(secret);
    if (digest == NULL) {
        return NULL;
    }
    args = PyTuple_Pack(2, user, digest);
    Py_DECREF(digest);
    if (args == NULL) {
        return NULL;
    }
    line = cpoplib_format_command("APOP %s %s", args);
    Py_DECREF(args);
    return cpoplib_run_command(self, line, 0);
}

/* The reader of self.file, if it is ours: its read-ahead came in the
 * clear and must never pass for TLS data (the CVE-2021-22947 class of
 * bugs), so it is dropped.  poplib never reads self.file here: only its
 * absence is fine. */
static int
discard_cleartext(POP3Object *self, cpoplib_state *st)
{
    PyObject *file = PyObject_GetAttr((PyObject *)self, st->str_file);
    int rc;

    if (file == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -1;
        }
        PyErr_Clear();
        return 0;
    }
    rc = cpoplib_is_reader(st, file)
         ? cpoplib_reader_discard((ReaderObject *)file) : 0;
    Py_DECREF(file);
    return rc;
}

/* poplib's stls(context=None) */
PyObject *
cpoplib_stls(POP3Object *self, PyObject *context_arg)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *flag, *caps = NULL, *context = NULL, *resp = NULL;
    PyObject *sock = NULL, *host = NULL, *tls = NULL, *file = NULL;
    PyObject *result = NULL;
    int truth;

    if (st->ssl_module == NULL) {
        cpoplib_error(st, "-ERR TLS support missing");
        return NULL;
    }
    flag = PyObject_GetAttr((PyObject *)self, st->str_tls_established);
    if (flag == NULL) {
        return NULL;
    }
    truth = PyObject_IsTrue(flag);
    Py_DECREF(flag);
    if (truth < 0) {
        return NULL;
    }
    if (truth) {
        cpoplib_error(st, "-ERR TLS session already established");
        return NULL;
    }
    caps = cpoplib_capa(self, st);
    if (caps == NULL) {
        return NULL;
    }
    truth = PySequence_Contains(caps, st->str_stls_cap);
    if (truth <= 0) {
        if (truth == 0) {
            cpoplib_error(st, "-ERR STLS not supported by server");
        }
        goto done;
    }
    if (context_arg == NULL || context_arg == Py_None) {
        context = cpoplib_create_stdlib_context(st, NULL);
    }
    else {
        context = Py_NewRef(context_arg);
    }
    if (context == NULL) {
        goto done;
    }
    resp = cpoplib_run_command(self, PyUnicode_FromString("STLS"), 0);
    if (resp == NULL) {
        goto done;
    }
    if (discard_cleartext(self, st) < 0) {
        goto done;
    }
    sock = PyObject_GetAttr((PyObject *)self, st->str_sock);
    if (sock == NULL) {
        goto done;
    }
    host = PyObject_GetAttr((PyObject *)self, st->str_host);
    if (host == NULL) {
        goto done;
    }
    tls = cpoplib_wrap_socket(st, context, sock, host);
    if (tls == NULL
        || PyObject_SetAttr((PyObject *)self, st->str_sock, tls) < 0) {
        goto done;
    }
    Py_SETREF(tls, PyObject_GetAttr((PyObject *)self, st->str_sock));
    if (tls == NULL) {
        goto done;
    }
    file = cpoplib_make_file(st, tls);
    if (file == NULL
        || PyObject_SetAttr((PyObject *)self, st->str_file, file) < 0
        || PyObject_SetAttr((PyObject *)self, st->str_tls_established,
                            Py_True) < 0) {
        goto done;
    }
    self->pipelining = -1;      /* capabilities may change under TLS */
    result = Py_NewRef(resp);

done:
    Py_XDECREF(caps);
    Py_XDECREF(context);
    Py_XDECREF(resp);
    Py_XDECREF(sock);
    Py_XDECREF(host);
    Py_XDECREF(tls);
    Py_XDECREF(file);
    return result;
}

/* ---- the other commands ---- */

PyObject *
cpoplib_command1(POP3Object *self, const char *fmt, PyObject *arg,
                 int longcmd)
{
    return cpoplib_run_command(self, cpoplib_format_command(fmt, arg),
                               longcmd);
}

/* LIST [which] / UIDL [which]: a short response with an argument, a
 * multi-line one without. */
PyObject *
cpoplib_listing(POP3Object *self, const char *bare, const char *fmt,
                PyObject *which)
{
    if (which != NULL && which != Py_None) {
        return cpoplib_command1(self, fmt, which, 0);
    }
    return cpoplib_run_command(self, PyUnicode_FromString(bare), 1);
}

PyObject *
cpoplib_top(POP3Object *self, PyObject *which, PyObject *howmuch)
{
    PyObject *args = PyTuple_Pack(2, which, howmuch), *line;

    if (args == NULL) {
        return NULL;
    }
    line = cpoplib_format_command("TOP %s %s", args);
    Py_DECREF(args);
    return cpoplib_run_command(self, line, 1);
}

/* poplib's quit(): QUIT, then self.close() */
PyObject *
cpoplib_quit(POP3Object *self)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *resp, *res;

    resp = cpoplib_run_command(self, PyUnicode_FromString("QUIT"), 0);
    if (resp == NULL) {
        return NULL;
    }
    res = cpoplib_close(self, st);
    if (res == NULL) {
        Py_DECREF(resp);
        return NULL;
    }
    Py_DECREF(res);
    return resp;
}
