/* commands.c -- the POP3 commands of the POP3 type and capa().
 *
 * What the methods a user calls do (user, pass_, stat, list, retr, top,
 * uidl, apop, capa, quit, ...) once methods.c has parsed their arguments
 * and claimed the connection: each builds its command line as poplib does
 * and goes through the hooks (_shortcmd, _longcmd, close; protocol.c), so
 * overrides in subclasses take effect.  capa() is itself a hook (stls()
 * and login() call it through self), so its dispatcher is here too.  The
 * APOP digest is MD5 from OpenSSL's libcrypto.
 *
 * May call: errors.c, pop3_parser.c, protocol.c.  Runs Python code
 * throughout.
 */
#include "connection.h"

#include <openssl/err.h>
#include <openssl/evp.h>

/* ---- CAPA, STAT, APOP ---- */

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

/* self.capa() */
PyObject *
cpoplib_capa(POP3Object *self, cpoplib_state *st)
{
    int is_default = cpoplib_hook_is_default(self, st, HOOK_CAPA);

    if (is_default < 0) {
        return NULL;
    }
    if (!is_default) {
        return cpoplib_call_hook(self, st, HOOK_CAPA, NULL);
    }
    return cpoplib_capa_impl(self, st);
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
    resp = cpoplib_run_command(self, st->cmd_capa, 1);
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
cpoplib_stat_impl(POP3Object *self)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *resp, *fields = NULL, *count = NULL, *size = NULL;
    PyObject *result = NULL;
    Py_ssize_t n;
    int on;

    resp = cpoplib_run_command(self, st->cmd_stat, 0);
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
    if (on && cpoplib_debug_print(st, "*stat*", fields) < 0) {
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

/* MD5 of data as 32 lowercase hex digits plus NUL, with OpenSSL's EVP
 * API.  Returns 0, or -1 with an exception set. */
static int
md5_hex(const char *data, size_t len, char out[33])
{
    static const char hexdigits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!EVP_Digest(data, len, md, &mdlen, EVP_md5(), NULL) || mdlen != 16) {
        unsigned long code = ERR_get_error();
        char reason[256] = "MD5 digest failed";
        if (code != 0) {
            ERR_error_string_n(code, reason, sizeof(reason));
        }
        ERR_clear_error();
        PyErr_Format(PyExc_ValueError, "APOP needs MD5: %s", reason);
        return -1;
    }
    for (unsigned int i = 0; i < mdlen; i++) {
        out[2 * i] = hexdigits[md[i] >> 4];
        out[2 * i + 1] = hexdigits[md[i] & 0xf];
    }
    out[32] = '\0';
    return 0;
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
    int rc = md5_hex(view.buf, (size_t)view.len, hex);
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
cpoplib_apop_impl(POP3Object *self, PyObject *user, PyObject *password)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *encoding, *secret, *digest, *args, *line, *res;

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
    line = cpoplib_format_command(st->fmt_apop, args);
    Py_DECREF(args);
    if (line == NULL) {
        return NULL;
    }
    res = cpoplib_run_command(self, line, 0);
    Py_DECREF(line);
    return res;
}

/* Whether to pipeline: CAPA's PIPELINING, asked once per connection. */
int
cpoplib_server_pipelines(POP3Object *conn)
{
    cpoplib_state *st = cpoplib_pop3_state(conn);
    PyObject *caps;
    int has;

    if (conn->pipelining >= 0) {
        return conn->pipelining;
    }
    caps = cpoplib_capa(conn, st);
    if (caps == NULL) {
        /* capa() turns the server's -ERR into its own error_proto, with
           the reply as __context__: only that means "no CAPA" */
        PyObject *exc = cpoplib_fetch_exception();
        PyObject *reply = PyException_GetContext(exc);
        int refused = cpoplib_is_err_reply(st, exc)
                      || (PyObject_TypeCheck(exc,
                                             (PyTypeObject *)st->error_proto)
                          && cpoplib_is_err_reply(st, reply));
        Py_XDECREF(reply);
        if (!refused) {
            cpoplib_restore_exception(exc);
            return -1;
        }
        Py_DECREF(exc);          /* no CAPA: no pipelining */
        conn->pipelining = 0;
        return 0;
    }
    has = PySequence_Contains(caps, st->str_pipelining_cap);
    Py_DECREF(caps);
    if (has < 0) {
        return -1;
    }
    conn->pipelining = has;
    return has;
}

/* ---- the other commands ---- */

PyObject *
cpoplib_command1(POP3Object *self, PyObject *fmt, PyObject *arg,
                 int longcmd)
{
    PyObject *line = cpoplib_format_command(fmt, arg), *res;

    if (line == NULL) {
        return NULL;
    }
    res = cpoplib_run_command(self, line, longcmd);
    Py_DECREF(line);
    return res;
}

PyObject *
cpoplib_listing_impl(POP3Object *self, PyObject *bare, PyObject *fmt,
                     PyObject *which)
{
    if (which != NULL && which != Py_None) {
        return cpoplib_command1(self, fmt, which, 0);
    }
    return cpoplib_run_command(self, bare, 1);
}

PyObject *
cpoplib_top_impl(POP3Object *self, PyObject *which, PyObject *howmuch)
{
    PyObject *args = PyTuple_Pack(2, which, howmuch), *res;

    if (args == NULL) {
        return NULL;
    }
    res = cpoplib_command1(self, cpoplib_pop3_state(self)->fmt_top, args, 1);
    Py_DECREF(args);
    return res;
}

/* poplib's quit(): QUIT, then self.close() */
PyObject *
cpoplib_quit_impl(POP3Object *self)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *resp, *res;

    resp = cpoplib_run_command(self, st->cmd_quit, 0);
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
