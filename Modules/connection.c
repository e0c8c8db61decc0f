/* connection.c -- the life cycle of a POP3 (or POP3_SSL) object, the
 * claim that keeps two callers from interleaving commands on one
 * connection, poplib's close() and __getstate__.
 *
 * The type specs, whose slots point here, are in methods.c with the
 * Python-visible methods; connecting is in connect.c, hook dispatch,
 * sending and receiving in protocol.c.  Every function that calls back
 * into Python keeps strong references to the objects it uses: a hook, a
 * property or close() may rebind attributes.
 *
 * May call: errors.c.  Python code it runs: close() and shutdown() of
 * the file and the socket, attribute reads and writes.
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
cpoplib_getstate_impl(POP3Object *self)
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

/* ---- the object's life cycle (the type specs are in methods.c) ---- */

/* The module that defined `type` or the first of its bases that is one
 * of ours (a Python subclass of POP3 or POP3_SSL): our types are the heap
 * types whose instances cpoplib_pop3_dealloc() frees. */
static PyObject *
module_of(PyTypeObject *type)
{
    PyObject *mro = type->tp_mro;

    for (Py_ssize_t i = 0; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (base->tp_dealloc == (destructor)cpoplib_pop3_dealloc
            && PyType_HasFeature(base, Py_TPFLAGS_HEAPTYPE)) {
            return PyType_GetModule(base);
        }
    }
    PyErr_Format(PyExc_TypeError, "%s is not a cpoplib POP3 type",
                 type->tp_name);
    return NULL;
}

PyObject *
cpoplib_pop3_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *module = module_of(type);
    POP3Object *self;

    if (module == NULL) {
        return NULL;
    }
    self = (POP3Object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->module = Py_NewRef(module);
    self->pipelining = -1;
    return (PyObject *)self;
}

int
cpoplib_pop3_traverse(POP3Object *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->dict);
    Py_VISIT(self->module);
    Py_VISIT(self->corked);
    return 0;
}

/* The owner reference (module) stays until dealloc: methods use it, as
 * CPython keeps Py_TYPE(self). */
int
cpoplib_pop3_clear(POP3Object *self)
{
    Py_CLEAR(self->dict);
    Py_CLEAR(self->corked);
    return 0;
}

void
cpoplib_pop3_dealloc(POP3Object *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    (void)cpoplib_pop3_clear(self);
    Py_CLEAR(self->module);
    tp->tp_free(self);
    Py_DECREF(tp);
}
