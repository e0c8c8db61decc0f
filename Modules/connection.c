/* connection.c -- the POP3 and POP3_SSL types: construction, connecting,
 * TLS set-up, closing, argument parsing and the method tables.  Hook
 * dispatch, sending and receiving are in protocol.c, the POP3 commands in
 * commands.c.
 *
 * Behaviour follows the standard library's poplib of the running
 * interpreter, method by method.  Instance attributes (host, port, sock,
 * file, welcome, _debugging, ...) live in the instance __dict__ exactly as
 * in poplib and are read through PyObject_GetAttr, so subclasses, vars()
 * and code that swaps `sock` or `file` see the same object model.
 *
 * Every function that calls back into Python keeps strong references to
 * the objects it uses: a hook, print() or close() may rebind attributes.
 */
#include "connection.h"

/* ---- small helpers ---- */

#if PY_VERSION_HEX >= 0x030C0000
static PyObject *
fetch_exception(void)
{
    return PyErr_GetRaisedException();
}

static void
restore_exception(PyObject *exc)
{
    PyErr_SetRaisedException(exc);
}
#else
static PyObject *
fetch_exception(void)
{
    PyObject *type, *value, *tb;

    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_DECREF(type);
    Py_XDECREF(tb);
    return value;
}

static void
restore_exception(PyObject *exc)
{
    PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
}
#endif

/* The pending exception gets `context` as its __context__, as if raised
 * while `context` was being handled; with none pending, `context` itself
 * is raised again.  Steals `context` (may be NULL). */
static void
chain_context(PyObject *context)
{
    if (context == NULL) {
        return;
    }
    PyObject *exc = fetch_exception();
    if (exc == NULL) {
        restore_exception(context);     /* nothing newer: re-raise it */
        return;
    }
    if (exc != context) {
        PyException_SetContext(exc, context);
    }
    else {
        Py_DECREF(context);
    }
    restore_exception(exc);
}

/* Replace the pending exception by error_proto(msg), chained to it. */
void
replace_error(cpoplib_state *st, const char *msg)
{
    PyObject *cause = fetch_exception();

    cpoplib_error(st, msg);
    chain_context(cause);
}

int
set_attr(POP3Object *self, PyObject *name, PyObject *value)
{
    return PyObject_SetAttr((PyObject *)self, name, value);
}

PyObject *
get_attr(POP3Object *self, PyObject *name)
{
    return PyObject_GetAttr((PyObject *)self, name);
}

/* Parse up to `max` arguments named `names` of a METH_FASTCALL |
 * METH_KEYWORDS method; the first `min` are required.  Missing optional
 * arguments are left NULL. */
int
parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames, const char *const *names, Py_ssize_t min,
           Py_ssize_t max, PyObject **out)
{
    Py_ssize_t i, j;

    for (i = 0; i < max; i++) {
        out[i] = NULL;
    }
    if (nargs > max) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %zd positional argument%s "
                     "(%zd given)", fname, max, max == 1 ? "" : "s", nargs);
        return -1;
    }
    for (i = 0; i < nargs; i++) {
        out[i] = args[i];
    }
    if (kwnames != NULL) {
        for (i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            for (j = 0; j < max; j++) {
                if (PyUnicode_CompareWithASCIIString(key, names[j]) == 0) {
                    break;
                }
            }
            if (j == max) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got an unexpected keyword argument '%U'",
                             fname, key);
                return -1;
            }
            if (out[j] != NULL) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got multiple values for argument '%s'",
                             fname, names[j]);
                return -1;
            }
            out[j] = args[nargs + i];
        }
    }
    for (i = 0; i < min; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing required argument '%s' (pos %zd)",
                         fname, names[i], i + 1);
            return -1;
        }
    }
    return 0;
}

/* `fmt % args`, exactly as poplib builds its command lines. */
PyObject *
format_command(const char *fmt, PyObject *args)
{
    PyObject *format = PyUnicode_FromString(fmt), *line;

    if (format == NULL) {
        return NULL;
    }
    line = PyUnicode_Format(format, args);
    Py_DECREF(format);
    return line;
}

PyObject *
format_command2(const char *fmt, PyObject *a, PyObject *b)
{
    PyObject *args = PyTuple_Pack(2, a, b), *line;

    if (args == NULL) {
        return NULL;
    }
    line = format_command(fmt, args);
    Py_DECREF(args);
    return line;
}

/* bytes(text, encoding) */
PyObject *
encode_text(PyObject *text, PyObject *encoding)
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

/* ---- debugging output, as poplib prints it ---- */


int
debug_flags(POP3Object *self, cpoplib_state *st)
{
    PyObject *level = get_attr(self, st->str_debugging);
    int flags = 0;

    if (level == NULL) {
        return -1;
    }
    if (PyLong_CheckExact(level)) {
        int overflow;
        long value = PyLong_AsLongAndOverflow(level, &overflow);
        if (value == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (overflow != 0 || value != 0) {
            flags |= DEBUG_ON;
        }
        if (overflow > 0 || (overflow == 0 && value > 1)) {
            flags |= DEBUG_WIRE;
        }
    }
    else {
        int truth = PyObject_IsTrue(level);
        PyObject *one = PyLong_FromLong(1);
        int above = one ? PyObject_RichCompareBool(level, one, Py_GT) : -1;
        Py_XDECREF(one);
        if (truth < 0 || above < 0) {
            goto error;
        }
        flags = (truth ? DEBUG_ON : 0) | (above ? DEBUG_WIRE : 0);
    }
    Py_DECREF(level);
    return flags;

error:
    Py_DECREF(level);
    return -1;
}

/* print(tag, repr(obj)) with the builtin print */
int
debug_print(const char *tag, PyObject *obj)
{
    PyObject *builtins = PyEval_GetBuiltins();
    PyObject *print = NULL, *tagobj = NULL, *repr = NULL, *res = NULL;

    if (builtins == NULL) {
        return -1;
    }
    print = PyDict_GetItemString(builtins, "print");
    if (print == NULL) {
        PyErr_SetString(PyExc_NameError, "name 'print' is not defined");
        return -1;
    }
    Py_INCREF(print);
    tagobj = PyUnicode_FromString(tag);
    repr = tagobj ? PyObject_Repr(obj) : NULL;
    if (repr != NULL) {
        res = PyObject_CallFunctionObjArgs(print, tagobj, repr, NULL);
    }
    Py_DECREF(print);
    Py_XDECREF(tagobj);
    Py_XDECREF(repr);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* ---- connection set-up and teardown ---- */

/* What poplib does with sock.makefile('rb'): our own reader when the
 * socket is a socket.socket whose makefile() is the standard one, the
 * object's own makefile('rb') otherwise. */
PyObject *
make_file(cpoplib_state *st, PyObject *sock)
{
    int is_socket = PyObject_IsInstance(sock, st->socket_type);

    if (is_socket < 0) {
        return NULL;
    }
    if (is_socket) {
        PyObject *makefile = PyObject_GetAttr((PyObject *)Py_TYPE(sock),
                                              st->str_makefile);
        if (makefile == NULL) {
            return NULL;
        }
        int standard = (makefile == st->socket_makefile);
        Py_DECREF(makefile);
        if (standard) {
            return cpoplib_reader_new(st, sock);
        }
    }
    return PyObject_CallMethodOneArg(sock, st->str_makefile, st->str_rb);
}

/* POP3.__init__: connects through self._create_socket(), makes
 * self.file and reads the greeting through self._getresp().  Runs Python
 * code (hooks, socket calls, the audit hook). */
static int
pop3_init_impl(POP3Object *self, cpoplib_state *st, PyObject *host,
               PyObject *port, PyObject *timeout)
{
    PyObject *sock = NULL, *file = NULL, *zero = NULL, *welcome = NULL;
    int rc = -1;

    if (set_attr(self, st->str_host, host) < 0
        || set_attr(self, st->str_port, port) < 0
        || set_attr(self, st->str_tls_established, Py_False) < 0) {
        return -1;
    }
    if (PySys_Audit("poplib.connect", "OOO", (PyObject *)self, host,
                    port) < 0) {
        return -1;
    }
    sock = PyObject_CallMethodOneArg((PyObject *)self, st->str_create_socket,
                                     timeout);
    if (sock == NULL || set_attr(self, st->str_sock, sock) < 0) {
        goto done;
    }
    Py_SETREF(sock, get_attr(self, st->str_sock));
    if (sock == NULL) {
        goto done;
    }
    file = make_file(st, sock);
    if (file == NULL || set_attr(self, st->str_file, file) < 0) {
        goto done;
    }
    zero = PyLong_FromLong(0);
    if (zero == NULL || set_attr(self, st->str_debugging, zero) < 0) {
        goto done;
    }
    welcome = do_getresp(self, st);
    if (welcome == NULL || set_attr(self, st->str_welcome, welcome) < 0) {
        goto done;
    }
    rc = 0;

done:
    Py_XDECREF(sock);
    Py_XDECREF(file);
    Py_XDECREF(zero);
    Py_XDECREF(welcome);
    return rc;
}

static int
pop3_init(POP3Object *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"host", "port", "timeout", NULL};
    cpoplib_state *st = pop3_state(self);
    PyObject *host, *port = NULL, *timeout = st->default_timeout;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OO:POP3", kwlist,
                                     &host, &port, &timeout)) {
        return -1;
    }
    if (port == NULL) {
        port = PyLong_FromLong(110);
        if (port == NULL) {
            return -1;
        }
    }
    else {
        Py_INCREF(port);
    }
    rc = pop3_init_impl(self, st, host, port, timeout);
    Py_DECREF(port);
    return rc;
}

/* poplib's _create_socket(): socket.create_connection((host, port),
 * timeout), with timeout=0 refused as poplib does.  Blocks in Python. */
static PyObject *
create_socket_impl(POP3Object *self, cpoplib_state *st, PyObject *timeout)
{
    PyObject *host = NULL, *port = NULL, *address = NULL, *connect = NULL;
    PyObject *sock = NULL;

    if (timeout != Py_None) {
        int truth = PyObject_IsTrue(timeout);
        if (truth < 0) {
            return NULL;
        }
        if (!truth) {
            PyErr_SetString(PyExc_ValueError,
                            "Non-blocking socket (timeout=0) is not supported");
            return NULL;
        }
    }
    host = get_attr(self, st->str_host);
    port = host ? get_attr(self, st->str_port) : NULL;
    address = port ? PyTuple_Pack(2, host, port) : NULL;
    /* looked up at call time, as poplib does, so that patches apply */
    connect = address ? PyObject_GetAttr(st->socket_module,
                                         st->str_create_connection) : NULL;
    if (connect != NULL) {
        sock = PyObject_CallFunctionObjArgs(connect, address, timeout, NULL);
    }
    Py_XDECREF(host);
    Py_XDECREF(port);
    Py_XDECREF(address);
    Py_XDECREF(connect);
    return sock;
}

/* sock.shutdown(SHUT_RDWR), ignoring ENOTCONN, then sock.close() */
static int
shutdown_socket(cpoplib_state *st, PyObject *sock)
{
    PyObject *res, *pending = NULL;

    res = PyObject_CallMethodOneArg(sock, st->str_shutdown, st->shut_rdwr);
    if (res != NULL) {
        Py_DECREF(res);
    }
    else {
        int ignore = 0;
        pending = fetch_exception();
        if (PyObject_TypeCheck(pending, (PyTypeObject *)PyExc_OSError)) {
            PyObject *code = PyObject_GetAttr(pending, st->str_errno);
            if (code == NULL) {
                chain_context(pending);
                return -1;
            }
            if (PyLong_Check(code)) {
                long value = PyLong_AsLong(code);
                if (value == -1 && PyErr_Occurred()) {
                    PyErr_Clear();
                }
                ignore = (value == ENOTCONN);
            }
            Py_DECREF(code);
        }
        if (ignore) {
            Py_CLEAR(pending);
        }
    }
    /* finally: sock.close() */
    res = PyObject_CallMethodNoArgs(sock, st->str_close);
    if (res == NULL) {
        chain_context(pending);
        return -1;
    }
    Py_DECREF(res);
    if (pending != NULL) {
        restore_exception(pending);
        return -1;
    }
    return 0;
}

/* poplib's close(): file.close(), then (finally) sock.shutdown() and
 * sock.close(); a later error gets the earlier one as __context__, as in
 * poplib's try/finally.  Runs Python code. */
PyObject *
close_impl(POP3Object *self, cpoplib_state *st)
{
    PyObject *file, *sock, *pending = NULL;

    /* try: close the file */
    file = get_attr(self, st->str_file);
    if (file == NULL || set_attr(self, st->str_file, Py_None) < 0) {
        pending = fetch_exception();
    }
    else if (file != Py_None) {
        PyObject *res = PyObject_CallMethodNoArgs(file, st->str_close);
        if (res == NULL) {
            pending = fetch_exception();
        }
        Py_XDECREF(res);
    }
    Py_XDECREF(file);

    /* finally: shut the socket down and close it */
    sock = get_attr(self, st->str_sock);
    if (sock == NULL || set_attr(self, st->str_sock, Py_None) < 0) {
        Py_XDECREF(sock);
        chain_context(pending);
        return NULL;
    }
    if (sock != Py_None && shutdown_socket(st, sock) < 0) {
        Py_DECREF(sock);
        chain_context(pending);
        return NULL;
    }
    Py_DECREF(sock);
    if (pending != NULL) {
        restore_exception(pending);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *
create_stdlib_context(cpoplib_state *st, PyObject *kwargs)
{
    PyObject *factory, *empty, *context;

    factory = PyObject_GetAttr(st->ssl_module, st->str_create_stdlib_context);
    if (factory == NULL) {
        return NULL;
    }
    empty = PyTuple_New(0);
    context = empty ? PyObject_Call(factory, empty, kwargs) : NULL;
    Py_XDECREF(empty);
    Py_DECREF(factory);
    return context;
}

/* context.wrap_socket(sock, server_hostname=host) */
PyObject *
wrap_socket(cpoplib_state *st, PyObject *context, PyObject *sock,
            PyObject *host)
{
    PyObject *args[3] = {context, sock, host};
    PyObject *kwnames = PyTuple_Pack(1, st->str_server_hostname), *res;

    if (kwnames == NULL) {
        return NULL;
    }
    res = PyObject_VectorcallMethod(st->str_wrap_socket, args,
                                    2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                    kwnames);
    Py_DECREF(kwnames);
    return res;
}

/* ---- the Python-visible hooks ---- */

/* Parse the single required argument `argname` of method `fname`. */
PyObject *
one_arg(const char *fname, const char *argname, PyObject *const *args,
        Py_ssize_t nargs, PyObject *kwnames)
{
    const char *names[1] = {argname};
    PyObject *arg;

    if (parse_args(fname, args, nargs, kwnames, names, 1, 1, &arg) < 0) {
        return NULL;
    }
    return arg;
}

/* Parse the single optional argument `argname`; None when omitted. */
int
optional_arg(const char *fname, const char *argname, PyObject *const *args,
             Py_ssize_t nargs, PyObject *kwnames, PyObject **arg)
{
    const char *names[1] = {argname};

    if (parse_args(fname, args, nargs, kwnames, names, 0, 1, arg) < 0) {
        return -1;
    }
    if (*arg == NULL) {
        *arg = Py_None;
    }
    return 0;
}

#define HOOK_METHOD_1(NAME, ARGNAME)                                       \
    static PyObject *                                                      \
    pop3_##NAME(POP3Object *self, PyObject *const *args, Py_ssize_t nargs, \
                PyObject *kwnames)                                         \
    {                                                                      \
        PyObject *arg = one_arg("_" #NAME, ARGNAME, args, nargs, kwnames); \
        if (arg == NULL) {                                                 \
            return NULL;                                                   \
        }                                                                  \
        return NAME##_impl(self, pop3_state(self), arg);                   \
    }

HOOK_METHOD_1(putline, "line")
HOOK_METHOD_1(putcmd, "line")
HOOK_METHOD_1(shortcmd, "line")
HOOK_METHOD_1(longcmd, "line")

static PyObject *
pop3_create_socket(POP3Object *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    PyObject *timeout = one_arg("_create_socket", "timeout", args, nargs,
                                kwnames);
    if (timeout == NULL) {
        return NULL;
    }
    return create_socket_impl(self, pop3_state(self), timeout);
}

static PyObject *
pop3_getline(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *line, *octets, *pair;

    if (getline_impl(self, pop3_state(self), &line, &octets) < 0) {
        return NULL;
    }
    pair = PyTuple_Pack(2, line, octets);
    Py_DECREF(line);
    Py_DECREF(octets);
    return pair;
}

static PyObject *
pop3_getresp(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return getresp_impl(self, pop3_state(self));
}

static PyObject *
pop3_getlongresp(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return getlongresp_impl(self, pop3_state(self));
}

static PyObject *
pop3_close(POP3Object *self, PyObject *Py_UNUSED(ignored))
{
    return close_impl(self, pop3_state(self));
}

/* ---- type plumbing ---- */

static PyObject *
pop3_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    cpoplib_state *st = cpoplib_state_from_type(type);
    POP3Object *self;

    if (st == NULL) {
        return NULL;
    }
    self = (POP3Object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->module = Py_NewRef(PyType_GetModule(st->POP3_Type));
    return (PyObject *)self;
}

static int
pop3_traverse(POP3Object *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->dict);
    Py_VISIT(self->module);
    return 0;
}

static int
pop3_clear(POP3Object *self)
{
    Py_CLEAR(self->dict);
    Py_CLEAR(self->module);
    return 0;
}

static void
pop3_dealloc(POP3Object *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    (void)pop3_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

#define FAST(fn) ((PyCFunction)(void (*)(void))(fn))
#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

PyDoc_STRVAR(pop3_apop_doc,
"apop($self, /, user, password)\n--\n\n"
"Log in with APOP: send the MD5 digest of the greeting's timestamp and\n"
"the password.  Raises error_proto if the greeting has no timestamp.");

PyDoc_STRVAR(pop3_stls_doc,
"stls($self, /, context=None)\n--\n\n"
"Switch the connection to TLS with STLS (RFC 2595).  Whatever the server\n"
"sent after its +OK and before the handshake is discarded.");

PyDoc_STRVAR(doc_putline, "_putline($self, /, line)\n--\n\n"
"Send one line (bytes); CRLF is appended.  Raises the audit event\n"
"poplib.putline.");
PyDoc_STRVAR(doc_putcmd, "_putcmd($self, /, line)\n--\n\n"
"Encode a command with self.encoding and send it through _putline().\n"
"ValueError if it contains a control character.");
PyDoc_STRVAR(doc_getline, "_getline($self, /)\n--\n\n"
"Read one line: (line without its line ending, octets read).");
PyDoc_STRVAR(doc_getresp, "_getresp($self, /)\n--\n\n"
"Read a status line; error_proto unless it starts with '+'.");
PyDoc_STRVAR(doc_getlongresp, "_getlongresp($self, /)\n--\n\n"
"Read a multi-line response: (response, [line, ...], octets).");
PyDoc_STRVAR(doc_shortcmd, "_shortcmd($self, /, line)\n--\n\n"
"Send a command and return its status line.");
PyDoc_STRVAR(doc_longcmd, "_longcmd($self, /, line)\n--\n\n"
"Send a command and return its multi-line response.");
PyDoc_STRVAR(doc_create_socket, "_create_socket($self, /, timeout)\n--\n\n"
"Open the connection; timeout=0 is refused with ValueError.");
PyDoc_STRVAR(doc_getwelcome, "getwelcome($self, /)\n--\n\n"
"Return the server's greeting line.");
PyDoc_STRVAR(doc_set_debuglevel, "set_debuglevel($self, /, level)\n--\n\n"
"1 prints commands, 2 also every line sent and received.");
PyDoc_STRVAR(doc_user, "user($self, /, user)\n--\n\nSend USER.");
PyDoc_STRVAR(doc_pass, "pass_($self, /, pswd)\n--\n\n"
"Send PASS; the server usually locks the mailbox until quit().");
PyDoc_STRVAR(doc_stat, "stat($self, /)\n--\n\n"
"Return (message count, mailbox size) as two ints.");
PyDoc_STRVAR(doc_list, "list($self, /, which=None)\n--\n\n"
"Without an argument: (response, ['msgnum octets', ...], octets);\n"
"with one: the scan listing line of that message.");
PyDoc_STRVAR(doc_retr, "retr($self, /, which)\n--\n\n"
"Retrieve a message: (response, [line, ...], octets).");
PyDoc_STRVAR(doc_dele, "dele($self, /, which)\n--\n\n"
"Mark a message for deletion.");
PyDoc_STRVAR(doc_noop, "noop($self, /)\n--\n\nSend NOOP.");
PyDoc_STRVAR(doc_rset, "rset($self, /)\n--\n\n"
"Unmark messages marked for deletion.");
PyDoc_STRVAR(doc_quit, "quit($self, /)\n--\n\n"
"Send QUIT (the server commits deletions) and close the connection.");
PyDoc_STRVAR(doc_close, "close($self, /)\n--\n\n"
"Close the connection without sending anything.");
PyDoc_STRVAR(doc_rpop, "rpop($self, /, user)\n--\n\nSend RPOP.");
PyDoc_STRVAR(doc_top, "top($self, /, which, howmuch)\n--\n\n"
"Retrieve the headers and the first howmuch body lines of a message.");
PyDoc_STRVAR(doc_uidl, "uidl($self, /, which=None)\n--\n\n"
"Unique ids: (response, ['msgnum uid', ...], octets), or the line of\n"
"one message.");
PyDoc_STRVAR(doc_utf8, "utf8($self, /)\n--\n\n"
"Ask for UTF-8 mode (RFC 6856); returns the response.");
PyDoc_STRVAR(doc_capa, "capa($self, /)\n--\n\n"
"Return the server's capabilities (RFC 2449) as a dict of lists.");

static PyMethodDef pop3_methods[] = {
    {"_create_socket", FAST(pop3_create_socket), FASTKW, doc_create_socket},
    {"_putline", FAST(pop3_putline), FASTKW, doc_putline},
    {"_putcmd", FAST(pop3_putcmd), FASTKW, doc_putcmd},
    {"_getline", (PyCFunction)pop3_getline, METH_NOARGS, doc_getline},
    {"_getresp", (PyCFunction)pop3_getresp, METH_NOARGS, doc_getresp},
    {"_getlongresp", (PyCFunction)pop3_getlongresp, METH_NOARGS,
     doc_getlongresp},
    {"_shortcmd", FAST(pop3_shortcmd), FASTKW, doc_shortcmd},
    {"_longcmd", FAST(pop3_longcmd), FASTKW, doc_longcmd},
    {"getwelcome", (PyCFunction)pop3_getwelcome, METH_NOARGS,
     doc_getwelcome},
    {"set_debuglevel", FAST(pop3_set_debuglevel), FASTKW,
     doc_set_debuglevel},
    {"user", FAST(pop3_user), FASTKW, doc_user},
    {"pass_", FAST(pop3_pass_), FASTKW, doc_pass},
    {"stat", (PyCFunction)pop3_stat, METH_NOARGS, doc_stat},
    {"list", FAST(pop3_list), FASTKW, doc_list},
    {"retr", FAST(pop3_retr), FASTKW, doc_retr},
    {"dele", FAST(pop3_dele), FASTKW, doc_dele},
    {"noop", (PyCFunction)pop3_noop, METH_NOARGS, doc_noop},
    {"rset", (PyCFunction)pop3_rset, METH_NOARGS, doc_rset},
    {"quit", (PyCFunction)pop3_quit, METH_NOARGS, doc_quit},
    {"close", (PyCFunction)pop3_close, METH_NOARGS, doc_close},
    {"rpop", FAST(pop3_rpop), FASTKW, doc_rpop},
    {"apop", FAST(pop3_apop), FASTKW, pop3_apop_doc},
    {"top", FAST(pop3_top), FASTKW, doc_top},
    {"uidl", FAST(pop3_uidl), FASTKW, doc_uidl},
    {"utf8", (PyCFunction)pop3_utf8, METH_NOARGS, doc_utf8},
    {"capa", (PyCFunction)pop3_capa, METH_NOARGS, doc_capa},
    {"stls", FAST(pop3_stls), FASTKW, pop3_stls_doc},
    {NULL, NULL}
};

#if PY_VERSION_HEX >= 0x030C0000
#  define CPOPLIB_T_PYSSIZET Py_T_PYSSIZET
#  define CPOPLIB_READONLY Py_READONLY
#else
#  include "structmember.h"
#  define CPOPLIB_T_PYSSIZET T_PYSSIZET
#  define CPOPLIB_READONLY READONLY
#endif

static PyMemberDef pop3_members[] = {
    {"__dictoffset__", CPOPLIB_T_PYSSIZET, offsetof(POP3Object, dict),
     CPOPLIB_READONLY, NULL},
    {"__weaklistoffset__", CPOPLIB_T_PYSSIZET,
     offsetof(POP3Object, weakreflist), CPOPLIB_READONLY, NULL},
    {NULL}
};

static PyGetSetDef pop3_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL}
};

PyDoc_STRVAR(pop3_doc,
"POP3(host, port=110, timeout=<socket default>)\n\n"
"A POP3 client connection (RFC 1939), the drop-in equivalent of\n"
"poplib.POP3: it connects on creation and reads the greeting.  Commands\n"
"are methods (user, pass_, stat, list, retr, dele, noop, rset, quit,\n"
"rpop, apop, top, uidl, utf8, capa, stls); server errors raise\n"
"error_proto.  Subclasses may override any of the underscore hooks.");

static PyType_Slot pop3_slots[] = {
    {Py_tp_doc, (void *)pop3_doc},
    {Py_tp_new, pop3_new},
    {Py_tp_init, pop3_init},
    {Py_tp_dealloc, pop3_dealloc},
    {Py_tp_traverse, pop3_traverse},
    {Py_tp_clear, pop3_clear},
    {Py_tp_methods, pop3_methods},
    {Py_tp_members, pop3_members},
    {Py_tp_getset, pop3_getset},
    {0, NULL}
};

static PyType_Spec pop3_spec = {
    .name = "cpoplib._cpoplib.POP3",
    .basicsize = sizeof(POP3Object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = pop3_slots,
};

/* ---- POP3_SSL ---- */

static int
pop3_ssl_init(POP3Object *self, PyObject *args, PyObject *kwds)
{
    cpoplib_state *st = pop3_state(self);
    PyObject *host, *port = NULL, *timeout = st->default_timeout;
    PyObject *context = Py_None;
    int rc;
#if PY_VERSION_HEX < 0x030C0000
    /* 3.10 and 3.11 still take the deprecated keyfile and certfile */
    static char *kwlist[] = {"host", "port", "keyfile", "certfile",
                             "timeout", "context", NULL};
    PyObject *keyfile = Py_None, *certfile = Py_None;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OOOOO:POP3_SSL", kwlist,
                                     &host, &port, &keyfile, &certfile,
                                     &timeout, &context)) {
        return -1;
    }
    if (context != Py_None && keyfile != Py_None) {
        PyErr_SetString(PyExc_ValueError,
                        "context and keyfile arguments are mutually "
                        "exclusive");
        return -1;
    }
    if (context != Py_None && certfile != Py_None) {
        PyErr_SetString(PyExc_ValueError,
                        "context and certfile arguments are mutually "
                        "exclusive");
        return -1;
    }
    if (keyfile != Py_None || certfile != Py_None) {
        if (PyErr_WarnEx(PyExc_DeprecationWarning,
                         "keyfile and certfile are deprecated, use a "
                         "custom context instead", 1) < 0) {
            return -1;
        }
    }
    if (set_attr(self, st->str_keyfile, keyfile) < 0
        || set_attr(self, st->str_certfile, certfile) < 0) {
        return -1;
    }
    if (context == Py_None) {
        PyObject *kwargs = Py_BuildValue("{OOOO}", st->str_certfile, certfile,
                                         st->str_keyfile, keyfile);
        if (kwargs == NULL) {
            return -1;
        }
        context = create_stdlib_context(st, kwargs);
        Py_DECREF(kwargs);
    }
    else {
        Py_INCREF(context);
    }
#else
    static char *kwlist[] = {"host", "port", "timeout", "context", NULL};

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O$OO:POP3_SSL", kwlist,
                                     &host, &port, &timeout, &context)) {
        return -1;
    }
    if (context == Py_None) {
        context = create_stdlib_context(st, NULL);
    }
    else {
        Py_INCREF(context);
    }
#endif
    if (context == NULL) {
        return -1;
    }
    rc = set_attr(self, st->str_context, context);
    Py_DECREF(context);
    if (rc < 0) {
        return -1;
    }
    if (port == NULL) {
        port = PyLong_FromLong(995);
        if (port == NULL) {
            return -1;
        }
    }
    else {
        Py_INCREF(port);
    }
    rc = pop3_init_impl(self, st, host, port, timeout);
    Py_DECREF(port);
    return rc;
}

static PyObject *
pop3_ssl_create_socket(POP3Object *self, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames)
{
    cpoplib_state *st = pop3_state(self);
    PyObject *timeout, *sock, *context = NULL, *host = NULL, *tls = NULL;

    timeout = one_arg("_create_socket", "timeout", args, nargs, kwnames);
    if (timeout == NULL) {
        return NULL;
    }
    sock = create_socket_impl(self, st, timeout);
    if (sock == NULL) {
        return NULL;
    }
    context = get_attr(self, st->str_context);
    host = context ? get_attr(self, st->str_host) : NULL;
    if (host != NULL) {
        tls = wrap_socket(st, context, sock, host);
    }
    Py_DECREF(sock);
    Py_XDECREF(context);
    Py_XDECREF(host);
    return tls;
}

static PyObject *
pop3_ssl_stls(POP3Object *self, PyObject *args, PyObject *kwds)
{
#if PY_VERSION_HEX < 0x030C0000
    static char *kwlist[] = {"keyfile", "certfile", "context", NULL};
    PyObject *a = NULL, *b = NULL, *c = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO:stls", kwlist,
                                     &a, &b, &c)) {
        return NULL;
    }
#else
    static char *kwlist[] = {"context", NULL};
    PyObject *c = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:stls", kwlist, &c)) {
        return NULL;
    }
#endif
    cpoplib_error(pop3_state(self), "-ERR TLS session already established");
    return NULL;
}

#if PY_VERSION_HEX < 0x030C0000
#  define SSL_STLS_SIG "stls($self, /, keyfile=None, certfile=None, context=None)"
#else
#  define SSL_STLS_SIG "stls($self, /, context=None)"
#endif

PyDoc_STRVAR(pop3_ssl_stls_doc, SSL_STLS_SIG "\n--\n\n"
"Always raises error_proto: the session is already TLS.");

static PyMethodDef pop3_ssl_methods[] = {
    {"_create_socket", FAST(pop3_ssl_create_socket), FASTKW,
     doc_create_socket},
    {"stls", (PyCFunction)(void (*)(void))pop3_ssl_stls,
     METH_VARARGS | METH_KEYWORDS, pop3_ssl_stls_doc},
    {NULL, NULL}
};

PyDoc_STRVAR(pop3_ssl_doc,
"POP3_SSL(host, port=995, *, timeout=<socket default>, context=None)\n\n"
"A POP3 connection over TLS from the first byte (POP3S), the drop-in\n"
"equivalent of poplib.POP3_SSL.  Without a context, the one of\n"
"ssl._create_stdlib_context() is used, as poplib does.");

static PyType_Slot pop3_ssl_slots[] = {
    {Py_tp_doc, (void *)pop3_ssl_doc},
    {Py_tp_init, pop3_ssl_init},
    {Py_tp_dealloc, pop3_dealloc},
    {Py_tp_traverse, pop3_traverse},
    {Py_tp_clear, pop3_clear},
    {Py_tp_methods, pop3_ssl_methods},
    {0, NULL}
};

static PyType_Spec pop3_ssl_spec = {
    .name = "cpoplib._cpoplib.POP3_SSL",
    .basicsize = sizeof(POP3Object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = pop3_ssl_slots,
};

int
cpoplib_connection_add_types(PyObject *module, cpoplib_state *st)
{
    PyObject *encoding;

    st->POP3_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &pop3_spec, NULL);
    if (st->POP3_Type == NULL) {
        return -1;
    }
    encoding = PyUnicode_FromString("UTF-8");
    if (encoding == NULL) {
        return -1;
    }
    if (PyObject_SetAttr((PyObject *)st->POP3_Type, st->str_encoding,
                         encoding) < 0) {
        Py_DECREF(encoding);
        return -1;
    }
    Py_DECREF(encoding);
    if (PyObject_SetAttr((PyObject *)st->POP3_Type, st->str_timestamp,
                         st->timestamp_re) < 0) {
        return -1;
    }
    for (int i = 0; i < HOOK_COUNT; i++) {
        st->hook_defaults[i] = PyObject_GetAttr((PyObject *)st->POP3_Type,
                                                st->hook_names[i]);
        if (st->hook_defaults[i] == NULL) {
            return -1;
        }
    }
    if (PyModule_AddType(module, st->POP3_Type) < 0) {
        return -1;
    }
    if (st->ssl_module == NULL) {
        return 0;
    }
    st->POP3_SSL_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &pop3_ssl_spec, (PyObject *)st->POP3_Type);
    if (st->POP3_SSL_Type == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->POP3_SSL_Type);
}
