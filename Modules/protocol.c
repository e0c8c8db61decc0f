/* protocol.c -- the POP3 wire protocol of a connection: calling poplib's
 * hooks (_putline, _getline, _getresp, ...) through `self` when they are
 * overridden, and otherwise sending command lines and reading lines, short
 * responses and multi-line responses in C.
 *
 * Dispatch: wherever poplib calls self._putcmd(), self._getline(), ...
 * the C code calls the same hook through `self` if a subclass, the class
 * or the instance overrides it, and calls the C implementation directly
 * otherwise (hook_is_default).  Multi-line responses read from the
 * connection's own SocketReader take a bulk path that builds the list of
 * lines in C without a Python call per line.
 *
 * Every function that calls back into Python keeps strong references to
 * the objects it uses: a hook, print() or close() may rebind attributes.
 */
#include "connection.h"

/* raise error_proto(obj) */
static void
raise_error_obj(cpoplib_state *st, PyObject *obj)
{
    PyObject *exc = PyObject_CallOneArg(st->error_proto, obj);

    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

/* ---- dispatch through self ---- */

/* 1 if `hook` resolves on self to the built-in implementation, 0 if a
 * subclass, the class or the instance replaced it, -1 on error. */
static int
hook_is_default(POP3Object *self, cpoplib_state *st, cpoplib_hook hook)
{
    PyObject *name = st->hook_names[hook];
    PyObject *attr = PyObject_GetAttr((PyObject *)Py_TYPE(self), name);
    int is_default;

    if (attr == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -1;
        }
        PyErr_Clear();
        return 0;    /* calling it through self raises the right error */
    }
    is_default = (attr == st->hook_defaults[hook]);
    Py_DECREF(attr);
    if (is_default && self->dict != NULL) {
        if (PyDict_GetItemWithError(self->dict, name) != NULL) {
            is_default = 0;
        }
        else if (PyErr_Occurred()) {
            return -1;
        }
    }
    return is_default;
}

/* self.<hook>() or self.<hook>(arg): runs Python code. */
static PyObject *
call_hook(POP3Object *self, cpoplib_state *st, cpoplib_hook hook,
          PyObject *arg)
{
    if (arg == NULL) {
        return PyObject_CallMethodNoArgs((PyObject *)self,
                                         st->hook_names[hook]);
    }
    return PyObject_CallMethodOneArg((PyObject *)self, st->hook_names[hook],
                                     arg);
}


#define DEFINE_DISPATCH(NAME, HOOK)                                        \
    PyObject *                                                             \
    do_##NAME(POP3Object *self, cpoplib_state *st, PyObject *arg)          \
    {                                                                      \
        int is_default = hook_is_default(self, st, HOOK);                  \
        if (is_default < 0) {                                              \
            return NULL;                                                   \
        }                                                                  \
        if (!is_default) {                                                 \
            return call_hook(self, st, HOOK, arg);                         \
        }                                                                  \
        return NAME##_impl(self, st, arg);                                 \
    }
#define DEFINE_DISPATCH0(NAME, HOOK)                                       \
    PyObject *                                                             \
    do_##NAME(POP3Object *self, cpoplib_state *st)                         \
    {                                                                      \
        int is_default = hook_is_default(self, st, HOOK);                  \
        if (is_default < 0) {                                              \
            return NULL;                                                   \
        }                                                                  \
        if (!is_default) {                                                 \
            return call_hook(self, st, HOOK, NULL);                        \
        }                                                                  \
        return NAME##_impl(self, st);                                      \
    }

DEFINE_DISPATCH(putline, HOOK_PUTLINE)
DEFINE_DISPATCH(putcmd, HOOK_PUTCMD)
DEFINE_DISPATCH(shortcmd, HOOK_SHORTCMD)
DEFINE_DISPATCH(longcmd, HOOK_LONGCMD)
DEFINE_DISPATCH0(getresp, HOOK_GETRESP)
DEFINE_DISPATCH0(getlongresp, HOOK_GETLONGRESP)
DEFINE_DISPATCH0(capa, HOOK_CAPA)
DEFINE_DISPATCH0(close, HOOK_CLOSE)

/* `a, b = obj` */
static int
unpack_pair(PyObject *obj, PyObject **a, PyObject **b)
{
    PyObject *it, *extra;

    *a = *b = NULL;
    if (PyTuple_CheckExact(obj) && PyTuple_GET_SIZE(obj) == 2) {
        *a = Py_NewRef(PyTuple_GET_ITEM(obj, 0));
        *b = Py_NewRef(PyTuple_GET_ITEM(obj, 1));
        return 0;
    }
    it = PyObject_GetIter(obj);
    if (it == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Format(PyExc_TypeError,
                         "cannot unpack non-iterable %.200s object",
                         Py_TYPE(obj)->tp_name);
        }
        return -1;
    }
    *a = PyIter_Next(it);
    *b = *a ? PyIter_Next(it) : NULL;
    if (*b == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_ValueError,
                         "not enough values to unpack (expected 2, got %d)",
                         *a ? 1 : 0);
        }
        goto error;
    }
    extra = PyIter_Next(it);
    if (extra != NULL) {
        Py_DECREF(extra);
        PyErr_SetString(PyExc_ValueError,
                        "too many values to unpack (expected 2)");
        goto error;
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(it);
    return 0;

error:
    Py_DECREF(it);
    Py_CLEAR(*a);
    Py_CLEAR(*b);
    return -1;
}

/* self._getline() as (line, octets), through an override if there is one;
 * 0 with two new references, or -1. */
static int
do_getline(POP3Object *self, cpoplib_state *st, PyObject **line,
           PyObject **octets)
{
    int is_default = hook_is_default(self, st, HOOK_GETLINE);
    PyObject *pair;
    int rc;

    if (is_default < 0) {
        return -1;
    }
    if (is_default) {
        return getline_impl(self, st, line, octets);
    }
    pair = call_hook(self, st, HOOK_GETLINE, NULL);
    if (pair == NULL) {
        return -1;
    }
    rc = unpack_pair(pair, line, octets);
    Py_DECREF(pair);
    return rc;
}

/* ---- sending ---- */

/* poplib's _putline(): audit event, debug print, sock.sendall(line +
 * CRLF).  Calls into Python (the socket object's sendall). */
PyObject *
putline_impl(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    PyObject *sock = NULL, *data = NULL, *res = NULL;
    int debug = debug_flags(self, st);

    if (debug < 0) {
        return NULL;
    }
    if ((debug & DEBUG_WIRE) && debug_print("*put*", line) < 0) {
        return NULL;
    }
    if (PySys_Audit("poplib.putline", "OO", (PyObject *)self, line) < 0) {
        return NULL;
    }
    sock = get_attr(self, st->str_sock);
    if (sock == NULL) {
        return NULL;
    }
    if (PyBytes_CheckExact(line)) {
        Py_ssize_t n = PyBytes_GET_SIZE(line);
        data = PyBytes_FromStringAndSize(NULL, n + 2);
        if (data != NULL) {
            memcpy(PyBytes_AS_STRING(data), PyBytes_AS_STRING(line),
                   (size_t)n);
            memcpy(PyBytes_AS_STRING(data) + n, "\r\n", 2);
        }
    }
    else {
        data = PyNumber_Add(line, st->bytes_crlf);
    }
    if (data != NULL) {
        res = PyObject_CallMethodOneArg(sock, st->str_sendall, data);
    }
    Py_DECREF(sock);
    Py_XDECREF(data);
    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    Py_RETURN_NONE;
}

/* poplib's _putcmd(): encode with self.encoding, then self._putline(). */
PyObject *
putcmd_impl(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    PyObject *encoding, *encoded, *res;
    int debug = debug_flags(self, st);

    if (debug < 0) {
        return NULL;
    }
    if ((debug & DEBUG_ON) && debug_print("*cmd*", line) < 0) {
        return NULL;
    }
    encoding = get_attr(self, st->str_encoding);
    if (encoding == NULL) {
        return NULL;
    }
    encoded = encode_text(line, encoding);
    Py_DECREF(encoding);
    if (encoded == NULL) {
        return NULL;
    }
    /* CVE-2025-15367 (CPython gh-143923): no CR, LF or other control
       characters, so a command can never smuggle a second one. */
    if (pop3_find_control(PyBytes_AS_STRING(encoded),
                          (size_t)PyBytes_GET_SIZE(encoded))
        != (size_t)PyBytes_GET_SIZE(encoded)) {
        Py_DECREF(encoded);
        PyErr_SetString(PyExc_ValueError,
                        "Control characters not allowed in commands");
        return NULL;
    }
    res = do_putline(self, st, encoded);
    Py_DECREF(encoded);
    return res;
}

/* ---- receiving ---- */

/* The current value of the package's _MAXLINE. */
static int
current_maxline(cpoplib_state *st, Py_ssize_t *maxline)
{
    PyObject *value = PyDict_GetItemWithError(st->namespace, st->str_maxline);

    if (value == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_NameError,
                            "name '_MAXLINE' is not defined");
        }
        return -1;
    }
    Py_INCREF(value);
    *maxline = PyNumber_AsSsize_t(value, PyExc_OverflowError);
    Py_DECREF(value);
    if (*maxline == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*maxline < 0 || *maxline == PY_SSIZE_T_MAX) {
        cpoplib_error(st, "line too long");
        return -1;
    }
    return 0;
}

/* The package's MAX_RESPONSE_SIZE: bytes a multi-line response body may
 * take on the wire, or -1 (None, the default: no limit, as poplib). */
static int
current_response_cap(cpoplib_state *st, Py_ssize_t *cap)
{
    PyObject *value = PyDict_GetItemWithError(st->namespace,
                                              st->str_max_response);

    *cap = -1;
    if (value == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (value == Py_None) {
        return 0;
    }
    Py_INCREF(value);
    *cap = PyNumber_AsSsize_t(value, PyExc_OverflowError);
    Py_DECREF(value);
    if (*cap == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*cap < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "MAX_RESPONSE_SIZE must be None or >= 0");
        return -1;
    }
    return 0;
}

int
is_reader(cpoplib_state *st, PyObject *file)
{
    return Py_IS_TYPE(file, st->Reader_Type);
}

/* poplib's _getline(): one line, stripped, and its octet count. */
int
getline_impl(POP3Object *self, cpoplib_state *st, PyObject **out_line,
             PyObject **out_octets)
{
    PyObject *file = NULL, *raw = NULL, *line = NULL, *octets = NULL;
    Py_ssize_t maxline;
    pop3_line ln;
    int debug, eof = 0;

    *out_line = *out_octets = NULL;
    if (current_maxline(st, &maxline) < 0) {
        return -1;
    }
    file = get_attr(self, st->str_file);
    if (file == NULL) {
        return -1;
    }
    if (is_reader(st, file)) {
        const char *base = NULL;
        int rc = cpoplib_reader_next_line((ReaderObject *)file, maxline + 1,
                                          &ln, &base);
        if (rc < 0) {
            goto error;
        }
        if (rc == POP3_TOO_LONG) {
            cpoplib_error(st, "line too long");
            goto error;
        }
        debug = debug_flags(self, st);
        if (debug < 0) {
            goto error;
        }
        if (rc == POP3_EOF) {
            eof = 1;
            if (debug & DEBUG_WIRE) {
                raw = PyBytes_FromStringAndSize(NULL, 0);
                if (raw == NULL) {
                    goto error;
                }
            }
        }
        else {
            /* Copy out before any Python code can touch the buffer. */
            line = PyBytes_FromStringAndSize(base + ln.start,
                                             (Py_ssize_t)ln.len);
            if (line == NULL) {
                goto error;
            }
            if (debug & DEBUG_WIRE) {
                raw = PyBytes_FromStringAndSize(base,
                                                (Py_ssize_t)ln.raw_len);
                if (raw == NULL) {
                    goto error;
                }
            }
        }
    }
    else {
        Py_buffer view;
        PyObject *limit = PyLong_FromSsize_t(maxline + 1);
        if (limit == NULL) {
            goto error;
        }
        raw = PyObject_CallMethodOneArg(file, st->str_readline, limit);
        Py_DECREF(limit);
        if (raw == NULL || PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE) < 0) {
            goto error;
        }
        if (view.len > maxline) {
            PyBuffer_Release(&view);
            cpoplib_error(st, "line too long");
            goto error;
        }
        if (view.len == 0) {
            eof = 1;
        }
        else {
            pop3_strip_line(view.buf, (size_t)view.len, &ln);
            line = PyBytes_FromStringAndSize((const char *)view.buf + ln.start,
                                             (Py_ssize_t)ln.len);
        }
        PyBuffer_Release(&view);
        if (!eof && line == NULL) {
            goto error;
        }
        debug = debug_flags(self, st);
        if (debug < 0) {
            goto error;
        }
        if (!(debug & DEBUG_WIRE)) {
            Py_CLEAR(raw);
        }
    }
    if (raw != NULL && debug_print("*get*", raw) < 0) {
        goto error;
    }
    if (eof) {
        cpoplib_error(st, "-ERR EOF");
        goto error;
    }
    octets = PyLong_FromSize_t(ln.raw_len);
    if (octets == NULL) {
        goto error;
    }
    Py_DECREF(file);
    Py_XDECREF(raw);
    *out_line = line;
    *out_octets = octets;
    return 0;

error:
    Py_XDECREF(file);
    Py_XDECREF(raw);
    Py_XDECREF(line);
    return -1;
}

/* line.startswith(prefix) for a line a hook may have returned as any
 * object: bytes are compared in C, anything else through Python. */
static int
starts_with(cpoplib_state *st, PyObject *line, PyObject *prefix)
{
    if (PyBytes_Check(line)) {
        Py_ssize_t n = PyBytes_GET_SIZE(prefix);
        return PyBytes_GET_SIZE(line) >= n
            && memcmp(PyBytes_AS_STRING(line), PyBytes_AS_STRING(prefix),
                      (size_t)n) == 0;
    }
    PyObject *res = PyObject_CallMethodOneArg(line, st->str_startswith,
                                              prefix);
    if (res == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(res);
    Py_DECREF(res);
    return truth;
}

/* poplib's _getresp(): one line through self._getline(); raises
 * error_proto unless it starts with '+'. */
PyObject *
getresp_impl(POP3Object *self, cpoplib_state *st)
{
    PyObject *resp, *octets;
    int debug, ok;

    if (do_getline(self, st, &resp, &octets) < 0) {
        return NULL;
    }
    Py_DECREF(octets);
    debug = debug_flags(self, st);
    if (debug < 0
        || ((debug & DEBUG_WIRE) && debug_print("*resp*", resp) < 0)) {
        goto error;
    }
    ok = starts_with(st, resp, st->bytes_plus);
    if (ok < 0) {
        goto error;
    }
    if (!ok) {
        raise_error_obj(st, resp);
        goto error;
    }
    return resp;

error:
    Py_DECREF(resp);
    return NULL;
}

/* The bulk path of _getlongresp(): every line of the body straight from
 * the reader's buffer into `lines`, no Python call per line. */
static int
read_body_fast(cpoplib_state *st, ReaderObject *reader, PyObject *lines,
               Py_ssize_t cap, unsigned long long *octets)
{
    Py_ssize_t maxline;
    size_t total = 0;

    if (current_maxline(st, &maxline) < 0) {
        return -1;
    }
    for (;;) {
        const char *base;
        pop3_line ln;
        int rc = cpoplib_reader_next_line(reader, maxline + 1, &ln, &base);

        if (rc < 0) {
            return -1;
        }
        if (rc == POP3_TOO_LONG) {
            cpoplib_error(st, "line too long");
            return -1;
        }
        if (rc == POP3_EOF) {
            cpoplib_error(st, "-ERR EOF");
            return -1;
        }
        total += ln.raw_len;
        if (cap >= 0 && total > (size_t)cap) {
            cpoplib_error(st, "response too long");
            return -1;
        }
        pop3_unstuff(base, &ln);
        if (ln.is_terminator) {
            return 0;
        }
        /* No Python code can run between reading the line and copying
           it out (bytes are not GC-tracked), so `base` is still valid. */
        PyObject *line = PyBytes_FromStringAndSize(base + ln.start,
                                                   (Py_ssize_t)ln.len);
        if (line == NULL) {
            return -1;
        }
        rc = PyList_Append(lines, line);
        Py_DECREF(line);
        if (rc < 0) {
            return -1;
        }
        *octets += ln.octets;
    }
}

/* _getlongresp() line by line, through _getline() (which may be a
 * Python override), with Python arithmetic on whatever it returns. */
static int
read_body_generic(POP3Object *self, cpoplib_state *st, PyObject *lines,
                  Py_ssize_t cap, PyObject **octets)
{
    PyObject *line = NULL, *o = NULL, *tmp;
    PyObject *one = PyLong_FromLong(1);
    Py_ssize_t total = 0;

    if (one == NULL) {
        return -1;
    }
    for (;;) {
        int rc;

        if (do_getline(self, st, &line, &o) < 0) {
            goto error;
        }
        if (cap >= 0 && PyLong_Check(o)) {
            Py_ssize_t n = PyLong_AsSsize_t(o);
            if (n == -1 && PyErr_Occurred()) {
                goto error;
            }
            total += n > 0 ? n : 0;
            if (total > cap) {
                cpoplib_error(st, "response too long");
                goto error;
            }
        }
        rc = PyObject_RichCompareBool(line, st->bytes_dot, Py_NE);
        if (rc < 0) {
            goto error;
        }
        if (!rc) {
            break;
        }
        rc = starts_with(st, line, st->bytes_dotdot);
        if (rc < 0) {
            goto error;
        }
        if (rc) {
            tmp = PyNumber_Subtract(o, one);
            if (tmp == NULL) {
                goto error;
            }
            Py_SETREF(o, tmp);
            tmp = PySequence_GetSlice(line, 1, PY_SSIZE_T_MAX);
            if (tmp == NULL) {
                goto error;
            }
            Py_SETREF(line, tmp);
        }
        tmp = PyNumber_Add(*octets, o);
        if (tmp == NULL) {
            goto error;
        }
        Py_SETREF(*octets, tmp);
        if (PyList_Append(lines, line) < 0) {
            goto error;
        }
        Py_CLEAR(line);
        Py_CLEAR(o);
    }
    Py_DECREF(line);
    Py_DECREF(o);
    Py_DECREF(one);
    return 0;

error:
    Py_XDECREF(line);
    Py_XDECREF(o);
    Py_DECREF(one);
    return -1;
}

/* poplib's _getlongresp(): (resp, lines, octets).  The body is read by
 * read_body_fast() when self.file is our own reader and no _getline
 * override or wire debugging is in effect, else line by line. */
PyObject *
getlongresp_impl(POP3Object *self, cpoplib_state *st)
{
    PyObject *resp = NULL, *lines = NULL, *octets = NULL, *file = NULL;
    PyObject *result = NULL;
    Py_ssize_t cap;
    int fast = 0;

    resp = do_getresp(self, st);
    if (resp == NULL) {
        return NULL;
    }
    if (current_response_cap(st, &cap) < 0) {
        goto done;
    }
    lines = PyList_New(0);
    if (lines == NULL) {
        goto done;
    }
    /* Bulk path: _getline() is ours, the file is our reader and nothing
       is printed per line. */
    fast = hook_is_default(self, st, HOOK_GETLINE);
    if (fast < 0) {
        goto done;
    }
    if (fast) {
        int debug = debug_flags(self, st);
        if (debug < 0) {
            goto done;
        }
        file = get_attr(self, st->str_file);
        if (file == NULL) {
            goto done;
        }
        fast = !(debug & DEBUG_WIRE) && is_reader(st, file);
    }
    if (fast) {
        unsigned long long count = 0;
        if (read_body_fast(st, (ReaderObject *)file, lines, cap, &count) < 0) {
            goto done;
        }
        octets = PyLong_FromUnsignedLongLong(count);
    }
    else {
        octets = PyLong_FromLong(0);
        if (octets != NULL
            && read_body_generic(self, st, lines, cap, &octets) < 0) {
            goto done;
        }
    }
    if (octets != NULL) {
        result = PyTuple_Pack(3, resp, lines, octets);
    }

done:
    Py_XDECREF(file);
    Py_XDECREF(octets);
    Py_XDECREF(lines);
    Py_DECREF(resp);
    return result;
}

/* poplib's _shortcmd() and _longcmd(): self._putcmd(line), then
 * self._getresp() or self._getlongresp(). */
PyObject *
shortcmd_impl(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    PyObject *res = do_putcmd(self, st, line);

    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    return do_getresp(self, st);
}

PyObject *
longcmd_impl(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    PyObject *res = do_putcmd(self, st, line);

    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    return do_getlongresp(self, st);
}

/* Send `line` through self._shortcmd() or self._longcmd() and return the
 * response.  Steals `line`; a NULL line passes its error through. */
PyObject *
run_command(POP3Object *self, PyObject *line, int longcmd)
{
    cpoplib_state *st = pop3_state(self);
    PyObject *res;

    if (line == NULL) {
        return NULL;
    }
    res = longcmd ? do_longcmd(self, st, line) : do_shortcmd(self, st, line);
    Py_DECREF(line);
    return res;
}

/* Send a command given as a C string and read the short response. */
PyObject *
simple_shortcmd(POP3Object *self, const char *command)
{
    return run_command(self, PyUnicode_FromString(command), 0);
}

/* Send `fmt % arg` and read the short (or long) response. */
PyObject *
formatted_cmd(POP3Object *self, const char *fmt, PyObject *arg, int longcmd)
{
    return run_command(self, format_command(fmt, arg), longcmd);
}
