/* protocol.c -- the POP3 wire protocol of a connection: calling poplib's
 * hooks (_putline, _getline, _getresp, ...) through `self` when they are
 * overridden, and otherwise sending command lines and reading lines, short
 * responses and multi-line responses in C; running a command; closing a
 * connection while keeping the error that made it necessary; debug output
 * as poplib prints it.
 *
 * Dispatch: wherever poplib calls self._putcmd(), self._getline(), ...
 * the C code calls the same hook through `self` if a subclass, the class,
 * the instance or a __getattribute__ override replaces it, and calls the C
 * implementation directly otherwise (cpoplib_hook_is_default).  Multi-line
 * responses read from the connection's own SocketReader take a bulk path
 * that builds the list of lines in C without a Python call per line.
 *
 * Every function that calls back into Python keeps strong references to
 * the objects it uses: a hook, a property, print() or close() may rebind
 * attributes or read from the reader.  Lines from the reader are copied
 * out of its buffer before anything that can run Python code.
 *
 * May call: connection.c, errors.c, pop3_parser.c, reader.c.  Python code
 * it runs: hooks, attribute reads, the socket's sendall, print().
 */
#include "connection.h"

/* ---- debug output, as poplib prints it ---- */

/* `self._debugging > 1` when wire is set, else `bool(self._debugging)`:
 * 1, 0, or -1 with an exception set.  Only the test poplib makes at the
 * same place is made.  Runs Python code (the attribute, __bool__,
 * __gt__). */
int
cpoplib_debugging(POP3Object *self, cpoplib_state *st, int wire)
{
    PyObject *level, *one;
    int result;

    level = PyObject_GetAttr((PyObject *)self, st->str_debugging);
    if (level == NULL) {
        return -1;
    }
    if (PyLong_CheckExact(level)) {
        int overflow;
        long value = PyLong_AsLongAndOverflow(level, &overflow);
        Py_DECREF(level);
        if (value == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (wire) {
            return overflow > 0 || (overflow == 0 && value > 1);
        }
        return overflow != 0 || value != 0;
    }
    if (!wire) {
        result = PyObject_IsTrue(level);
        Py_DECREF(level);
        return result;
    }
    one = PyLong_FromLong(1);
    if (one == NULL) {
        Py_DECREF(level);
        return -1;
    }
    result = PyObject_RichCompareBool(level, one, Py_GT);
    Py_DECREF(one);
    Py_DECREF(level);
    return result;
}

/* print(tag, repr(obj)) with the builtin print, looked up at each call
 * (so that a patched builtins.print is used).  Runs Python code. */
int
cpoplib_debug_print(cpoplib_state *st, const char *tag, PyObject *obj)
{
    PyObject *print, *tagobj = NULL, *repr = NULL, *res = NULL;

    print = PyObject_GetAttr(st->builtins_module, st->str_print);
    if (print == NULL) {
        return -1;
    }
    tagobj = PyUnicode_FromString(tag);
    if (tagobj == NULL) {
        goto done;
    }
    repr = PyObject_Repr(obj);
    if (repr == NULL) {
        goto done;
    }
    res = PyObject_CallFunctionObjArgs(print, tagobj, repr, NULL);

done:
    Py_DECREF(print);
    Py_XDECREF(tagobj);
    Py_XDECREF(repr);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* ---- command lines ---- */

/* bytes(text, encoding) */
PyObject *
cpoplib_encode_text(PyObject *text, PyObject *encoding)
{
    if (PyUnicode_Check(text) && PyUnicode_Check(encoding)) {
        const char *enc = PyUnicode_AsUTF8(encoding);
        if (enc == NULL) {
            return NULL;
        }
        return PyUnicode_AsEncodedString(text, enc, NULL);
    }
    return PyObject_CallFunctionObjArgs((PyObject *)&PyBytes_Type, text,
                                        encoding, NULL);
}

PyObject *
cpoplib_format_command(PyObject *fmt, PyObject *args)
{
    return PyUnicode_Format(fmt, args);
}

/* ---- corking: pipelined commands in one write ---- */

/* Send what is corked now, keeping the cork: before a _putline()
 * override sends a line of its own (order on the wire) and before any
 * read (a hook that reads during a corked batch would otherwise wait for
 * replies to commands not yet sent). */
static int
flush_cork(POP3Object *self, cpoplib_state *st)
{
    if (self->corked == NULL || PyByteArray_GET_SIZE(self->corked) == 0) {
        return 0;
    }
    if (cpoplib_uncork(self, st) < 0) {
        return -1;
    }
    return cpoplib_cork(self);
}

int
cpoplib_cork(POP3Object *self)
{
    assert(self->corked == NULL);
    self->corked = PyByteArray_FromStringAndSize(NULL, 0);
    return self->corked == NULL ? -1 : 0;
}

int
cpoplib_uncork(POP3Object *self, cpoplib_state *st)
{
    PyObject *corked = self->corked, *sock, *data, *res;

    self->corked = NULL;
    if (corked == NULL || PyByteArray_GET_SIZE(corked) == 0) {
        Py_XDECREF(corked);
        return 0;
    }
    data = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(corked),
                                     PyByteArray_GET_SIZE(corked));
    Py_DECREF(corked);
    if (data == NULL) {
        return -1;
    }
    sock = PyObject_GetAttr((PyObject *)self, st->str_sock);
    res = sock == NULL ? NULL
          : PyObject_CallMethodOneArg(sock, st->str_sendall, data);
    Py_XDECREF(sock);
    Py_DECREF(data);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* ---- dispatch through self ---- */

/* 1 if `hook` resolves on self to the built-in implementation, 0 if a
 * subclass, the class, the instance or a custom __getattribute__ may
 * replace it, -1 on error.  Runs Python code only through a metaclass. */
int
cpoplib_hook_is_default(POP3Object *self, cpoplib_state *st,
                        cpoplib_hook hook)
{
    PyObject *name = st->hook_names[hook];
    PyObject *attr;
    int is_default;

    if (Py_TYPE(self)->tp_getattro != PyObject_GenericGetAttr) {
        return 0;    /* __getattribute__ or __getattr__: ask self */
    }
    attr = PyObject_GetAttr((PyObject *)Py_TYPE(self), name);
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

/* self.<hook>() or self.<hook>(arg).  Runs Python code; while it runs,
 * the hook may call back into this connection (see cpoplib_claim). */
PyObject *
cpoplib_call_hook(POP3Object *self, cpoplib_state *st, cpoplib_hook hook,
          PyObject *arg)
{
    PyObject *res;

    self->hook_depth++;
    if (arg == NULL) {
        res = PyObject_CallMethodNoArgs((PyObject *)self,
                                        st->hook_names[hook]);
    }
    else {
        res = PyObject_CallMethodOneArg((PyObject *)self,
                                        st->hook_names[hook], arg);
    }
    self->hook_depth--;
    return res;
}

/* self._putline(line) */
static PyObject *
putline(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    int is_default = cpoplib_hook_is_default(self, st, HOOK_PUTLINE);

    if (is_default < 0) {
        return NULL;
    }
    if (!is_default) {
        if (flush_cork(self, st) < 0) {
            return NULL;
        }
        return cpoplib_call_hook(self, st, HOOK_PUTLINE, line);
    }
    return cpoplib_putline_impl(self, st, line);
}

/* self._putcmd(line) */
PyObject *
cpoplib_putcmd(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    int is_default = cpoplib_hook_is_default(self, st, HOOK_PUTCMD);

    if (is_default < 0) {
        return NULL;
    }
    if (!is_default) {
        return cpoplib_call_hook(self, st, HOOK_PUTCMD, line);
    }
    return cpoplib_putcmd_impl(self, st, line);
}

/* self._shortcmd(line) */
static PyObject *
shortcmd(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    int is_default = cpoplib_hook_is_default(self, st, HOOK_SHORTCMD);

    if (is_default < 0) {
        return NULL;
    }
    if (!is_default) {
        return cpoplib_call_hook(self, st, HOOK_SHORTCMD, line);
    }
    return cpoplib_shortcmd_impl(self, st, line);
}

/* self._longcmd(line) */
static PyObject *
longcmd(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    int is_default = cpoplib_hook_is_default(self, st, HOOK_LONGCMD);

    if (is_default < 0) {
        return NULL;
    }
    if (!is_default) {
        return cpoplib_call_hook(self, st, HOOK_LONGCMD, line);
    }
    return cpoplib_longcmd_impl(self, st, line);
}

/* self._getresp() */
PyObject *
cpoplib_getresp(POP3Object *self, cpoplib_state *st)
{
    int is_default = cpoplib_hook_is_default(self, st, HOOK_GETRESP);

    if (is_default < 0 || flush_cork(self, st) < 0) {
        return NULL;
    }
    if (!is_default) {
        return cpoplib_call_hook(self, st, HOOK_GETRESP, NULL);
    }
    return cpoplib_getresp_impl(self, st);
}

/* self._getlongresp() */
PyObject *
cpoplib_getlongresp(POP3Object *self, cpoplib_state *st)
{
    int is_default = cpoplib_hook_is_default(self, st, HOOK_GETLONGRESP);

    if (is_default < 0 || flush_cork(self, st) < 0) {
        return NULL;
    }
    if (!is_default) {
        return cpoplib_call_hook(self, st, HOOK_GETLONGRESP, NULL);
    }
    return cpoplib_getlongresp_impl(self, st);
}

/* self.close() */
PyObject *
cpoplib_close(POP3Object *self, cpoplib_state *st)
{
    int is_default = cpoplib_hook_is_default(self, st, HOOK_CLOSE);

    if (is_default < 0) {
        return NULL;
    }
    if (!is_default) {
        return cpoplib_call_hook(self, st, HOOK_CLOSE, NULL);
    }
    return cpoplib_close_impl(self, st);
}

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
    if (*a == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError,
                            "not enough values to unpack (expected 2, got 0)");
        }
        goto error;
    }
    *b = PyIter_Next(it);
    if (*b == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError,
                            "not enough values to unpack (expected 2, got 1)");
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

/* self._getline() as (line, octets): 0 with two new references, or -1 */
static int
call_getline(POP3Object *self, cpoplib_state *st, PyObject **line,
        PyObject **octets)
{
    int is_default = cpoplib_hook_is_default(self, st, HOOK_GETLINE);
    PyObject *pair;
    int rc;

    if (is_default < 0) {
        return -1;
    }
    if (is_default) {
        return cpoplib_getline_impl(self, st, line, octets);
    }
    pair = cpoplib_call_hook(self, st, HOOK_GETLINE, NULL);
    if (pair == NULL) {
        return -1;
    }
    rc = unpack_pair(pair, line, octets);
    Py_DECREF(pair);
    return rc;
}

/* ---- sending ---- */

/* poplib's _putline(): debug print, audit event, sock.sendall(line +
 * CRLF).  Runs Python code (the attribute reads, the socket's sendall). */
PyObject *
cpoplib_putline_impl(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    PyObject *sock = NULL, *data = NULL, *res = NULL;
    int wire = cpoplib_debugging(self, st, 1);

    if (wire < 0) {
        return NULL;
    }
    if (wire && cpoplib_debug_print(st, "*put*", line) < 0) {
        return NULL;
    }
    if (PySys_Audit("poplib.putline", "OO", (PyObject *)self, line) < 0) {
        return NULL;
    }
    if (self->corked != NULL && !PyBytes_CheckExact(line)
        && flush_cork(self, st) < 0) {
        return NULL;       /* sent below, after what was collected */
    }
    if (self->corked != NULL && PyBytes_CheckExact(line)) {
        /* collected; cpoplib_uncork() sends it with the others */
        PyObject *corked = self->corked;
        Py_ssize_t used = PyByteArray_GET_SIZE(corked);
        Py_ssize_t n = PyBytes_GET_SIZE(line);

        if (PyByteArray_Resize(corked, used + n + 2) < 0) {
            return NULL;
        }
        memcpy(PyByteArray_AS_STRING(corked) + used, PyBytes_AS_STRING(line),
               (size_t)n);
        memcpy(PyByteArray_AS_STRING(corked) + used + n, "\r\n", 2);
        Py_RETURN_NONE;
    }
    sock = PyObject_GetAttr((PyObject *)self, st->str_sock);
    if (sock == NULL) {
        return NULL;
    }
    if (PyBytes_CheckExact(line)) {
        Py_ssize_t n = PyBytes_GET_SIZE(line);
        data = PyBytes_FromStringAndSize(NULL, n + 2);
        if (data == NULL) {
            goto done;
        }
        memcpy(PyBytes_AS_STRING(data), PyBytes_AS_STRING(line), (size_t)n);
        memcpy(PyBytes_AS_STRING(data) + n, "\r\n", 2);
    }
    else {
        data = PyNumber_Add(line, st->bytes_crlf);
        if (data == NULL) {
            goto done;
        }
    }
    res = PyObject_CallMethodOneArg(sock, st->str_sendall, data);

done:
    Py_DECREF(sock);
    Py_XDECREF(data);
    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    Py_RETURN_NONE;
}

/* poplib's _putcmd(): encode with self.encoding, then self._putline().
 * Runs Python code. */
PyObject *
cpoplib_putcmd_impl(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    PyObject *encoding, *encoded, *res;
    int on = cpoplib_debugging(self, st, 0);

    if (on < 0) {
        return NULL;
    }
    if (on && cpoplib_debug_print(st, "*cmd*", line) < 0) {
        return NULL;
    }
    encoding = PyObject_GetAttr((PyObject *)self, st->str_encoding);
    if (encoding == NULL) {
        return NULL;
    }
    encoded = cpoplib_encode_text(line, encoding);
    Py_DECREF(encoding);
    if (encoded == NULL) {
        return NULL;
    }
    if (!PyBytes_Check(encoded)) {
        PyErr_Format(PyExc_TypeError, "encoding a command gave %.200s, not "
                     "bytes", Py_TYPE(encoded)->tp_name);
        Py_DECREF(encoded);
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
    res = putline(self, st, encoded);
    Py_DECREF(encoded);
    return res;
}

/* ---- receiving ---- */

/* The package's _MAXLINE as poplib's `self.file.readline(_MAXLINE + 1)`
 * and `len(line) > _MAXLINE` use it: `_MAXLINE + 1` is computed, then
 * converted as io.BufferedReader.readline() converts its size, so that a
 * value poplib refuses is refused with the same exception.  *maxline may
 * be negative: -1 makes every line too long before anything is read,
 * less than -1 after a line was read without limit (readline(-n)). */
int
cpoplib_current_maxline(cpoplib_state *st, Py_ssize_t *maxline)
{
    PyObject *value = PyDict_GetItemWithError(st->namespace, st->str_maxline);
    PyObject *limit;
    Py_ssize_t n;

    if (value == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_NameError,
                            "name '_MAXLINE' is not defined");
        }
        return -1;
    }
    if (PyLong_CheckExact(value)) {
        n = PyNumber_AsSsize_t(value, PyExc_OverflowError);
        if (n == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (n == PY_SSIZE_T_MAX) {          /* _MAXLINE + 1 overflows */
            PyErr_SetString(PyExc_OverflowError,
                            "cannot fit 'int' into an index-sized integer");
            return -1;
        }
        *maxline = n;
        return 0;
    }
    Py_INCREF(value);
    limit = PyNumber_Add(value, st->int_one);
    Py_DECREF(value);
    if (limit == NULL) {
        return -1;
    }
    if (limit == Py_None) {
        n = PY_SSIZE_T_MAX;                 /* readline(None): no limit */
    }
    else if (!PyIndex_Check(limit)) {
        PyErr_Format(PyExc_TypeError,
                     "argument should be integer or None, not '%.200s'",
                     Py_TYPE(limit)->tp_name);
        Py_DECREF(limit);
        return -1;
    }
    else {
        n = PyNumber_AsSsize_t(limit, PyExc_OverflowError);
    }
    Py_DECREF(limit);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    *maxline = n == PY_SSIZE_T_MIN ? n : n - 1;
    return 0;
}

int
cpoplib_reader_line(cpoplib_state *st, ReaderObject *reader,
                    Py_ssize_t maxline, cpoplib_span *span)
{
    int rc;

    if (maxline == -1) {
        cpoplib_error(st, "line too long");     /* readline(0) is b'' */
        return -1;
    }
    rc = cpoplib_reader_next_line(
        reader, maxline < 0 || maxline == PY_SSIZE_T_MAX - 1
                ? PY_SSIZE_T_MAX : maxline + 1, span);
    if (rc == POP3_TOO_LONG || (rc >= 0 && maxline < 0)) {
        cpoplib_error(st, "line too long");
        return -1;
    }
    return rc;
}

/* The package's MAX_RESPONSE_SIZE: bytes a multi-line response body may
 * take on the wire, or -1 (None, the default: no limit, as poplib). */
int
cpoplib_current_response_cap(cpoplib_state *st, Py_ssize_t *cap)
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
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError,
                     "MAX_RESPONSE_SIZE must be None or an int, not %.200s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow < 0 || (overflow == 0 && n < 0)) {
        PyErr_SetString(PyExc_ValueError,
                        "MAX_RESPONSE_SIZE must be None or >= 0");
        return -1;
    }
    /* a cap past what a Py_ssize_t counts is no cap at all */
    *cap = overflow > 0 || n > PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX
                                                : (Py_ssize_t)n;
    return 0;
}

int
cpoplib_is_err_reply(cpoplib_state *st, PyObject *exc)
{
    PyObject *args;

    if (exc == NULL
        || !PyObject_TypeCheck(exc, (PyTypeObject *)st->error_proto)) {
        return 0;
    }
    args = ((PyBaseExceptionObject *)exc)->args;
    return args != NULL && PyTuple_Check(args) && PyTuple_GET_SIZE(args) == 1
           && PyBytes_Check(PyTuple_GET_ITEM(args, 0));
}

/* One raw line (LF included) from self.file: a new bytes object from our
 * reader, copied out of its buffer at once, or whatever file.readline()
 * returned; an empty object at EOF.  Runs Python code. */
static PyObject *
read_raw_line(cpoplib_state *st, PyObject *file, Py_ssize_t maxline)
{
    PyObject *raw, *limit;
    Py_ssize_t len;

    if (cpoplib_is_reader(st, file)) {
        ReaderObject *reader = (ReaderObject *)file;
        const char *data;
        cpoplib_span span;
        int rc = cpoplib_reader_line(st, reader, maxline, &span);

        if (rc < 0) {
            return NULL;
        }
        if (rc == POP3_EOF) {
            return PyBytes_FromStringAndSize(NULL, 0);
        }
        data = cpoplib_reader_span_data(reader, &span);
        if (data == NULL) {
            return NULL;
        }
        return PyBytes_FromStringAndSize(data,
                                         (Py_ssize_t)span.line.raw_len);
    }
    limit = PyLong_FromSsize_t(maxline == PY_SSIZE_T_MAX - 1 ? -1
                               : maxline + 1);
    if (limit == NULL) {
        return NULL;
    }
    raw = PyObject_CallMethodOneArg(file, st->str_readline, limit);
    Py_DECREF(limit);
    if (raw == NULL) {
        return NULL;
    }
    len = PyObject_Length(raw);
    if (len < 0) {
        Py_DECREF(raw);
        return NULL;
    }
    if (len > maxline) {
        Py_DECREF(raw);
        cpoplib_error(st, "line too long");
        return NULL;
    }
    return raw;
}

/* obj[start:stop], None where an end is NULL, as Python slices it */
static PyObject *
slice_of(PyObject *obj, PyObject *start, PyObject *stop)
{
    PyObject *slice = PySlice_New(start, stop, NULL), *res;

    if (slice == NULL) {
        return NULL;
    }
    res = PyObject_GetItem(obj, slice);
    Py_DECREF(slice);
    return res;
}

/* The end of poplib's _getline() on a line that is not bytes:
 *
 *     if not line: raise error_proto('-ERR EOF')
 *     octets = len(line)
 *     if line[-2:] == CRLF: return line[:-2], octets
 *     if line[:1] == CR: return line[1:-1], octets
 *     return line[:-1], octets
 *
 * with Python's operations, so a bytearray passes through as a bytearray
 * and a str or list fails where and as it fails there. */
static int
strip_generic(cpoplib_state *st, PyObject *raw, PyObject **line,
              PyObject **octets)
{
    PyObject *minus1 = NULL, *minus2 = NULL, *one = NULL, *part = NULL;
    Py_ssize_t n;
    int truth, rc = -1;

    truth = PyObject_IsTrue(raw);
    if (truth <= 0) {
        if (truth == 0) {
            cpoplib_error(st, "-ERR EOF");
        }
        return -1;
    }
    n = PyObject_Length(raw);
    if (n < 0) {
        return -1;
    }
    minus1 = PyLong_FromLong(-1);
    minus2 = PyLong_FromLong(-2);
    one = PyLong_FromLong(1);
    if (minus1 == NULL || minus2 == NULL || one == NULL) {
        goto done;
    }
    part = slice_of(raw, minus2, NULL);              /* line[-2:] */
    truth = part == NULL ? -1
            : PyObject_RichCompareBool(part, st->bytes_crlf, Py_EQ);
    if (truth < 0) {
        goto done;
    }
    if (truth) {
        *line = slice_of(raw, NULL, minus2);         /* line[:-2] */
    }
    else {
        Py_SETREF(part, slice_of(raw, NULL, one));   /* line[:1] */
        truth = part == NULL ? -1
                : PyObject_RichCompareBool(part, st->bytes_cr, Py_EQ);
        if (truth < 0) {
            goto done;
        }
        *line = truth ? slice_of(raw, one, minus1)   /* line[1:-1] */
                      : slice_of(raw, NULL, minus1); /* line[:-1] */
    }
    if (*line == NULL) {
        goto done;
    }
    *octets = PyLong_FromSsize_t(n);
    if (*octets == NULL) {
        Py_CLEAR(*line);
        goto done;
    }
    rc = 0;

done:
    Py_XDECREF(part);
    Py_XDECREF(minus1);
    Py_XDECREF(minus2);
    Py_XDECREF(one);
    return rc;
}

/* poplib's _getline(): one line, stripped, and its octet count.  Runs
 * Python code. */
int
cpoplib_getline_impl(POP3Object *self, cpoplib_state *st,
                     PyObject **out_line, PyObject **out_octets)
{
    PyObject *file = NULL, *raw = NULL, *line = NULL;
    Py_ssize_t maxline;
    pop3_line ln;
    int wire;

    *out_line = *out_octets = NULL;
    if (flush_cork(self, st) < 0
        || cpoplib_current_maxline(st, &maxline) < 0) {
        return -1;
    }
    file = PyObject_GetAttr((PyObject *)self, st->str_file);
    if (file == NULL) {
        return -1;
    }
    raw = read_raw_line(st, file, maxline);
    Py_DECREF(file);
    if (raw == NULL) {
        return -1;
    }
    wire = cpoplib_debugging(self, st, 1);
    if (wire < 0) {
        goto error;
    }
    if (wire && cpoplib_debug_print(st, "*get*", raw) < 0) {
        goto error;
    }
    if (!PyBytes_CheckExact(raw)) {
        /* what file.readline() gave is not bytes: poplib's own steps on
           whatever it is, so that it passes through or fails as there */
        if (strip_generic(st, raw, out_line, out_octets) < 0) {
            goto error;
        }
        Py_DECREF(raw);
        return 0;
    }
    if (PyBytes_GET_SIZE(raw) == 0) {
        cpoplib_error(st, "-ERR EOF");
        goto error;
    }
    pop3_strip_line(PyBytes_AS_STRING(raw), (size_t)PyBytes_GET_SIZE(raw),
                    &ln);
    line = PyBytes_FromStringAndSize(PyBytes_AS_STRING(raw) + ln.start,
                                     (Py_ssize_t)ln.len);
    if (line == NULL) {
        goto error;
    }
    *out_octets = PyLong_FromSize_t(ln.raw_len);
    if (*out_octets == NULL) {
        goto error;
    }
    Py_DECREF(raw);
    *out_line = line;
    return 0;

error:
    Py_XDECREF(raw);
    Py_XDECREF(line);
    return -1;
}

/* line.startswith(prefix) for a line a hook may have returned as any
 * object: bytes are compared in C, anything else through Python. */
static int
starts_with(cpoplib_state *st, PyObject *line, PyObject *prefix)
{
    PyObject *res;
    int truth;

    if (PyBytes_Check(line)) {
        Py_ssize_t n = PyBytes_GET_SIZE(prefix);
        return PyBytes_GET_SIZE(line) >= n
            && memcmp(PyBytes_AS_STRING(line), PyBytes_AS_STRING(prefix),
                      (size_t)n) == 0;
    }
    res = PyObject_CallMethodOneArg(line, st->str_startswith, prefix);
    if (res == NULL) {
        return -1;
    }
    truth = PyObject_IsTrue(res);
    Py_DECREF(res);
    return truth;
}

/* poplib's _getresp(): one line through self._getline(); raises
 * error_proto unless it starts with '+'.  Runs Python code. */
PyObject *
cpoplib_getresp_impl(POP3Object *self, cpoplib_state *st)
{
    PyObject *resp, *octets;
    int wire, ok;

    if (call_getline(self, st, &resp, &octets) < 0) {
        return NULL;
    }
    Py_DECREF(octets);
    wire = cpoplib_debugging(self, st, 1);
    if (wire < 0) {
        goto error;
    }
    if (wire && cpoplib_debug_print(st, "*resp*", resp) < 0) {
        goto error;
    }
    ok = starts_with(st, resp, st->bytes_plus);
    if (ok < 0) {
        goto error;
    }
    if (!ok) {
        cpoplib_error_obj(st, resp);
        goto error;
    }
    return resp;

error:
    Py_DECREF(resp);
    return NULL;
}


/* Add `n` octets to *total, unless that would pass `cap` (-1: none). */
static int
within_cap(Py_ssize_t cap, Py_ssize_t *total, Py_ssize_t n)
{
    if (n <= 0) {
        return 1;
    }
    if (cap >= 0 && n > cap - *total) {
        return 0;
    }
    *total = n > PY_SSIZE_T_MAX - *total ? PY_SSIZE_T_MAX : *total + n;
    return 1;
}

int
cpoplib_body_reader(POP3Object *self, cpoplib_state *st, PyObject **reader)
{
    PyObject *file;
    int ok = cpoplib_hook_is_default(self, st, HOOK_GETLINE), wire;

    *reader = NULL;
    if (ok <= 0) {
        return ok;
    }
    wire = cpoplib_debugging(self, st, 1);
    if (wire != 0) {
        return wire < 0 ? -1 : 0;
    }
    file = PyObject_GetAttr((PyObject *)self, st->str_file);
    if (file == NULL) {
        return -1;
    }
    if (!cpoplib_is_reader(st, file)) {
        Py_DECREF(file);
        return 0;
    }
    *reader = file;
    return 1;
}

/* The bulk path of _getlongresp(): every line of the body straight from
 * the reader's buffer into `lines`, no Python call per line (the reader
 * runs recv_into and signal handlers between lines, never while a line
 * is being copied out).  After a fill, which may have run Python code, it
 * checks that the bulk path still applies (a signal handler may have set
 * self.file = None or turned debugging on): if not, CPOPLIB_BODY_SWITCH, and the
 * rest is read line by line as poplib reads it.  *total counts the bytes
 * of the lines taken. */
static int
read_body_fast(POP3Object *self, cpoplib_state *st, ReaderObject *reader,
               PyObject *lines, Py_ssize_t cap, unsigned long long *octets,
               Py_ssize_t *total)
{
    Py_ssize_t maxline;

    if (cpoplib_current_maxline(st, &maxline) < 0) {
        return CPOPLIB_BODY_ERROR;
    }
    for (;;) {
        PyObject *line, *now;
        const char *data;
        cpoplib_span span;
        unsigned long long generation = reader->generation;
        int rc = cpoplib_reader_line(st, reader, maxline, &span);

        if (rc < 0) {
            return CPOPLIB_BODY_ERROR;
        }
        if (rc == POP3_EOF) {
            cpoplib_error(st, "-ERR EOF");
            return CPOPLIB_BODY_ERROR;
        }
        if (!within_cap(cap, total, (Py_ssize_t)span.line.raw_len)) {
            return CPOPLIB_BODY_TOO_LONG;
        }
        data = cpoplib_reader_span_data(reader, &span);
        if (data == NULL) {
            return CPOPLIB_BODY_ERROR;
        }
        pop3_unstuff(data, &span.line);
        if (span.line.is_terminator) {
            return 0;
        }
        line = PyBytes_FromStringAndSize(data + span.line.start,
                                         (Py_ssize_t)span.line.len);
        if (line == NULL) {
            return CPOPLIB_BODY_ERROR;
        }
        rc = PyList_Append(lines, line);
        Py_DECREF(line);
        if (rc < 0) {
            return CPOPLIB_BODY_ERROR;
        }
        *octets += span.line.octets;
        if (reader->generation != generation) {
            rc = cpoplib_body_reader(self, st, &now);
            Py_XDECREF(now);
            if (rc < 0) {
                return CPOPLIB_BODY_ERROR;
            }
            if (!rc || now != (PyObject *)reader) {
                return CPOPLIB_BODY_SWITCH;
            }
        }
    }
}

/* _getlongresp() line by line, through self._getline() (which may be a
 * Python override), with Python arithmetic on whatever it returns. */
static int
read_body_generic(POP3Object *self, cpoplib_state *st, PyObject *lines,
                  Py_ssize_t cap, PyObject **octets)
{
    PyObject *line = NULL, *o = NULL, *tmp;
    PyObject *one = PyLong_FromLong(1);
    Py_ssize_t total = 0;
    int rc = CPOPLIB_BODY_ERROR;

    if (one == NULL) {
        return CPOPLIB_BODY_ERROR;
    }
    for (;;) {
        int truth;

        if (call_getline(self, st, &line, &o) < 0) {
            goto done;
        }
        if (cap >= 0 && PyLong_Check(o)) {
            int overflow;
            long long n = PyLong_AsLongLongAndOverflow(o, &overflow);
            if (n == -1 && PyErr_Occurred()) {
                goto done;
            }
            if (overflow > 0 || n > PY_SSIZE_T_MAX) {
                n = PY_SSIZE_T_MAX;
            }
            if (!within_cap(cap, &total, (Py_ssize_t)n)) {
                rc = CPOPLIB_BODY_TOO_LONG;
                goto done;
            }
        }
        truth = PyObject_RichCompareBool(line, st->bytes_dot, Py_NE);
        if (truth < 0) {
            goto done;
        }
        if (!truth) {
            break;
        }
        truth = starts_with(st, line, st->bytes_dotdot);
        if (truth < 0) {
            goto done;
        }
        if (truth) {
            tmp = PyNumber_Subtract(o, one);
            if (tmp == NULL) {
                goto done;
            }
            Py_SETREF(o, tmp);
            tmp = PySequence_GetSlice(line, 1, PY_SSIZE_T_MAX);
            if (tmp == NULL) {
                goto done;
            }
            Py_SETREF(line, tmp);
        }
        tmp = PyNumber_Add(*octets, o);
        if (tmp == NULL) {
            goto done;
        }
        Py_SETREF(*octets, tmp);
        if (PyList_Append(lines, line) < 0) {
            goto done;
        }
        Py_CLEAR(line);
        Py_CLEAR(o);
    }
    rc = 0;

done:
    Py_XDECREF(line);
    Py_XDECREF(o);
    Py_DECREF(one);
    return rc;
}

void
cpoplib_close_keeping_error(POP3Object *self, cpoplib_state *st)
{
    PyObject *exc = cpoplib_fetch_exception(), *res;

    res = cpoplib_close(self, st);
    if (res == NULL) {
        cpoplib_chain_context(exc);
        return;
    }
    Py_DECREF(res);
    cpoplib_restore_exception(exc);
}

void
cpoplib_fail_too_long(POP3Object *self, cpoplib_state *st)
{
    cpoplib_error(st, "response too long");
    cpoplib_close_keeping_error(self, st);
}

/* poplib's _getlongresp(): (resp, lines, octets).  The body is read by
 * read_body_fast() when self.file is our own reader and no _getline
 * override or wire debugging is in effect, else line by line.  Runs
 * Python code. */
PyObject *
cpoplib_getlongresp_impl(POP3Object *self, cpoplib_state *st)
{
    PyObject *resp = NULL, *lines = NULL, *octets = NULL, *file = NULL;
    PyObject *result = NULL;
    unsigned long long count = 0;
    Py_ssize_t cap, total = 0;
    int fast, rc;

    resp = cpoplib_getresp(self, st);
    if (resp == NULL) {
        return NULL;
    }
    if (cpoplib_current_response_cap(st, &cap) < 0) {
        goto done;
    }
    lines = PyList_New(0);
    if (lines == NULL) {
        goto done;
    }
    /* Bulk path: _getline() is ours, the file is our reader and nothing
       is printed per line. */
    fast = cpoplib_body_reader(self, st, &file);
    if (fast < 0) {
        goto done;
    }
    rc = CPOPLIB_BODY_SWITCH;
    if (fast) {
        rc = read_body_fast(self, st, (ReaderObject *)file, lines, cap,
                            &count, &total);
    }
    if (rc == 0 || rc == CPOPLIB_BODY_SWITCH) {
        octets = PyLong_FromUnsignedLongLong(count);
        if (octets == NULL) {
            goto done;
        }
    }
    if (rc == CPOPLIB_BODY_SWITCH) {
        rc = read_body_generic(self, st, lines,
                               cap < 0 ? cap : cap - total, &octets);
    }
    if (rc == CPOPLIB_BODY_TOO_LONG) {
        cpoplib_fail_too_long(self, st);
        goto done;
    }
    if (rc < 0) {
        goto done;
    }
    result = PyTuple_Pack(3, resp, lines, octets);

done:
    Py_XDECREF(file);
    Py_XDECREF(octets);
    Py_XDECREF(lines);
    Py_DECREF(resp);
    return result;
}

/* poplib's _shortcmd(): self._putcmd(line), then self._getresp(). */
PyObject *
cpoplib_shortcmd_impl(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    PyObject *res = cpoplib_putcmd(self, st, line);

    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    return cpoplib_getresp(self, st);
}

/* poplib's _longcmd(): self._putcmd(line), then self._getlongresp().
 * MAX_RESPONSE_SIZE is checked before anything is sent. */
PyObject *
cpoplib_longcmd_impl(POP3Object *self, cpoplib_state *st, PyObject *line)
{
    PyObject *res;
    Py_ssize_t cap;

    if (cpoplib_current_response_cap(st, &cap) < 0) {
        return NULL;
    }
    res = cpoplib_putcmd(self, st, line);
    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    return cpoplib_getlongresp(self, st);
}

PyObject *
cpoplib_run_command(POP3Object *self, PyObject *line, int longcmd_)
{
    cpoplib_state *st = cpoplib_pop3_state(self);
    Py_ssize_t cap;

    /* MAX_RESPONSE_SIZE is checked before anything is sent, even when a
       _longcmd override reads the response */
    if (longcmd_ && cpoplib_current_response_cap(st, &cap) < 0) {
        return NULL;
    }
    return longcmd_ ? longcmd(self, st, line) : shortcmd(self, st, line);
}
