/* commands.c -- the POP3 commands of the POP3 type.
 *
 * The methods a user calls (user, pass_, stat, list, retr, top, uidl,
 * apop, capa, stls, quit, ...): each builds its command line as poplib
 * does and goes through the hooks of connection.c (_shortcmd, _longcmd,
 * capa, close), so overrides in subclasses take effect.
 */
#include "connection.h"

/* ---- CAPA, STAT, APOP, STLS ---- */

PyObject *
capa_impl(POP3Object *self, cpoplib_state *st)
{
    PyObject *caps = NULL, *command, *resp = NULL, *rawcaps = NULL;
    PyObject *it = NULL, *capline = NULL;

    caps = PyDict_New();
    if (caps == NULL) {
        return NULL;
    }
    command = PyUnicode_FromString("CAPA");
    if (command == NULL) {
        goto error;
    }
    resp = do_longcmd(self, st, command);
    Py_DECREF(command);
    if (resp == NULL) {
        goto error;
    }
    rawcaps = PySequence_GetItem(resp, 1);
    it = rawcaps ? PyObject_GetIter(rawcaps) : NULL;
    if (it == NULL) {
        goto error;
    }
    while ((capline = PyIter_Next(it)) != NULL) {
        PyObject *text, *words, *name = NULL, *args = NULL;
        int rc = -1;

        text = PyObject_CallMethodOneArg(capline, st->str_decode,
                                         st->str_ascii);
        words = text ? PyObject_CallMethodNoArgs(text, st->str_split) : NULL;
        if (words != NULL) {
            name = PySequence_GetItem(words, 0);
            args = name ? PySequence_GetSlice(words, 1, PY_SSIZE_T_MAX)
                        : NULL;
            if (args != NULL) {
                rc = PyObject_SetItem(caps, name, args);
            }
        }
        Py_XDECREF(text);
        Py_XDECREF(words);
        Py_XDECREF(name);
        Py_XDECREF(args);
        Py_CLEAR(capline);
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
        replace_error(st, "-ERR CAPA not supported by server");
    }
    Py_XDECREF(it);
    Py_XDECREF(rawcaps);
    Py_XDECREF(resp);
    Py_DECREF(caps);
    return NULL;
}

PyObject *
pop3_stat(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    cpoplib_state *st = pop3_state(self);
    PyObject *resp, *fields = NULL, *count = NULL, *size = NULL;
    PyObject *result = NULL;
    Py_ssize_t n;
    int debug;

    resp = simple_shortcmd(self, "STAT");
    if (resp == NULL) {
        return NULL;
    }
    fields = PyObject_CallMethodNoArgs(resp, st->str_split);
    if (fields == NULL) {
        goto done;
    }
    debug = debug_flags(self, st);
    if (debug < 0 || ((debug & DEBUG_ON) && debug_print("*stat*", fields) < 0)) {
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
                replace_error(st, "Invalid STAT response data: "
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

    welcome = get_attr(self, st->str_welcome);
    pattern = welcome ? get_attr(self, st->str_timestamp) : NULL;
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
        PyObject *group = one ? PyObject_CallMethodOneArg(match, st->str_group,
                                                          one) : NULL;
        Py_XDECREF(one);
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

PyObject *
pop3_apop(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"user", "password"};
    cpoplib_state *st = pop3_state(self);
    PyObject *argv[2], *encoding, *secret, *digest, *line;

    if (parse_args("apop", args, nargs, kwnames, names, 2, 2, argv) < 0) {
        return NULL;
    }
    encoding = get_attr(self, st->str_encoding);
    if (encoding == NULL) {
        return NULL;
    }
    secret = encode_text(argv[1], encoding);
    Py_DECREF(encoding);
    if (secret == NULL) {
        return NULL;
    }
    digest = apop_digest(self, st, secret);
    Py_DECREF(secret);
    if (digest == NULL) {
        return NULL;
    }
    line = format_command2("APOP %s %s", argv[0], digest);
    Py_DECREF(digest);
    return run_command(self, line, 0);
}

PyObject *
pop3_stls(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"context"};
    cpoplib_state *st = pop3_state(self);
    PyObject *argv[1], *flag = NULL, *caps = NULL, *context = NULL;
    PyObject *resp = NULL, *sock = NULL, *host = NULL, *tls = NULL;
    PyObject *file = NULL, *result = NULL;
    int truth;

    if (parse_args("stls", args, nargs, kwnames, names, 0, 1, argv) < 0) {
        return NULL;
    }
    if (st->ssl_module == NULL) {
        cpoplib_error(st, "-ERR TLS support missing");
        return NULL;
    }
    flag = get_attr(self, st->str_tls_established);
    truth = flag ? PyObject_IsTrue(flag) : -1;
    Py_XDECREF(flag);
    if (truth < 0) {
        return NULL;
    }
    if (truth) {
        cpoplib_error(st, "-ERR TLS session already established");
        return NULL;
    }
    caps = do_capa(self, st);
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
    if (argv[0] == NULL || argv[0] == Py_None) {
        context = create_stdlib_context(st, NULL);
    }
    else {
        context = Py_NewRef(argv[0]);
    }
    if (context == NULL) {
        goto done;
    }
    resp = simple_shortcmd(self, "STLS");
    if (resp == NULL) {
        goto done;
    }
    /* Bytes read after the +OK came in the clear: never let them pass
       for TLS data (the CVE-2021-22947 class of bugs). */
    file = get_attr(self, st->str_file);
    if (file == NULL) {
        /* poplib never reads self.file here: only its absence is fine */
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            goto done;
        }
        PyErr_Clear();
    }
    else if (is_reader(st, file)) {
        cpoplib_reader_discard((ReaderObject *)file);
    }
    Py_CLEAR(file);
    sock = get_attr(self, st->str_sock);
    host = sock ? get_attr(self, st->str_host) : NULL;
    tls = host ? wrap_socket(st, context, sock, host) : NULL;
    if (tls == NULL || set_attr(self, st->str_sock, tls) < 0) {
        goto done;
    }
    Py_SETREF(tls, get_attr(self, st->str_sock));
    file = tls ? make_file(st, tls) : NULL;
    if (file == NULL || set_attr(self, st->str_file, file) < 0
        || set_attr(self, st->str_tls_established, Py_True) < 0) {
        goto done;
    }
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
pop3_capa(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return capa_impl(self, pop3_state(self));
}

PyObject *
pop3_getwelcome(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return get_attr(self, pop3_state(self)->str_welcome);
}

PyObject *
pop3_set_debuglevel(POP3Object *self, PyObject *const *args,
                    Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *level = one_arg("set_debuglevel", "level", args, nargs,
                              kwnames);
    if (level == NULL
        || set_attr(self, pop3_state(self)->str_debugging, level) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

#define COMMAND_1(NAME, ARGNAME, FMT)                                      \
    PyObject *                                                             \
    pop3_##NAME(POP3Object *self, PyObject *const *args, Py_ssize_t nargs, \
                PyObject *kwnames)                                         \
    {                                                                      \
        PyObject *arg = one_arg(#NAME, ARGNAME, args, nargs, kwnames);     \
        if (arg == NULL) {                                                 \
            return NULL;                                                   \
        }                                                                  \
        return formatted_cmd(self, FMT, arg, 0);                           \
    }

COMMAND_1(user, "user", "USER %s")
COMMAND_1(pass_, "pswd", "PASS %s")
COMMAND_1(dele, "which", "DELE %s")
COMMAND_1(rpop, "user", "RPOP %s")

PyObject *
pop3_retr(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    PyObject *which = one_arg("retr", "which", args, nargs, kwnames);
    if (which == NULL) {
        return NULL;
    }
    return formatted_cmd(self, "RETR %s", which, 1);
}

/* LIST [which] / UIDL [which]: short response with an argument, long
 * response without. */
static PyObject *
listing_cmd(POP3Object *self, const char *fname, const char *bare,
            const char *fmt, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    PyObject *which;

    if (optional_arg(fname, "which", args, nargs, kwnames, &which) < 0) {
        return NULL;
    }
    if (which != Py_None) {
        return formatted_cmd(self, fmt, which, 0);
    }
    return run_command(self, PyUnicode_FromString(bare), 1);
}

PyObject *
pop3_list(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    return listing_cmd(self, "list", "LIST", "LIST %s", args, nargs, kwnames);
}

PyObject *
pop3_uidl(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    return listing_cmd(self, "uidl", "UIDL", "UIDL %s", args, nargs, kwnames);
}

PyObject *
pop3_top(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames)
{
    static const char *const names[] = {"which", "howmuch"};
    PyObject *argv[2];

    if (parse_args("top", args, nargs, kwnames, names, 2, 2, argv) < 0) {
        return NULL;
    }
    return run_command(self, format_command2("TOP %s %s", argv[0], argv[1]),
                       1);
}

PyObject *
pop3_noop(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return simple_shortcmd(self, "NOOP");
}

PyObject *
pop3_rset(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return simple_shortcmd(self, "RSET");
}

PyObject *
pop3_utf8(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return simple_shortcmd(self, "UTF8");
}

PyObject *
pop3_quit(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    cpoplib_state *st = pop3_state(self);
    PyObject *resp = simple_shortcmd(self, "QUIT"), *res;

    if (resp == NULL) {
        return NULL;
    }
    res = do_close(self, st);
    if (res == NULL) {
        Py_DECREF(resp);
        return NULL;
    }
    Py_DECREF(res);
    return resp;
}
