/* connect.c -- opening a connection: POP3.__init__ and POP3_SSL.__init__
 * once their arguments are parsed (_create_socket(), the file of the
 * socket, the greeting through self._getresp()), the TLS set-up of
 * POP3_SSL and stls().
 *
 * Behaviour follows the standard library's poplib of the running
 * interpreter, step by step.  Instance attributes (host, port, sock,
 * file, welcome, _debugging, ...) live in the instance __dict__ exactly as
 * in poplib and are set and read through PyObject_SetAttr/GetAttr, so
 * subclasses, vars() and code that swaps `sock` or `file` see the same
 * object model; `sock` and `file` are read back after being set, as a
 * property may have replaced them.
 *
 * May call: commands.c, errors.c, protocol.c, reader.c.  Runs Python
 * code throughout (socket.create_connection, ssl, hooks, the audit hook).
 */
#include "connection.h"

/* What poplib does with sock.makefile('rb'): our own reader when the
 * socket is a socket.socket whose makefile() is the standard one, the
 * object's own makefile('rb') otherwise.  Runs Python code. */
static PyObject *
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
int
cpoplib_pop3_init_impl(POP3Object *self, cpoplib_state *st, PyObject *host,
                       PyObject *port, PyObject *timeout)
{
    PyObject *obj = (PyObject *)self;
    PyObject *sock = NULL, *file = NULL, *zero = NULL, *welcome = NULL;
    int rc = -1;

    if (PyObject_SetAttr(obj, st->str_host, host) < 0
        || PyObject_SetAttr(obj, st->str_port, port) < 0
        || PyObject_SetAttr(obj, st->str_tls_established, Py_False) < 0) {
        return -1;
    }
    if (PySys_Audit("poplib.connect", "OOO", obj, host, port) < 0) {
        return -1;
    }
    sock = PyObject_CallMethodOneArg(obj, st->str_create_socket, timeout);
    if (sock == NULL || PyObject_SetAttr(obj, st->str_sock, sock) < 0) {
        goto done;
    }
    Py_SETREF(sock, PyObject_GetAttr(obj, st->str_sock));
    if (sock == NULL) {
        goto done;
    }
    file = make_file(st, sock);
    if (file == NULL || PyObject_SetAttr(obj, st->str_file, file) < 0) {
        goto done;
    }
    zero = PyLong_FromLong(0);
    if (zero == NULL || PyObject_SetAttr(obj, st->str_debugging, zero) < 0) {
        goto done;
    }
    welcome = cpoplib_getresp(self, st);
    if (welcome == NULL
        || PyObject_SetAttr(obj, st->str_welcome, welcome) < 0) {
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

/* poplib's _create_socket(): socket.create_connection((host, port),
 * timeout), with timeout=0 refused as poplib does.  Blocks in Python. */
PyObject *
cpoplib_create_socket_impl(POP3Object *self, cpoplib_state *st,
                           PyObject *timeout)
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
    host = PyObject_GetAttr((PyObject *)self, st->str_host);
    if (host == NULL) {
        goto done;
    }
    port = PyObject_GetAttr((PyObject *)self, st->str_port);
    if (port == NULL) {
        goto done;
    }
    address = PyTuple_Pack(2, host, port);
    if (address == NULL) {
        goto done;
    }
    /* looked up at call time, as poplib does, so that patches apply */
    connect = PyObject_GetAttr(st->socket_module, st->str_create_connection);
    if (connect == NULL) {
        goto done;
    }
    sock = PyObject_CallFunctionObjArgs(connect, address, timeout, NULL);

done:
    Py_XDECREF(host);
    Py_XDECREF(port);
    Py_XDECREF(address);
    Py_XDECREF(connect);
    return sock;
}

static PyObject *
create_stdlib_context(cpoplib_state *st, PyObject *kwargs)
{
    PyObject *factory, *empty, *context;

    factory = PyObject_GetAttr(st->ssl_module, st->str_create_stdlib_context);
    if (factory == NULL) {
        return NULL;
    }
    empty = PyTuple_New(0);
    if (empty == NULL) {
        Py_DECREF(factory);
        return NULL;
    }
    context = PyObject_Call(factory, empty, kwargs);
    Py_DECREF(empty);
    Py_DECREF(factory);
    return context;
}

/* context.wrap_socket(sock, server_hostname=host) */
static PyObject *
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

/* POP3_SSL._create_socket(): super()._create_socket(timeout), so that a
 * patched or subclassed POP3._create_socket is used as with poplib, then
 * self.context.wrap_socket(sock, server_hostname=self.host). */
PyObject *
cpoplib_ssl_create_socket_impl(POP3Object *self, cpoplib_state *st,
                               PyObject *timeout)
{
    PyObject *super = NULL, *sock = NULL, *context = NULL, *host = NULL;
    PyObject *tls = NULL;

    super = PyObject_CallFunctionObjArgs((PyObject *)&PySuper_Type,
                                         (PyObject *)st->POP3_SSL_Type,
                                         (PyObject *)self, NULL);
    if (super == NULL) {
        return NULL;
    }
    sock = PyObject_CallMethodOneArg(super, st->str_create_socket, timeout);
    Py_DECREF(super);
    if (sock == NULL) {
        return NULL;
    }
    context = PyObject_GetAttr((PyObject *)self, st->str_context);
    if (context == NULL) {
        goto done;
    }
    host = PyObject_GetAttr((PyObject *)self, st->str_host);
    if (host == NULL) {
        goto done;
    }
    tls = wrap_socket(st, context, sock, host);

done:
    Py_DECREF(sock);
    Py_XDECREF(context);
    Py_XDECREF(host);
    return tls;
}

/* POP3_SSL.__init__ once its arguments are parsed (keyfile and certfile
 * are NULL on 3.12+, where poplib no longer takes them).  Runs Python
 * code. */
int
cpoplib_pop3_ssl_init_impl(POP3Object *self, cpoplib_state *st,
                           PyObject *host, PyObject *port, PyObject *keyfile,
                           PyObject *certfile, PyObject *timeout,
                           PyObject *context)
{
    PyObject *obj = (PyObject *)self;
    int rc;

    if (keyfile != NULL && certfile != NULL) {
        /* 3.10 and 3.11 still take the deprecated keyfile and certfile */
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
            /* stacklevel 2: the caller of cpoplib's Python __init__ */
            if (PyErr_WarnEx(PyExc_DeprecationWarning,
                             "keyfile and certfile are deprecated, use a "
                             "custom context instead", 2) < 0) {
                return -1;
            }
        }
        if (PyObject_SetAttr(obj, st->str_keyfile, keyfile) < 0
            || PyObject_SetAttr(obj, st->str_certfile, certfile) < 0) {
            return -1;
        }
    }
    if (context == Py_None) {
        PyObject *kwargs = NULL;
        if (keyfile != NULL && certfile != NULL) {
            kwargs = Py_BuildValue("{OOOO}", st->str_certfile, certfile,
                                   st->str_keyfile, keyfile);
            if (kwargs == NULL) {
                return -1;
            }
        }
        context = create_stdlib_context(st, kwargs);
        Py_XDECREF(kwargs);
        if (context == NULL) {
            return -1;
        }
    }
    else {
        Py_INCREF(context);
    }
    rc = PyObject_SetAttr(obj, st->str_context, context);
    Py_DECREF(context);
    if (rc < 0) {
        return -1;
    }
    return cpoplib_pop3_init_impl(self, st, host, port, timeout);
}

/* ---- STARTTLS ---- */

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
cpoplib_stls_impl(POP3Object *self, PyObject *context_arg)
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
        context = create_stdlib_context(st, NULL);
    }
    else {
        context = Py_NewRef(context_arg);
    }
    if (context == NULL) {
        goto done;
    }
    resp = cpoplib_run_command(self, st->cmd_stls, 0);
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
    tls = wrap_socket(st, context, sock, host);
    if (tls == NULL
        || PyObject_SetAttr((PyObject *)self, st->str_sock, tls) < 0) {
        goto done;
    }
    Py_SETREF(tls, PyObject_GetAttr((PyObject *)self, st->str_sock));
    if (tls == NULL) {
        goto done;
    }
    file = make_file(st, tls);
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
