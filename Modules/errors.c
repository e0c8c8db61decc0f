/* errors.c -- raising and chaining exceptions for the C core.
 *
 * error_proto with a text, or with a server's reply (then the subclass
 * the response-code classifier picks for a "-ERR [CODE]" reply); taking
 * the pending exception out, putting it back, and chaining one to
 * another as Python's own `raise` inside `except` or `finally` would.
 *
 * May call: nothing of cpoplib.  Python code it runs: the response-code
 * classifier the cpoplib package registers, and the constructors of the
 * exception classes.
 */
#include "cpoplib.h"

void
cpoplib_error(cpoplib_state *st, const char *msg)
{
    PyObject *text = PyUnicode_FromString(msg);

    if (text != NULL) {
        PyErr_SetObject(st->error_proto, text);
        Py_DECREF(text);
    }
}

/* The class to raise for the failure reply `obj`: error_proto, or the
 * subclass that the response-code classifier (registered by the cpoplib
 * package, see _set_response_classifier) picks for a bytes reply that
 * starts with "-ERR [" (RFC 2449 response codes).  The classifier returns
 * a subclass of error_proto or None (no class for this reply).  A new
 * reference, or NULL with an exception set. */
static PyObject *
error_class_for(cpoplib_state *st, PyObject *obj)
{
    static const char prefix[] = "-ERR [";
    const Py_ssize_t plen = (Py_ssize_t)sizeof(prefix) - 1;
    PyObject *classifier, *cls;

    if (st->response_classifier == NULL || !PyBytes_Check(obj)
        || PyBytes_GET_SIZE(obj) < plen
        || memcmp(PyBytes_AS_STRING(obj), prefix, (size_t)plen) != 0) {
        return Py_NewRef(st->error_proto);
    }
    /* a strong reference: the call may re-register the classifier */
    classifier = Py_NewRef(st->response_classifier);
    cls = PyObject_CallOneArg(classifier, obj);
    Py_DECREF(classifier);
    if (cls == NULL) {
        goto error;
    }
    if (cls == Py_None) {
        Py_SETREF(cls, Py_NewRef(st->error_proto));
    }
    else if (!PyType_Check(cls)
             || !PyType_IsSubtype((PyTypeObject *)cls,
                                  (PyTypeObject *)st->error_proto)) {
        PyErr_Format(PyExc_TypeError,
                     "the response classifier must return a subclass of "
                     "error_proto or None, not %R", cls);
        goto error;
    }
    return cls;

error:
    Py_XDECREF(cls);
    return NULL;
}

void
cpoplib_error_obj(cpoplib_state *st, PyObject *obj)
{
    PyObject *cls, *exc;

    cls = error_class_for(st, obj);
    if (cls == NULL) {
        return;
    }
    exc = PyObject_CallOneArg(cls, obj);
    Py_DECREF(cls);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
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

#if PY_VERSION_HEX >= 0x030C0000
PyObject *
cpoplib_fetch_exception(void)
{
    return PyErr_GetRaisedException();
}

void
cpoplib_restore_exception(PyObject *exc)
{
    PyErr_SetRaisedException(exc);
}
#else
PyObject *
cpoplib_fetch_exception(void)
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

void
cpoplib_restore_exception(PyObject *exc)
{
    if (exc == NULL) {
        return;
    }
    PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
}
#endif

void
cpoplib_chain_context(PyObject *context)
{
    PyObject *exc;

    if (context == NULL) {
        return;
    }
    exc = cpoplib_fetch_exception();
    if (exc == NULL) {
        cpoplib_restore_exception(context);   /* nothing newer: re-raise */
        return;
    }
    if (exc != context) {
        PyException_SetContext(exc, context);
    }
    else {
        Py_DECREF(context);
    }
    cpoplib_restore_exception(exc);
}

void
cpoplib_replace_error(cpoplib_state *st, const char *msg)
{
    PyObject *cause = cpoplib_fetch_exception();

    cpoplib_error(st, msg);
    cpoplib_chain_context(cause);
}
