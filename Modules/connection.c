/* connection.c -- the POP3 and POP3_SSL types: object life cycle,
 * connecting (_create_socket, the greeting), TLS set-up, closing, and the
 * claim that keeps two callers from interleaving commands on one
 * connection.  The Python-visible methods and their tables are in
 * methods.c, hook dispatch, sending and receiving in protocol.c, the
 * commands in commands.c.
 *
 * Behaviour follows the standard library's poplib of the running
 * interpreter, method by method.  Instance attributes (host, port, sock,
 * file, welcome, _debugging, ...) live in the instance __dict__ exactly as
 * in poplib and are read through PyObject_GetAttr, so subclasses, vars()
 * and code that swaps `sock` or `file` see the same object model.
 *
 * Every function that calls back into Python keeps strong references to
 * the objects it uses: a hook, a property or close() may rebind
 * attributes.
 *
 * May call: protocol.c (the greeting through self._getresp()), the
 * reader (as self.file), the socket and ssl modules.
 */
#include "connection.h"

#include <errno.h>

#include "pythread.h"

/* ---- the claim ---- */

/* The claim of a command (nested = 0) or of a hook primitive (nested =
 * 1: _putline, _putcmd, _getline, _getresp, _getlongresp, _shortcmd,
 * _longcmd, capa), which a hook the C core called may call back while a
 * command is in progress, as poplib's own methods do (a _getresp override
 * calling super()._getresp(), a capa override used by stls()). */
static int
claim(POP3Object *self, void *token, int nested)
{
    unsigned long me = PyThread_get_thread_ident();

    if (self->depth > 0) {
        if (nested && self->owner == me && self->hook_depth > 0) {
            self->depth++;
            return 0;
        }
        PyErr_SetString(PyExc_RuntimeError,
                        "reentrant call: another command is in progress "
                        "on this POP3 connection (one connection must not "
                        "be used by two threads at once)");
        return -1;
    }
    if (self->out_of_step) {
        cpoplib_error(cpoplib_pop3_state(self),
                      "connection out of step: responses of a "
                      "fetch_many() batch could not be read; close() it "
                      "and reconnect");
        return -1;
    }
    if (self->reserved != NULL && self->reserved != token) {
        PyErr_SetString(PyExc_RuntimeError,
                        "reentrant call: a fetch_many() iteration is in "
                        "progress on this POP3 connection; finish it or "
                        "close() the iterator first");
        return -1;
    }
    self->owner = me;
    self->depth = 1;
    return 0;
}

int
cpoplib_claim_as(POP3Object *self, void *token)
{
    return claim(self, token, 0);
}

int
cpoplib_claim(POP3Object *self)
{
    return claim(self, NULL, 0);
}

int
cpoplib_claim_hook(POP3Object *self)
{
    return claim(self, NULL, 1);
}

void
cpoplib_release(POP3Object *self)
{
    assert(self->depth > 0);
    if (--self->depth == 0) {
        self->owner = 0;
    }
}

/* ---- connecting ---- */

/* What poplib does with sock.makefile('rb'): our own reader when the
 * socket is a socket.socket whose makefile() is the standard one, the
 * object's own makefile('rb') otherwise.  Runs Python code. */
PyObject *
cpoplib_make_file(cpoplib_state *st, PyObject *sock)
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
cpoplib_pop3_init(POP3Object *self, cpoplib_state *st, PyObject *host,
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
    file = cpoplib_make_file(st, sock);
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
    tls = cpoplib_wrap_socket(st, context, sock, host);

done:
    Py_DECREF(sock);
    Py_XDECREF(context);
    Py_XDECREF(host);
    return tls;
}

PyObject *
cpoplib_create_stdlib_context(cpoplib_state *st, PyObject *kwargs)
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
PyObject *
cpoplib_wrap_socket(cpoplib_state *st, PyObject *context, PyObject *sock,
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

/* POP3_SSL.__init__ once its arguments are parsed (keyfile and certfile
 * are NULL on 3.12+, where poplib no longer takes them).  Runs Python
 * code. */
int
cpoplib_pop3_ssl_init(POP3Object *self, cpoplib_state *st, PyObject *host,
                      PyObject *port, PyObject *keyfile, PyObject *certfile,
                      PyObject *timeout, PyObject *context)
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
        context = cpoplib_create_stdlib_context(st, kwargs);
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
    return cpoplib_pop3_init(self, st, host, port, timeout);
}

/* ---- closing ---- */

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
        pending = cpoplib_fetch_exception();
        if (PyObject_TypeCheck(pending, (PyTypeObject *)PyExc_OSError)) {
            PyObject *code = PyObject_GetAttr(pending, st->str_errno);
            if (code == NULL) {
                cpoplib_chain_context(pending);
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
        cpoplib_chain_context(pending);
        return -1;
    }
    Py_DECREF(res);
    if (pending != NULL) {
        cpoplib_restore_exception(pending);
        return -1;
    }
    return 0;
}

/* poplib's close(): file.close(), then (finally) sock.shutdown() and
 * sock.close(); a later error gets the earlier one as __context__, as in
 * poplib's try/finally.  Runs Python code. */
PyObject *
cpoplib_close_impl(POP3Object *self, cpoplib_state *st)
{
    PyObject *obj = (PyObject *)self;
    PyObject *file, *sock, *pending = NULL;

    /* try: close the file */
    file = PyObject_GetAttr(obj, st->str_file);
    if (file == NULL || PyObject_SetAttr(obj, st->str_file, Py_None) < 0) {
        pending = cpoplib_fetch_exception();
    }
    else if (file != Py_None) {
        PyObject *res = PyObject_CallMethodNoArgs(file, st->str_close);
        if (res == NULL) {
            pending = cpoplib_fetch_exception();
        }
        Py_XDECREF(res);
    }
    Py_XDECREF(file);

    /* finally: shut the socket down and close it */
    sock = PyObject_GetAttr(obj, st->str_sock);
    if (sock == NULL || PyObject_SetAttr(obj, st->str_sock, Py_None) < 0) {
        Py_XDECREF(sock);
        cpoplib_chain_context(pending);
        return NULL;
    }
    if (sock != Py_None && shutdown_socket(st, sock) < 0) {
        Py_DECREF(sock);
        cpoplib_chain_context(pending);
        return NULL;
    }
    Py_DECREF(sock);
    if (pending != NULL) {
        cpoplib_restore_exception(pending);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- copying ---- */

/* __getstate__: the instance __dict__, as object.__getstate__ gives it
 * for poplib's POP3, so that copy.copy() works the same (the copy shares
 * sock and file). */
PyObject *
cpoplib_getstate(POP3Object *self)
{
    PyObject *dict = PyObject_GenericGetDict((PyObject *)self, NULL);

    if (dict == NULL) {
        return NULL;
    }
    if (PyDict_GET_SIZE(dict) == 0) {
        Py_DECREF(dict);
        Py_RETURN_NONE;
    }
    return dict;
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
    self->pipelining = -1;
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

/* The owner reference (module) stays until dealloc: methods use it, as
 * CPython keeps Py_TYPE(self). */
static int
pop3_clear(POP3Object *self)
{
    Py_CLEAR(self->dict);
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
    Py_CLEAR(self->module);
    tp->tp_free(self);
    Py_DECREF(tp);
}

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

static PyType_Slot pop3_slots[] = {
    {Py_tp_doc, (void *)cpoplib_pop3_doc},
    {Py_tp_new, pop3_new},
    {Py_tp_init, cpoplib_pop3_tp_init},
    {Py_tp_dealloc, pop3_dealloc},
    {Py_tp_traverse, pop3_traverse},
    {Py_tp_clear, pop3_clear},
    {Py_tp_methods, cpoplib_pop3_methods},
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

static PyType_Slot pop3_ssl_slots[] = {
    {Py_tp_doc, (void *)cpoplib_pop3_ssl_doc},
    {Py_tp_init, cpoplib_pop3_ssl_tp_init},
    {Py_tp_dealloc, pop3_dealloc},
    {Py_tp_traverse, pop3_traverse},
    {Py_tp_clear, pop3_clear},
    {Py_tp_methods, cpoplib_pop3_ssl_methods},
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
    int rc;

    st->POP3_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &pop3_spec, NULL);
    if (st->POP3_Type == NULL) {
        return -1;
    }
    encoding = PyUnicode_FromString("UTF-8");
    if (encoding == NULL) {
        return -1;
    }
    rc = PyObject_SetAttr((PyObject *)st->POP3_Type, st->str_encoding,
                          encoding);
    Py_DECREF(encoding);
    if (rc < 0) {
        return -1;
    }
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
    st->FetchIter_Type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &cpoplib_fetch_iter_spec, NULL);
    if (st->FetchIter_Type == NULL) {
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
