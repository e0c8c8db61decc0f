/* commands.c -- the POP3 commands of the POP3 type and capa().
 *
 * What the methods a user calls do (user, pass_, stat, list, retr, top,
 * uidl, apop, capa, quit, ...) once methods.c has parsed their arguments
 * and claimed the connection: each builds its command line as poplib does
 * and goes through the hooks (_shortcmd, _longcmd, close; protocol.c), so
 * overrides in subclasses take effect.  capa() is itself a hook (stls()
 * and login() call it through self), so its dispatcher is here too.  What
 * the replies mean (STAT's fields, CAPA's lines, the APOP digest) is
 * wire.c's, shared with the asyncio client.
 *
 * May call: errors.c, protocol.c, wire.c.  Runs Python code throughout.
 */
#include "connection.h"

/* ---- CAPA, STAT, APOP ---- */

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
    PyObject *caps = NULL, *resp, *rawcaps = NULL;

    resp = cpoplib_run_command(self, st->cmd_capa, 1);
    if (resp != NULL) {
        rawcaps = PySequence_GetItem(resp, 1);
        Py_DECREF(resp);
    }
    if (rawcaps != NULL) {
        caps = cpoplib_capa_from_lines(st, rawcaps);
        Py_DECREF(rawcaps);
    }
    if (caps == NULL && PyErr_ExceptionMatches(st->error_proto)) {
        cpoplib_replace_error(st, "-ERR CAPA not supported by server");
    }
    return caps;
}

PyObject *
cpoplib_stat_of_response(POP3Object *self, cpoplib_state *st, PyObject *resp)
{
    PyObject *fields, *result = NULL;
    int on;

    fields = PyObject_CallMethodNoArgs(resp, st->str_split);
    if (fields == NULL) {
        return NULL;
    }
    on = cpoplib_debugging(self, st, 0);
    if (on < 0) {
        goto done;
    }
    if (on && cpoplib_debug_print(st, "*stat*", fields) < 0) {
        goto done;
    }
    result = cpoplib_stat_result(st, fields);

done:
    Py_DECREF(fields);
    return result;
}

PyObject *
cpoplib_stat_impl(POP3Object *self)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    PyObject *resp, *result;

    resp = cpoplib_run_command(self, st->cmd_stat, 0);
    if (resp == NULL) {
        return NULL;
    }
    result = cpoplib_stat_of_response(self, st, resp);
    Py_DECREF(resp);
    return result;
}

/* MD5 of the greeting's timestamp + secret, as 32 hex digits (a str) */
static PyObject *
apop_digest(POP3Object *self, cpoplib_state *st, PyObject *secret)
{
    PyObject *welcome, *pattern = NULL, *result = NULL;

    welcome = PyObject_GetAttr((PyObject *)self, st->str_welcome);
    if (welcome != NULL) {
        pattern = PyObject_GetAttr((PyObject *)self, st->str_timestamp);
    }
    if (pattern != NULL) {
        result = cpoplib_apop_digest(st, welcome, pattern, secret);
    }
    Py_XDECREF(welcome);
    Py_XDECREF(pattern);
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
